//! What a message carries beyond its kind and text: one typed value, built by the send path and the inbound path,
//! stored as JSON in the `content` column and shown as `content` by the REST API, webhooks and the live stream.
//!
//! The JSON is the one the gateway has always stored (so no migration): an outbound message's payload under one
//! key (`media`, `location`, `contact`, `reaction`; `{}` for text), an inbound message's metadata with every key
//! present. Fields are declared in alphabetical order because the maps stored before were serialised sorted, so a
//! message prints the same bytes as before.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::MediaInfo;

/// A message's payload, by direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Metadata of a message received from WhatsApp (always carries `from_me`).
    Inbound(InboundContent),
    /// What an outbound message sends.
    Outbound(OutboundContent),
    /// A stored payload of neither shape (written by an older version); kept as it is, never sent.
    Unrecognised(Value),
}

/// Metadata of an inbound message; every key is written, `null` when unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundContent {
    /// Sent by this account from another device (WhatsApp echoes it).
    pub from_me: bool,
    pub media: Option<MediaInfo>,
    /// The name the sender set on their own phone.
    pub push_name: Option<String>,
    /// The sender's `…@lid` JID when WhatsApp addressed them by LID (the message's sender is then their phone JID).
    pub sender_lid: Option<String>,
}

/// An outbound message's payload; the variant matches the message's kind (`Text` for text, `Media` for the media
/// kinds). Untagged: the one key present says which it is; any other key makes the payload `Unrecognised` rather
/// than silently dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum OutboundContent {
    /// Metadata of the attachment; the bytes live beside the row (the `media` column), never in the JSON.
    Media {
        media: MediaInfo,
    },
    Location {
        location: Location,
    },
    Contact {
        contact: ContactCard,
    },
    Reaction {
        reaction: Reaction,
    },
    /// Nothing beyond the text column: `{}`.
    Text {},
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub address: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactCard {
    pub display_name: String,
    pub vcard: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub emoji: String,
    /// WhatsApp id of the message reacted to.
    pub message_id: String,
}

impl MessageContent {
    /// The payload of an outbound text message.
    pub const fn text() -> Self {
        MessageContent::Outbound(OutboundContent::Text {})
    }

    /// The attachment's metadata, whichever way the message went.
    pub fn media(&self) -> Option<&MediaInfo> {
        match self {
            MessageContent::Inbound(inbound) => inbound.media.as_ref(),
            MessageContent::Outbound(OutboundContent::Media { media }) => Some(media),
            _ => None,
        }
    }

    pub fn outbound(&self) -> Option<&OutboundContent> {
        match self {
            MessageContent::Outbound(outbound) => Some(outbound),
            _ => None,
        }
    }
}

impl From<OutboundContent> for MessageContent {
    fn from(content: OutboundContent) -> Self {
        MessageContent::Outbound(content)
    }
}

impl From<InboundContent> for MessageContent {
    fn from(content: InboundContent) -> Self {
        MessageContent::Inbound(content)
    }
}

// The document says what it said before (a value whose keys depend on the kind), now once, as a component.
impl utoipa::PartialSchema for MessageContent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
            .description(Some(
                "Outbound: the payload under one key (`media`, `location`, `contact`, `reaction`; `{}` for text). \
                 Inbound: `from_me`, `media`, `push_name`, `sender_lid`.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for MessageContent {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn media() -> MediaInfo {
        MediaInfo { mime_type: "image/png".into(), size_bytes: 9, file_name: None }
    }

    /// The bytes the send and inbound paths wrote with `json!` before this type existed.
    #[test]
    fn serialises_as_the_json_stored_before() {
        let cases: Vec<(MessageContent, Value)> = vec![
            (MessageContent::text(), json!({})),
            (OutboundContent::Media { media: media() }.into(), json!({ "media": media() })),
            (
                OutboundContent::Location {
                    location: Location { latitude: 52.5, longitude: 13.4, name: Some("Office".into()), address: None },
                }
                .into(),
                json!({ "location": { "latitude": 52.5, "longitude": 13.4, "name": "Office", "address": null } }),
            ),
            (
                OutboundContent::Contact {
                    contact: ContactCard { display_name: "Bob".into(), vcard: "BEGIN:VCARD\nEND:VCARD".into() },
                }
                .into(),
                json!({ "contact": { "display_name": "Bob", "vcard": "BEGIN:VCARD\nEND:VCARD" } }),
            ),
            (
                OutboundContent::Reaction { reaction: Reaction { message_id: "3EB0AA".into(), emoji: "👍".into() } }
                    .into(),
                json!({ "reaction": { "message_id": "3EB0AA", "emoji": "👍" } }),
            ),
            (
                InboundContent { from_me: false, media: None, push_name: Some("Ann".into()), sender_lid: None }.into(),
                json!({ "media": null, "sender_lid": null, "push_name": "Ann", "from_me": false }),
            ),
        ];
        for (typed, stored) in cases {
            assert_eq!(serde_json::to_string(&typed).expect("typed"), serde_json::to_string(&stored).expect("stored"));
            let back: MessageContent = serde_json::from_value(stored).expect("parse");
            assert_eq!(back, typed);
        }
    }

    #[test]
    fn an_unknown_shape_is_kept_not_refused() {
        let odd_shapes = [
            json!({ "something": [1, 2] }),
            json!({ "media": null, "push_name": "no from_me" }),
            json!({ "media": { "mime_type": "image/png", "size_bytes": 1, "file_name": null }, "url": "https://x" }),
            json!("not an object"),
        ];
        for odd in odd_shapes {
            let parsed: MessageContent = serde_json::from_value(odd.clone()).expect("parse");
            assert_eq!(parsed, MessageContent::Unrecognised(odd.clone()));
            assert_eq!(serde_json::to_value(&parsed).expect("json"), odd);
            assert_eq!(parsed.media(), None);
        }
    }

    #[test]
    fn media_is_found_on_either_direction() {
        let inbound: MessageContent =
            InboundContent { from_me: true, media: Some(media()), push_name: None, sender_lid: None }.into();
        assert_eq!(inbound.media(), Some(&media()));
        assert_eq!(MessageContent::from(OutboundContent::Media { media: media() }).media(), Some(&media()));
        assert_eq!(MessageContent::text().media(), None);
    }
}
