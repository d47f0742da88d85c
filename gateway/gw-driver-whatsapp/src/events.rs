//! whatsapp-rust's events translated into the gateway's [`DriverEvent`] vocabulary, as pure functions.
//!
//! Nothing here talks to the network or the store, so each mapping is unit-tested on constructed events. The
//! connection ([`crate::driver`]) feeds them the events and the facts they need from the client (its own JIDs,
//! the current time).

use std::time::Duration;

use whatsapp_rust::chrono;

use gw_core::{MediaInfo, MessageKind, Timestamp};
use gw_sessions::{DriverEvent, InboundAck, InboundMessage, Presence, ReceiptKind};
use whatsapp_rust::Jid;
use whatsapp_rust::wacore::proto_helpers::MessageExt;
use whatsapp_rust::wacore::types::events::{Event, TempBanReason};
use whatsapp_rust::wacore::types::message::MessageInfo;
use whatsapp_rust::wacore::types::presence::{ChatPresence, ChatPresenceMedia, ReceiptType};
use whatsapp_rust::wacore_binary::{JidExt, Server};
use whatsapp_rust::waproto::whatsapp as wa;

/// Who this connection is logged in as, read from the client's device when `Connected` arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnIdentity {
    pub jid: Option<String>,
    pub lid: Option<String>,
    pub push_name: Option<String>,
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn later(now: Timestamp, after: Duration) -> Timestamp {
    let after = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    Timestamp::from_datetime(
        now.as_datetime().checked_add_signed(after).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
    )
}

fn jid_if_set(jid: &Jid) -> Option<String> {
    (!jid.user.is_empty()).then(|| jid.to_string())
}

/// Whether a message bypasses the durability hook: the library acks newsletter messages and placeholder
/// recoveries on paths of their own and delivers them only as events, so the connection forwards exactly those
/// from [`Event::Messages`] (everything else already arrived through the hook).
pub fn bypasses_durability_hook(info: &MessageInfo) -> bool {
    info.unavailable_request_id.is_some() || info.source.chat.is_newsletter()
}

fn mime(mime_type: &Option<String>, fallback: &str) -> String {
    mime_type.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| fallback.to_owned())
}

/// What kind of message it is, its text (body or caption), its media description and the id it quotes.
pub fn message_content(message: &wa::Message) -> (MessageKind, Option<String>, Option<MediaInfo>, Option<String>) {
    let base = message.get_base_message();
    let quoted = |ctx: Option<&wa::ContextInfo>| ctx.and_then(|c| c.stanza_id.clone()).filter(|id| !id.is_empty());
    let media = |mime_type: &Option<String>, fallback: &str, size: Option<u64>, file_name: Option<String>| MediaInfo {
        mime_type: mime(mime_type, fallback),
        size_bytes: size.unwrap_or(0),
        file_name,
    };

    if let Some(text) = base.conversation.as_deref().filter(|t| !t.is_empty()) {
        return (MessageKind::Text, Some(text.to_owned()), None, None);
    }
    if let Some(m) = base.extended_text_message.as_option() {
        return (MessageKind::Text, m.text.clone(), None, quoted(m.context_info.as_option()));
    }
    if let Some(m) = base.image_message.as_option() {
        let info = media(&m.mimetype, "image/jpeg", m.file_length, None);
        return (MessageKind::Image, m.caption.clone(), Some(info), quoted(m.context_info.as_option()));
    }
    if let Some(m) = base.video_message.as_option().or(base.ptv_message.as_option()) {
        let info = media(&m.mimetype, "video/mp4", m.file_length, None);
        return (MessageKind::Video, m.caption.clone(), Some(info), quoted(m.context_info.as_option()));
    }
    if let Some(m) = base.document_message.as_option() {
        let info = media(&m.mimetype, "application/octet-stream", m.file_length, m.file_name.clone());
        return (MessageKind::Document, m.caption.clone(), Some(info), quoted(m.context_info.as_option()));
    }
    if let Some(m) = base.audio_message.as_option() {
        let info = media(&m.mimetype, "audio/ogg", m.file_length, None);
        return (MessageKind::Audio, None, Some(info), quoted(m.context_info.as_option()));
    }
    if let Some(m) = base.sticker_message.as_option() {
        let info = media(&m.mimetype, "image/webp", m.file_length, None);
        return (MessageKind::Sticker, None, Some(info), quoted(m.context_info.as_option()));
    }
    if let Some(m) = base.location_message.as_option() {
        // The text of a location is what a person would read: its name and address, else the coordinates.
        let text = match (m.name.as_deref(), m.address.as_deref()) {
            (Some(name), Some(address)) => Some(format!("{name}, {address}")),
            (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
            (None, None) => {
                Some(format!("{}, {}", m.degrees_latitude.unwrap_or_default(), m.degrees_longitude.unwrap_or_default()))
            }
        };
        return (MessageKind::Location, text, None, quoted(m.context_info.as_option()));
    }
    if let Some(m) = base.contact_message.as_option() {
        return (MessageKind::ContactCard, m.display_name.clone(), None, quoted(m.context_info.as_option()));
    }
    if let Some(m) = base.reaction_message.as_option() {
        // The reacted-to message is what a reaction refers to; it travels as the quoted id.
        let target = m.key.as_option().and_then(|k| k.id.clone());
        return (MessageKind::Reaction, m.text.clone(), None, target);
    }
    (MessageKind::Other, base.text_content().map(str::to_owned), None, None)
}

/// One decrypted inbound message. `ack` is what the engine completes once the message is stored.
pub fn inbound_message(message: &wa::Message, info: &MessageInfo, ack: InboundAck) -> InboundMessage {
    let (kind, text, media, quoted_message_id) = message_content(message);
    let source = &info.source;
    // In LID-addressed chats the sender is a LID and `sender_alt` carries the phone-number JID when known.
    let sender_pn_jid = source
        .sender
        .is_lid()
        .then(|| source.sender_alt.as_ref().filter(|alt| alt.is_pn()))
        .flatten()
        .map(|j| j.to_string());
    InboundMessage {
        wa_message_id: info.id.to_string(),
        chat_jid: source.chat.to_string(),
        sender_jid: source.sender.to_non_ad().to_string(),
        sender_pn_jid,
        push_name: non_empty(&info.push_name),
        kind,
        text,
        media,
        quoted_message_id,
        timestamp: Timestamp::from_datetime(info.timestamp),
        from_me: source.is_from_me,
        ack,
    }
}

/// A sender's LID/phone-number pair learnt from a message, as a contact update the engine can store.
pub fn contact_from_message(info: &MessageInfo) -> Option<DriverEvent> {
    let source = &info.source;
    let (lid, pn) = match (&source.sender_alt, source.sender.is_lid()) {
        (Some(alt), true) if alt.is_pn() => (source.sender.to_non_ad(), alt.to_non_ad()),
        (Some(alt), false) if source.sender.is_pn() && alt.is_lid() => (alt.to_non_ad(), source.sender.to_non_ad()),
        _ => return None,
    };
    Some(DriverEvent::Contact {
        jid: pn.to_string(),
        lid: Some(lid.to_string()),
        pn_jid: Some(pn.to_string()),
        name: None,
        notify: non_empty(&info.push_name),
    })
}

fn receipt_kind(kind: &ReceiptType) -> Option<ReceiptKind> {
    match kind {
        ReceiptType::Delivered => Some(ReceiptKind::Delivered),
        ReceiptType::Read | ReceiptType::ReadSelf => Some(ReceiptKind::Read),
        ReceiptType::Played | ReceiptType::PlayedSelf => Some(ReceiptKind::Played),
        // Retries, server errors, peer and history receipts are protocol traffic, not a message's progress.
        _ => None,
    }
}

fn ban_reason(code: &TempBanReason) -> String {
    match code {
        TempBanReason::SentToTooManyPeople => "sent to too many people".to_owned(),
        TempBanReason::BlockedByUsers => "blocked by too many users".to_owned(),
        TempBanReason::CreatedTooManyGroups => "created too many groups".to_owned(),
        TempBanReason::SentTooManySameMessage => "sent the same message too often".to_owned(),
        TempBanReason::BroadcastList => "broadcast list misuse".to_owned(),
        other => format!("{other:?}"),
    }
}

/// The driver event for one library event, if the gateway has a word for it. `Messages` are not mapped here:
/// they arrive through the durability hook (see [`bypasses_durability_hook`] and [`inbound_message`]).
pub fn map_event(event: &Event, own: &OwnIdentity, now: Timestamp) -> Option<DriverEvent> {
    match event {
        Event::PairingQrCode(qr) => Some(DriverEvent::Qr { code: qr.code.clone(), expires_at: later(now, qr.timeout) }),
        Event::PairSuccess(ok) => Some(DriverEvent::PairSuccess {
            jid: ok.id.to_non_ad().to_string(),
            lid: jid_if_set(&ok.lid.to_non_ad()),
            display_name: non_empty(&ok.business_name),
        }),
        Event::PairError(err) => Some(DriverEvent::PairError { reason: err.error.clone() }),
        Event::PairingCodeError(err) => Some(DriverEvent::PairError {
            reason: match &err.rejection {
                Some(rejection) => format!("pairing code refused: {rejection:?}"),
                None => "pairing code request failed".to_owned(),
            },
        }),
        Event::PairingQrCodesExhausted(_) => {
            Some(DriverEvent::PairError { reason: "no QR code was scanned before they ran out".to_owned() })
        }
        Event::QrScannedWithoutMultidevice(_) => Some(DriverEvent::PairError {
            reason: "the phone scanned the code without multi-device support".to_owned(),
        }),
        Event::Connected(_) => Some(DriverEvent::Connected {
            jid: own.jid.clone().unwrap_or_default(),
            lid: own.lid.clone(),
            display_name: own.push_name.clone(),
        }),
        Event::Disconnected(d) => Some(DriverEvent::Disconnected { reason: d.reason.to_string() }),
        Event::LoggedOut(out) => Some(DriverEvent::LoggedOut {
            reason: match out.logout_message.as_ref().and_then(|m| m.header.clone()) {
                Some(header) => format!("{:?}: {header}", out.reason),
                None => format!("{:?}", out.reason),
            },
        }),
        Event::StreamReplaced(_) => Some(DriverEvent::StreamReplaced),
        Event::TemporaryBan(ban) => {
            let seconds = ban.expire.num_seconds();
            Some(DriverEvent::TemporaryBan {
                reason: match &ban.message {
                    Some(message) => format!("{}: {message}", ban_reason(&ban.code)),
                    None => ban_reason(&ban.code),
                },
                until: (seconds > 0).then(|| later(now, Duration::from_secs(seconds.unsigned_abs()))),
            })
        }
        Event::ConnectFailure(failure) => Some(DriverEvent::Disconnected {
            reason: match &failure.message {
                Some(message) => format!("connect failure {:?}: {message}", failure.reason),
                None => format!("connect failure {:?}", failure.reason),
            },
        }),
        Event::ClientOutdated(_) => {
            Some(DriverEvent::Disconnected { reason: "WhatsApp refused this client version as outdated".to_owned() })
        }
        Event::Receipt(receipt) => Some(DriverEvent::Receipt {
            chat_jid: receipt.source.chat.to_string(),
            wa_message_ids: receipt.message_ids.iter().map(ToString::to_string).collect(),
            kind: receipt_kind(&receipt.r#type)?,
            at: Timestamp::from_datetime(receipt.timestamp),
        }),
        Event::Presence(p) => Some(DriverEvent::Presence {
            jid: p.from.to_non_ad().to_string(),
            presence: if p.unavailable { Presence::Unavailable } else { Presence::Available },
            last_seen: p.last_seen.map(Timestamp::from_datetime),
        }),
        Event::ChatPresence(p) => Some(DriverEvent::Presence {
            jid: p.source.sender.to_non_ad().to_string(),
            presence: match (p.state, p.media) {
                (ChatPresence::Composing, ChatPresenceMedia::Audio) => Presence::Recording,
                (ChatPresence::Composing, ChatPresenceMedia::Text) => Presence::Composing,
                (ChatPresence::Paused, _) => Presence::Paused,
            },
            last_seen: None,
        }),
        Event::ContactUpdate(update) => {
            let action = &update.action;
            let jid = update.jid.to_non_ad();
            let lid =
                action.lid_jid.clone().filter(|s| !s.is_empty()).or_else(|| jid.is_lid().then(|| jid.to_string()));
            let pn_jid =
                action.pn_jid.clone().filter(|s| !s.is_empty()).or_else(|| jid.is_pn().then(|| jid.to_string()));
            Some(DriverEvent::Contact {
                jid: jid.to_string(),
                lid,
                pn_jid,
                name: action.full_name.clone().or_else(|| action.first_name.clone()).filter(|s| !s.is_empty()),
                notify: None,
            })
        }
        Event::PushNameUpdate(update) => {
            let jid = update.jid.to_non_ad();
            Some(DriverEvent::Contact {
                jid: jid.to_string(),
                lid: jid.is_lid().then(|| jid.to_string()),
                pn_jid: jid.is_pn().then(|| jid.to_string()),
                name: None,
                notify: non_empty(&update.new_push_name),
            })
        }
        Event::ContactNumberChanged(change) => Some(DriverEvent::Contact {
            jid: change.new_jid.to_non_ad().to_string(),
            lid: change.new_lid.as_ref().map(|l| l.to_non_ad().to_string()),
            pn_jid: change.new_jid.is_pn().then(|| change.new_jid.to_non_ad().to_string()),
            name: None,
            notify: None,
        }),
        _ => None,
    }
}

/// `true` for the events after which this connection is over (the engine decides what happens next).
pub fn ends_connection(event: &DriverEvent) -> bool {
    matches!(
        event,
        DriverEvent::Disconnected { .. }
            | DriverEvent::LoggedOut { .. }
            | DriverEvent::StreamReplaced
            | DriverEvent::TemporaryBan { .. }
            | DriverEvent::PairError { .. }
    )
}

/// A JID the gateway was handed, parsed; a group, a LID or a phone-number JID.
pub fn parse_jid(jid: &str) -> Option<Jid> {
    let parsed: Jid = jid.parse().ok()?;
    matches!(parsed.server, Server::Pn | Server::Lid | Server::Group | Server::Hosted | Server::HostedLid)
        .then_some(parsed)
        .filter(|j| !j.user.is_empty())
}

#[cfg(test)]
mod tests;
