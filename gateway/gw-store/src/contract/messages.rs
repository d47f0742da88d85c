//! The contract of messages: the outbox, its quota charge, receipts, inbound redelivery.

use std::sync::Arc;

use gw_core::{Tier, Timestamp};

use super::fixtures::{actor, instance, outbound, subscription};
use crate::*;

pub async fn outbox_is_idempotent_and_ordered(store: Arc<dyn Store>) {
    let sub = subscription(&store, 5).await;
    let inst = instance(&store, sub.id, "outbox").await;
    let chat = "15550001@s.whatsapp.net";
    let first = match store.enqueue_message(outbound(&inst, chat, "one", Some("k1"), b"h1")).await.expect("enqueue") {
        Enqueued::Created(m) => m,
        other => panic!("expected a new message, got {other:?}"),
    };
    assert_eq!(first.status, gw_core::MessageStatus::Queued);
    match store.enqueue_message(outbound(&inst, chat, "one", Some("k1"), b"h1")).await.expect("replay") {
        Enqueued::Replayed(m) => assert_eq!(m.id, first.id),
        other => panic!("expected the first result, got {other:?}"),
    }
    let (found, hash) = store.find_idempotent_message(inst.id, "k1").await.expect("find").expect("found");
    assert_eq!((found.id, hash.as_deref()), (first.id, Some(&b"h1"[..])));
    assert_eq!(store.find_idempotent_message(inst.id, "k2").await.expect("find"), None);
    assert_eq!(
        store.enqueue_message(outbound(&inst, chat, "other", Some("k1"), b"h2")).await.expect("reuse"),
        Enqueued::KeyReused
    );
    for text in ["two", "three"] {
        store.enqueue_message(outbound(&inst, chat, text, None, b"")).await.expect("enqueue");
    }
    let queued = store.queued_messages(inst.id, 10).await.expect("queued");
    let texts: Vec<_> = queued.iter().map(|q| q.message.text.clone().unwrap_or_default()).collect();
    assert_eq!(texts, ["one", "two", "three"]);

    assert!(first.wa_message_id.as_deref().is_some_and(|id| id.starts_with("3EB0")), "the id is set when queued");
    let sent = store.mark_message_sent(first.id, Timestamp::now(), None).await.expect("sent");
    assert_eq!(sent.status, gw_core::MessageStatus::Sent);
    assert_eq!(sent.wa_message_id, first.wa_message_id, "sending keeps the id given at acceptance");
    assert!(matches!(
        store.mark_message_sent(first.id, Timestamp::now(), None).await,
        Err(StoreError::NotFound { .. })
    ));
    let failed =
        store.mark_message_failed(queued[1].message.id, "no such user", Timestamp::now(), None).await.expect("failed");
    assert_eq!(failed.failure_reason.as_deref(), Some("no such user"));
    assert_eq!(store.queued_messages(inst.id, 10).await.expect("queued").len(), 1);
    let page = store.list_messages(inst.id, Some(chat), PageRequest::first(2)).await.expect("list");
    assert_eq!(page.items.len(), 2);
    assert!(page.next.is_some());
}

pub(super) async fn subscription_with_quota(store: &Arc<dyn Store>, monthly_messages: i64) -> gw_core::Subscription {
    store
        .create_subscription(
            NewSubscription {
                name: "Quota".into(),
                tier: Tier::Starter,
                max_instances: 5,
                monthly_messages,
                limit_overrides: Default::default(),
            },
            &Actor::system(),
        )
        .await
        .expect("create subscription")
}

/// The quota counts exactly the stored outbound rows: the charge is taken in the insert's transaction, so of many
/// concurrent sends against a small quota exactly `quota` are stored and `messages_used` equals them, and a replay
/// (or a reused key) charges nothing, even when the quota is used up.
pub async fn concurrent_enqueues_charge_exactly_what_is_stored(store: Arc<dyn Store>) {
    const QUOTA: i64 = 7;
    let sub = subscription_with_quota(&store, QUOTA).await;
    let inst = instance(&store, sub.id, "quota").await;
    let chat = "15550009@s.whatsapp.net";
    let attempts = (0..40).map(|n| {
        let store = store.clone();
        let new = outbound(&inst, chat, &format!("m{n}"), Some(&format!("key-{n}")), b"h");
        tokio::spawn(async move { store.enqueue_message(new).await })
    });
    let mut created = Vec::new();
    for result in futures::future::join_all(attempts).await {
        match result.expect("task") {
            Ok(Enqueued::Created(message)) => created.push(message),
            Err(StoreError::LimitReached(Limit::MonthlyMessages { max: QUOTA })) => {}
            other => panic!("unexpected outcome: {other:?}"),
        }
    }
    assert_eq!(created.len(), QUOTA as usize);
    let stored = store.list_messages(inst.id, None, PageRequest::first(100)).await.expect("list");
    assert_eq!(stored.items.len(), QUOTA as usize, "a refused send stores nothing");
    assert_eq!(store.get_subscription(sub.id).await.expect("read").messages_used, QUOTA);

    // The quota is used up, yet a replay is answered (it was paid for) and charges nothing; a reused key neither.
    let first = &created[0];
    let key = first.idempotency_key.clone().expect("keyed");
    let replay = NewOutboundMessage { text: first.text.clone(), ..outbound(&inst, chat, "", Some(&key), b"h") };
    match store.enqueue_message(replay).await.expect("replay") {
        Enqueued::Replayed(message) => {
            assert_eq!((message.id, &message.wa_message_id), (first.id, &first.wa_message_id), "the first result")
        }
        other => panic!("expected the first result, got {other:?}"),
    }
    let reused = store.enqueue_message(outbound(&inst, chat, "other", Some(&key), b"other")).await.expect("reused");
    assert_eq!(reused, Enqueued::KeyReused);
    assert_eq!(store.get_subscription(sub.id).await.expect("read").messages_used, QUOTA);
}

/// A message the pipeline dropped is stored as `dropped` and charged like any accepted message (its row and its
/// charge are one transaction); an inactive subscription stores and charges nothing.
pub async fn dropped_messages_are_charged_and_inactive_subscriptions_store_nothing(store: Arc<dyn Store>) {
    let sub = subscription_with_quota(&store, 10).await;
    let inst = instance(&store, sub.id, "dropped").await;
    let dropped = NewOutboundMessage {
        dropped_reason: Some("opt-out: the recipient opted out".into()),
        ..outbound(&inst, "15550010@s.whatsapp.net", "hi", None, b"")
    };
    let Enqueued::Created(message) = store.enqueue_message(dropped).await.expect("enqueue") else {
        panic!("expected a new message")
    };
    assert_eq!(message.status, gw_core::MessageStatus::Dropped);
    assert_eq!(store.get_subscription(sub.id).await.expect("read").messages_used, 1);
    assert!(store.queued_messages(inst.id, 10).await.expect("queued").is_empty(), "a dropped message is never sent");

    store
        .update_subscription(sub.id, SubscriptionPatch { is_active: Some(false), ..Default::default() }, &actor())
        .await
        .expect("deactivate");
    let refused = store.enqueue_message(outbound(&inst, "15550010@s.whatsapp.net", "again", None, b"")).await;
    assert!(matches!(refused, Err(StoreError::Inactive { entity: "subscription" })), "{refused:?}");
    let stored = store.list_messages(inst.id, None, PageRequest::first(10)).await.expect("list");
    assert_eq!(stored.items.len(), 1);
    assert_eq!(store.get_subscription(sub.id).await.expect("read").messages_used, 1);
}

pub async fn receipts_only_move_messages_forward(store: Arc<dyn Store>) {
    let sub = subscription(&store, 5).await;
    let inst = instance(&store, sub.id, "receipts").await;
    let Enqueued::Created(m) =
        store.enqueue_message(outbound(&inst, "15550002@s.whatsapp.net", "hi", None, b"")).await.expect("enqueue")
    else {
        panic!("expected a new message")
    };
    let queued_receipt = store
        .apply_receipt(
            inst.id,
            &[m.wa_message_id.clone().expect("id")],
            gw_core::MessageStatus::Read,
            Timestamp::now(),
            None,
        )
        .await
        .expect("early receipt");
    assert!(queued_receipt.is_empty(), "a receipt does not move a message that has not been sent yet");
    store.mark_message_sent(m.id, Timestamp::now(), None).await.expect("sent");
    let ids = vec![m.wa_message_id.clone().expect("id")];
    let read =
        store.apply_receipt(inst.id, &ids, gw_core::MessageStatus::Read, Timestamp::now(), None).await.expect("read");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].status, gw_core::MessageStatus::Read);
    assert!(read[0].delivered_at.is_some() && read[0].read_at.is_some());
    let late = store.apply_receipt(inst.id, &ids, gw_core::MessageStatus::Delivered, Timestamp::now(), None).await;
    assert!(late.expect("late receipt").is_empty(), "a late delivered receipt must not undo read");
    assert_eq!(store.get_message(inst.id, m.id).await.expect("get").status, gw_core::MessageStatus::Read);
    let other = instance(&store, sub.id, "receipts-other").await;
    assert!(matches!(store.get_message(other.id, m.id).await, Err(StoreError::NotFound { .. })));
}

pub async fn inbound_redelivery_is_recognised(store: Arc<dyn Store>) {
    let sub = subscription(&store, 5).await;
    let inst = instance(&store, sub.id, "inbound").await;
    let new = NewInboundMessage {
        id: gw_core::MessageId::new(),
        instance_id: inst.id,
        chat_jid: "15550003@s.whatsapp.net".into(),
        sender_jid: "15550003@s.whatsapp.net".into(),
        wa_message_id: "WAIN1".into(),
        kind: gw_core::MessageKind::Text,
        content: gw_core::MessageContent::text(),
        text: Some("hello".into()),
        quoted_message_id: None,
        at: Timestamp::now(),
        fence: None,
    };
    let first = store.record_inbound(new.clone()).await.expect("record");
    assert!(first.created && !first.processed);
    let again = store.record_inbound(NewInboundMessage { id: gw_core::MessageId::new(), ..new.clone() }).await;
    let again = again.expect("redelivery");
    assert!(!again.created && !again.processed);
    assert_eq!(again.message.id, first.message.id);
    store
        .finish_inbound(
            first.message.id,
            gw_core::MessageStatus::Received,
            Some("HELLO".into()),
            None,
            Timestamp::now(),
            None,
        )
        .await
        .expect("finish");
    let third = store.record_inbound(NewInboundMessage { id: gw_core::MessageId::new(), ..new }).await.expect("third");
    assert!(third.processed);
    assert_eq!(third.message.text.as_deref(), Some("HELLO"));
}
