//! Each mapping on constructed library events.

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
    assert_eq!(message_content(&extended), (MessageKind::Text, Some("see above".into()), None, Some("QUOTED1".into())));
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
            message: MessageField::some(wa::Message { conversation: Some("vanishing".into()), ..Default::default() }),
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

    let out =
        map(Event::LoggedOut(LoggedOut::builder().on_connect(true).reason(ConnectFailureReason::LoggedOut).build()));
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
    let source =
        MessageSource { chat: jid("5511@s.whatsapp.net"), sender: jid("5511:2@s.whatsapp.net"), ..Default::default() };
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
    assert!(matches!(map(receipt(ReceiptType::Delivered)), DriverEvent::Receipt { kind: ReceiptKind::Delivered, .. }));
    assert!(matches!(map(receipt(ReceiptType::PlayedSelf)), DriverEvent::Receipt { kind: ReceiptKind::Played, .. }));
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
