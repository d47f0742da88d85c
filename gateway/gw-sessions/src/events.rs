//! The JSON payloads of the events the engine publishes (documented in the README).

use gw_core::{Contact, Instance, Message};
use serde_json::{Value, json};

/// A message as events and the API show it. Both address forms of the sender are given where known.
pub fn message_json(message: &Message) -> Value {
    json!({
        "id": message.id,
        "waMessageId": message.wa_message_id,
        "direction": message.direction,
        "chatJid": message.chat_jid,
        "from": message.sender_jid,
        "type": message.kind,
        "text": message.text,
        "content": message.content,
        "quotedMessageId": message.quoted_message_id,
        "status": message.status,
        "failureReason": message.failure_reason,
        "origin": message.origin,
        "createdAt": message.created_at,
        "sentAt": message.sent_at,
        "deliveredAt": message.delivered_at,
        "readAt": message.read_at,
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
        "isBlocked": contact.is_blocked,
        "isGroup": contact.is_group,
        "lastMessageAt": contact.last_message_at,
    })
}

pub fn connection_json(instance: &Instance) -> Value {
    json!({
        "status": instance.status,
        "phone": instance.phone,
        "displayName": instance.display_name,
        "connectionAttempts": instance.connection_attempts,
        "lastError": instance.last_error,
        "lastConnectedAt": instance.last_connected_at,
        "lastDisconnectedAt": instance.last_disconnected_at,
    })
}
