//! The engine's public face: start, stop and command instances, accept sends, publish events, and take part in the
//! cluster (the ownership loop runs only what this node holds a lease on).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gw_core::{
    DriverKind, GatewayEvent, Instance, InstanceId, InstanceStatus, Message, MessagePipeline, NodeId, Origin,
};
use gw_store::{CommandOutcome, InstanceCommandKind, Store, StoreError};
use tokio::sync::{broadcast, oneshot, watch};

use crate::accept::send_message;
use crate::media::MediaFetcher;
use crate::meter::{Meter, QuotaError};
use crate::ownership::{self, ClusterConfig, ClusterTasks};
use crate::send::{InvalidField, MediaRefused, SendRequest, normalize_recipient};
use crate::state::{Inner, Tenure};
use crate::supervision::Command;
use crate::translate::record_status;
use crate::vault::SessionCipher;
use crate::{Connection, Driver, DriverError, NumberCheck, Presence};

/// How the engine behaves; defaults suit production.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// First reconnect delay; doubles per failed attempt up to `backoff_max`, with jitter.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How many plugin-reply hops a message may cause (the loop guard): a reply to a reply is allowed up to here.
    pub max_reply_depth: u8,
    /// How many queued messages a worker loads at a time.
    pub outbox_batch: u32,
    /// Capacity of the live event bus; a slow subscriber loses the oldest events, never blocks the engine.
    pub bus_capacity: usize,
    /// Leases, placement and wake-ups across the nodes sharing the database.
    pub cluster: ClusterConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            max_reply_depth: 1,
            outbox_batch: 32,
            bus_capacity: 4096,
            cluster: ClusterConfig::default(),
        }
    }
}

/// Errors of engine operations, mapped to problem+json by the edge.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the instance is {status}, not connected")]
    NotConnected { status: InstanceStatus },
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error(transparent)]
    Media(#[from] MediaRefused),
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("no {0} driver is configured on this node")]
    NoDriver(DriverKind),
    #[error("driver: {0}")]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The instance runs on another node, which did not answer in time.
    #[error("the node running this instance did not answer in time")]
    OwnerUnavailable,
}

/// The result of an accepted send.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub message: Message,
    /// The Idempotency-Key was seen before: this is the first request's result.
    pub replayed: bool,
}

/// The session engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    /// The ownership and wake-up loops, once started.
    cluster: Arc<Mutex<Option<ClusterTasks>>>,
}

/// Builds an [`Engine`].
#[derive(Debug)]
pub struct EngineBuilder {
    store: Arc<dyn Store>,
    meter: Arc<dyn Meter>,
    cipher: Arc<SessionCipher>,
    drivers: HashMap<DriverKind, Arc<dyn Driver>>,
    pipeline: Arc<dyn MessagePipeline>,
    sinks: Vec<Arc<dyn gw_core::EventSink>>,
    media_fetcher: Option<Arc<dyn MediaFetcher>>,
    config: EngineConfig,
}

impl EngineBuilder {
    pub fn driver(mut self, kind: DriverKind, driver: Arc<dyn Driver>) -> Self {
        self.drivers.insert(kind, driver);
        self
    }

    pub fn pipeline(mut self, pipeline: Arc<dyn MessagePipeline>) -> Self {
        self.pipeline = pipeline;
        self
    }

    /// Adds a durable destination for events (the webhook outbox).
    pub fn sink(mut self, sink: Arc<dyn gw_core::EventSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Enables media by URL; without a fetcher such sends are refused with a clear error.
    pub fn media_fetcher(mut self, fetcher: Arc<dyn MediaFetcher>) -> Self {
        self.media_fetcher = Some(fetcher);
        self
    }

    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    pub fn build(self) -> Engine {
        let (bus, _) = broadcast::channel(self.config.bus_capacity.max(16));
        Engine {
            inner: Arc::new(Inner {
                store: self.store,
                drivers: self.drivers,
                pipeline: self.pipeline,
                sinks: self.sinks,
                bus,
                gaps: watch::Sender::new(0),
                meter: self.meter,
                media_fetcher: self.media_fetcher,
                cipher: self.cipher,
                config: self.config,
                node: NodeId::new(),
                sessions: Mutex::new(HashMap::new()),
                last_renewal: Mutex::new(None),
            }),
            cluster: Arc::new(Mutex::new(None)),
        }
    }
}

impl Engine {
    pub fn builder(store: Arc<dyn Store>, meter: Arc<dyn Meter>, cipher: Arc<SessionCipher>) -> EngineBuilder {
        EngineBuilder {
            store,
            meter,
            cipher,
            drivers: HashMap::new(),
            pipeline: Arc::new(gw_core::PassThrough),
            sinks: Vec::new(),
            media_fetcher: None,
            config: EngineConfig::default(),
        }
    }

    /// This process's id in the cluster (new at every start).
    pub fn node_id(&self) -> NodeId {
        self.inner.node
    }

    /// Live events of every instance; the edge filters per instance and tenant.
    pub fn subscribe(&self) -> broadcast::Receiver<GatewayEvent> {
        self.inner.bus.subscribe()
    }

    /// Changes each time the live bus may have missed other nodes' events (the relay lost its connection to the
    /// database and listens again): an SSE client is told to resync from the API.
    pub fn relay_gaps(&self) -> watch::Receiver<u64> {
        self.inner.gaps.subscribe()
    }

    /// Records that other nodes' events may have been missed (see [`Engine::relay_gaps`]).
    pub fn relay_gap(&self) {
        self.inner.gaps.send_modify(|gaps| *gaps += 1);
    }

    /// Puts an event from another subsystem (the webhook dispatcher's `webhook.disabled`) on the live bus.
    pub fn broadcast(&self, event: GatewayEvent) {
        // No subscriber is not an error.
        let _ = self.inner.bus.send(event);
    }

    /// Announces the node and claims what placement gives it of the instances nobody holds (active, with a valid
    /// session, not waiting for a person). Returns how many sessions it started. [`Engine::run_cluster`] claims the
    /// same way every tenth of a lease, and renews what it holds every third.
    pub async fn resume_all(&self) -> Result<usize, EngineError> {
        if self.inner.config.cluster.exclusive {
            let cleared = self.inner.store.release_foreign_leases(self.inner.node).await?;
            if cleared > 0 {
                tracing::info!(cleared, "leases of an earlier process cleared (this node is the only one)");
            }
        }
        ownership::announce(&self.inner).await?;
        // Before the cluster loops run: nothing to take turns with.
        let turn = tokio::sync::Mutex::new(());
        Ok(ownership::claim_round(&self.inner, &mut ownership::Placement::default(), &turn).await?)
    }

    /// Starts the node's cluster loops: heartbeat, lease renewal (a session whose lease could not be renewed in
    /// time stops before another node may take it), claiming of orphaned instances, and wake-ups (sends accepted
    /// on other nodes). Idempotent.
    pub fn run_cluster(&self) {
        let mut cluster = self.cluster.lock().unwrap_or_else(|p| p.into_inner());
        if cluster.is_none() {
            *cluster = Some(ownership::spawn(self.inner.clone()));
        }
    }

    /// Starts connecting the instance (its task is created if needed). With `pair_phone`, pairing uses a code. The
    /// task takes the instance's lease first; while another live node holds it, that node is woken instead.
    pub fn start(&self, instance: &Instance, pair_phone: Option<String>) -> Result<(), EngineError> {
        if !self.inner.drivers.contains_key(&instance.driver) {
            return Err(EngineError::NoDriver(instance.driver));
        }
        self.inner.command(instance.id, Command::Connect { pair_phone }, Some(Tenure::default()));
        Ok(())
    }

    /// Drops the connection and connects again at once (backoff reset).
    pub fn restart(&self, instance: &Instance) -> Result<(), EngineError> {
        if !self.inner.drivers.contains_key(&instance.driver) {
            return Err(EngineError::NoDriver(instance.driver));
        }
        self.inner.command(instance.id, Command::Restart, Some(Tenure::default()));
        Ok(())
    }

    /// Logs the instance out on WhatsApp's side and forgets the session; a new pairing is needed.
    pub async fn logout(&self, instance: &Instance) -> Result<(), EngineError> {
        let (reply, done) = oneshot::channel();
        if self.inner.command(instance.id, Command::Logout { reply }, None)
            && let Ok(result) = done.await
        {
            return result.map_err(EngineError::Driver);
        }
        if let Some(outcome) = self.on_owner(instance.id, InstanceCommandKind::Logout).await? {
            return logout_outcome(outcome);
        }
        // No session anywhere: this node takes the lease for its two writes, so they are fenced like a session's (a
        // node claiming the instance meanwhile waits for them or has them refused).
        let ttl = self.inner.config.cluster.lease_ttl;
        let Some(epoch) = self.inner.store.acquire_lease(instance.id, self.inner.node, ttl).await? else {
            // Another node took the instance between the look and now: the logout is its to carry out.
            return match self.on_owner(instance.id, InstanceCommandKind::Logout).await? {
                Some(outcome) => logout_outcome(outcome),
                None => Err(EngineError::OwnerUnavailable),
            };
        };
        let tenure = Tenure::held(epoch, tokio::time::Instant::now());
        let invalidated =
            self.inner.store.invalidate_session(instance.id, gw_core::Timestamp::now(), tenure.fence()).await;
        if invalidated.is_ok() {
            record_status(
                &self.inner,
                Some(&tenure),
                instance,
                InstanceStatus::LoggedOut,
                Some("logged out by the API"),
            )
            .await;
        }
        if let Err(error) = self.inner.store.release_lease(instance.id, self.inner.node, epoch).await {
            tracing::warn!(instance = %instance.id, %error, "lease not released after the logout; it expires by itself");
        }
        invalidated?;
        if tenure.is_lost() {
            // The status write was refused: another node owns the instance now.
            return Err(EngineError::OwnerUnavailable);
        }
        Ok(())
    }

    /// Asks for a pairing code while the instance waits to be paired.
    pub async fn request_pair_code(&self, instance: &Instance, phone: &str) -> Result<String, EngineError> {
        let phone = normalize_recipient("phone", phone)?;
        let digits = phone.trim_end_matches("@s.whatsapp.net").to_owned();
        let (reply, done) = oneshot::channel();
        if !self.inner.command(instance.id, Command::PairCode { phone: digits.clone(), reply }, None) {
            let kind = InstanceCommandKind::PairCode { phone: digits };
            return match self.on_owner(instance.id, kind).await? {
                Some(CommandOutcome::Done(Some(code))) => Ok(code),
                _ => Err(EngineError::NotConnected { status: instance.status }),
            };
        }
        done.await.map_err(|_| EngineError::NotConnected { status: instance.status })?.map_err(|e| match e {
            DriverError::NotConnected => EngineError::NotConnected { status: instance.status },
            other => EngineError::Driver(other),
        })
    }

    /// Runs the command on the node that owns the instance, when that is another node: `None` when no other node
    /// owns it; the owner's outcome otherwise; [`EngineError::OwnerUnavailable`] when it did not answer in time.
    async fn on_owner(
        &self,
        instance_id: InstanceId,
        kind: InstanceCommandKind,
    ) -> Result<Option<CommandOutcome>, EngineError> {
        match self.inner.store.instance_owner(instance_id).await? {
            Some(owner) if owner != self.inner.node => {}
            _ => return Ok(None),
        }
        let id = crate::forward::forward(&self.inner, instance_id, kind).await?;
        crate::forward::answer(&self.inner, id).await?.map(Some).ok_or(EngineError::OwnerUnavailable)
    }

    /// Ends the instance's task (instance deleted or deactivated) and gives its lease up. The session stays stored.
    pub async fn stop(&self, instance_id: InstanceId) {
        ownership::stop_session(&self.inner, instance_id, true).await;
    }

    /// Graceful shutdown (SIGTERM): stops the cluster loops and every session, then gives every lease up and
    /// leaves the node list, so other nodes take the instances over at once instead of after the lease TTL.
    pub async fn shutdown(&self) {
        let tasks = self.cluster.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(tasks) = tasks {
            tasks.stop().await;
        }
        ownership::drain(&self.inner).await;
    }

    /// Ends everything at once without giving any lease up, as a killed process would: other nodes take the
    /// instances over only when the leases expire. For failover tests.
    pub async fn abandon(&self) {
        let tasks = self.cluster.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(tasks) = tasks {
            tasks.stop().await;
        }
        let handles: Vec<_> = self.inner.lock_sessions().drain().map(|(_, h)| h).collect();
        for handle in handles {
            handle.task.abort();
            let _ = handle.task.await;
        }
    }

    /// The live connection of a connected instance.
    pub fn connection(&self, instance: &Instance) -> Result<Arc<dyn Connection>, EngineError> {
        self.inner.connection(instance.id).ok_or(EngineError::NotConnected { status: instance.status })
    }

    /// Sends read receipts for messages of a chat (WhatsApp's ids), from whichever node runs the session.
    pub async fn mark_read(
        &self,
        instance: &Instance,
        chat_jid: &str,
        wa_message_ids: &[String],
    ) -> Result<(), EngineError> {
        if let Some(connection) = self.inner.connection(instance.id) {
            return Ok(connection.mark_read(chat_jid, wa_message_ids).await?);
        }
        let kind =
            InstanceCommandKind::MarkRead { chat_jid: chat_jid.to_owned(), wa_message_ids: wa_message_ids.to_vec() };
        self.done_on_owner(instance, kind).await
    }

    /// Shows a presence (typing, ...) in a chat, from whichever node runs the session.
    pub async fn send_presence(
        &self,
        instance: &Instance,
        chat_jid: &str,
        presence: Presence,
    ) -> Result<(), EngineError> {
        if let Some(connection) = self.inner.connection(instance.id) {
            return Ok(connection.send_presence(chat_jid, presence).await?);
        }
        let spelling = serde_json::to_value(presence).ok().and_then(|v| v.as_str().map(str::to_owned));
        let kind =
            InstanceCommandKind::Presence { chat_jid: chat_jid.to_owned(), presence: spelling.unwrap_or_default() };
        self.done_on_owner(instance, kind).await
    }

    /// Blocks or unblocks a contact on WhatsApp, from whichever node runs the session.
    pub async fn set_blocked(&self, instance: &Instance, jid: &str, blocked: bool) -> Result<(), EngineError> {
        if let Some(connection) = self.inner.connection(instance.id) {
            return Ok(connection.set_blocked(jid, blocked).await?);
        }
        self.done_on_owner(instance, InstanceCommandKind::Block { jid: jid.to_owned(), blocked }).await
    }

    /// Asks WhatsApp which of `phones` (digits only) are on it, from whichever node runs the session.
    pub async fn check_numbers(&self, instance: &Instance, phones: &[String]) -> Result<Vec<NumberCheck>, EngineError> {
        if let Some(connection) = self.inner.connection(instance.id) {
            return Ok(connection.check_numbers(phones).await?);
        }
        let not_connected = || EngineError::NotConnected { status: instance.status };
        match self.on_owner(instance.id, InstanceCommandKind::CheckNumbers { phones: phones.to_vec() }).await? {
            Some(CommandOutcome::Done(Some(answer))) => serde_json::from_str(&answer)
                .map_err(|e| EngineError::Driver(DriverError::Other(format!("unreadable number check: {e}")))),
            Some(CommandOutcome::Failed(reason)) if reason != crate::forward::NOT_CONNECTED => {
                Err(EngineError::Driver(DriverError::Other(reason)))
            }
            Some(CommandOutcome::Pending) => Err(EngineError::OwnerUnavailable),
            _ => Err(not_connected()),
        }
    }

    /// Runs a command that answers nothing on the node that owns the instance. Not connected when no other node
    /// owns it or the owner's session is not connected; the owner's driver error otherwise.
    async fn done_on_owner(&self, instance: &Instance, kind: InstanceCommandKind) -> Result<(), EngineError> {
        match self.on_owner(instance.id, kind).await? {
            Some(CommandOutcome::Done(_)) => Ok(()),
            Some(CommandOutcome::Failed(reason)) if reason == crate::forward::NOT_CONNECTED => {
                Err(EngineError::NotConnected { status: instance.status })
            }
            Some(CommandOutcome::Failed(reason)) => Err(EngineError::Driver(DriverError::Other(reason))),
            Some(CommandOutcome::Pending) => Err(EngineError::OwnerUnavailable),
            None => Err(EngineError::NotConnected { status: instance.status }),
        }
    }

    /// How many instance tasks run on this node.
    pub fn running(&self) -> usize {
        self.inner.lock_sessions().values().filter(|h| !h.task.is_finished()).count()
    }

    /// The live nodes of the cluster (heartbeat within one lease TTL), each with how many sessions it runs.
    pub async fn cluster_nodes(&self) -> Result<Vec<gw_store::ClusterNode>, EngineError> {
        Ok(self.inner.store.list_nodes(self.inner.config.cluster.lease_ttl).await?)
    }

    /// The node running the instance's session (holding its unexpired lease), if any.
    pub async fn owner_node(&self, instance_id: InstanceId) -> Result<Option<NodeId>, EngineError> {
        Ok(self.inner.store.instance_owner(instance_id).await?)
    }

    /// Whether the instance's session runs on this node.
    pub fn runs(&self, instance_id: InstanceId) -> bool {
        self.inner.lock_sessions().get(&instance_id).is_some_and(|h| !h.task.is_finished())
    }

    /// Accepts a send into the instance's outbox: validates, runs the outbound pipeline, then stores the message
    /// and charges the quota in one transaction. A refused send writes nothing and costs nothing. The owner is woken
    /// wherever it runs.
    pub async fn send(&self, instance: &Instance, request: SendRequest) -> Result<Accepted, EngineError> {
        send_message(&self.inner, instance, request, Origin::Api).await
    }
}

/// What the owner's answer to a forwarded logout means for the caller.
fn logout_outcome(outcome: CommandOutcome) -> Result<(), EngineError> {
    match outcome {
        CommandOutcome::Failed(reason) => Err(EngineError::Driver(DriverError::Transient(reason))),
        _ => Ok(()),
    }
}

/// Instance statuses that wait for a person, so nobody claims them.
pub(crate) fn needs_a_person(status: InstanceStatus) -> bool {
    matches!(status, InstanceStatus::LoggedOut | InstanceStatus::Replaced | InstanceStatus::Banned)
}
