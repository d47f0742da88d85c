//! Live events across nodes. Every node's SSE clients see the events of every instance, whichever node runs its
//! session: each node publishes the events its engine raises to the other nodes over a [`NodeFanout`] (PostgreSQL
//! `LISTEN/NOTIFY`), and puts what it hears from the others on its own engine's live bus.
//!
//! The relay is an [`EventSink`] of the engine, so it sees only the events raised on this node, never those it put
//! on the bus for others: nothing is published twice. Each envelope names its node (the engine's
//! [`Engine::node_id`], the id the cluster knows it by), because a node hears its own notifications too.
//!
//! Notifications sent while the listening connection is down are lost. Whenever the listener comes back after
//! a drop, the engine records a gap ([`Engine::relay_gap`]), and the SSE streams tell their clients to resync. Publishing never slows the engine: events wait in a bounded queue, and when the database is
//! slow or away the newest are dropped and counted (the live stream is best effort; webhooks are the durable
//! channel).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gw_core::{EventSink, EventSinkError, GatewayEvent, NodeId};
use gw_store::{Heard, NodeFanout};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::Engine;

/// How many events may wait to be published.
const QUEUE: usize = 4096;
/// Longest wait before listening again after the database went away.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Serialize)]
struct Outgoing<'a> {
    node: NodeId,
    event: &'a GatewayEvent,
}

#[derive(Deserialize)]
struct Incoming {
    node: NodeId,
    event: GatewayEvent,
}

/// Publishes this node's live events to the other nodes and hears theirs.
#[derive(Debug)]
pub struct EventRelay {
    queue: mpsc::Sender<GatewayEvent>,
    pending: Mutex<Option<mpsc::Receiver<GatewayEvent>>>,
    dropped: AtomicU64,
}

impl EventRelay {
    /// A relay for this process. Register it with [`crate::EngineBuilder::sink`] after the durable sinks, then
    /// [`EventRelay::spawn`] it with the built engine, whose node id names the envelopes.
    pub fn new() -> Arc<Self> {
        let (queue, pending) = mpsc::channel(QUEUE);
        Arc::new(Self { queue, pending: Mutex::new(Some(pending)), dropped: AtomicU64::new(0) })
    }

    /// Events not published because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Starts publishing and listening until `stop` turns true. Call once; a second call returns `None`.
    pub fn spawn(
        self: &Arc<Self>,
        fanout: Arc<dyn NodeFanout>,
        engine: Engine,
        stop: watch::Receiver<bool>,
    ) -> Option<JoinHandle<()>> {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        let node = engine.node_id();
        let publisher = tokio::spawn(publish(node, pending, fanout.clone(), stop.clone()));
        let listener = tokio::spawn(listen(node, fanout, engine, stop));
        Some(tokio::spawn(async move {
            let _ = publisher.await;
            let _ = listener.await;
        }))
    }
}

#[async_trait::async_trait]
impl EventSink for EventRelay {
    async fn publish(&self, event: &GatewayEvent) -> Result<(), EventSinkError> {
        if self.queue.try_send(event.clone()).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "live events not relayed to other nodes: the relay cannot keep up");
            }
        }
        // Best effort by design: a relay that cannot keep up never holds up an acknowledgement.
        Ok(())
    }
}

async fn publish(
    node: NodeId,
    mut pending: mpsc::Receiver<GatewayEvent>,
    fanout: Arc<dyn NodeFanout>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        let event = tokio::select! {
            _ = stop.changed() => return,
            event = pending.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        let message = match serde_json::to_string(&Outgoing { node, event: &event }) {
            Ok(message) => message,
            Err(err) => {
                tracing::error!(%err, "a live event could not be encoded");
                continue;
            }
        };
        match fanout.publish(&message).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("live events reach the other nodes again");
            }
            Ok(()) => {}
            Err(err) if !failing => {
                failing = true;
                tracing::warn!(%err, "live events do not reach the other nodes (the database is unavailable)");
            }
            Err(_) => {}
        }
    }
}

async fn listen(node: NodeId, fanout: Arc<dyn NodeFanout>, engine: Engine, mut stop: watch::Receiver<bool>) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    let mut backoff = FIRST_BACKOFF;
    // Before the first listener nothing was missed: SSE streams opened then see only what comes after.
    let mut listened_before = false;
    loop {
        let started = tokio::time::Instant::now();
        let listening = async {
            let mut listener = match fanout.listen().await {
                Ok(listener) => listener,
                Err(err) => return err.to_string(),
            };
            if std::mem::replace(&mut listened_before, true) {
                tracing::info!("hearing other nodes' live events again; their events meanwhile are lost");
                engine.relay_gap();
            }
            loop {
                match listener.next().await {
                    Ok(Heard::Message(message)) => match serde_json::from_str::<Incoming>(&message) {
                        Ok(incoming) if incoming.node == node => {}
                        Ok(incoming) => engine.broadcast(incoming.event),
                        Err(err) => tracing::warn!(%err, "a live event from another node could not be read"),
                    },
                    Ok(Heard::Gap) => {
                        tracing::warn!("the live event listener reconnected; other nodes' events meanwhile are lost");
                        engine.relay_gap();
                    }
                    Err(err) => return err.to_string(),
                }
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            err = listening => tracing::warn!(%err, ?backoff, "not hearing other nodes' live events; listening again"),
        }
        if started.elapsed() > 2 * MAX_BACKOFF {
            // It listened for a while: this is a new outage, not the same one going on.
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(MAX_BACKOFF),
        }
    }
}
