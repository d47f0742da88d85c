//! What clients see of the domain, written once: the REST API, webhook payloads and the live event stream all
//! serialise these, so one instant or one message never prints two ways.

use serde::Serialize;

use crate::{Direction, Message, MessageKind, MessageStatus, Timestamp};

/// An instant as clients see it: RFC 3339 in UTC with exactly six fractional digits
/// (`2026-01-31T12:00:00.123456Z`), the precision both databases keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub Timestamp);

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl From<Timestamp> for Rfc3339 {
    fn from(t: Timestamp) -> Self {
        Self(t)
    }
}

impl utoipa::PartialSchema for Rfc3339 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339, UTC, microseconds"))
            .examples([serde_json::json!("2026-01-31T12:00:00.123456Z")])
            .into()
    }
}

impl utoipa::ToSchema for Rfc3339 {
    fn name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }
}

/// A message as the API answers it and as `message.*` events carry it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = MessageDto)]
pub struct PublicMessage {
    pub id: String,
    pub wa_message_id: Option<String>,
    pub direction: Direction,
    pub chat_jid: String,
    /// The sender's JID, where known.
    pub from: Option<String>,
    #[serde(rename = "type")]
    pub kind: MessageKind,
    pub text: Option<String>,
    /// The kind-specific payload (location, contact card, media metadata, reaction target).
    pub content: crate::MessageContent,
    pub quoted_message_id: Option<String>,
    /// queued, sent, delivered, read, failed (outbound); received, dropped (inbound).
    pub status: MessageStatus,
    pub failure_reason: Option<String>,
    /// `api`, `plugin_reply:<depth>` or `whatsapp`.
    #[serde(with = "crate::pipeline::origin_label")]
    #[schema(value_type = String, pattern = "^(api|whatsapp|plugin_reply:[0-9]+)$", example = "api")]
    pub origin: crate::Origin,
    pub created_at: Rfc3339,
    pub sent_at: Option<Rfc3339>,
    pub delivered_at: Option<Rfc3339>,
    pub read_at: Option<Rfc3339>,
}

impl From<Message> for PublicMessage {
    fn from(m: Message) -> Self {
        Self {
            id: m.id.to_string(),
            wa_message_id: m.wa_message_id,
            direction: m.direction,
            chat_jid: m.chat_jid,
            from: m.sender_jid,
            kind: m.kind,
            text: m.text,
            content: m.content,
            quoted_message_id: m.quoted_message_id,
            status: m.status,
            failure_reason: m.failure_reason,
            origin: m.origin,
            created_at: Rfc3339(m.created_at),
            sent_at: m.sent_at.map(Rfc3339),
            delivered_at: m.delivered_at.map(Rfc3339),
            read_at: m.read_at.map(Rfc3339),
        }
    }
}

impl From<&Message> for PublicMessage {
    fn from(m: &Message) -> Self {
        m.clone().into()
    }
}

#[cfg(test)]
mod tests {
    use super::Rfc3339;
    use crate::Timestamp;

    /// Whole seconds and whole milliseconds keep all six digits: an instant prints one way everywhere, whether
    /// as the API's `Rfc3339`, as a bare `Timestamp` (event envelopes and payloads) or as text.
    #[test]
    fn instants_print_with_six_fractional_digits() {
        let print = |raw: &str| {
            let at = Timestamp::from(raw.parse::<chrono::DateTime<chrono::Utc>>().expect("instant"));
            let api = serde_json::to_string(&Rfc3339(at)).expect("json");
            assert_eq!(serde_json::to_string(&at).expect("json"), api, "Timestamp and Rfc3339 agree");
            assert_eq!(format!("\"{at}\""), api, "Display agrees");
            assert_eq!(serde_json::from_str::<Timestamp>(&api).expect("read back"), at);
            api
        };
        assert_eq!(print("2026-01-31T12:00:00Z"), "\"2026-01-31T12:00:00.000000Z\"");
        assert_eq!(print("2026-01-31T12:00:00.120Z"), "\"2026-01-31T12:00:00.120000Z\"");
        assert_eq!(print("2026-01-31T12:00:00.123456Z"), "\"2026-01-31T12:00:00.123456Z\"");
    }
}
