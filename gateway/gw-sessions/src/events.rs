//! The JSON payloads of the events the engine publishes (documented in the README).

use gw_core::{Contact, Instance, Message};
use serde_json::{Value, json};

/// A message as events and the API show it. Both address forms of the sender are given where known.
pub fn message_json(message: &Message) -> Value {
    json!({
        "id": message.id,
        "wa_message_id": message.wa_message_id,
        "direction": message.direction,
        "chat_jid": message.chat_jid,
        "from": message.sender_jid,
        "type": message.kind,
        "text": message.text,
        "content": message.content,
        "quoted_message_id": message.quoted_message_id,
        "status": message.status,
        "failure_reason": message.failure_reason,
        "origin": message.origin,
        "created_at": message.created_at,
        "sent_at": message.sent_at,
        "delivered_at": message.delivered_at,
        "read_at": message.read_at,
    })
}

pub fn contact_json(contact: &Contact) -> Value {
    json!({
        "id": contact.id,
        "jid": contact.jid,
        "lid": contact.lid,
        "phone": crate::send::phone_of(&contact.jid),
        "name": contact.name,
        "notify": contact.notify,
        "is_blocked": contact.is_blocked,
        "is_group": contact.is_group,
        "last_message_at": contact.last_message_at,
    })
}

pub fn connection_json(instance: &Instance) -> Value {
    json!({
        "status": instance.status,
        "phone": instance.phone,
        "display_name": instance.display_name,
        "connection_attempts": instance.connection_attempts,
        "last_error": instance.last_error,
        "last_connected_at": instance.last_connected_at,
        "last_disconnected_at": instance.last_disconnected_at,
    })
}
