//! The contract of accepted sends written together: a backend may commit concurrent `enqueue_message` calls in one
//! transaction (group commit), but each caller must get exactly the answer its send gets alone. Registered in
//! [`crate::store_contract_tests!`] beside the rest of the suite.

use std::collections::HashMap;
use std::sync::Arc;

use gw_core::{Message, MessageId};

use super::fixtures::{instance, outbound};
use super::messages::subscription_with_quota;
use crate::*;

/// Every send at once (so a batching backend gets them while a batch is being committed), answers in send order.
async fn all_at_once(store: &Arc<dyn Store>, sends: Vec<NewOutboundMessage>) -> Vec<StoreResult<Enqueued>> {
    let tasks = sends.into_iter().map(|new| {
        let store = store.clone();
        tokio::spawn(async move { store.enqueue_message(new).await })
    });
    futures::future::join_all(tasks).await.into_iter().map(|joined| joined.expect("task")).collect()
}

fn created(result: &StoreResult<Enqueued>) -> Option<&Message> {
    match result {
        Ok(Enqueued::Created(message)) => Some(message),
        _ => None,
    }
}

/// Every message of the instance, page by page.
async fn stored(store: &Arc<dyn Store>, instance: &gw_core::Instance) -> Vec<Message> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_messages(instance.id, None, PageRequest::new(after, 200)).await.expect("list");
        all.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
}

/// Sends that succeed, replay, reuse a key, repeat a key within the same moment, exhaust a quota and name a deleted
/// instance, all at once: each gets its own answer, a failing send fails alone, and every quota counts exactly the
/// rows stored for it.
pub async fn sends_written_together_are_answered_as_alone(store: Arc<dyn Store>) {
    let chat = "15550020@s.whatsapp.net";
    // Tenant A can take 10 messages; one is used by the send whose key is replayed below.
    let small = subscription_with_quota(&store, 10).await;
    let shop = instance(&store, small.id, "shop").await;
    let Enqueued::Created(first) =
        store.enqueue_message(outbound(&shop, chat, "first", Some("dup"), b"h1")).await.expect("first")
    else {
        panic!("expected a new message")
    };
    // Tenant B has room for everything; one of its instances is deleted before the sends.
    let large = subscription_with_quota(&store, 1000).await;
    let desk = instance(&store, large.id, "desk").await;
    let gone = instance(&store, large.id, "gone").await;
    store.delete_instance(Visibility::All, gone.id, &Actor::system()).await.expect("delete");

    let mut sends = Vec::new();
    let quota_sends = 0..20;
    sends.extend(quota_sends.clone().map(|n| outbound(&shop, chat, &format!("q{n}"), Some(&format!("q{n}")), b"q")));
    let replay = sends.len();
    sends.push(NewOutboundMessage { text: first.text.clone(), ..outbound(&shop, chat, "", Some("dup"), b"h1") });
    let reused = sends.len();
    sends.push(outbound(&shop, chat, "other body", Some("dup"), b"h2"));
    let twins = [sends.len(), sends.len() + 1];
    sends.push(outbound(&desk, chat, "twin", Some("twin"), b"t"));
    sends.push(outbound(&desk, chat, "twin", Some("twin"), b"t"));
    let unkeyed = sends.len()..sends.len() + 10;
    sends.extend(unkeyed.clone().map(|n| outbound(&desk, chat, &format!("u{n}"), None, b"")));
    let orphan = sends.len();
    sends.push(outbound(&gone, chat, "to nobody", None, b""));

    let answers = all_at_once(&store, sends).await;

    let quota_answers = &answers[quota_sends];
    let accepted = quota_answers.iter().filter_map(created).count();
    let refused = quota_answers
        .iter()
        .filter(|a| matches!(a, Err(StoreError::LimitReached(Limit::MonthlyMessages { max: 10 }))))
        .count();
    assert_eq!((accepted, refused), (9, 11), "the quota's 9 free units go to 9 sends: {quota_answers:?}");
    match &answers[replay] {
        Ok(Enqueued::Replayed(message)) => assert_eq!(message.id, first.id, "the first result"),
        other => panic!("a replay is answered with the first result, got {other:?}"),
    }
    assert!(matches!(answers[reused], Ok(Enqueued::KeyReused)), "{:?}", answers[reused]);
    let twin_ids: Vec<MessageId> = twins
        .iter()
        .map(|&i| match &answers[i] {
            Ok(Enqueued::Created(m) | Enqueued::Replayed(m)) => m.id,
            other => panic!("a repeated key is stored once and answered twice, got {other:?}"),
        })
        .collect();
    assert_eq!(twin_ids[0], twin_ids[1], "both callers of one key get the one message");
    assert_eq!(twins.iter().filter(|&&i| created(&answers[i]).is_some()).count(), 1, "one of them created it");
    assert!(answers[unkeyed].iter().all(|a| created(a).is_some()), "the other tenant's sends are unaffected");
    assert!(
        matches!(answers[orphan], Err(StoreError::NotFound { entity: "instance" })),
        "only the send to a deleted instance fails: {:?}",
        answers[orphan]
    );

    // What was answered is what is stored, and each quota counts exactly its stored rows.
    let shop_rows = stored(&store, &shop).await;
    assert_eq!(shop_rows.len(), 10, "the first message and the 9 that fitted");
    assert_eq!(store.get_subscription(small.id).await.expect("read").messages_used, 10);
    let desk_rows = stored(&store, &desk).await;
    assert_eq!(desk_rows.len(), 11, "one twin and the 10 unkeyed sends");
    assert_eq!(store.get_subscription(large.id).await.expect("read").messages_used, 11);
    let answered: HashMap<MessageId, &Message> = answers.iter().filter_map(created).map(|m| (m.id, m)).collect();
    for row in shop_rows.iter().chain(&desk_rows).filter(|row| row.id != first.id) {
        assert_eq!(answered.get(&row.id).map(|m| m.text.clone()), Some(row.text.clone()), "stored as answered");
    }
}

/// Many sends at once, none refused: every one is stored once under the id it was answered with, charged once,
/// and the retries of the same keys afterwards are replays that charge nothing.
pub async fn many_concurrent_sends_are_each_stored_and_charged_once(store: Arc<dyn Store>) {
    const SENDS: usize = 300;
    let chat = "15550021@s.whatsapp.net";
    let sub = subscription_with_quota(&store, 10_000).await;
    let inst = instance(&store, sub.id, "busy").await;
    let sends = (0..SENDS).map(|n| outbound(&inst, chat, &format!("m{n}"), Some(&format!("k{n}")), b"h")).collect();
    let answers = all_at_once(&store, sends).await;
    let ids: Vec<MessageId> = answers.iter().map(|a| created(a).expect("every send is accepted").id).collect();
    let rows = stored(&store, &inst).await;
    assert_eq!(rows.len(), SENDS);
    let mut stored_ids: Vec<MessageId> = rows.iter().map(|m| m.id).collect();
    let mut answered_ids = ids.clone();
    stored_ids.sort();
    answered_ids.sort();
    assert_eq!(stored_ids, answered_ids, "each stored under the id it was answered with");
    assert_eq!(store.get_subscription(sub.id).await.expect("read").messages_used, SENDS as i64);

    let retries = (0..SENDS).map(|n| outbound(&inst, chat, &format!("m{n}"), Some(&format!("k{n}")), b"h")).collect();
    for (n, answer) in all_at_once(&store, retries).await.into_iter().enumerate() {
        match answer {
            Ok(Enqueued::Replayed(message)) => assert_eq!(message.id, ids[n]),
            other => panic!("retry {n}: expected the first result, got {other:?}"),
        }
    }
    assert_eq!(store.get_subscription(sub.id).await.expect("read").messages_used, SENDS as i64, "replays are free");
}
