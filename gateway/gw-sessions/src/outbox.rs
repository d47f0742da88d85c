//! The per-instance outbox worker: sends queued messages in order, one at a time, at the instance's pace, and
//! records each result under the session's fence.

use std::sync::Arc;
use std::time::Duration;

use gw_core::{EventType, Instance, MessageKind, OutboundContent, Timestamp};
use gw_store::QueuedMessage;

use crate::events::message_json;
use crate::meter::Metered;
use crate::state::{Inner, Shared};
use crate::{Connection, DriverError, OutgoingContent, OutgoingMessage, Presence};

/// Per-instance send pacing from the instance's `settings` (`send_interval_ms`, `typing_delay_ms`): a minimum gap
/// between messages and an optional "typing…" before each, which keeps accounts clear of spam heuristics.
#[derive(Debug, Clone, Copy, Default)]
struct Pacing {
    interval: Duration,
    typing: Duration,
}

impl Pacing {
    fn from_settings(settings: &serde_json::Value) -> Self {
        let ms = |key: &str| Duration::from_millis(settings.get(key).and_then(|v| v.as_u64()).unwrap_or(0).min(60_000));
        Self { interval: ms("send_interval_ms"), typing: ms("typing_delay_ms") }
    }
}

/// Sends the instance's queued messages in order, one at a time, at the instance's pace.
pub(crate) async fn outbox_worker(
    inner: Arc<Inner>,
    instance: Instance,
    connection: Arc<dyn Connection>,
    shared: Arc<Shared>,
) {
    let pacing = Pacing::from_settings(&instance.settings);
    let mut last_sent: Option<tokio::time::Instant> = None;
    let mut failures = 0u32;
    loop {
        if shared.tenure.is_lost() {
            return;
        }
        let batch = match inner.store.queued_messages(instance.id, inner.config.outbox_batch).await {
            Ok(batch) => batch,
            Err(e) => {
                failures += 1;
                tracing::warn!(instance = %instance.id, error = %e, "outbox not readable; retrying");
                tokio::time::sleep(crate::supervision::backoff(&inner.config, failures)).await;
                continue;
            }
        };
        if batch.is_empty() {
            shared.outbox_wake.notified().await;
            continue;
        }
        for queued in batch {
            if let Some(last) = last_sent {
                tokio::time::sleep_until(last + pacing.interval).await;
            }
            if !pacing.typing.is_zero() {
                let _ = connection.send_presence(&queued.message.chat_jid, Presence::Composing).await;
                tokio::time::sleep(pacing.typing).await;
                let _ = connection.send_presence(&queued.message.chat_jid, Presence::Paused).await;
            }
            let id = queued.message.id;
            let outgoing = match to_outgoing(&queued) {
                Ok(outgoing) => outgoing,
                Err(reason) => {
                    fail(&inner, &shared, &instance, id, &reason).await;
                    continue;
                }
            };
            let wa_message_id = outgoing.wa_message_id.clone();
            match connection.send(outgoing).await {
                Ok(sent) => {
                    failures = 0;
                    last_sent = Some(tokio::time::Instant::now());
                    if sent.wa_message_id != wa_message_id {
                        tracing::warn!(instance = %instance.id, "the driver sent under another id than the one given");
                    }
                    let mut early = shared.early_receipts.lock().await;
                    let marked = inner.store.mark_message_sent(id, sent.timestamp, shared.tenure.fence()).await;
                    shared.tenure.check(&marked);
                    match marked {
                        Ok(message) => {
                            let receipt = early.remove(&wa_message_id);
                            drop(early);
                            inner.meter.record(instance.subscription_id, instance.id, Metered::MessageSent);
                            inner.publish_logged(&instance, EventType::MessageSent, message_json(&message)).await;
                            if let Some((status, at)) = receipt {
                                let ids = [wa_message_id];
                                let fence = shared.tenure.fence();
                                if let Ok(changed) =
                                    inner.store.apply_receipt(instance.id, &ids, status, at, fence).await
                                {
                                    for message in changed {
                                        let data = message_json(&message);
                                        inner.publish_logged(&instance, EventType::MessageStatus, data).await;
                                    }
                                }
                            }
                        }
                        Err(e) => tracing::error!(instance = %instance.id, error = %e, "sent message not recorded"),
                    }
                }
                Err(e) if e.is_transient() || e == DriverError::NotConnected => {
                    // Stays queued; the order is kept because nothing behind it is sent first.
                    failures += 1;
                    tracing::warn!(instance = %instance.id, error = %e, "send failed transiently; retrying");
                    tokio::time::sleep(crate::supervision::backoff(&inner.config, failures)).await;
                    break;
                }
                Err(e) => fail(&inner, &shared, &instance, id, &e.to_string()).await,
            }
        }
    }
}

async fn fail(inner: &Inner, shared: &Shared, instance: &Instance, id: gw_core::MessageId, reason: &str) {
    let marked = inner.store.mark_message_failed(id, reason, Timestamp::now(), shared.tenure.fence()).await;
    shared.tenure.check(&marked);
    match marked {
        Ok(message) => {
            inner.meter.record(instance.subscription_id, instance.id, Metered::MessageFailed);
            inner.publish_logged(instance, EventType::MessageStatus, message_json(&message)).await;
        }
        Err(e) => tracing::error!(instance = %instance.id, error = %e, "failed message not recorded"),
    }
}

/// Rebuilds the driver's message from the stored row: its kind and typed payload must agree.
fn to_outgoing(queued: &QueuedMessage) -> Result<OutgoingMessage, String> {
    let message = &queued.message;
    let malformed = || format!("stored {} message is malformed", message.kind);
    // A text needs only its text column; every other kind needs its payload.
    let body = match (message.kind, message.content.outbound()) {
        (MessageKind::Text, _) => OutgoingContent::Text { body: message.text.clone().ok_or_else(malformed)? },
        (
            MessageKind::Image | MessageKind::Video | MessageKind::Audio | MessageKind::Document | MessageKind::Sticker,
            Some(OutboundContent::Media { media }),
        ) => {
            let bytes = queued.media.clone().ok_or_else(malformed)?;
            OutgoingContent::Media {
                kind: message.kind,
                info: media.clone(),
                bytes: bytes.into(),
                caption: message.text.clone(),
            }
        }
        (MessageKind::Location, Some(OutboundContent::Location { location })) => OutgoingContent::Location {
            latitude: location.latitude,
            longitude: location.longitude,
            name: location.name.clone(),
            address: location.address.clone(),
        },
        (MessageKind::ContactCard, Some(OutboundContent::Contact { contact })) => {
            OutgoingContent::ContactCard { display_name: contact.display_name.clone(), vcard: contact.vcard.clone() }
        }
        (MessageKind::Reaction, Some(OutboundContent::Reaction { reaction })) => {
            OutgoingContent::Reaction { target_message_id: reaction.message_id.clone(), emoji: reaction.emoji.clone() }
        }
        _ => return Err(malformed()),
    };
    // Every accepted outbound message has its id from the moment it was stored (migration 0008 gave one to those
    // queued before); sending without it would let a retry arrive twice.
    let wa_message_id =
        message.wa_message_id.clone().ok_or_else(|| format!("stored {} message has no WhatsApp id", message.kind))?;
    Ok(OutgoingMessage {
        wa_message_id,
        chat_jid: message.chat_jid.clone(),
        content: body,
        quoted_message_id: message.quoted_message_id.clone(),
    })
}
