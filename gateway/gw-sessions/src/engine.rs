//! The engine's public face: start, stop and command instances, accept sends, publish events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gw_core::{
    Direction, DriverKind, EventId, EventType, GatewayEvent, Instance, InstanceId, InstanceStatus, Message,
    MessageEvent, MessageId, MessagePipeline, Origin, Reply, Timestamp,
};
use gw_store::{Enqueued, NewOutboundMessage, Store, StoreError};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::media::{FetchError, MediaFetcher};
use crate::meter::{Meter, QuotaError};
use crate::send::{InvalidField, MediaRefused, SendContent, SendRequest, check_media, normalize_recipient};
use crate::supervisor::{self, Command};
use crate::vault::SessionCipher;
use crate::{Connection, Driver, DriverError};

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            max_reply_depth: 1,
            outbox_batch: 32,
            bus_capacity: 4096,
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
}

/// The result of an accepted send.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub message: Message,
    /// The Idempotency-Key was seen before: this is the first request's result.
    pub replayed: bool,
}

/// What the engine shares with each instance's task.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) connection: Mutex<Option<Arc<dyn Connection>>>,
    /// Wakes the outbox worker when a message is queued.
    pub(crate) outbox_wake: Notify,
    /// Receipts that arrived before the outbox recorded the send they refer to (the send's answer and its
    /// receipt race); the lock also orders "mark sent" against "apply receipt".
    pub(crate) early_receipts: tokio::sync::Mutex<HashMap<String, (gw_core::MessageStatus, Timestamp)>>,
}

/// At most this many early receipts are kept; beyond it they are unmatched receipts, not early ones.
pub(crate) const MAX_EARLY_RECEIPTS: usize = 1024;

#[derive(Debug)]
struct SessionHandle {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// Shared by the engine handle and every instance task.
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) drivers: HashMap<DriverKind, Arc<dyn Driver>>,
    pub(crate) pipeline: Arc<dyn MessagePipeline>,
    pub(crate) sinks: Vec<Arc<dyn gw_core::EventSink>>,
    pub(crate) bus: broadcast::Sender<GatewayEvent>,
    pub(crate) meter: Arc<dyn Meter>,
    pub(crate) media_fetcher: Option<Arc<dyn MediaFetcher>>,
    pub(crate) cipher: Arc<SessionCipher>,
    pub(crate) config: EngineConfig,
    sessions: Mutex<HashMap<InstanceId, SessionHandle>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("drivers", &self.drivers.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

/// The session engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
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
                meter: self.meter,
                media_fetcher: self.media_fetcher,
                cipher: self.cipher,
                config: self.config,
                sessions: Mutex::new(HashMap::new()),
            }),
        }
    }
}

/// Instance statuses that wait for a person, so start-up does not resume them.
fn needs_a_person(status: InstanceStatus) -> bool {
    matches!(status, InstanceStatus::LoggedOut | InstanceStatus::Replaced | InstanceStatus::Banned)
}

/// Statuses in which a send is accepted into the outbox. A paired instance that is briefly reconnecting still
/// accepts: its messages wait in the outbox (the point of having one).
fn accepts_sends(instance: &Instance) -> bool {
    match instance.status {
        InstanceStatus::Connected => true,
        InstanceStatus::Connecting | InstanceStatus::Disconnected => instance.phone.is_some(),
        _ => false,
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

    /// Live events of every instance; the edge filters per instance and tenant.
    pub fn subscribe(&self) -> broadcast::Receiver<GatewayEvent> {
        self.inner.bus.subscribe()
    }

    /// Puts an event from another subsystem (the webhook dispatcher's `webhook.disabled`) on the live bus.
    pub fn broadcast(&self, event: GatewayEvent) {
        // No subscriber is not an error.
        let _ = self.inner.bus.send(event);
    }

    /// Resumes every active instance that has a valid session and is not waiting for a person. Returns how many.
    pub async fn resume_all(&self) -> Result<usize, EngineError> {
        let mut resumed = 0;
        for instance in self.inner.store.list_resumable_instances().await? {
            if needs_a_person(instance.status) || !self.inner.drivers.contains_key(&instance.driver) {
                continue;
            }
            let valid = self.inner.store.load_session(instance.id).await?.is_some_and(|s| s.session_valid);
            if valid {
                self.start(&instance, None)?;
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Starts connecting the instance (its task is created if needed). With `pair_phone`, pairing uses a code.
    pub fn start(&self, instance: &Instance, pair_phone: Option<String>) -> Result<(), EngineError> {
        if !self.inner.drivers.contains_key(&instance.driver) {
            return Err(EngineError::NoDriver(instance.driver));
        }
        self.command(instance.id, Command::Connect { pair_phone }, true);
        Ok(())
    }

    /// Drops the connection and connects again at once (backoff reset).
    pub fn restart(&self, instance: &Instance) -> Result<(), EngineError> {
        if !self.inner.drivers.contains_key(&instance.driver) {
            return Err(EngineError::NoDriver(instance.driver));
        }
        self.command(instance.id, Command::Restart, true);
        Ok(())
    }

    /// Logs the instance out on WhatsApp's side and forgets the session; a new pairing is needed.
    pub async fn logout(&self, instance: &Instance) -> Result<(), EngineError> {
        let (reply, done) = oneshot::channel();
        if self.command(instance.id, Command::Logout { reply }, false)
            && let Ok(result) = done.await
        {
            return result.map_err(EngineError::Driver);
        }
        // No live session: forget the stored one (if it was ever paired) and record the status ourselves.
        self.inner.store.invalidate_session(instance.id, Timestamp::now()).await?;
        supervisor::record_status(&self.inner, instance, InstanceStatus::LoggedOut, Some("logged out by the API"))
            .await;
        Ok(())
    }

    /// Asks for a pairing code while the instance waits to be paired.
    pub async fn request_pair_code(&self, instance: &Instance, phone: &str) -> Result<String, EngineError> {
        let phone = normalize_recipient("phone", phone)?;
        let digits = phone.trim_end_matches("@s.whatsapp.net").to_owned();
        let (reply, done) = oneshot::channel();
        if !self.command(instance.id, Command::PairCode { phone: digits, reply }, false) {
            return Err(EngineError::NotConnected { status: instance.status });
        }
        done.await.map_err(|_| EngineError::NotConnected { status: instance.status })?.map_err(|e| match e {
            DriverError::NotConnected => EngineError::NotConnected { status: instance.status },
            other => EngineError::Driver(other),
        })
    }

    /// Ends the instance's task (instance deleted or deactivated). The session stays stored.
    pub async fn stop(&self, instance_id: InstanceId) {
        let handle = self.lock_sessions().remove(&instance_id);
        if let Some(handle) = handle {
            let _ = handle.commands.send(Command::Stop);
            let _ = handle.task.await;
        }
    }

    /// Stops every instance (graceful shutdown).
    pub async fn shutdown(&self) {
        let handles: Vec<_> = self.lock_sessions().drain().map(|(_, h)| h).collect();
        for handle in &handles {
            let _ = handle.commands.send(Command::Stop);
        }
        for handle in handles {
            let _ = handle.task.await;
        }
    }

    /// The live connection of a connected instance.
    pub fn connection(&self, instance: &Instance) -> Result<Arc<dyn Connection>, EngineError> {
        self.lock_sessions()
            .get(&instance.id)
            .and_then(|h| h.shared.connection.lock().ok().and_then(|c| c.clone()))
            .ok_or(EngineError::NotConnected { status: instance.status })
    }

    /// How many instance tasks run on this node.
    pub fn running(&self) -> usize {
        self.lock_sessions().len()
    }

    /// Accepts a send into the instance's outbox: validates, runs the outbound pipeline, then stores the message
    /// and charges the quota in one transaction. A refused send writes nothing and costs nothing.
    pub async fn send(&self, instance: &Instance, request: SendRequest) -> Result<Accepted, EngineError> {
        send_message(&self.inner, instance, request, Origin::Api).await
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<InstanceId, SessionHandle>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and removes).
        self.inner.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends a command to the instance's task, creating the task when `create` is set. False if there is no task.
    fn command(&self, instance_id: InstanceId, command: Command, create: bool) -> bool {
        let mut sessions = self.lock_sessions();
        let command = match sessions.get(&instance_id) {
            Some(handle) if !handle.task.is_finished() => match handle.commands.send(command) {
                Ok(()) => return true,
                Err(mpsc::error::SendError(command)) => command,
            },
            _ => command,
        };
        // No live task: it never started, or it ended.
        sessions.remove(&instance_id);
        if !create {
            return false;
        }
        self.spawn_locked(&mut sessions, instance_id, command)
    }

    fn spawn_locked(
        &self,
        sessions: &mut HashMap<InstanceId, SessionHandle>,
        instance_id: InstanceId,
        command: Command,
    ) -> bool {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let _ = tx.send(command);
        let task = tokio::spawn(supervisor::supervise(self.inner.clone(), instance_id, shared.clone(), rx));
        sessions.insert(instance_id, SessionHandle { commands: tx, shared, task });
        true
    }
}

impl Inner {
    /// Wakes the instance's outbox worker, if it runs on this node.
    pub(crate) fn wake_outbox(&self, instance_id: InstanceId) {
        let sessions = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(handle) = sessions.get(&instance_id) {
            handle.shared.outbox_wake.notify_one();
        }
    }

    /// Publishes an event to every durable sink, then to the live bus. Fails if a durable sink failed, so the
    /// caller can refuse to acknowledge what the event came from.
    pub(crate) async fn publish(
        &self,
        instance: &Instance,
        event_type: EventType,
        id: Option<EventId>,
        data: serde_json::Value,
    ) -> Result<(), gw_core::EventSinkError> {
        let mut event = GatewayEvent::new(event_type, instance.subscription_id, instance.id, Timestamp::now(), data);
        if let Some(id) = id {
            event.id = id;
        }
        for sink in &self.sinks {
            sink.publish(&event).await?;
        }
        // No subscriber is not an error.
        let _ = self.bus.send(event);
        Ok(())
    }

    /// Publishes an event nothing waits on; a sink failure is logged, not returned.
    pub(crate) async fn publish_logged(&self, instance: &Instance, event_type: EventType, data: serde_json::Value) {
        if let Err(e) = self.publish(instance, event_type, None, data).await {
            tracing::warn!(instance = %instance.id, event = %event_type, error = %e, "event not published");
        }
    }
}

/// The outbound path shared by API sends and plugin replies.
pub(crate) async fn send_message(
    inner: &Arc<Inner>,
    instance: &Instance,
    request: SendRequest,
    origin: Origin,
) -> Result<Accepted, EngineError> {
    if !accepts_sends(instance) {
        return Err(EngineError::NotConnected { status: instance.status });
    }
    request.validate()?;
    let chat_jid = normalize_recipient("to", &request.to)?;
    if let SendContent::Media { kind, mime_type, data, .. } = &request.content {
        check_media(*kind, mime_type, data.len() as u64)?;
    }
    // A retry of an accepted request returns the first result and reserves nothing again (nor fetches again).
    if let Some(idem) = &request.idempotency
        && let Some((message, hash)) = inner.store.find_idempotent_message(instance.id, &idem.key).await?
    {
        return if hash.as_deref() == Some(idem.request_hash.as_slice()) {
            Ok(Accepted { message, replayed: true })
        } else {
            Err(EngineError::IdempotencyKeyReused)
        };
    }
    let request = fetch_media(inner, request).await?;
    let media_info = match &request.content {
        SendContent::Media { kind, mime_type, data, file_name, .. } => {
            let mut info = check_media(*kind, mime_type, data.len() as u64)?;
            info.file_name = file_name.clone();
            Some(info)
        }
        _ => None,
    };
    let id = MessageId::new();
    let event = MessageEvent {
        direction: Direction::Outbound,
        subscription_id: instance.subscription_id,
        instance_id: instance.id,
        message_id: id,
        chat_jid: chat_jid.clone(),
        sender: instance.phone.clone().unwrap_or_default(),
        kind: request.kind(),
        text: request.text(),
        media: media_info.clone(),
        timestamp: Timestamp::now(),
        origin,
    };
    let outcome = inner.pipeline.process(event).await;
    let (text, dropped_reason) = match outcome.disposition {
        gw_core::Disposition::Deliver(event) => (event.text, None),
        gw_core::Disposition::Drop { reason, by } => {
            (request.text(), Some(by.map_or_else(|| reason.clone(), |by| format!("{by}: {reason}"))))
        }
    };
    let (content, media) = content_json(&request.content, text.as_deref(), media_info.as_ref());
    let at = Timestamp::now();
    let new = NewOutboundMessage {
        id,
        instance_id: instance.id,
        // The quota is charged by the insert's own transaction (dropped messages and plugin replies included, as
        // every stored outbound row is): a send that fails or is abandoned before it is stored costs nothing, and
        // a replayed Idempotency-Key costs nothing again.
        charge_to: instance.subscription_id,
        wa_message_id: crate::driver::new_wa_message_id(),
        chat_jid,
        kind: request.kind(),
        content,
        text,
        quoted_message_id: request.quoted_message_id.clone(),
        media,
        idempotency_key: request.idempotency.as_ref().map(|i| i.key.clone()),
        request_hash: request.idempotency.as_ref().map(|i| i.request_hash.clone()),
        origin: origin_label(origin),
        dropped_reason: dropped_reason.clone(),
        at,
    };
    let enqueued = inner.store.enqueue_message(new).await.map_err(|err| match QuotaError::from_store(err, at) {
        Ok(refused) => EngineError::Quota(refused),
        Err(other) => EngineError::Store(other),
    })?;
    let accepted = match enqueued {
        Enqueued::Created(message) => Accepted { message, replayed: false },
        Enqueued::Replayed(message) => Accepted { message, replayed: true },
        Enqueued::KeyReused => return Err(EngineError::IdempotencyKeyReused),
    };
    if dropped_reason.is_some() {
        inner.publish_logged(instance, EventType::MessageDropped, crate::events::message_json(&accepted.message)).await;
    } else {
        inner.wake_outbox(instance.id);
    }
    send_replies(inner, instance, outcome.replies, origin).await;
    Ok(accepted)
}

/// Turns media named by URL into media with its bytes, within the kind's size limit. Anything the fetcher refuses
/// is the caller's bad input (422 naming `media.url`), an oversized body is a 413, and nothing is written.
async fn fetch_media(inner: &Inner, request: SendRequest) -> Result<SendRequest, EngineError> {
    let SendContent::MediaUrl { kind, url, mime_type, file_name, caption } = request.content else {
        return Ok(request);
    };
    let Some((limit, accepted)) = crate::send::media_policy(kind) else {
        return Err(MediaRefused::UnsupportedType {
            kind,
            mime_type: mime_type.unwrap_or_default(),
            accepted: String::new(),
        }
        .into());
    };
    // A declared type is checked before any traffic leaves.
    if let Some(declared) = &mime_type
        && !accepted.contains(&declared.as_str())
    {
        return Err(
            MediaRefused::UnsupportedType { kind, mime_type: declared.clone(), accepted: accepted.join(", ") }.into()
        );
    }
    let Some(fetcher) = &inner.media_fetcher else {
        return Err(InvalidField {
            field: "media.url",
            reason: "media by URL is not enabled on this gateway; send the bytes as media.data".into(),
        }
        .into());
    };
    let fetched = fetcher.fetch(&url, limit).await.map_err(|e| match e {
        FetchError::TooLarge { .. } => EngineError::Media(MediaRefused::TooLargeAtUrl { kind, limit }),
        FetchError::Refused(reason) => InvalidField { field: "media.url", reason }.into(),
        FetchError::Failed(reason) => {
            InvalidField { field: "media.url", reason: format!("could not be fetched: {reason}") }.into()
        }
    })?;
    let mime_type = mime_type.or(fetched.content_type).ok_or_else(|| InvalidField {
        field: "media.mime_type",
        reason: "the server sent no Content-Type; give the media type".into(),
    })?;
    Ok(SendRequest {
        content: SendContent::Media { kind, mime_type, file_name, data: fetched.bytes, caption },
        ..request
    })
}

/// Sends a plugin's replies through the same path as an API send, one hop deeper. Beyond the configured depth
/// replies are not sent: a reply cannot feed the chain that produced it forever. A reply the send path refuses
/// (quota exhausted, instance not connected, ...) is recorded as a `reply_refused` failure on the binding that
/// asked for it, where the tenant sees it, not only in the server's log.
pub(crate) async fn send_replies(inner: &Arc<Inner>, instance: &Instance, replies: Vec<Reply>, cause: Origin) {
    let depth = match cause {
        Origin::PluginReply { depth } => depth.saturating_add(1),
        Origin::Api | Origin::WhatsApp => 1,
    };
    for reply in replies {
        if depth > inner.config.max_reply_depth {
            tracing::warn!(instance = %instance.id, depth, "plugin reply not sent: reply depth limit reached");
            continue;
        }
        let binding = reply.binding_id;
        let request = SendRequest {
            to: reply.chat_jid,
            content: SendContent::Text { body: reply.text },
            quoted_message_id: reply.quoted_message_id,
            idempotency: None,
        };
        let result = Box::pin(send_message(inner, instance, request, Origin::PluginReply { depth })).await.map(|_| ());
        if let Err(e) = result {
            tracing::warn!(instance = %instance.id, binding = ?binding, error = %e, "plugin reply refused");
            if let Some(binding) = binding {
                let failure = gw_core::BindingFailure {
                    kind: gw_core::REPLY_REFUSED_KIND.into(),
                    message: format!("a reply was not sent: {e}"),
                    at: Timestamp::now(),
                };
                if let Err(error) = inner.store.record_plugin_failure(binding, &failure).await {
                    tracing::warn!(%binding, %error, "could not record a refused plugin reply");
                }
            }
        }
    }
}

fn origin_label(origin: Origin) -> String {
    match origin {
        Origin::WhatsApp => "whatsapp".into(),
        Origin::Api => "api".into(),
        Origin::PluginReply { depth } => format!("plugin_reply:{depth}"),
    }
}

/// The stored payload of a send: what the API took, minus the bytes (those go to the `media` column).
fn content_json(
    content: &SendContent,
    text: Option<&str>,
    media: Option<&gw_core::MediaInfo>,
) -> (serde_json::Value, Option<Vec<u8>>) {
    use serde_json::json;
    match content {
        SendContent::Text { .. } => (json!({}), None),
        SendContent::Media { data, .. } => (json!({ "media": media }), Some(data.clone())),
        // Fetched into `Media` before anything is stored; kept for completeness.
        SendContent::MediaUrl { url, .. } => (json!({ "media": media, "url": url }), None),
        SendContent::Location { latitude, longitude, name, address } => (
            json!({ "location": { "latitude": latitude, "longitude": longitude, "name": name, "address": address } }),
            None,
        ),
        SendContent::ContactCard { display_name, vcard } => {
            (json!({ "contact": { "display_name": display_name, "vcard": vcard } }), None)
        }
        SendContent::Reaction { message_id, emoji } => {
            (json!({ "reaction": { "message_id": message_id, "emoji": text.unwrap_or(emoji) } }), None)
        }
    }
}
