//! The inbound side of one connection: the library's events pumped, in order, into the engine's channel, and
//! decrypted messages handed over through the durability hook so WhatsApp gets its ack only after the engine's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gw_core::Timestamp;
use gw_sessions::{DriverEvent, InboundAck};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, warn};
use whatsapp_rust::InboundDurabilityHook;
use whatsapp_rust::client::Client;
use whatsapp_rust::transport::{Transport, TransportEvent, TransportFactory};
use whatsapp_rust::types::events::{Event, EventHandler};

use crate::backend::GatewayBackend;
use crate::events::{self, OwnIdentity};

/// The sending half of a connection's events, closed exactly once when the connection is over.
#[derive(Debug)]
pub(crate) struct ConnectionEvents {
    tx: std::sync::Mutex<Option<mpsc::Sender<DriverEvent>>>,
    /// A terminal event (`Disconnected`, `LoggedOut`, ...) was sent; later ones would only repeat it.
    ended: AtomicBool,
}

impl ConnectionEvents {
    pub(crate) fn new(tx: mpsc::Sender<DriverEvent>) -> Self {
        Self { tx: std::sync::Mutex::new(Some(tx)), ended: AtomicBool::new(false) }
    }

    fn sender(&self) -> Option<mpsc::Sender<DriverEvent>> {
        self.tx.lock().ok().and_then(|tx| tx.clone())
    }

    /// Sends an event; `false` when the engine stopped listening or the connection already ended.
    pub(crate) async fn send(&self, event: DriverEvent) -> bool {
        if events::ends_connection(&event) && self.ended.swap(true, Ordering::SeqCst) {
            return false;
        }
        match self.sender() {
            Some(tx) => tx.send(event).await.is_ok(),
            None => false,
        }
    }

    pub(crate) fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
    }
}

/// The websocket factory, remembering why the last dial failed: the library logs it but reports no event for a
/// connection that never opened, and the engine needs the reason for `lastError`.
pub(crate) struct DialRecorder {
    pub(crate) inner: whatsapp_rust::transport::TokioWebSocketTransportFactory,
    pub(crate) url: String,
    pub(crate) last_error: Arc<std::sync::Mutex<Option<String>>>,
}

#[async_trait::async_trait]
impl TransportFactory for DialRecorder {
    async fn create_transport(
        &self,
    ) -> Result<
        (Arc<dyn Transport>, whatsapp_rust::async_channel::Receiver<TransportEvent>),
        whatsapp_rust::anyhow::Error,
    > {
        let result = self.inner.create_transport().await;
        if let Err(err) = &result
            && let Ok(mut slot) = self.last_error.lock()
        {
            *slot = Some(format!("cannot reach {}: {err:#}", self.url));
        }
        result
    }
}

/// whatsapp-rust's durability hook: each decrypted message goes to the engine with an [`InboundAck`], and the
/// library acks the batch to WhatsApp only when the engine completed every ack. A dropped ack, a closed channel or
/// a timeout fails the batch, so WhatsApp redelivers it on the next connect (at-least-once).
pub(crate) struct AckAfterEngine {
    pub(crate) sink: Arc<ConnectionEvents>,
    pub(crate) timeout: Duration,
}

#[async_trait::async_trait]
impl InboundDurabilityHook for AckAfterEngine {
    async fn on_messages(
        &self,
        _client: Arc<Client>,
        batch: &[whatsapp_rust::types::events::InboundMessage],
    ) -> whatsapp_rust::anyhow::Result<()> {
        deliver_batch(&self.sink, self.timeout, batch).await.map_err(whatsapp_rust::anyhow::Error::msg)
    }
}

/// Hands a batch to the engine and waits for every ack; `Err` leaves the whole batch unacknowledged.
async fn deliver_batch(
    sink: &ConnectionEvents,
    timeout: Duration,
    batch: &[whatsapp_rust::types::events::InboundMessage],
) -> Result<(), &'static str> {
    let mut pending = Vec::with_capacity(batch.len());
    for item in batch {
        if let Some(contact) = events::contact_from_message(&item.info) {
            sink.send(contact).await;
        }
        let (ack, acked) = InboundAck::new();
        let message = events::inbound_message(&item.message, &item.info, ack);
        if !sink.send(DriverEvent::Message(message)).await {
            return Err("the engine is not listening; the batch stays unacknowledged");
        }
        pending.push(acked);
    }
    match tokio::time::timeout(timeout, futures_all(pending)).await {
        Ok(true) => Ok(()),
        Ok(false) => Err("the engine dropped an inbound message without storing it"),
        Err(_) => Err("the engine did not store the inbound batch in time"),
    }
}

/// `true` when every ack was completed, `false` as soon as one was dropped.
async fn futures_all(pending: Vec<tokio::sync::oneshot::Receiver<()>>) -> bool {
    for acked in pending {
        if acked.await.is_err() {
            return false;
        }
    }
    true
}

fn own_identity(client: &Client) -> OwnIdentity {
    let device = client.persistence_manager().get_device_snapshot();
    OwnIdentity {
        jid: device.pn.as_ref().map(|j| j.to_non_ad().to_string()),
        lid: device.lid.as_ref().map(|j| j.to_non_ad().to_string()),
        push_name: (!device.push_name.is_empty()).then(|| device.push_name.clone()),
    }
}

/// What the library's event bus hands to the pump: its events, then the end of the connection.
pub(crate) enum Pumped {
    Event(Arc<Event>),
    /// The client's run loop returned; every event it dispatched is already queued before this.
    Ended,
}

/// Runs inline on the library's dispatch path (never blocks: an unbounded queue), so the order of events and the
/// end of the connection is exactly the library's.
pub(crate) struct InlineForwarder(pub(crate) mpsc::UnboundedSender<Pumped>);

impl EventHandler for InlineForwarder {
    fn handle_event(&self, event: Arc<Event>) {
        // Messages reach the engine through the durability hook; only the few that bypass it are forwarded here.
        let _ = self.0.send(Pumped::Event(event));
    }
}

const PAIRING_RESTART: &str = "WhatsApp closes the pairing connection once the device is registered; connect again to \
                               log in with the new credentials";

/// Translates queued library events into driver events, in order, and ends the stream when the connection ends.
pub(crate) async fn pump(
    mut queue: mpsc::UnboundedReceiver<Pumped>,
    sink: Arc<ConnectionEvents>,
    client: Arc<Client>,
    last_dial_error: Arc<std::sync::Mutex<Option<String>>>,
    cleanup: GatewayBackend,
) {
    let mut paired = false;
    let mut logged_out = false;
    while let Some(item) = queue.recv().await {
        let event = match item {
            Pumped::Event(event) => event,
            Pumped::Ended => break,
        };
        if let Event::Messages(batch) = &*event {
            for item in batch.messages.iter().filter(|m| events::bypasses_durability_hook(&m.info)) {
                let message = events::inbound_message(&item.message, &item.info, InboundAck::detached());
                sink.send(DriverEvent::Message(message)).await;
            }
            continue;
        }
        let own = if matches!(&*event, Event::Connected(_)) { own_identity(&client) } else { OwnIdentity::default() };
        let Some(mapped) = events::map_event(&event, &own, Timestamp::now()) else { continue };
        paired |= matches!(mapped, DriverEvent::PairSuccess { .. });
        logged_out |= matches!(mapped, DriverEvent::LoggedOut { .. });
        let terminal = events::ends_connection(&mapped) && !matches!(mapped, DriverEvent::Disconnected { .. });
        sink.send(mapped).await;
        if terminal {
            // The contract ends the connection here (a pairing error, a ban, a logout, a replaced stream) even
            // where the library would keep the socket open.
            let client = client.clone();
            tokio::spawn(async move { client.disconnect().await }.in_current_span());
        }
    }
    if logged_out {
        // Only now that the client stopped: it must not write the old device's state back after the wipe.
        if let Err(err) = cleanup.forget_session().await {
            warn!("could not forget the logged-out session's state: {err}");
        }
    }
    let reason = match last_dial_error.lock().ok().and_then(|mut e| e.take()) {
        Some(dial_error) => dial_error,
        None if paired => PAIRING_RESTART.to_owned(),
        None => "the connection to WhatsApp ended".to_owned(),
    };
    debug!(%reason, "whatsapp connection over");
    sink.send(DriverEvent::Disconnected { reason }).await;
    sink.close();
}

#[cfg(test)]
mod tests {
    use whatsapp_rust::types::events::InboundMessage as WaInbound;
    use whatsapp_rust::wacore::types::message::{MessageInfo, MessageSource};
    use whatsapp_rust::waproto::whatsapp as wa;

    use super::*;

    fn sink() -> (Arc<ConnectionEvents>, mpsc::Receiver<DriverEvent>) {
        let (tx, rx) = mpsc::channel(8);
        (Arc::new(ConnectionEvents::new(tx)), rx)
    }

    fn batch(ids: &[&str]) -> Vec<WaInbound> {
        ids.iter()
            .map(|id| {
                WaInbound::builder()
                    .message(Arc::new(wa::Message { conversation: Some(format!("body {id}")), ..Default::default() }))
                    .info(Arc::new(MessageInfo {
                        source: MessageSource {
                            chat: "5511@s.whatsapp.net".parse().expect("jid"),
                            sender: "5511@s.whatsapp.net".parse().expect("jid"),
                            ..Default::default()
                        },
                        id: (*id).into(),
                        ..Default::default()
                    }))
                    .build()
            })
            .collect()
    }

    #[tokio::test]
    async fn batch_is_acknowledged_only_after_the_engine_acked_every_message() {
        let (sink, mut rx) = sink();
        let batch = batch(&["A", "B"]);
        let delivery = tokio::spawn({
            let sink = sink.clone();
            async move { deliver_batch(&sink, Duration::from_secs(60), &batch).await }
        });
        let Some(DriverEvent::Message(first)) = rx.recv().await else { panic!("first message") };
        let Some(DriverEvent::Message(second)) = rx.recv().await else { panic!("second message") };
        assert_eq!((first.wa_message_id.as_str(), second.wa_message_id.as_str()), ("A", "B"));
        first.ack.ack();
        assert!(!delivery.is_finished(), "one message is still unstored");
        second.ack.ack();
        assert_eq!(delivery.await.expect("task"), Ok(()));
    }

    #[tokio::test]
    async fn a_dropped_ack_leaves_the_batch_unacknowledged() {
        let (sink, mut rx) = sink();
        let batch = batch(&["A", "B"]);
        let delivery = tokio::spawn({
            let sink = sink.clone();
            async move { deliver_batch(&sink, Duration::from_secs(60), &batch).await }
        });
        let Some(DriverEvent::Message(first)) = rx.recv().await else { panic!("first message") };
        let Some(DriverEvent::Message(second)) = rx.recv().await else { panic!("second message") };
        first.ack.ack();
        drop(second); // the engine failed to store it
        assert!(delivery.await.expect("task").is_err());
    }

    #[tokio::test]
    async fn an_ack_that_never_comes_times_out_and_a_closed_engine_refuses() {
        let (sink, mut rx) = sink();
        let held = batch(&["A"]);
        let delivery = tokio::spawn({
            let sink = sink.clone();
            async move { deliver_batch(&sink, Duration::from_millis(20), &held).await }
        });
        // Held, neither completed nor dropped: the timeout is what ends the wait.
        let Some(DriverEvent::Message(_unacked)) = rx.recv().await else { panic!("message") };
        assert_eq!(delivery.await.expect("task"), Err("the engine did not store the inbound batch in time"));

        sink.close();
        assert!(deliver_batch(&sink, Duration::from_secs(60), &batch(&["B"])).await.is_err());
    }

    #[tokio::test]
    async fn only_the_first_terminal_event_is_sent() {
        let (sink, mut rx) = sink();
        assert!(sink.send(DriverEvent::LoggedOut { reason: "401".into() }).await);
        assert!(!sink.send(DriverEvent::Disconnected { reason: "later".into() }).await);
        sink.close();
        assert!(matches!(rx.recv().await, Some(DriverEvent::LoggedOut { .. })));
        assert!(rx.recv().await.is_none(), "closed after the terminal event");
    }
}
