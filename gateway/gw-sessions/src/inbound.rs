//! The inbound path: store, contact, pipeline, durable publish, then acknowledge to WhatsApp. Storing and finishing
//! the message carry the session's lease epoch: once another node took the instance over, both are refused, the
//! message is not acknowledged here (WhatsApp delivers it to the new owner's connection) and the session stops. The
//! sender's contact upsert is fenced the same way.

use std::sync::Arc;

use gw_core::{
    Direction, EventId, EventType, InboundContent, Instance, MessageEvent, MessageStatus, Origin, Timestamp,
};
use gw_store::{ContactUpsert, NewInboundMessage};

use crate::InboundMessage;
use crate::accept::send_replies;
use crate::events::message_json;
use crate::meter::Metered;
use crate::state::{Inner, Tenure};

/// Stores an inbound message, runs it through the pipeline, publishes it, and only then acknowledges it to
/// WhatsApp: a crash anywhere before the ack makes WhatsApp deliver it again, and the stored row recognises the
/// redelivery (its `message.received` event keeps the same id, so receivers can de-duplicate).
pub(crate) async fn handle_inbound(inner: &Arc<Inner>, tenure: &Tenure, instance: &Instance, message: InboundMessage) {
    let InboundMessage {
        wa_message_id,
        chat_jid,
        sender_jid,
        sender_pn_jid,
        push_name,
        kind,
        text,
        media,
        quoted_message_id,
        timestamp,
        from_me,
        ack,
    } = message;
    let sender = sender_pn_jid.clone().unwrap_or_else(|| sender_jid.clone());
    let new = NewInboundMessage {
        id: gw_core::MessageId::new(),
        instance_id: instance.id,
        chat_jid: chat_jid.clone(),
        sender_jid: sender.clone(),
        wa_message_id,
        kind,
        content: InboundContent {
            from_me,
            media,
            push_name: push_name.clone(),
            sender_lid: sender_jid.ends_with("@lid").then(|| sender_jid.clone()),
        }
        .into(),
        text: text.clone(),
        quoted_message_id,
        at: timestamp,
        fence: tenure.fence(),
    };
    let recorded = inner.store.record_inbound(new).await;
    tenure.check(&recorded);
    let recorded = match recorded {
        Ok(recorded) => recorded,
        Err(e) => {
            // Not acknowledged: WhatsApp will deliver it again.
            tracing::warn!(instance = %instance.id, error = %e, "inbound message not stored; not acknowledging");
            return;
        }
    };
    if recorded.processed {
        ack.ack();
        return;
    }
    if !from_me {
        let lid = sender_jid.ends_with("@lid").then(|| sender_jid.clone());
        let upsert = ContactUpsert {
            instance_id: instance.id,
            jid: sender.clone(),
            lid,
            notify: push_name,
            last_message_at: Some(timestamp),
            fence: tenure.fence(),
            ..Default::default()
        };
        let upserted = inner.store.upsert_contact(upsert).await;
        tenure.check(&upserted);
        match upserted {
            Ok(_) => {}
            Err(e @ gw_store::StoreError::Fenced { .. }) => {
                // Another node owns the instance now: it records this message when WhatsApp delivers it there.
                tracing::warn!(instance = %instance.id, error = %e, "contact refused; not acknowledging");
                return;
            }
            // A contact is a by-product: the message is still published and acknowledged without it.
            Err(e) => tracing::warn!(instance = %instance.id, error = %e, "contact not recorded"),
        }
    }
    let event = MessageEvent {
        direction: Direction::Inbound,
        subscription_id: instance.subscription_id,
        instance_id: instance.id,
        message_id: recorded.message.id,
        chat_jid,
        sender,
        kind,
        text,
        media: media_of(&recorded.message),
        timestamp,
        origin: Origin::WhatsApp,
    };
    let outcome = inner.pipeline.process(event).await;
    let mut message = recorded.message;
    let event_id = Some(EventId::from_uuid(message.id.as_uuid()));
    let (status, reason, event_type) = match &outcome.disposition {
        gw_core::Disposition::Deliver(event) => {
            message.text = event.text.clone();
            (MessageStatus::Received, None, EventType::MessageReceived)
        }
        gw_core::Disposition::Drop { reason, by } => {
            let reason = by.as_ref().map_or_else(|| reason.clone(), |by| format!("{by}: {reason}"));
            (MessageStatus::Dropped, Some(reason), EventType::MessageDropped)
        }
    };
    message.status = status;
    message.failure_reason = reason.clone();
    if let Err(e) = inner.publish(instance, event_type, event_id, message_json(&message)).await {
        tracing::warn!(instance = %instance.id, error = %e, "inbound event not durable; not acknowledging");
        return;
    }
    let finished = inner
        .store
        .finish_inbound(message.id, status, message.text.clone(), reason, Timestamp::now(), tenure.fence())
        .await;
    tenure.check(&finished);
    if let Err(e) = finished {
        tracing::warn!(instance = %instance.id, error = %e, "inbound message not finished; not acknowledging");
        return;
    }
    ack.ack();
    if status == MessageStatus::Received && !from_me {
        inner.meter.record(instance.subscription_id, instance.id, Metered::MessageReceived);
    }
    send_replies(inner, instance, outcome.replies, Origin::WhatsApp).await;
}

fn media_of(message: &gw_core::Message) -> Option<gw_core::MediaInfo> {
    message.content.media().cloned()
}
