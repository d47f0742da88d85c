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
mod tests {

    use wa::message;
    use whatsapp_rust::buffa::MessageField;
    use whatsapp_rust::wacore::net::DisconnectReason;
    use whatsapp_rust::wacore::types::events::ConnectFailureReason;
    use whatsapp_rust::wacore::types::events::{
        ChatPresenceUpdate, Connected, ContactNumberChanged, ContactUpdate, Disconnected, LoggedOut, PairError,
        PairSuccess, PairingQrCode, PresenceUpdate, PushNameUpdate, Receipt, StreamReplaced, TemporaryBan,
    };
    use whatsapp_rust::wacore::types::message::MessageSource;

    use super::*;

    fn jid(s: &str) -> Jid {
        s.parse().unwrap_or_else(|e| panic!("jid {s}: {e}"))
    }

    fn now() -> Timestamp {
        Timestamp::from_datetime(chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("time"))
    }

    fn info(chat: &str, sender: &str, alt: Option<&str>) -> MessageInfo {
        MessageInfo {
            source: MessageSource {
                chat: jid(chat),
                sender: jid(sender),
                sender_alt: alt.map(jid),
                is_group: chat.ends_with("@g.us"),
                ..Default::default()
            },
            id: "3EB0AA".into(),
            push_name: "Ana".into(),
            timestamp: chrono::DateTime::from_timestamp(1_700_000_100, 0).expect("time"),
            ..Default::default()
        }
    }

    fn map(event: Event) -> DriverEvent {
        map_event(&event, &OwnIdentity::default(), now()).expect("mapped")
    }

    fn reply_to(id: &str) -> MessageField<wa::ContextInfo> {
        MessageField::some(wa::ContextInfo { stanza_id: Some(id.into()), ..Default::default() })
    }

    #[test]
    fn text_and_extended_text_with_a_quote() {
        let plain = wa::Message { conversation: Some("hello".into()), ..Default::default() };
        assert_eq!(message_content(&plain), (MessageKind::Text, Some("hello".into()), None, None));

        let extended = wa::Message {
            extended_text_message: MessageField::some(message::ExtendedTextMessage {
                text: Some("see above".into()),
                context_info: reply_to("QUOTED1"),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            message_content(&extended),
            (MessageKind::Text, Some("see above".into()), None, Some("QUOTED1".into()))
        );
    }

    #[test]
    fn media_captions_and_descriptions() {
        let image = wa::Message {
            image_message: MessageField::some(message::ImageMessage {
                caption: Some("a cat".into()),
                mimetype: Some("image/png".into()),
                file_length: Some(2048),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (kind, text, media, _) = message_content(&image);
        assert_eq!((kind, text.as_deref()), (MessageKind::Image, Some("a cat")));
        assert_eq!(media, Some(MediaInfo { mime_type: "image/png".into(), size_bytes: 2048, file_name: None }));

        let video = wa::Message {
            video_message: MessageField::some(message::VideoMessage {
                caption: Some("clip".into()),
                context_info: reply_to("Q2"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (kind, text, media, quoted) = message_content(&video);
        assert_eq!((kind, text.as_deref(), quoted.as_deref()), (MessageKind::Video, Some("clip"), Some("Q2")));
        assert_eq!(media.expect("media").mime_type, "video/mp4", "a missing mimetype falls back to the kind's default");

        let document = wa::Message {
            document_message: MessageField::some(message::DocumentMessage {
                caption: Some("invoice".into()),
                file_name: Some("inv.pdf".into()),
                mimetype: Some("application/pdf".into()),
                file_length: Some(10),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (kind, text, media, _) = message_content(&document);
        assert_eq!((kind, text.as_deref()), (MessageKind::Document, Some("invoice")));
        assert_eq!(media.expect("media").file_name.as_deref(), Some("inv.pdf"));

        let audio = wa::Message {
            audio_message: MessageField::some(message::AudioMessage {
                ptt: Some(true),
                mimetype: Some("audio/ogg; codecs=opus".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (kind, text, media, _) = message_content(&audio);
        assert_eq!((kind, text), (MessageKind::Audio, None));
        assert_eq!(media.expect("media").mime_type, "audio/ogg; codecs=opus");
    }

    #[test]
    fn location_contact_card_and_reaction() {
        let location = wa::Message {
            location_message: MessageField::some(message::LocationMessage {
                degrees_latitude: Some(52.5),
                degrees_longitude: Some(13.4),
                name: Some("Office".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(message_content(&location), (MessageKind::Location, Some("Office".into()), None, None));

        let card = wa::Message {
            contact_message: MessageField::some(message::ContactMessage {
                display_name: Some("Bob".into()),
                vcard: Some("BEGIN:VCARD\nEND:VCARD".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(message_content(&card), (MessageKind::ContactCard, Some("Bob".into()), None, None));

        let reaction = wa::Message {
            reaction_message: MessageField::some(message::ReactionMessage {
                key: MessageField::some(wa::MessageKey { id: Some("TARGET".into()), ..Default::default() }),
                text: Some("👍".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(message_content(&reaction), (MessageKind::Reaction, Some("👍".into()), None, Some("TARGET".into())));
    }

    #[test]
    fn wrapped_and_unknown_messages_are_not_lost() {
        // Ephemeral chats wrap the real message; the wrapper is looked through.
        let ephemeral = wa::Message {
            ephemeral_message: MessageField::some(message::FutureProofMessage {
                message: MessageField::some(wa::Message {
                    conversation: Some("vanishing".into()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        assert_eq!(message_content(&ephemeral).0, MessageKind::Text);
        assert_eq!(message_content(&ephemeral).1.as_deref(), Some("vanishing"));

        let poll = wa::Message {
            poll_creation_message: MessageField::some(message::PollCreationMessage {
                name: Some("Lunch?".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(message_content(&poll).0, MessageKind::Other);
    }

    #[test]
    fn inbound_message_carries_ids_sender_mapping_and_the_ack() {
        let (ack, mut acked) = InboundAck::new();
        let msg = wa::Message { conversation: Some("hi".into()), ..Default::default() };
        let info = info("120363021033254949@g.us", "100000012345678:3@lid", Some("5511987650001@s.whatsapp.net"));
        let inbound = inbound_message(&msg, &info, ack);
        assert_eq!(inbound.wa_message_id, "3EB0AA");
        assert_eq!(inbound.chat_jid, "120363021033254949@g.us");
        assert_eq!(inbound.sender_jid, "100000012345678@lid");
        assert_eq!(inbound.sender_pn_jid.as_deref(), Some("5511987650001@s.whatsapp.net"));
        assert_eq!(inbound.push_name.as_deref(), Some("Ana"));
        assert_eq!(inbound.timestamp.as_datetime().timestamp(), 1_700_000_100);
        assert!(!inbound.from_me);
        assert!(acked.try_recv().is_err(), "nothing acknowledged before the engine says so");
        inbound.ack.ack();
        assert!(acked.try_recv().is_ok());

        match contact_from_message(&info) {
            Some(DriverEvent::Contact { jid, lid, pn_jid, notify, .. }) => {
                assert_eq!(jid, "5511987650001@s.whatsapp.net");
                assert_eq!(lid.as_deref(), Some("100000012345678@lid"));
                assert_eq!(pn_jid.as_deref(), Some("5511987650001@s.whatsapp.net"));
                assert_eq!(notify.as_deref(), Some("Ana"));
            }
            other => panic!("expected a contact mapping, got {other:?}"),
        }
        assert!(contact_from_message(&self::info("5511@s.whatsapp.net", "5511@s.whatsapp.net", None)).is_none());
    }

    #[test]
    fn hook_bypass_is_newsletters_and_placeholder_recoveries() {
        assert!(!bypasses_durability_hook(&info("5511@s.whatsapp.net", "5511@s.whatsapp.net", None)));
        assert!(bypasses_durability_hook(&info("120363@newsletter", "120363@newsletter", None)));
        let mut recovered = info("5511@s.whatsapp.net", "5511@s.whatsapp.net", None);
        recovered.unavailable_request_id = Some("req".into());
        assert!(bypasses_durability_hook(&recovered));
    }

    #[test]
    fn pairing_events() {
        let qr = map(Event::PairingQrCode(
            PairingQrCode::builder().code("2@abc".into()).timeout(Duration::from_secs(60)).build(),
        ));
        match qr {
            DriverEvent::Qr { code, expires_at } => {
                assert_eq!(code, "2@abc");
                assert_eq!(expires_at.as_datetime().timestamp(), 1_700_000_060);
            }
            other => panic!("{other:?}"),
        }
        let ok = PairSuccess::builder()
            .id(jid("5511987650001:12@s.whatsapp.net"))
            .lid(jid("100000012345678:12@lid"))
            .business_name(String::new())
            .platform("android".into())
            .build();
        match map(Event::PairSuccess(ok)) {
            DriverEvent::PairSuccess { jid, lid, display_name } => {
                assert_eq!(jid, "5511987650001@s.whatsapp.net");
                assert_eq!(lid.as_deref(), Some("100000012345678@lid"));
                assert_eq!(display_name, None);
            }
            other => panic!("{other:?}"),
        }
        let err = PairError::builder()
            .id(Jid::default())
            .lid(Jid::default())
            .business_name(String::new())
            .platform(String::new())
            .error("bad signature".into())
            .build();
        assert!(matches!(map(Event::PairError(err)), DriverEvent::PairError { reason } if reason == "bad signature"));
    }

    #[test]
    fn connection_lifecycle_events() {
        let own = OwnIdentity {
            jid: Some("5511@s.whatsapp.net".into()),
            lid: Some("1000@lid".into()),
            push_name: Some("Acme".into()),
        };
        match map_event(&Event::Connected(Connected::builder().build()), &own, now()) {
            Some(DriverEvent::Connected { jid, lid, display_name }) => {
                assert_eq!(
                    (jid.as_str(), lid.as_deref(), display_name.as_deref()),
                    ("5511@s.whatsapp.net", Some("1000@lid"), Some("Acme"))
                );
            }
            other => panic!("{other:?}"),
        }
        let dropped = map(Event::Disconnected(Disconnected::builder().reason(DisconnectReason::StreamEnded).build()));
        assert!(matches!(&dropped, DriverEvent::Disconnected { .. }) && ends_connection(&dropped));

        let out = map(Event::LoggedOut(
            LoggedOut::builder().on_connect(true).reason(ConnectFailureReason::LoggedOut).build(),
        ));
        assert!(matches!(&out, DriverEvent::LoggedOut { reason } if reason.contains("LoggedOut")));
        assert!(matches!(map(Event::StreamReplaced(StreamReplaced::builder().build())), DriverEvent::StreamReplaced));

        let ban =
            TemporaryBan::builder().code(TempBanReason::SentToTooManyPeople).expire(chrono::Duration::hours(1)).build();
        match map(Event::TemporaryBan(ban)) {
            DriverEvent::TemporaryBan { reason, until } => {
                assert_eq!(reason, "sent to too many people");
                assert_eq!(until.map(|u| u.as_datetime().timestamp()), Some(1_700_003_600));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn receipts_and_presence() {
        let source = MessageSource {
            chat: jid("5511@s.whatsapp.net"),
            sender: jid("5511:2@s.whatsapp.net"),
            ..Default::default()
        };
        let receipt = |kind: ReceiptType| {
            Event::Receipt(
                Receipt::builder()
                    .source(source.clone())
                    .message_ids(vec!["M1".into(), "M2".into()])
                    .timestamp(chrono::DateTime::from_timestamp(1_700_000_200, 0).expect("time"))
                    .r#type(kind)
                    .offline(false)
                    .build(),
            )
        };
        match map(receipt(ReceiptType::Read)) {
            DriverEvent::Receipt { chat_jid, wa_message_ids, kind, at } => {
                assert_eq!(chat_jid, "5511@s.whatsapp.net");
                assert_eq!(wa_message_ids, vec!["M1".to_owned(), "M2".to_owned()]);
                assert_eq!(kind, ReceiptKind::Read);
                assert_eq!(at.as_datetime().timestamp(), 1_700_000_200);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            map(receipt(ReceiptType::Delivered)),
            DriverEvent::Receipt { kind: ReceiptKind::Delivered, .. }
        ));
        assert!(matches!(
            map(receipt(ReceiptType::PlayedSelf)),
            DriverEvent::Receipt { kind: ReceiptKind::Played, .. }
        ));
        assert!(map_event(&receipt(ReceiptType::Retry), &OwnIdentity::default(), now()).is_none());

        let away = PresenceUpdate::builder().from(jid("5511@s.whatsapp.net")).unavailable(true).build();
        assert!(matches!(map(Event::Presence(away)), DriverEvent::Presence { presence: Presence::Unavailable, .. }));
        let recording = ChatPresenceUpdate::builder()
            .source(source.clone())
            .state(ChatPresence::Composing)
            .media(ChatPresenceMedia::Audio)
            .build();
        match map(Event::ChatPresence(recording)) {
            DriverEvent::Presence { jid, presence, .. } => {
                assert_eq!((jid.as_str(), presence), ("5511@s.whatsapp.net", Presence::Recording));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn contact_updates_carry_the_lid_pn_mapping() {
        let action = wa::sync_action_value::ContactAction {
            full_name: Some("Ana Lima".into()),
            lid_jid: Some("1000@lid".into()),
            ..Default::default()
        };
        let update = ContactUpdate::builder()
            .jid(jid("5511@s.whatsapp.net"))
            .timestamp(chrono::DateTime::from_timestamp(1, 0).expect("time"))
            .action(Box::new(action))
            .from_full_sync(false)
            .build();
        match map(Event::ContactUpdate(update)) {
            DriverEvent::Contact { jid, lid, pn_jid, name, .. } => {
                assert_eq!(jid, "5511@s.whatsapp.net");
                assert_eq!(lid.as_deref(), Some("1000@lid"));
                assert_eq!(pn_jid.as_deref(), Some("5511@s.whatsapp.net"));
                assert_eq!(name.as_deref(), Some("Ana Lima"));
            }
            other => panic!("{other:?}"),
        }

        let push = PushNameUpdate::builder()
            .jid(jid("1000@lid"))
            .message(Box::new(info("1000@lid", "1000@lid", None)))
            .old_push_name("A".into())
            .new_push_name("Ana".into())
            .build();
        assert!(
            matches!(map(Event::PushNameUpdate(push)), DriverEvent::Contact { notify: Some(n), lid: Some(_), .. } if n == "Ana")
        );

        let changed = ContactNumberChanged::builder()
            .old_jid(jid("5511@s.whatsapp.net"))
            .new_jid(jid("5522@s.whatsapp.net"))
            .new_lid(jid("1000@lid"))
            .timestamp(chrono::DateTime::from_timestamp(1, 0).expect("time"))
            .build();
        match map(Event::ContactNumberChanged(changed)) {
            DriverEvent::Contact { jid, lid, .. } => {
                assert_eq!((jid.as_str(), lid.as_deref()), ("5522@s.whatsapp.net", Some("1000@lid")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn jids_are_parsed_strictly() {
        assert!(parse_jid("5511@s.whatsapp.net").is_some());
        assert!(parse_jid("120363@g.us").is_some());
        assert!(parse_jid("1000@lid").is_some());
        assert!(parse_jid("not a jid").is_none());
        assert!(parse_jid("@s.whatsapp.net").is_none());
    }
}
