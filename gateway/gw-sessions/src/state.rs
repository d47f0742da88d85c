//! What the engine handle, the ownership loop and every instance task share: the engine's parts, the map of
//! running sessions, and each session's tenure (the lease epoch its writes carry).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use gw_core::{DriverKind, EventId, EventType, GatewayEvent, Instance, InstanceId, MessagePipeline, NodeId, Timestamp};
use gw_store::{OwnerEpoch, Store, StoreError};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::media::MediaFetcher;
use crate::meter::Meter;
use crate::supervision::{self, Command};
use crate::vault::SessionCipher;
use crate::{Connection, Driver, EngineConfig};

/// A session's hold on its instance: the lease epoch every write carries, and whether it was lost.
#[derive(Debug)]
pub(crate) struct Tenure {
    epoch: OnceLock<OwnerEpoch>,
    /// When the lease was taken, on this node's monotonic clock (the renewal deadline starts there).
    acquired_at: OnceLock<Instant>,
    lost: watch::Sender<bool>,
}

impl Default for Tenure {
    fn default() -> Self {
        Self { epoch: OnceLock::new(), acquired_at: OnceLock::new(), lost: watch::Sender::new(false) }
    }
}

impl Tenure {
    pub(crate) fn held(epoch: OwnerEpoch, acquired_at: Instant) -> Self {
        let tenure = Self::default();
        tenure.hold(epoch, acquired_at);
        tenure
    }

    pub(crate) fn hold(&self, epoch: OwnerEpoch, acquired_at: Instant) {
        let _ = self.epoch.set(epoch);
        let _ = self.acquired_at.set(acquired_at);
    }

    /// The fence for the session's writes: `None` only before the lease is taken.
    pub(crate) fn fence(&self) -> Option<OwnerEpoch> {
        self.epoch.get().copied()
    }

    pub(crate) fn acquired_at(&self) -> Option<Instant> {
        self.acquired_at.get().copied()
    }

    /// The lease is gone (not renewed in time, or another node's epoch refused a write): the session must stop.
    pub(crate) fn lose(&self) {
        self.lost.send_replace(true);
    }

    pub(crate) fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves once the lease is lost.
    pub(crate) async fn lost(&self) {
        let mut lost = self.lost.subscribe();
        // An error means the sender is gone, which cannot happen while `self` lives.
        let _ = lost.wait_for(|lost| *lost).await;
    }

    /// Notes a store result: a fenced write means another node owns the instance now.
    pub(crate) fn check<T>(&self, result: &Result<T, StoreError>) {
        if let Err(error) = result {
            self.observe(error);
        }
    }

    /// Marks the lease lost when a write was refused as fenced.
    pub(crate) fn observe(&self, error: &StoreError) {
        if let StoreError::Fenced { instance } = error {
            tracing::warn!(%instance, "another node took this instance over; stopping its session here");
            self.lose();
        }
    }
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
    pub(crate) tenure: Arc<Tenure>,
}

/// At most this many early receipts are kept; beyond it they are unmatched receipts, not early ones.
pub(crate) const MAX_EARLY_RECEIPTS: usize = 1024;

#[derive(Debug)]
pub(crate) struct SessionHandle {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) task: JoinHandle<()>,
}

/// Shared by the engine handle and every instance task.
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) drivers: HashMap<DriverKind, Arc<dyn Driver>>,
    pub(crate) pipeline: Arc<dyn MessagePipeline>,
    pub(crate) sinks: Vec<Arc<dyn gw_core::EventSink>>,
    pub(crate) bus: broadcast::Sender<GatewayEvent>,
    /// Counts the times the live bus may have missed other nodes' events (the relay's listener reconnected).
    pub(crate) gaps: watch::Sender<u64>,
    pub(crate) meter: Arc<dyn Meter>,
    pub(crate) media_fetcher: Option<Arc<dyn MediaFetcher>>,
    pub(crate) cipher: Arc<SessionCipher>,
    pub(crate) config: EngineConfig,
    /// This process in the cluster; new at every start.
    pub(crate) node: NodeId,
    pub(crate) sessions: Mutex<HashMap<InstanceId, SessionHandle>>,
    /// When the last successful renewal of this node's leases was sent (the watchdog's reference).
    pub(crate) last_renewal: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("node", &self.node)
            .field("drivers", &self.drivers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(crate) fn lock_last_renewal(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.last_renewal.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<InstanceId, SessionHandle>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and removes).
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends a command to the instance's task. Without a live task: creates one when `create` holds (`tenure`
    /// says whether its lease is already taken), else returns false.
    pub(crate) fn command(self: &Arc<Self>, instance_id: InstanceId, command: Command, create: Option<Tenure>) -> bool {
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
        let Some(tenure) = create else {
            return false;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared { tenure: Arc::new(tenure), ..Default::default() });
        let _ = tx.send(command);
        let task = tokio::spawn(supervision::supervise(self.clone(), instance_id, shared.clone(), rx));
        sessions.insert(instance_id, SessionHandle { commands: tx, shared, task });
        true
    }

    /// The live connection of a session running here, if it is connected.
    pub(crate) fn connection(&self, instance_id: InstanceId) -> Option<Arc<dyn crate::Connection>> {
        self.lock_sessions()
            .get(&instance_id)
            .filter(|h| !h.task.is_finished())
            .and_then(|h| h.shared.connection.lock().ok().and_then(|c| c.clone()))
    }

    /// Wakes the instance's outbox worker if it runs on this node; otherwise whichever node owns it.
    pub(crate) async fn wake_outbox(&self, instance_id: InstanceId) {
        if self.wake_local(instance_id) {
            return;
        }
        if let Err(error) = self.store.wake_instance(instance_id).await {
            // The row is the truth: the owner's slow poll finds the message anyway.
            tracing::warn!(instance = %instance_id, %error, "owner not woken; its poll will find the message");
        }
    }

    /// Wakes the outbox worker of a session running here; false if there is none.
    pub(crate) fn wake_local(&self, instance_id: InstanceId) -> bool {
        let sessions = self.lock_sessions();
        match sessions.get(&instance_id) {
            Some(handle) if !handle.task.is_finished() => {
                handle.shared.outbox_wake.notify_one();
                true
            }
            _ => false,
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
