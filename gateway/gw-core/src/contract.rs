//! The limits of the plugin contract and of the send path, in one place. The plugin host (`gw-plugins`) checks a
//! verdict against them, the send path (`gw-sessions`) checks every send against the same text limits, and the
//! store (`gw-store`) enforces the key-value limits: a reply the host accepts is one the send path accepts, and a
//! key-value write the host lets through is one the store takes (or refuses with an error the plugin sees).
//! The SDK's README states the same figures.

use crate::MessageKind;

/// WhatsApp's limit on a text message, in characters (Unicode scalar values).
pub const MAX_TEXT_CHARS: usize = 4096;
/// WhatsApp's limit on a media caption, in characters.
pub const MAX_CAPTION_CHARS: usize = 1024;

/// Replies one verdict may ask for.
pub const PLUGIN_MAX_REPLIES: usize = 5;
/// Characters of one reply: a reply is sent as a text message, so it is the text limit.
pub const PLUGIN_MAX_REPLY_CHARS: usize = MAX_TEXT_CHARS;
/// Bytes of a drop reason kept (longer reasons are truncated, not refused).
pub const PLUGIN_MAX_DROP_REASON_BYTES: usize = 512;

/// Bytes of a key-value key.
pub const PLUGIN_KV_MAX_KEY_BYTES: usize = 256;
/// Bytes of a key-value value.
pub const PLUGIN_KV_MAX_VALUE_BYTES: usize = 4096;
/// Keys one plugin may keep per instance.
pub const PLUGIN_KV_MAX_KEYS: u32 = 1_000;
/// Key-value writes (set or delete) one call may make.
pub const PLUGIN_KV_MAX_WRITES_PER_CALL: u32 = 16;

/// Log lines one call may write; the rest are counted, not kept.
pub const PLUGIN_MAX_LOG_LINES_PER_CALL: usize = 50;
/// Bytes of one log line (longer lines are truncated).
pub const PLUGIN_MAX_LOG_LINE_BYTES: usize = 1024;

/// The failure kind the send path records on a binding whose reply it refused (quota, instance not connected).
pub const REPLY_REFUSED_KIND: &str = "reply_refused";

/// Every `kind` a plugin failure recorded on a binding can have ([`crate::BindingFailure::kind`]).
pub const PLUGIN_FAILURE_KINDS: &[&str] = &[
    "trap",
    "timeout",
    "fuel_exhausted",
    "memory_limit",
    "invalid_verdict",
    "load_failed",
    "host_error",
    REPLY_REFUSED_KIND,
];

/// Why a text (a send's body, a plugin's reply or modified text) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextRefused {
    #[error("must not be empty")]
    Empty,
    #[error("{chars} characters; at most {max} are allowed")]
    TooLong { chars: usize, max: usize },
}

/// Checks the body of a text message (an API send or a plugin reply): not blank, at most [`MAX_TEXT_CHARS`].
pub fn check_text_body(body: &str) -> Result<(), TextRefused> {
    if body.trim().is_empty() {
        return Err(TextRefused::Empty);
    }
    check_chars(body, MAX_TEXT_CHARS)
}

/// Checks the text a plugin puts in place of a message's text (`modify`): at most what WhatsApp takes for that
/// kind of message (a text's limit for text, a caption's for anything else). An empty text is allowed for media
/// (no caption) but not for a text message.
pub fn check_modified_text(kind: MessageKind, text: &str) -> Result<(), TextRefused> {
    match kind {
        MessageKind::Text => check_text_body(text),
        _ => check_chars(text, MAX_CAPTION_CHARS),
    }
}

fn check_chars(text: &str, max: usize) -> Result<(), TextRefused> {
    // Bytes bound characters from above: most texts are decided without counting.
    if text.len() <= max {
        return Ok(());
    }
    let chars = text.chars().count();
    if chars > max {
        return Err(TextRefused::TooLong { chars, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_limits_count_characters_not_bytes() {
        assert_eq!(check_text_body(&"x".repeat(MAX_TEXT_CHARS)), Ok(()));
        assert_eq!(check_text_body(&"é".repeat(MAX_TEXT_CHARS)), Ok(()), "2 bytes each, still 4096 characters");
        assert_eq!(
            check_text_body(&"x".repeat(MAX_TEXT_CHARS + 1)),
            Err(TextRefused::TooLong { chars: MAX_TEXT_CHARS + 1, max: MAX_TEXT_CHARS })
        );
        assert_eq!(check_text_body(" \n"), Err(TextRefused::Empty));
        assert_eq!(check_modified_text(MessageKind::Image, ""), Ok(()));
        assert!(check_modified_text(MessageKind::Image, &"x".repeat(MAX_CAPTION_CHARS + 1)).is_err());
        assert_eq!(check_modified_text(MessageKind::Text, &"x".repeat(MAX_CAPTION_CHARS + 1)), Ok(()));
    }
}
