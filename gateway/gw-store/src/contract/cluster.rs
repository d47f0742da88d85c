//! The contract of [`crate::ClusterStore`] and of fenced session writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_core::{InstanceId, InstanceStatus, MessageStatus, NodeId, Timestamp};

use super::fixtures::{instance, outbound, subscription};
use crate::*;

const LONG: Duration = Duration::from_secs(60);
const DEADLINE: Duration = Duration::from_secs(10);

/// An instance with a valid session, as the engine leaves a paired one.
async fn paired(store: &Arc<dyn Store>, name: &str) -> gw_core::Instance {
    let sub = subscription(store, 10).await;
    let inst = instance(store, sub.id, name).await;
    store.save_session(inst.id, vec![1, 2, 3], Timestamp::now(), None).await.expect("session");
    inst
}

/// Retries `acquire` for `node` until it wins or the deadline passes; returns the epoch and how long it took.
async fn acquire_eventually(store: &Arc<dyn Store>, id: InstanceId, node: NodeId) -> (OwnerEpoch, Duration) {
    let started = Instant::now();
    loop {
        if let Some(epoch) = store.acquire_lease(id, node, LONG).await.expect("acquire") {
            return (epoch, started.elapsed());
        }
        assert!(started.elapsed() < DEADLINE, "the lease never expired");
        tokio::task::yield_now().await;
    }
}

pub async fn two_nodes_never_both_win_a_lease(store: Arc<dyn Store>) {
    let inst = paired(&store, "contested").await;
    let nodes: Vec<NodeId> = (0..8).map(|_| NodeId::new()).collect();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        for node in &nodes {
            let (store, node) = (store.clone(), *node);
            tasks.push(tokio::spawn(async move {
                store.acquire_lease(inst.id, node, LONG).await.expect("acquire").map(|epoch| (node, epoch))
            }));
        }
    }
    let mut winners = Vec::new();
    for task in tasks {
        if let Some(won) = task.await.expect("task") {
            winners.push(won);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of 32 concurrent acquisitions wins: {winners:?}");
    let (winner, epoch) = winners[0];
    assert_eq!(epoch, OwnerEpoch::new(1), "the first acquisition raises the epoch from 0");
    assert_eq!(store.instance_owner(inst.id).await.expect("owner"), Some(winner));
    // Held and unexpired: nobody else gets it, not even by asking again.
    assert_eq!(store.acquire_lease(inst.id, NodeId::new(), LONG).await.expect("again"), None);
}

pub async fn leases_expire_by_the_database_clock(store: Arc<dyn Store>) {
    let inst = paired(&store, "expiring").await;
    let (first, second) = (NodeId::new(), NodeId::new());
    let ttl = Duration::from_millis(400);
    let started = Instant::now();
    let epoch = store.acquire_lease(inst.id, first, ttl).await.expect("acquire").expect("free lease");
    assert_eq!(store.acquire_lease(inst.id, second, LONG).await.expect("early"), None, "held for the TTL");
    let (taken, _) = acquire_eventually(&store, inst.id, second).await;
    // Judged by the database's clock; the local clock only bounds it loosely (both measure the same interval).
    assert!(started.elapsed() >= ttl - Duration::from_millis(50), "taken over after {:?}", started.elapsed());
    assert_eq!(taken, OwnerEpoch::new(epoch.get() + 1), "a take-over raises the epoch");
    // The first node's lease is gone: its renewal returns nothing, and its release changes nothing.
    assert!(store.renew_leases(first, LONG).await.expect("renew").is_empty());
    assert!(!store.release_lease(inst.id, first, epoch).await.expect("release"));
    assert_eq!(store.instance_owner(inst.id).await.expect("owner"), Some(second));
}

pub async fn a_stale_epoch_is_refused_on_every_session_write(store: Arc<dyn Store>) {
    let inst = paired(&store, "fenced").await;
    let (paused, successor) = (NodeId::new(), NodeId::new());
    let stale = store.acquire_lease(inst.id, paused, Duration::from_millis(1)).await.expect("acquire").expect("free");
    let chat = "15550001@s.whatsapp.net";
    let queued = match store.enqueue_message(outbound(&inst, chat, "hi", None, b"")).await.expect("enqueue") {
        Enqueued::Created(message) => message,
        other => panic!("not created: {other:?}"),
    };
    let update = |fence| ConnectionUpdate { status: Some(InstanceStatus::Connected), fence, ..Default::default() };
    // While it owns the instance, the writes of its epoch go through.
    store.update_connection(inst.id, update(Some(stale))).await.expect("owner's write");

    // Another node takes the instance over (the first one was paused past its lease).
    let (current, _) = acquire_eventually(&store, inst.id, successor).await;
    assert!(current > stale);
    let fenced = |result: StoreResult<()>, what: &str| match result {
        Err(StoreError::Fenced { instance }) => assert_eq!(instance, inst.id, "{what}"),
        other => panic!("{what}: a stale epoch must be refused as fenced, got {other:?}"),
    };
    let disconnected =
        ConnectionUpdate { status: Some(InstanceStatus::Disconnected), fence: Some(stale), ..Default::default() };
    fenced(store.update_connection(inst.id, disconnected).await.map(drop), "update_connection");
    fenced(store.save_session(inst.id, vec![9], Timestamp::now(), Some(stale)).await.map(drop), "save_session");
    fenced(store.invalidate_session(inst.id, Timestamp::now(), Some(stale)).await, "invalidate_session");
    fenced(store.mark_message_sent(queued.id, Timestamp::now(), Some(stale)).await.map(drop), "mark_message_sent");
    fenced(
        store.mark_message_failed(queued.id, "x", Timestamp::now(), Some(stale)).await.map(drop),
        "mark_message_failed",
    );
    let wa = vec![queued.wa_message_id.clone().expect("wa id")];
    fenced(
        store.apply_receipt(inst.id, &wa, MessageStatus::Read, Timestamp::now(), Some(stale)).await.map(drop),
        "receipt",
    );

    // Nothing of the stale writes landed.
    let now = store.get_instance(Visibility::All, inst.id).await.expect("instance");
    assert_eq!(now.status, InstanceStatus::Connected);
    let session = store.load_session(inst.id).await.expect("load").expect("session");
    assert!(session.session_valid);
    assert_eq!(session.auth_state.expose(), &vec![1, 2, 3]);
    assert_eq!(store.get_message(inst.id, queued.id).await.expect("message").status, MessageStatus::Queued);

    // The current owner's epoch writes; a missing row is still "not found", not "fenced".
    store.mark_message_sent(queued.id, Timestamp::now(), Some(current)).await.expect("current owner");
    let changed = store.apply_receipt(inst.id, &wa, MessageStatus::Read, Timestamp::now(), Some(current)).await;
    assert_eq!(changed.expect("receipt").len(), 1);
    store.save_session(inst.id, vec![4], Timestamp::now(), Some(current)).await.expect("current owner's session");
    let missing = store.mark_message_sent(gw_core::MessageId::new(), Timestamp::now(), Some(current)).await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })), "{missing:?}");
    let gone = store.update_connection(InstanceId::new(), update(Some(current))).await;
    assert!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");
}

pub async fn nodes_renew_and_release_only_their_own_leases(store: Arc<dyn Store>) {
    let (a, b) = (NodeId::new(), NodeId::new());
    let one = paired(&store, "one").await;
    let two = paired(&store, "two").await;
    let three = paired(&store, "three").await;
    let e1 = store.acquire_lease(one.id, a, LONG).await.expect("acquire").expect("free");
    let e2 = store.acquire_lease(two.id, a, LONG).await.expect("acquire").expect("free");
    let e3 = store.acquire_lease(three.id, b, LONG).await.expect("acquire").expect("free");

    let mut held = store.renew_leases(a, LONG).await.expect("renew a");
    held.sort_by_key(|h| h.instance_id);
    let mut expected = vec![HeldLease { instance_id: one.id, epoch: e1 }, HeldLease { instance_id: two.id, epoch: e2 }];
    expected.sort_by_key(|h| h.instance_id);
    assert_eq!(held, expected, "a renews exactly its own leases");
    assert_eq!(
        store.renew_leases(b, LONG).await.expect("renew b"),
        vec![HeldLease { instance_id: three.id, epoch: e3 }]
    );

    assert!(!store.release_lease(three.id, a, e3).await.expect("foreign"), "a cannot release b's lease");
    assert!(!store.release_lease(one.id, a, OwnerEpoch::new(e1.get() + 7)).await.expect("wrong epoch"));
    assert!(store.release_lease(one.id, a, e1).await.expect("own"));
    assert_eq!(store.instance_owner(one.id).await.expect("owner"), None);
    // Released: another node takes it at once, with a higher epoch.
    let taken = store.acquire_lease(one.id, b, LONG).await.expect("acquire").expect("released lease is free");
    assert_eq!(taken, OwnerEpoch::new(e1.get() + 1));

    assert_eq!(store.release_all_leases(a).await.expect("release all"), 1, "only two was left to a");
    assert_eq!(store.instance_owner(three.id).await.expect("owner"), Some(b), "b's leases untouched");

    // A node alone by construction (SQLite's file lock) clears what dead processes held, keeping its own.
    let c = NodeId::new();
    let mine = store.acquire_lease(two.id, c, LONG).await.expect("acquire").expect("free");
    store.heartbeat(&NodeAnnouncement { id: b, address: String::new(), capacity: 1 }).await.expect("heartbeat");
    assert_eq!(store.release_foreign_leases(c).await.expect("foreign"), 2, "one and three were b's");
    assert_eq!(store.instance_owner(one.id).await.expect("owner"), None);
    assert_eq!(store.instance_owner(two.id).await.expect("owner"), Some(c));
    assert!(store.list_nodes(LONG).await.expect("nodes").iter().all(|n| n.id != b), "dead nodes' rows go");
    assert_eq!(store.renew_leases(c, LONG).await.expect("renew"), vec![HeldLease { instance_id: two.id, epoch: mine }]);
}

pub async fn orphaned_instances_and_the_node_list(store: Arc<dyn Store>) {
    let (a, b) = (NodeId::new(), NodeId::new());
    let owned = paired(&store, "owned").await;
    let orphan = paired(&store, "orphan").await;
    let sub = subscription(&store, 1).await;
    let unpaired = instance(&store, sub.id, "unpaired").await;
    store.acquire_lease(owned.id, a, LONG).await.expect("acquire").expect("free");

    let orphans: Vec<InstanceId> =
        store.list_orphaned_instances(100).await.expect("orphans").into_iter().map(|i| i.id).collect();
    assert!(orphans.contains(&orphan.id), "a paired instance without an owner is an orphan");
    assert!(!orphans.contains(&owned.id), "an owned instance is not");
    assert!(!orphans.contains(&unpaired.id), "an instance without a valid session waits for a person");

    let before = Timestamp::now();
    for (node, capacity) in [(a, 10), (b, 20)] {
        store
            .heartbeat(&NodeAnnouncement { id: node, address: format!("127.0.0.1:{capacity}"), capacity })
            .await
            .expect("heartbeat");
    }
    let nodes = store.list_nodes(LONG).await.expect("nodes");
    let of = |id| nodes.iter().find(|n| n.id == id).cloned().expect("listed");
    assert_eq!((of(a).instances, of(a).capacity, of(a).address.as_str()), (1, 10, "127.0.0.1:10"));
    assert_eq!(of(b).instances, 0);
    // The database's clock, not ours; they agree within a generous margin on one machine.
    let skew = (of(a).heartbeat_at.as_datetime() - before.as_datetime()).num_seconds().abs();
    assert!(skew < 60, "heartbeat {:?} vs {before:?}", of(a).heartbeat_at);
    assert!(of(a).started_at <= of(a).heartbeat_at);

    // A second heartbeat keeps the start time.
    let started = of(b).started_at;
    store.heartbeat(&NodeAnnouncement { id: b, address: "127.0.0.1:20".into(), capacity: 20 }).await.expect("again");
    let nodes = store.list_nodes(LONG).await.expect("nodes");
    assert_eq!(nodes.iter().find(|n| n.id == b).expect("b").started_at, started);

    store.remove_node(a).await.expect("remove");
    assert!(store.list_nodes(LONG).await.expect("nodes").iter().all(|n| n.id != a));
    assert_eq!(store.instance_owner(owned.id).await.expect("owner"), None, "a removed node's leases are released");
    let orphans: Vec<InstanceId> =
        store.list_orphaned_instances(100).await.expect("orphans").into_iter().map(|i| i.id).collect();
    assert!(orphans.contains(&owned.id));
}

pub async fn commands_are_taken_once_and_answered(store: Arc<dyn Store>) {
    let inst = paired(&store, "commanded").await;
    let kinds = [
        InstanceCommandKind::Restart,
        InstanceCommandKind::PairCode { phone: "15550001".into() },
        InstanceCommandKind::Connect { pair_phone: None },
        InstanceCommandKind::Logout,
        InstanceCommandKind::MarkRead {
            chat_jid: "15550001@s.whatsapp.net".into(),
            wa_message_ids: vec!["3EB0AA".into(), "3EB0BB".into()],
        },
        InstanceCommandKind::Presence { chat_jid: "15550001@s.whatsapp.net".into(), presence: "composing".into() },
        InstanceCommandKind::Block { jid: "15550002@s.whatsapp.net".into(), blocked: true },
        InstanceCommandKind::Block { jid: "15550002@s.whatsapp.net".into(), blocked: false },
        InstanceCommandKind::CheckNumbers { phones: vec!["15550003".into(), "15550004".into()] },
    ];
    let mut ids = Vec::new();
    for kind in &kinds {
        let command =
            InstanceCommand { id: gw_core::InstanceCommandId::new(), instance_id: inst.id, kind: kind.clone() };
        store.enqueue_command(&command).await.expect("enqueue");
        assert_eq!(store.command_outcome(command.id).await.expect("outcome"), CommandOutcome::Pending);
        ids.push(command.id);
    }
    // Two takers at once: every command goes to exactly one of them.
    let (first, second) = tokio::join!(store.take_commands(inst.id), store.take_commands(inst.id));
    let (first, second) = (first.expect("take"), second.expect("take"));
    assert_eq!(first.len() + second.len(), kinds.len(), "{first:?} {second:?}");
    let mut taken: Vec<_> = first.into_iter().chain(second).collect();
    taken.sort_by_key(|c| c.id);
    assert_eq!(taken.iter().map(|c| c.kind.clone()).collect::<Vec<_>>(), kinds, "in the order written");
    assert!(store.take_commands(inst.id).await.expect("again").is_empty());

    store.complete_command(ids[1], &CommandOutcome::Done(Some("ABCD-1234".into()))).await.expect("done");
    store.complete_command(ids[3], &CommandOutcome::Failed("not connected".into())).await.expect("failed");
    assert_eq!(store.command_outcome(ids[1]).await.expect("outcome"), CommandOutcome::Done(Some("ABCD-1234".into())));
    assert_eq!(store.command_outcome(ids[3]).await.expect("outcome"), CommandOutcome::Failed("not connected".into()));
    let missing = store.command_outcome(gw_core::InstanceCommandId::new()).await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })), "{missing:?}");
    let orphan = InstanceCommand {
        id: gw_core::InstanceCommandId::new(),
        instance_id: InstanceId::new(),
        kind: InstanceCommandKind::Restart,
    };
    assert!(store.enqueue_command(&orphan).await.is_err(), "a command needs its instance");
}

pub async fn wake_ups_reach_subscribers(store: Arc<dyn Store>) {
    let mut wakes = store.subscribe_wakes().await.expect("subscribe");
    let id = InstanceId::new();
    let started = Instant::now();
    // PostgreSQL's listener connects in the background: a wake-up sent before it listens is lost (the engine's slow
    // poll covers that), so keep waking until one arrives.
    loop {
        store.wake_instance(id).await.expect("wake");
        match tokio::time::timeout(Duration::from_millis(200), wakes.recv()).await {
            Ok(Ok(woken)) => {
                assert_eq!(woken, id);
                return;
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) | Err(_) => {}
            Ok(Err(e)) => panic!("wake-ups closed: {e}"),
        }
        assert!(started.elapsed() < DEADLINE, "no wake-up arrived");
    }
}

/// The WhatsApp driver's state writes and the inbound path carry the session's epoch too: a paused former owner
/// changes nothing once another node took the instance over, and an unfenced write (no lease) still goes through.
pub async fn a_stale_epoch_is_refused_on_driver_state_and_inbound_writes(store: Arc<dyn Store>) {
    let inst = paired(&store, "fenced-driver").await;
    let (paused, successor) = (NodeId::new(), NodeId::new());
    let stale = store.acquire_lease(inst.id, paused, Duration::from_millis(1)).await.expect("acquire").expect("free");
    let put = |key: &str, value: &[u8]| WaStateWrite::Put {
        kind: "session",
        key: key.into(),
        value: value.to_vec(),
        stamp: 10,
    };
    // While it owns the instance, its writes go through.
    store.wa_state_apply(inst.id, vec![put("kept", b"v1"), put("taken", b"t")], Some(stale)).await.expect("owner's");
    let inbound = |wa: &str, fence| NewInboundMessage {
        id: gw_core::MessageId::new(),
        instance_id: inst.id,
        chat_jid: "15550003@s.whatsapp.net".into(),
        sender_jid: "15550003@s.whatsapp.net".into(),
        wa_message_id: wa.into(),
        kind: gw_core::MessageKind::Text,
        content: gw_core::MessageContent::text(),
        text: Some("hello".into()),
        quoted_message_id: None,
        at: Timestamp::now(),
        fence,
    };
    let recorded = store.record_inbound(inbound("WAFENCE1", Some(stale))).await.expect("owner's inbound");

    let (current, _) = acquire_eventually(&store, inst.id, successor).await;
    let fenced = |result: StoreResult<()>, what: &str| match result {
        Err(StoreError::Fenced { instance }) => assert_eq!(instance, inst.id, "{what}"),
        other => panic!("{what}: a stale epoch must be refused as fenced, got {other:?}"),
    };
    fenced(store.wa_state_apply(inst.id, vec![put("kept", b"v2")], Some(stale)).await, "wa_state_apply");
    let delete = vec![WaStateWrite::DeletePrefix { kind: "session", prefix: String::new() }];
    fenced(store.wa_state_apply(inst.id, delete, Some(stale)).await, "wa_state_apply (delete)");
    fenced(store.wa_state_take(inst.id, "session", "taken", Some(stale)).await.map(drop), "wa_state_take");
    fenced(
        store.wa_state_delete_stamped_before(inst.id, "session", 1_000, Some(stale)).await.map(drop),
        "wa_state_delete_stamped_before",
    );
    // Refused even when there is nothing to take or delete: the caller learns it lost the instance.
    fenced(store.wa_state_take(inst.id, "session", "absent", Some(stale)).await.map(drop), "take of nothing");
    fenced(
        store.wa_state_delete_stamped_before(inst.id, "session", 0, Some(stale)).await.map(drop),
        "delete of nothing",
    );
    fenced(store.record_inbound(inbound("WAFENCE2", Some(stale))).await.map(drop), "record_inbound");
    let finish = |fence| {
        store.finish_inbound(
            recorded.message.id,
            gw_core::MessageStatus::Received,
            Some("late".into()),
            None,
            Timestamp::now(),
            fence,
        )
    };
    fenced(finish(Some(stale)).await, "finish_inbound");

    // Nothing of the stale writes landed.
    let kept = store.wa_state_get(inst.id, "session", "kept").await.expect("get").expect("kept");
    assert_eq!(kept.value, b"v1".to_vec());
    assert!(store.wa_state_get(inst.id, "session", "taken").await.expect("get").is_some(), "not taken");
    let listed = store.list_messages(inst.id, None, PageRequest::default()).await.expect("messages");
    assert_eq!(listed.items.len(), 1, "the stale inbound was not stored: {:?}", listed.items);
    assert_eq!(store.get_message(inst.id, recorded.message.id).await.expect("message").text.as_deref(), Some("hello"));

    // The current owner's epoch, and no fence at all, write.
    store.wa_state_apply(inst.id, vec![put("kept", b"v3")], Some(current)).await.expect("current owner");
    let taken = store.wa_state_take(inst.id, "session", "taken", Some(current)).await.expect("take");
    assert_eq!(taken.expect("there").value, b"t".to_vec());
    assert_eq!(store.wa_state_take(inst.id, "session", "taken", Some(current)).await.expect("again"), None);
    assert_eq!(store.wa_state_delete_stamped_before(inst.id, "session", 0, Some(current)).await.expect("none"), 0);
    finish(Some(current)).await.expect("current owner's finish");
    store.record_inbound(inbound("WAFENCE3", None)).await.expect("unfenced inbound");
    store.wa_state_apply(inst.id, vec![put("other", b"x")], None).await.expect("unfenced state");
    let missing = store.wa_state_apply(InstanceId::new(), vec![put("k", b"v")], Some(current)).await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })), "{missing:?}");
}

/// Contacts the session learns (names, push names, LID and phone number) carry its epoch like every other session
/// write: after a take-over a former owner's upsert is refused and changes nothing, neither the merge of a LID row
/// into a phone-number row nor a name; the current owner and an unfenced write still go through.
pub async fn a_stale_epoch_is_refused_on_contact_upserts(store: Arc<dyn Store>) {
    let inst = paired(&store, "fenced-contacts").await;
    let (paused, successor) = (NodeId::new(), NodeId::new());
    let stale = store.acquire_lease(inst.id, paused, Duration::from_millis(1)).await.expect("acquire").expect("free");
    let (pn, lid) = ("15550004@s.whatsapp.net", "88880004@lid");
    let upsert = |jid: &str, lid: Option<&str>, name: &str, fence| ContactUpsert {
        instance_id: inst.id,
        jid: jid.into(),
        lid: lid.map(str::to_owned),
        name: Some(name.into()),
        fence,
        ..Default::default()
    };
    store.upsert_contact(upsert(lid, None, "Owner's", Some(stale))).await.expect("owner's upsert");

    let (current, _) = acquire_eventually(&store, inst.id, successor).await;
    for (what, late) in [
        ("a name", upsert(lid, None, "Stale", Some(stale))),
        ("a new contact", upsert("15550005@s.whatsapp.net", None, "Stale", Some(stale))),
        ("a LID merged into its phone number", upsert(pn, Some(lid), "Stale", Some(stale))),
    ] {
        match store.upsert_contact(late).await {
            Err(StoreError::Fenced { instance }) => assert_eq!(instance, inst.id, "{what}"),
            other => panic!("{what}: a stale epoch must be refused as fenced, got {other:?}"),
        }
    }
    let listed = store.list_contacts(inst.id, None, PageRequest::default()).await.expect("contacts");
    let rows: Vec<_> = listed.items.iter().map(|c| (c.jid.as_str(), c.lid.as_deref(), c.name.as_deref())).collect();
    assert_eq!(rows, vec![(lid, None, Some("Owner's"))], "nothing of the stale upserts landed");

    let merged = store.upsert_contact(upsert(pn, Some(lid), "Current", Some(current))).await.expect("current owner");
    assert_eq!((merged.jid.as_str(), merged.lid.as_deref(), merged.name.as_deref()), (pn, Some(lid), Some("Current")));
    store.upsert_contact(upsert(pn, None, "Unfenced", None)).await.expect("unfenced upsert");
    let missing = store
        .upsert_contact(ContactUpsert { instance_id: InstanceId::new(), ..upsert(pn, None, "x", Some(current)) })
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })), "{missing:?}");
}

/// A pairing whose node stopped (its lease lapsed or was given up before the phone scanned) ends in a clear state:
/// `disconnected`, the reason as last error, no QR code, and a raised epoch, so the old owner's late writes are
/// refused. Pairings still leased, paired instances and instances never started are left alone; each is ended once.
pub async fn interrupted_pairings_end_disconnected_once(store: Arc<dyn Store>) {
    let sub = subscription(&store, 10).await;
    let node = NodeId::new();
    let waiting = |status| ConnectionUpdate {
        status: Some(status),
        qr_code: Some("2@qr".into()),
        qr_code_expiry: Some(Timestamp::now()),
        ..Default::default()
    };
    let lapsed = instance(&store, sub.id, "lapsed").await;
    let stale = store.acquire_lease(lapsed.id, node, Duration::from_millis(1)).await.expect("acquire").expect("free");
    let update = ConnectionUpdate { fence: Some(stale), ..waiting(InstanceStatus::Qr) };
    store.update_connection(lapsed.id, update).await.expect("qr shown");
    let connecting = instance(&store, sub.id, "released").await;
    store.update_connection(connecting.id, waiting(InstanceStatus::Connecting)).await.expect("connecting");
    let held = instance(&store, sub.id, "held").await;
    store.acquire_lease(held.id, node, LONG).await.expect("acquire").expect("free");
    store.update_connection(held.id, waiting(InstanceStatus::Qr)).await.expect("qr shown");
    let reconnecting = paired(&store, "reconnecting").await;
    store.update_connection(reconnecting.id, waiting(InstanceStatus::Connecting)).await.expect("connecting");
    let never = instance(&store, sub.id, "never").await;

    let reason = "pairing interrupted";
    // The released one may end in an earlier round than the lapsed one, whose 1 ms lease must expire first.
    let started = Instant::now();
    let mut ended: Vec<InstanceId> = Vec::new();
    while ended.len() < 2 {
        ended.extend(store.end_interrupted_pairings(reason, 10).await.expect("end").iter().map(|i| i.id));
        assert!(started.elapsed() < DEADLINE, "not ended: {ended:?}");
        tokio::task::yield_now().await;
    }
    ended.sort();
    let mut expected = vec![lapsed.id, connecting.id];
    expected.sort();
    assert_eq!(ended, expected, "exactly the two pairings nobody runs, each once");
    for id in [lapsed.id, connecting.id] {
        let now = store.get_instance(Visibility::All, id).await.expect("instance");
        assert_eq!(now.status, InstanceStatus::Disconnected);
        assert_eq!(now.last_error.as_deref(), Some(reason));
        assert_eq!((now.qr_code, now.qr_code_expiry), (None, None));
        assert_eq!(store.instance_owner(id).await.expect("owner"), None);
    }
    assert!(store.end_interrupted_pairings(reason, 10).await.expect("again").is_empty(), "each ended once");
    let late = ConnectionUpdate { status: Some(InstanceStatus::Connected), fence: Some(stale), ..Default::default() };
    match store.update_connection(lapsed.id, late).await {
        Err(StoreError::Fenced { instance }) => assert_eq!(instance, lapsed.id),
        other => panic!("the old owner's late write must be refused, got {other:?}"),
    }
    for (inst, status) in
        [(&held, InstanceStatus::Qr), (&reconnecting, InstanceStatus::Connecting), (&never, InstanceStatus::Created)]
    {
        let now = store.get_instance(Visibility::All, inst.id).await.expect("instance");
        assert_eq!(now.status, status, "{} left alone", inst.name);
    }
    // A connect after it takes the lease as usual.
    assert!(store.acquire_lease(lapsed.id, node, LONG).await.expect("acquire").is_some_and(|e| e > stale));
}

/// Rows of nodes silent since before the cut-off and commands written before it go, a batch at a time; live
/// nodes and recent commands stay. Time is driven by the test: the cut-offs are instants read from the database's
/// clock between the writes, so the outcome does not depend on how fast the machine runs.
pub async fn dead_nodes_and_old_commands_are_pruned_in_batches(store: Arc<dyn Store>) {
    let inst = paired(&store, "pruned").await;
    let announce = |id| NodeAnnouncement { id, address: "127.0.0.1:1".into(), capacity: 1 };
    let (dead_a, dead_b, live) = (NodeId::new(), NodeId::new(), NodeId::new());
    let before_all = store.database_now().await.expect("clock");
    store.heartbeat(&announce(dead_a)).await.expect("heartbeat");
    store.heartbeat(&announce(dead_b)).await.expect("heartbeat");
    let command = |kind| InstanceCommand { id: gw_core::InstanceCommandId::new(), instance_id: inst.id, kind };
    let (done, pending) = (command(InstanceCommandKind::Restart), command(InstanceCommandKind::Logout));
    store.enqueue_command(&done).await.expect("enqueue");
    store.enqueue_command(&pending).await.expect("enqueue");
    store.complete_command(done.id, &CommandOutcome::Done(None)).await.expect("complete");
    assert_eq!(store.prune_dead_nodes(before_all, 10).await.expect("prune"), 0, "nothing is older than that");
    assert_eq!(store.prune_commands(before_all, 10).await.expect("prune"), 0, "nothing is older than that");

    // The cut-off: the first instant of the database's clock (millisecond stamps) after the first rows' stamps.
    let written = store.database_now().await.expect("clock");
    let cutoff = next_tick_after(&store, written).await;
    assert!(cutoff > before_all);
    store.heartbeat(&announce(live)).await.expect("heartbeat");
    let recent = command(InstanceCommandKind::Restart);
    store.enqueue_command(&recent).await.expect("enqueue");

    assert_eq!(store.prune_dead_nodes(cutoff, 1).await.expect("prune"), 1, "one per batch");
    assert_eq!(store.prune_dead_nodes(cutoff, 1).await.expect("prune"), 1);
    assert_eq!(store.prune_dead_nodes(cutoff, 1).await.expect("prune"), 0, "the live node stays");
    let nodes: Vec<NodeId> = store.list_nodes(LONG).await.expect("nodes").into_iter().map(|n| n.id).collect();
    assert_eq!(nodes, vec![live]);

    assert_eq!(store.prune_commands(cutoff, 1).await.expect("prune"), 1, "one per batch");
    assert_eq!(store.prune_commands(cutoff, 10).await.expect("prune"), 1);
    assert_eq!(store.prune_commands(cutoff, 10).await.expect("prune"), 0);
    for gone in [done.id, pending.id] {
        let outcome = store.command_outcome(gone).await;
        assert!(matches!(outcome, Err(StoreError::NotFound { .. })), "finished and expired ones go: {outcome:?}");
    }
    assert_eq!(store.command_outcome(recent.id).await.expect("recent"), CommandOutcome::Pending);
}

/// The database clock's first reading later than `after`: a millisecond's wait at most, on any machine.
async fn next_tick_after(store: &Arc<dyn Store>, after: Timestamp) -> Timestamp {
    let started = Instant::now();
    loop {
        let now = store.database_now().await.expect("clock");
        if now > after {
            return now;
        }
        assert!(started.elapsed() < DEADLINE, "the database clock stood still");
        tokio::task::yield_now().await;
    }
}
