//! Several engines (nodes) on one database: each instance runs on exactly one node, a killed node's instances move
//! after the lease TTL, a drained node's at once, a node that cannot renew stops its sessions before its leases can
//! pass on, and a paused owner's stale writes are refused. Multi-node checks run on PostgreSQL; the fencing check
//! runs on both backends. Every wait is on an observable state, bounded by a deadline.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_core::{DriverKind, EventType, GatewayEvent, Instance, InstanceStatus, NodeId};
use gw_sessions::sandbox::{SandboxDriver, SandboxNetwork};
use gw_sessions::{ClusterConfig, DirectMeter, Engine, EngineConfig, SessionCipher};
use gw_store::{Store, Visibility};
use gw_store_sql::{OpenOptions, PgStore};
use gw_test_support::until_within;
use tokio::sync::broadcast;

use common::{new_instance, tenant};

const WAIT: Duration = Duration::from_secs(20);

fn engine(store: Arc<dyn Store>, network: &Arc<SandboxNetwork>, lease_ttl: Duration) -> Engine {
    engine_polling(store, network, lease_ttl, Duration::from_millis(100))
}

fn engine_polling(
    store: Arc<dyn Store>,
    network: &Arc<SandboxNetwork>,
    lease_ttl: Duration,
    poll_interval: Duration,
) -> Engine {
    let cluster =
        ClusterConfig { lease_ttl, node_address: "127.0.0.1:0".into(), poll_interval, ..ClusterConfig::default() };
    engine_with(store, network, cluster)
}

fn engine_with(store: Arc<dyn Store>, network: &Arc<SandboxNetwork>, cluster: ClusterConfig) -> Engine {
    let config = EngineConfig {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        cluster,
        ..Default::default()
    };
    Engine::builder(store.clone(), Arc::new(DirectMeter::new(store)), Arc::new(SessionCipher::new(&[9; 32])))
        .driver(DriverKind::Sandbox, Arc::new(SandboxDriver::new(network.clone())))
        .config(config)
        .build()
}

async fn next_event(
    events: &mut broadcast::Receiver<GatewayEvent>,
    what: &str,
    matches: impl Fn(&GatewayEvent) -> bool,
) {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(event) if matches(&event) => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event bus closed: {e}"),
            }
        }
    };
    tokio::time::timeout(WAIT, wait).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// Pairs a new instance through `engine` (which therefore owns it) and returns it, connected.
async fn paired(store: &Arc<dyn Store>, engine: &Engine, network: &SandboxNetwork, name: &str) -> Instance {
    let sub = tenant(store, 1000).await;
    let instance = new_instance(store, &sub, name).await;
    let mut events = engine.subscribe();
    engine.start(&instance, None).expect("start");
    let id = instance.id;
    next_event(&mut events, "a QR code", |e| e.instance_id == id && e.event_type == EventType::QrUpdated).await;
    network.scan(id, Some(name.into())).await.expect("scan");
    connected(store, id).await
}

async fn connected(store: &Arc<dyn Store>, id: gw_core::InstanceId) -> Instance {
    until_within(WAIT, "a connected instance", || async {
        store.get_instance(Visibility::All, id).await.expect("instance").status == InstanceStatus::Connected
    })
    .await;
    store.get_instance(Visibility::All, id).await.expect("instance")
}

async fn owner(store: &Arc<dyn Store>, id: gw_core::InstanceId) -> Option<NodeId> {
    store.instance_owner(id).await.expect("owner")
}

async fn each_instance_has_exactly_one_owner(store: Arc<dyn Store>) {
    let network = SandboxNetwork::new();
    let ttl = Duration::from_millis(900);
    // A first node pairs the instances and drains: they become orphans for the two nodes of the cluster.
    let pairing = engine(store.clone(), &network, ttl);
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(paired(&store, &pairing, &network, &format!("inst-{n}")).await.id);
    }
    pairing.shutdown().await;
    for id in &ids {
        assert_eq!(owner(&store, *id).await, None, "a drained node gives its leases up");
    }
    let (a, b) = (engine(store.clone(), &network, ttl), engine(store.clone(), &network, ttl));
    a.run_cluster();
    b.run_cluster();
    until_within(WAIT, "every instance owned and running", || async {
        let mut all = true;
        for id in &ids {
            let owner = owner(&store, *id).await;
            let runs = (a.runs(*id), b.runs(*id));
            all &= match owner {
                Some(node) if node == a.node_id() => runs == (true, false),
                Some(node) if node == b.node_id() => runs == (false, true),
                _ => false,
            };
        }
        all
    })
    .await;
    for id in &ids {
        connected(&store, *id).await;
    }
    // Several renewals later (each node's heartbeat follows its renewal), still one owner each and nothing moved.
    let before = owners(&store, &ids).await;
    let heartbeats = |store: Arc<dyn Store>| async move {
        let nodes = store.list_nodes(Duration::from_secs(60)).await.expect("nodes");
        nodes.iter().map(|n| n.heartbeat_at).min().expect("two live nodes")
    };
    let start = heartbeats(store.clone()).await;
    until_within(WAIT, "three more rounds of renewals", || async {
        (heartbeats(store.clone()).await.as_datetime() - start.as_datetime()).to_std().unwrap_or_default() >= ttl
    })
    .await;
    assert_eq!(owners(&store, &ids).await, before, "leases are renewed, not passed around");
    for id in &ids {
        assert!(a.runs(*id) ^ b.runs(*id), "exactly one node runs {id}");
    }
    a.shutdown().await;
    b.shutdown().await;
}

async fn owners(store: &Arc<dyn Store>, ids: &[gw_core::InstanceId]) -> Vec<Option<NodeId>> {
    let mut owners = Vec::new();
    for id in ids {
        owners.push(owner(store, *id).await);
    }
    owners
}

async fn a_killed_node_is_taken_over_after_the_lease(store: Arc<dyn Store>) {
    let network = SandboxNetwork::new();
    let ttl = Duration::from_millis(1500);
    let (a, b) = (engine(store.clone(), &network, ttl), engine(store.clone(), &network, ttl));
    a.run_cluster();
    let instance = paired(&store, &a, &network, "killed").await;
    assert_eq!(owner(&store, instance.id).await, Some(a.node_id()));
    b.run_cluster();
    a.abandon().await;
    let killed = Instant::now();
    assert_eq!(owner(&store, instance.id).await, Some(a.node_id()), "a killed node's lease outlives it");
    until_within(WAIT, "the survivor to take the instance over", || async {
        owner(&store, instance.id).await == Some(b.node_id()) && b.runs(instance.id)
    })
    .await;
    // The lease was renewed at most a third of the TTL before the kill.
    assert!(killed.elapsed() >= ttl / 2, "taken over after {:?}, before the lease could expire", killed.elapsed());
    connected(&store, instance.id).await;
    b.shutdown().await;
}

async fn drain_gives_leases_up_at_once(store: Arc<dyn Store>) {
    let network = SandboxNetwork::new();
    // Long enough that a take-over within it can only come from the release.
    let ttl = Duration::from_secs(30);
    let (a, b) = (engine(store.clone(), &network, ttl), engine(store.clone(), &network, ttl));
    let instance = paired(&store, &a, &network, "drained").await;
    a.run_cluster();
    a.shutdown().await;
    assert!(!a.runs(instance.id));
    assert_eq!(owner(&store, instance.id).await, None, "released at shutdown, not left to expire");
    assert_eq!(b.resume_all().await.expect("claim"), 1, "the other node takes it at once");
    assert_eq!(owner(&store, instance.id).await, Some(b.node_id()));
    connected(&store, instance.id).await;
    b.shutdown().await;
}

async fn a_node_that_cannot_renew_stops_its_sessions_before_the_lease_passes(store: Arc<dyn Store>, url: String) {
    let network = SandboxNetwork::new();
    let ttl = Duration::from_secs(3);
    // Node A has a database connection of its own, which the test cuts.
    let own = Arc::new(PgStore::open(&url, &OpenOptions::default()).await.expect("open"));
    let a = engine(own.clone(), &network, ttl);
    a.run_cluster();
    let instance = paired(&store, &a, &network, "isolated").await;
    assert!(a.runs(instance.id));
    own.close().await;
    let cut = Instant::now();
    until_within(WAIT, "the isolated node to stop the session", || async { !a.runs(instance.id) }).await;
    // Stopped before anyone else could hold the lease: it is still A's in the database.
    assert_eq!(owner(&store, instance.id).await, Some(a.node_id()), "stopped only after {:?}", cut.elapsed());
    assert!(cut.elapsed() < ttl, "stopped after {:?}", cut.elapsed());
    a.abandon().await;
}

async fn a_stale_epoch_write_is_refused_and_stops_the_session(store: Arc<dyn Store>) {
    let network = SandboxNetwork::new();
    let ttl = Duration::from_millis(600);
    // Node A runs the session but its ownership loop never runs: a node paused past its lease.
    let a = engine(store.clone(), &network, ttl);
    let instance = paired(&store, &a, &network, "paused").await;
    assert!(a.runs(instance.id));
    let successor = NodeId::new();
    until_within(WAIT, "another node to take the expired lease", || async {
        store.acquire_lease(instance.id, successor, Duration::from_secs(60)).await.expect("acquire").is_some()
    })
    .await;
    // The paused node resumes and writes (a connection blip makes it record `disconnected`): refused, and it stops.
    network.drop_connection(instance.id).expect("blip");
    until_within(WAIT, "the fenced session to stop", || async { !a.runs(instance.id) }).await;
    let stored = store.get_instance(Visibility::All, instance.id).await.expect("instance");
    assert_eq!(stored.status, InstanceStatus::Connected, "the stale write did not land");
    assert_eq!(owner(&store, instance.id).await, Some(successor));
    a.abandon().await;
}

/// A contact WhatsApp tells a paused former owner about is refused like its other writes: nothing is stored and the
/// session stops.
async fn a_stale_owners_contact_write_is_refused_and_stops_the_session(store: Arc<dyn Store>) {
    let network = SandboxNetwork::new();
    let ttl = Duration::from_millis(600);
    let a = engine(store.clone(), &network, ttl);
    let instance = paired(&store, &a, &network, "paused-contacts").await;
    let successor = NodeId::new();
    until_within(WAIT, "another node to take the expired lease", || async {
        store.acquire_lease(instance.id, successor, Duration::from_secs(60)).await.expect("acquire").is_some()
    })
    .await;
    let jid = "15550006@s.whatsapp.net";
    network.push_contact(instance.id, jid, Some("Late".into())).expect("contact pushed");
    until_within(WAIT, "the fenced session to stop", || async { !a.runs(instance.id) }).await;
    assert_eq!(store.find_contact_by_jid(instance.id, jid).await.expect("lookup"), None, "the stale write landed");
    assert_eq!(owner(&store, instance.id).await, Some(successor));

    // The same event under a current lease is stored: the refusal above was the fence, not a dropped event.
    let b = engine(store.clone(), &network, Duration::from_secs(10));
    store.release_all_leases(successor).await.expect("release");
    b.start(&instance, None).expect("start");
    connected(&store, instance.id).await;
    until_within(WAIT, "the new owner's session to connect", || async { b.runs(instance.id) }).await;
    network.push_contact(instance.id, jid, Some("Current".into())).expect("contact pushed");
    until_within(WAIT, "the current owner's contact", || async {
        store.find_contact_by_jid(instance.id, jid).await.expect("lookup").and_then(|c| c.name).as_deref()
            == Some("Current")
    })
    .await;
    a.abandon().await;
    b.shutdown().await;
}

/// A pairing (QR shown, not scanned) on a node that loses its database is stopped by the watchdog; once its lease
/// lapsed, another node ends it `disconnected` with the reason and tells its subscribers. The old QR code leads
/// nowhere, and a new connect through the other node pairs afresh.
async fn a_pairing_the_watchdog_stopped_ends_disconnected(store: Arc<dyn Store>, url: String) {
    let network = SandboxNetwork::new();
    let ttl = Duration::from_secs(2);
    let own = Arc::new(PgStore::open(&url, &OpenOptions::default()).await.expect("open"));
    let a = engine(own.clone(), &network, ttl);
    a.run_cluster();
    let b = engine(store.clone(), &network, ttl);
    b.run_cluster();
    let sub = tenant(&store, 1000).await;
    let instance = new_instance(&store, &sub, "pairing").await;
    let id = instance.id;
    let mut a_events = a.subscribe();
    let mut b_events = b.subscribe();
    a.start(&instance, None).expect("start");
    next_event(&mut a_events, "a QR code", |e| e.instance_id == id && e.event_type == EventType::QrUpdated).await;
    assert_eq!(owner(&store, id).await, Some(a.node_id()));

    own.close().await;
    until_within(WAIT, "the watchdog to stop the pairing", || async { !a.runs(id) }).await;
    next_event(&mut b_events, "the end of the pairing, told on the other node", |e| {
        e.instance_id == id && e.event_type == EventType::ConnectionUpdate && e.data["status"] == "disconnected"
    })
    .await;
    let ended = store.get_instance(Visibility::All, id).await.expect("instance");
    assert_eq!(ended.status, InstanceStatus::Disconnected);
    assert_eq!(ended.last_error.as_deref(), Some(gw_sessions::PAIRING_INTERRUPTED));
    assert_eq!(ended.qr_code, None, "no stale QR code is shown");
    assert_eq!(owner(&store, id).await, None);
    assert!(!b.runs(id), "not resumed by anyone");
    assert!(network.scan(id, None).await.is_err(), "the old QR code leads nowhere");

    b.start(&ended, None).expect("connect again");
    next_event(&mut b_events, "a new QR code", |e| e.instance_id == id && e.event_type == EventType::QrUpdated).await;
    network.scan(id, Some("again".into())).await.expect("scan");
    connected(&store, id).await;
    assert_eq!(owner(&store, id).await, Some(b.node_id()));
    a.abandon().await;
    b.shutdown().await;
}

async fn a_send_accepted_on_another_node_is_sent_by_the_owner(store: Arc<dyn Store>) {
    let network = SandboxNetwork::new();
    let ttl = Duration::from_secs(10);
    // The slow poll is far beyond the deadline: only the wake-up can make the owner send in time.
    let slow = Duration::from_secs(120);
    let owner_node = engine_polling(store.clone(), &network, ttl, slow);
    let other = engine_polling(store.clone(), &network, ttl, slow);
    owner_node.run_cluster();
    other.run_cluster();
    let alice = paired(&store, &owner_node, &network, "alice").await;
    let bob = paired(&store, &owner_node, &network, "bob").await;
    assert!(!other.runs(alice.id));
    let mut events = owner_node.subscribe();
    let request = gw_sessions::SendRequest {
        to: format!("{}@s.whatsapp.net", bob.phone.as_deref().expect("paired").trim_start_matches('+')),
        content: gw_sessions::SendContent::Text { body: "through the other node".into() },
        quoted_message_id: None,
        idempotency: None,
    };
    let accepted = other.send(&alice, request).await.expect("accepted on a node that does not own the instance");
    let id = accepted.message.id;
    next_event(&mut events, "the owner to send it", |e| {
        e.event_type == EventType::MessageSent && e.data["id"] == serde_json::json!(id)
    })
    .await;
    assert_ne!(store.get_message(alice.id, id).await.expect("message").status, gw_core::MessageStatus::Queued);
    owner_node.shutdown().await;
    other.shutdown().await;
}

async fn commands_through_another_node_are_executed_by_the_owner(store: Arc<dyn Store>) {
    let network = SandboxNetwork::new();
    let ttl = Duration::from_secs(10);
    let (owner_node, other) = (engine(store.clone(), &network, ttl), engine(store.clone(), &network, ttl));
    owner_node.run_cluster();
    other.run_cluster();

    // A pairing code asked through the other node comes from the owner's session.
    let sub = tenant(&store, 1000).await;
    let waiting = new_instance(&store, &sub, "waiting").await;
    let mut events = owner_node.subscribe();
    owner_node.start(&waiting, None).expect("start");
    next_event(&mut events, "a QR code", |e| e.instance_id == waiting.id && e.event_type == EventType::QrUpdated).await;
    let code = other.request_pair_code(&waiting, "+15550009999").await.expect("a code through the other node");
    assert!(!code.is_empty());
    assert!(!other.runs(waiting.id), "the other node did not start a session of its own");

    // A restart through the other node restarts the owner's session; a logout logs it out there.
    let paired = paired(&store, &owner_node, &network, "commanded").await;
    let mut events = owner_node.subscribe();
    other.restart(&paired).expect("restart");
    next_event(&mut events, "the owner reconnecting", |e| {
        e.instance_id == paired.id && e.event_type == EventType::ConnectionUpdate && e.data["status"] == "connecting"
    })
    .await;
    connected(&store, paired.id).await;
    assert!(!other.runs(paired.id) && owner_node.runs(paired.id));
    other.logout(&paired).await.expect("logout through the other node");
    let stored = store.get_instance(Visibility::All, paired.id).await.expect("instance");
    assert_eq!(stored.status, InstanceStatus::LoggedOut);
    assert!(!store.load_session(paired.id).await.expect("load").is_some_and(|s| s.session_valid));

    // An owner that does not answer (gone, its lease not yet expired): the caller is told to retry, quickly.
    let impatient = engine_with(
        store.clone(),
        &network,
        ClusterConfig { lease_ttl: ttl, command_wait: Duration::from_millis(300), ..ClusterConfig::default() },
    );
    let silent = new_instance(&store, &sub, "silent").await;
    let mut events = owner_node.subscribe();
    owner_node.start(&silent, None).expect("start");
    next_event(&mut events, "a QR code", |e| e.instance_id == silent.id && e.event_type == EventType::QrUpdated).await;
    owner_node.abandon().await;
    let refused = impatient.request_pair_code(&silent, "+15550009998").await;
    assert!(matches!(refused, Err(gw_sessions::EngineError::OwnerUnavailable)), "{refused:?}");
    other.shutdown().await;
}

mod postgres {
    use crate::common::on_postgres;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_instance_has_exactly_one_owner() {
        on_postgres(|store, _| super::each_instance_has_exactly_one_owner(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_node_is_taken_over_after_the_lease() {
        on_postgres(|store, _| super::a_killed_node_is_taken_over_after_the_lease(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drain_gives_leases_up_at_once() {
        on_postgres(|store, _| super::drain_gives_leases_up_at_once(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_that_cannot_renew_stops_its_sessions_before_the_lease_passes() {
        on_postgres(super::a_node_that_cannot_renew_stops_its_sessions_before_the_lease_passes).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pairing_the_watchdog_stopped_ends_disconnected() {
        on_postgres(super::a_pairing_the_watchdog_stopped_ends_disconnected).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_send_accepted_on_another_node_is_sent_by_the_owner() {
        on_postgres(|store, _| super::a_send_accepted_on_another_node_is_sent_by_the_owner(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commands_through_another_node_are_executed_by_the_owner() {
        on_postgres(|store, _| super::commands_through_another_node_are_executed_by_the_owner(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_epoch_write_is_refused_and_stops_the_session() {
        on_postgres(|store, _| super::a_stale_epoch_write_is_refused_and_stops_the_session(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_owners_contact_write_is_refused_and_stops_the_session() {
        on_postgres(|store, _| super::a_stale_owners_contact_write_is_refused_and_stops_the_session(store)).await;
    }
}

mod sqlite {
    use std::future::Future;
    use std::sync::Arc;

    use gw_store::Store;

    async fn on_sqlite<Fut: Future<Output = ()>>(test: impl FnOnce(Arc<dyn Store>) -> Fut) {
        let dir = std::env::temp_dir().join(format!("gw-cluster-{}", gw_core::MessageId::new()));
        std::fs::create_dir_all(&dir).expect("dir");
        let url = format!("sqlite://{}", dir.join("db.sqlite").display());
        let store = gw_store_sql::SqliteStore::open(&url, &gw_store_sql::OpenOptions::default()).await.expect("open");
        test(Arc::new(store)).await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_epoch_write_is_refused_and_stops_the_session() {
        on_sqlite(super::a_stale_epoch_write_is_refused_and_stops_the_session).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_owners_contact_write_is_refused_and_stops_the_session() {
        on_sqlite(super::a_stale_owners_contact_write_is_refused_and_stops_the_session).await;
    }
}
