//! What a send request may contain, and the checks that refuse bad input before anything is written.

use gw_core::{MediaInfo, MessageKind};

/// A send as the engine takes it (the edge translates JSON into this).
#[derive(Debug, Clone, PartialEq)]
pub struct SendRequest {
    /// A phone number (`+1 555 0100`) or a JID (`…@s.whatsapp.net`, `…@lid`, `…@g.us`).
    pub to: String,
    pub content: SendContent,
    /// WhatsApp id of the message to quote (a reply).
    pub quoted_message_id: Option<String>,
    /// `Idempotency-Key` and a hash of the request it came with.
    pub idempotency: Option<Idempotency>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SendContent {
    Text {
        body: String,
    },
    Media {
        kind: MessageKind,
        mime_type: String,
        file_name: Option<String>,
        data: Vec<u8>,
        caption: Option<String>,
    },
    /// Media the engine fetches before accepting the send; `mime_type` defaults to the response's `Content-Type`.
    MediaUrl {
        kind: MessageKind,
        url: String,
        mime_type: Option<String>,
        file_name: Option<String>,
        caption: Option<String>,
    },
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
    },
    ContactCard {
        display_name: String,
        vcard: String,
    },
    Reaction {
        message_id: String,
        emoji: String,
    },
}

/// A refused field: the edge answers 422 naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidField {
    InvalidField { field, reason: reason.into() }
}

// WhatsApp's limits on a text and a caption, from the contract (gw-core) that plugin replies are checked
// against too: a reply the plugin host accepts is never refused here for its text.
pub use gw_core::{MAX_CAPTION_CHARS, MAX_TEXT_CHARS};
/// The longest media URL accepted.
pub const MAX_MEDIA_URL_CHARS: usize = 2048;

/// Size limit and accepted types per media kind (WhatsApp's own limits, with documents capped lower because the
/// bytes wait in the database until sent).
pub fn media_policy(kind: MessageKind) -> Option<(u64, &'static [&'static str])> {
    const MIB: u64 = 1024 * 1024;
    match kind {
        MessageKind::Image => Some((5 * MIB, &["image/jpeg", "image/png", "image/webp"])),
        MessageKind::Video => Some((16 * MIB, &["video/mp4", "video/3gpp"])),
        MessageKind::Audio => {
            Some((16 * MIB, &["audio/aac", "audio/mp4", "audio/mpeg", "audio/amr", "audio/ogg", "audio/opus"]))
        }
        MessageKind::Document => Some((16 * MIB, &[])),
        _ => None,
    }
}

/// Why media was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaRefused {
    #[error("{kind} media is limited to {limit} bytes; this one has {size}")]
    TooLarge { kind: MessageKind, limit: u64, size: u64 },
    /// Fetched by URL: the download stopped at the limit, so the real size is not known.
    #[error("{kind} media is limited to {limit} bytes; the file at the URL is larger")]
    TooLargeAtUrl { kind: MessageKind, limit: u64 },
    #[error("{mime_type} is not accepted for {kind}; accepted: {accepted}")]
    UnsupportedType { kind: MessageKind, mime_type: String, accepted: String },
}

/// Checks media against its kind's policy.
pub fn check_media(kind: MessageKind, mime_type: &str, size: u64) -> Result<MediaInfo, MediaRefused> {
    let Some((limit, accepted)) = media_policy(kind) else {
        return Err(MediaRefused::UnsupportedType { kind, mime_type: mime_type.into(), accepted: String::new() });
    };
    if !accepted.is_empty() && !accepted.contains(&mime_type) {
        return Err(MediaRefused::UnsupportedType { kind, mime_type: mime_type.into(), accepted: accepted.join(", ") });
    }
    if size > limit {
        return Err(MediaRefused::TooLarge { kind, limit, size });
    }
    Ok(MediaInfo { mime_type: mime_type.into(), size_bytes: size, file_name: None })
}

fn check_caption(caption: Option<&str>) -> Result<(), InvalidField> {
    if caption.is_some_and(|c| c.chars().count() > MAX_CAPTION_CHARS) {
        return Err(invalid("caption", format!("at most {MAX_CAPTION_CHARS} characters")));
    }
    Ok(())
}

/// Turns a phone number or JID into a full JID, or says which rule it breaks.
pub fn normalize_recipient(field: &'static str, to: &str) -> Result<String, InvalidField> {
    let to = to.trim();
    if let Some((user, server)) = to.split_once('@') {
        let ok_user = match server {
            "s.whatsapp.net" | "lid" => {
                !user.is_empty() && user.len() <= 20 && user.bytes().all(|b| b.is_ascii_digit())
            }
            "g.us" => !user.is_empty() && user.len() <= 40 && user.bytes().all(|b| b.is_ascii_digit() || b == b'-'),
            _ => return Err(invalid(field, format!("unknown JID server {server:?}; use s.whatsapp.net, lid or g.us"))),
        };
        if !ok_user {
            return Err(invalid(field, "the part before @ must be digits"));
        }
        return Ok(to.to_owned());
    }
    let digits: String = to.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.')).collect();
    let digits = digits.strip_prefix('+').unwrap_or(&digits);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            field,
            "a phone number has only digits, spaces, dashes, dots, parentheses and a leading +",
        ));
    }
    if !(7..=15).contains(&digits.len()) {
        return Err(invalid(field, "a phone number in international format has 7 to 15 digits"));
    }
    if digits.starts_with('0') {
        return Err(invalid(field, "use the international format with the country code, without a leading 0"));
    }
    Ok(format!("{digits}@s.whatsapp.net"))
}

/// The phone number of a user JID (`15550100@s.whatsapp.net` -> `+15550100`).
pub fn phone_of(jid: &str) -> Option<String> {
    let user = jid.strip_suffix("@s.whatsapp.net")?;
    let user = user.split(':').next().unwrap_or(user);
    Some(format!("+{user}"))
}

impl SendRequest {
    /// Checks everything that can be checked without I/O.
    pub fn validate(&self) -> Result<(), InvalidField> {
        match &self.content {
            SendContent::Text { body } => {
                gw_core::check_text_body(body).map_err(|refused| match refused {
                    gw_core::TextRefused::Empty => invalid("text", "must not be empty"),
                    gw_core::TextRefused::TooLong { .. } => {
                        invalid("text", format!("at most {MAX_TEXT_CHARS} characters"))
                    }
                })?;
            }
            SendContent::Media { caption, .. } => check_caption(caption.as_deref())?,
            SendContent::MediaUrl { caption, url, .. } => {
                check_caption(caption.as_deref())?;
                let lower = url.trim().to_ascii_lowercase();
                if !(lower.starts_with("https://") || lower.starts_with("http://")) {
                    return Err(invalid("media.url", "an http:// or https:// URL"));
                }
                if url.len() > MAX_MEDIA_URL_CHARS {
                    return Err(invalid("media.url", format!("at most {MAX_MEDIA_URL_CHARS} characters")));
                }
            }
            SendContent::Location { latitude, longitude, .. } => {
                if !(-90.0..=90.0).contains(latitude) {
                    return Err(invalid("location.latitude", "between -90 and 90"));
                }
                if !(-180.0..=180.0).contains(longitude) {
                    return Err(invalid("location.longitude", "between -180 and 180"));
                }
            }
            SendContent::ContactCard { display_name, vcard } => {
                if display_name.trim().is_empty() {
                    return Err(invalid("contact.display_name", "must not be empty"));
                }
                if !vcard.trim_start().starts_with("BEGIN:VCARD") || vcard.len() > 8192 {
                    return Err(invalid("contact.vcard", "a vCard (BEGIN:VCARD … END:VCARD) of at most 8 KiB"));
                }
            }
            SendContent::Reaction { message_id, emoji } => {
                if message_id.trim().is_empty() {
                    return Err(invalid("reaction.message_id", "must not be empty"));
                }
                if emoji.chars().count() > 8 {
                    return Err(invalid("reaction.emoji", "one emoji (or empty to remove a reaction)"));
                }
            }
        }
        if let Some(key) = &self.idempotency
            && (key.key.is_empty() || key.key.len() > 255)
        {
            return Err(invalid("Idempotency-Key", "1 to 255 characters"));
        }
        Ok(())
    }

    pub fn kind(&self) -> MessageKind {
        match &self.content {
            SendContent::Text { .. } => MessageKind::Text,
            SendContent::Media { kind, .. } | SendContent::MediaUrl { kind, .. } => *kind,
            SendContent::Location { .. } => MessageKind::Location,
            SendContent::ContactCard { .. } => MessageKind::ContactCard,
            SendContent::Reaction { .. } => MessageKind::Reaction,
        }
    }

    /// Text or caption: what plugins see and may rewrite.
    pub fn text(&self) -> Option<String> {
        match &self.content {
            SendContent::Text { body } => Some(body.clone()),
            SendContent::Media { caption, .. } | SendContent::MediaUrl { caption, .. } => caption.clone(),
            SendContent::Location { name, .. } => name.clone(),
            SendContent::ContactCard { display_name, .. } => Some(display_name.clone()),
            SendContent::Reaction { emoji, .. } => Some(emoji.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_normalise_or_name_the_rule() {
        assert_eq!(normalize_recipient("to", "+1 (555) 010-0200").as_deref(), Ok("15550100200@s.whatsapp.net"));
        assert_eq!(normalize_recipient("to", "123456789@lid").as_deref(), Ok("123456789@lid"));
        assert_eq!(normalize_recipient("to", "120363-99@g.us").as_deref(), Ok("120363-99@g.us"));
        for bad in ["", "12", "hello", "0555123456", "1555@example.com", "abc@s.whatsapp.net", "+1 555 abc 0000"] {
            let err = normalize_recipient("to", bad).expect_err(bad);
            assert_eq!(err.field, "to");
        }
    }

    #[test]
    fn media_policy_refuses_oversized_and_unknown_types() {
        assert!(check_media(MessageKind::Image, "image/png", 1000).is_ok());
        assert!(matches!(
            check_media(MessageKind::Image, "image/png", 6 * 1024 * 1024),
            Err(MediaRefused::TooLarge { .. })
        ));
        assert!(matches!(
            check_media(MessageKind::Image, "application/x-msdownload", 10),
            Err(MediaRefused::UnsupportedType { .. })
        ));
        assert!(check_media(MessageKind::Document, "application/pdf", 10).is_ok());
    }

    #[test]
    fn phone_of_strips_the_device_suffix() {
        assert_eq!(phone_of("15550100:3@s.whatsapp.net").as_deref(), Some("+15550100"));
        assert_eq!(phone_of("123@lid"), None);
    }
}
