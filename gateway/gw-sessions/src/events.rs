//! The JSON payloads of the events the engine publishes (documented in the README).

use gw_core::{Contact, Instance, Message};
use serde_json::{Value, json};

/// A message as events show it: [`gw_core::PublicMessage`], the shape the API answers with.
pub fn message_json(message: &Message) -> Value {
    // Serialising a struct of strings, enums and a JSON value into a `Value` cannot fail.
    serde_json::to_value(gw_core::PublicMessage::from(message)).unwrap_or_default()
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
