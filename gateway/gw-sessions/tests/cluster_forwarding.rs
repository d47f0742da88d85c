//! Read receipts, presence and blocking through a node that does not run the instance's session: the command is
//! written for the owner, which executes it on its connection; the caller gets the owner's answer, or
//! `OwnerUnavailable` when no owner answers in time. A logout with no session anywhere takes the lease for its
//! writes. On PostgreSQL (several nodes on one database), with two engines on one sandbox network; every wait is on
//! an observable state, bounded by a deadline.

mod common;

use std::sync::Arc;
use std::time::Duration;

use gw_core::{DriverKind, EventType, GatewayEvent, Instance, InstanceStatus, MessageStatus, NodeId};
use gw_sessions::sandbox::{SandboxDriver, SandboxNetwork};
use gw_sessions::{
    ClusterConfig, DirectMeter, Engine, EngineConfig, EngineError, Presence, SendContent, SendRequest, SessionCipher,
};
use gw_store::{Store, Visibility};
use gw_test_support::eventually;
use tokio::sync::broadcast;

use common::{new_instance, next_event, on_postgres, tenant};

const WAIT: Duration = Duration::from_secs(20);

fn engine(store: &Arc<dyn Store>, network: &Arc<SandboxNetwork>, command_wait: Duration) -> Engine {
    let cluster = ClusterConfig {
        lease_ttl: Duration::from_secs(3),
        node_address: "127.0.0.1:0".into(),
        poll_interval: Duration::from_millis(100),
        command_wait,
        ..ClusterConfig::default()
    };
    let config = EngineConfig {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        cluster,
        ..Default::default()
    };
    Engine::builder(store.clone(), Arc::new(DirectMeter::new(store.clone())), Arc::new(SessionCipher::new(&[9; 32])))
        .driver(DriverKind::Sandbox, Arc::new(SandboxDriver::new(network.clone())))
        .config(config)
        .build()
}

/// Pairs a new instance through `engine` (which therefore owns it); returns it connected, and its number.
async fn paired(store: &Arc<dyn Store>, engine: &Engine, network: &SandboxNetwork, name: &str) -> (Instance, String) {
    let sub = tenant(store, 1000).await;
    let instance = new_instance(store, &sub, name).await;
    let mut events = engine.subscribe();
    engine.start(&instance, None).expect("start");
    next_event(&mut events, &instance, WAIT, "a QR code", |e| e.event_type == EventType::QrUpdated).await;
    let jid = network.scan(instance.id, Some(name.into())).await.expect("scan");
    let id = instance.id;
    eventually("connected", || async {
        (store.get_instance(Visibility::All, id).await.expect("instance").status == InstanceStatus::Connected)
            .then_some(())
    })
    .await;
    (store.get_instance(Visibility::All, id).await.expect("instance"), jid)
}

fn text(to: &str, body: &str) -> SendRequest {
    SendRequest {
        to: to.into(),
        content: SendContent::Text { body: body.into() },
        quoted_message_id: None,
        idempotency: None,
    }
}

/// Sends `body` from `from` to `to_jid` through `engine` and waits until the sender's message is `status`.
async fn sent(
    store: &Arc<dyn Store>,
    engine: &Engine,
    from: &Instance,
    to_jid: &str,
    body: &str,
    status: MessageStatus,
) -> gw_core::Message {
    let accepted = engine.send(from, text(to_jid, body)).await.expect("send");
    let (instance, id) = (from.id, accepted.message.id);
    eventually("the message's status", || async {
        let message = store.get_message(instance, id).await.expect("message");
        (message.status == status).then_some(message)
    })
    .await
}

async fn read_presence_and_block_go_to_the_owner(store: Arc<dyn Store>) {
    let network = SandboxNetwork::new();
    let (owner, other) =
        (engine(&store, &network, Duration::from_secs(5)), engine(&store, &network, Duration::from_secs(5)));
    owner.run_cluster();
    other.run_cluster();
    let (alice, alice_jid) = paired(&store, &owner, &network, "alice").await;
    let (bob, bob_jid) = paired(&store, &owner, &network, "bob").await;
    assert_eq!(store.instance_owner(alice.id).await.expect("owner"), Some(owner.node_id()));
    assert!(!other.runs(alice.id));

    // Read: bob's message to alice, marked read through the node that does not run alice's session.
    let to_alice = sent(&store, &owner, &bob, &alice_jid, "read me", MessageStatus::Delivered).await;
    let wa_id = to_alice.wa_message_id.clone().expect("wa id");
    other.mark_read(&alice, &bob_jid, std::slice::from_ref(&wa_id)).await.expect("read through the other node");
    eventually("bob's message read", || async {
        (store.get_message(bob.id, to_alice.id).await.expect("message").status == MessageStatus::Read).then_some(())
    })
    .await;

    // Presence: alice "typing" in bob's chat, asked of the other node; bob's session sees it.
    let mut events: broadcast::Receiver<GatewayEvent> = owner.subscribe();
    other.send_presence(&alice, &bob_jid, Presence::Composing).await.expect("presence through the other node");
    let shown = next_event(&mut events, &bob, WAIT, "alice's presence at bob", |e| {
        e.event_type == EventType::PresenceUpdated && e.data["jid"] == alice_jid.as_str()
    })
    .await;
    assert_eq!(shown.data["presence"], "composing");

    // Block: while alice blocks bob, bob's message never reaches her; once unblocked (also through the other
    // node), the next one does, and the first is still missing.
    other.set_blocked(&alice, &bob_jid, true).await.expect("block through the other node");
    let blocked = owner.send(&bob, text(&alice_jid, "blocked")).await.expect("send").message;
    other.set_blocked(&alice, &bob_jid, false).await.expect("unblock through the other node");
    sent(&store, &owner, &bob, &alice_jid, "after unblocking", MessageStatus::Delivered).await;
    let got: Vec<Option<String>> = network.received(&alice_jid).into_iter().map(|d| d.text).collect();
    assert_eq!(got, vec![Some("read me".to_owned()), Some("after unblocking".to_owned())]);
    let blocked = store.get_message(bob.id, blocked.id).await.expect("message");
    assert_eq!(blocked.status, MessageStatus::Sent, "sent, never delivered, as on WhatsApp: {blocked:?}");
    assert!(!other.runs(alice.id), "the other node never started a session of its own");
    owner.shutdown().await;
    other.shutdown().await;
}

async fn no_owner_answering_is_unavailable_and_no_session_is_not_connected(store: Arc<dyn Store>) {
    let network = SandboxNetwork::new();
    let impatient = engine(&store, &network, Duration::from_millis(300));
    let sub = tenant(&store, 1000).await;
    let instance = new_instance(&store, &sub, "silent").await;
    // No session anywhere: nothing to forward to.
    let refused = impatient.send_presence(&instance, "15550001@s.whatsapp.net", Presence::Paused).await;
    assert!(matches!(refused, Err(EngineError::NotConnected { .. })), "{refused:?}");
    // A node holds the lease but runs nothing (a frozen process): the caller is told to retry, within the wait.
    let frozen = NodeId::new();
    store.acquire_lease(instance.id, frozen, Duration::from_secs(60)).await.expect("acquire").expect("free");
    let started = tokio::time::Instant::now();
    let refused = impatient.mark_read(&instance, "15550001@s.whatsapp.net", &["3EB0AA".to_owned()]).await;
    assert!(matches!(refused, Err(EngineError::OwnerUnavailable)), "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
    let refused = impatient.set_blocked(&instance, "15550001@s.whatsapp.net", true).await;
    assert!(matches!(refused, Err(EngineError::OwnerUnavailable)), "{refused:?}");
    impatient.shutdown().await;
}

/// A logout with no session anywhere takes the lease for its writes: they carry an epoch, and afterwards the lease is
/// free again (so a later pairing can be claimed by any node).
async fn an_offline_logout_is_fenced_and_gives_the_lease_back(store: Arc<dyn Store>) {
    let network = SandboxNetwork::new();
    let node = engine(&store, &network, Duration::from_secs(5));
    let (instance, _) = paired(&store, &node, &network, "offline").await;
    node.stop(instance.id).await;
    assert_eq!(store.instance_owner(instance.id).await.expect("owner"), None);
    let before = store.acquire_lease(instance.id, NodeId::new(), Duration::from_millis(1)).await.expect("acquire");
    let before = before.expect("free");
    let other = engine(&store, &network, Duration::from_millis(300));
    // The probe's 1 ms lease must have expired before the logout looks: it then finds no owner.
    eventually("the probe's lease expired", || async {
        store.instance_owner(instance.id).await.expect("owner").is_none().then_some(())
    })
    .await;
    other.logout(&instance).await.expect("logout with no session anywhere");
    let stored = store.get_instance(Visibility::All, instance.id).await.expect("instance");
    assert_eq!(stored.status, InstanceStatus::LoggedOut);
    assert!(!store.load_session(instance.id).await.expect("load").is_some_and(|s| s.session_valid));
    assert_eq!(store.instance_owner(instance.id).await.expect("owner"), None, "the lease was given back");
    let after = store.acquire_lease(instance.id, NodeId::new(), Duration::from_millis(1)).await.expect("acquire");
    // The probe's epoch, then the logout's, then this one.
    assert_eq!(after.expect("free").get(), before.get() + 2, "the logout's writes ran under a lease of its own");
    node.shutdown().await;
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_presence_and_block_through_another_node_are_executed_by_the_owner() {
    on_postgres(|store, _| read_presence_and_block_go_to_the_owner(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_commands_without_an_answer_are_unavailable() {
    on_postgres(|store, _| no_owner_answering_is_unavailable_and_no_session_is_not_connected(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_with_no_session_anywhere_runs_under_a_lease() {
    on_postgres(|store, _| an_offline_logout_is_fenced_and_gives_the_lease_back(store)).await;
}
