//! The sandbox's one-connection-per-device rule, and the shared network (`gateway sandbox-network`) that several
//! nodes dial, with two engines on one database. Waits are on events or state, bounded by a timeout.

use std::sync::Arc;
use std::time::Duration;

use gw_core::{DriverKind, EventType, GatewayEvent, Instance, InstanceStatus};
use gw_sessions::sandbox::{RemoteSandbox, SandboxControl, SandboxDriver, SandboxInbound, SandboxNetwork, server};
use gw_sessions::{Driver, Engine, SendContent, SendRequest, SessionCipher};
use gw_store::{Store, Visibility};
use gw_test_support::TestDatabase;
use tokio::sync::broadcast;

mod common;

const WAIT: Duration = Duration::from_secs(10);

/// One simulated network: in this process, or a server on a loopback port that nodes dial.
struct Network {
    embedded: Option<Arc<SandboxNetwork>>,
    addr: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Network {
    fn embedded() -> Self {
        Self { embedded: Some(SandboxNetwork::new()), addr: None, stop: None }
    }

    async fn shared() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server::serve(listener, SandboxNetwork::new(), async {
            let _ = stopped.await;
        }));
        Self { embedded: None, addr: Some(addr), stop: Some(stop) }
    }

    /// What a node gets: its driver and its control handle.
    fn dial(&self) -> (Arc<dyn Driver>, Arc<dyn SandboxControl>) {
        match (&self.embedded, &self.addr) {
            (Some(network), _) => (Arc::new(SandboxDriver::new(network.clone())), network.clone()),
            (None, Some(addr)) => {
                let remote = RemoteSandbox::new(addr.clone());
                (remote.clone(), remote)
            }
            (None, None) => unreachable!("a network is embedded or has an address"),
        }
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct Node {
    engine: Engine,
    control: Arc<dyn SandboxControl>,
    events: broadcast::Receiver<GatewayEvent>,
}

fn node(store: &Arc<dyn Store>, network: &Network) -> Node {
    let (driver, control) = network.dial();
    let engine =
        common::engine(store).driver(DriverKind::Sandbox, driver).config(common::fast_reconnects(20, 200)).build();
    let events = engine.subscribe();
    Node { engine, control, events }
}

impl Node {
    async fn expect(
        &mut self,
        instance: &Instance,
        what: &str,
        matches: impl Fn(&GatewayEvent) -> bool,
    ) -> GatewayEvent {
        common::next_event(&mut self.events, instance, WAIT, what, matches).await
    }

    async fn expect_status(&mut self, instance: &Instance, status: InstanceStatus) -> GatewayEvent {
        common::expect_status(&mut self.events, instance, WAIT, status).await
    }

    /// Connects a new instance on this node and pairs it through `phone` (any node's control handle).
    async fn paired(&mut self, store: &Arc<dyn Store>, instance: &Instance, phone: &dyn SandboxControl) -> Instance {
        common::pair(&self.engine, &mut self.events, store, instance, phone, &instance.name, WAIT).await
    }
}

async fn new_instance(store: &Arc<dyn Store>, name: &str) -> Instance {
    let subscription = common::tenant(store, 1000).await;
    common::new_instance(store, &subscription, name).await
}

fn jid(instance: &Instance) -> String {
    format!("{}@s.whatsapp.net", instance.phone.as_deref().expect("paired").trim_start_matches('+'))
}

/// A second connection of a paired device (a second node that ignores ownership, as a paused former owner would
/// be): the first connection's engine parks the instance as `replaced`, in both modes; messages then reach the
/// second connection only.
async fn second_connection_replaces_the_first(store: Arc<dyn Store>, network: &Network) {
    use gw_sessions::{ConnectRequest, DriverEvent};
    let mut a = node(&store, network);
    let (driver, other_control) = network.dial();
    let instance = new_instance(&store, "twice").await;
    // Paired through the other node's controls: they reach the same network.
    let instance = a.paired(&store, &instance, other_control.as_ref()).await;

    let vault =
        Arc::new(gw_sessions::StoreVault::new(store.clone(), Arc::new(SessionCipher::new(&[9; 32])), instance.id));
    let request = ConnectRequest { instance_id: instance.id, pair_phone: None };
    let (_second, mut events) = driver.connect(request, vault).await.expect("second connection");
    assert!(matches!(next_event(&mut events, "connected").await, DriverEvent::Connected { .. }));
    let replaced = a.expect_status(&instance, InstanceStatus::Replaced).await;
    assert!(replaced.data["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{}", replaced.data);
    let outcome = a
        .control
        .inbound(
            SandboxInbound {
                instance_id: instance.id,
                from: "15550002222@s.whatsapp.net".into(),
                from_lid: None,
                push_name: None,
                text: "to the live connection".into(),
            },
            Duration::from_millis(200),
        )
        .await
        .expect("inbound");
    let DriverEvent::Message(message) = next_event(&mut events, "the message").await else { panic!("a message") };
    assert_eq!(message.wa_message_id, outcome.wa_message_id, "the second connection is the live one");
    a.engine.shutdown().await;
}

async fn second_connection_replaces_the_first_embedded(store: Arc<dyn Store>) {
    second_connection_replaces_the_first(store, &Network::embedded()).await;
}

async fn second_connection_replaces_the_first_shared(store: Arc<dyn Store>) {
    let mut network = Network::shared().await;
    second_connection_replaces_the_first(store, &network).await;
    network.stop();
}

/// Nodes on the shared network message each other with receipts; controls answer alike through either node; a
/// pairing survives a node restart and a restart of the network process (the credentials are in the store).
async fn nodes_share_one_network_and_pairings_survive_restarts(store: Arc<dyn Store>) {
    let mut network = Network::shared().await;
    let mut a = node(&store, &network);
    let mut b = node(&store, &network);
    let alice = new_instance(&store, "alice").await;
    let bob = new_instance(&store, "bob").await;
    let alice = a.paired(&store, &alice, a.control.clone().as_ref()).await;
    let bob = b.paired(&store, &bob, a.control.clone().as_ref()).await;
    assert_ne!(alice.phone, bob.phone);

    let request = SendRequest {
        to: bob.phone.clone().expect("phone"),
        content: SendContent::Text { body: "across nodes".into() },
        quoted_message_id: None,
        idempotency: None,
    };
    let accepted = a.engine.send(&alice, request).await.expect("send");
    let received = b.expect(&bob, "the message on b", |e| e.event_type == EventType::MessageReceived).await;
    assert_eq!(received.data["text"], "across nodes");
    a.expect(&alice, "delivered", |e| e.event_type == EventType::MessageStatus && e.data["status"] == "delivered")
        .await;
    let wa_id = accepted.message.wa_message_id.expect("wa id");
    for control in [&a.control, &b.control] {
        let got = control.received(jid(&bob)).await.expect("received");
        assert_eq!(got.iter().filter(|d| d.wa_message_id == wa_id).count(), 1, "{got:?}");
    }
    // A blip through b's controls drops a's connection; a reconnects by itself.
    b.control.drop_connection(alice.id).await.expect("drop");
    a.expect_status(&alice, InstanceStatus::Disconnected).await;
    a.expect_status(&alice, InstanceStatus::Connected).await;

    // A node restart: a new engine and link connect the pairing from the store again, same number.
    a.engine.shutdown().await;
    b.engine.shutdown().await;
    let mut a = node(&store, &network);
    a.engine.start(&alice, None).expect("start");
    a.expect_status(&alice, InstanceStatus::Connected).await;
    let resumed = store.get_instance(Visibility::All, alice.id).await.expect("instance");
    assert_eq!(resumed.phone, alice.phone, "same account, no new pairing");
    a.engine.shutdown().await;

    // The network process restarts (it forgets everything); nodes dial it again and resume from the store.
    network.stop();
    let network = Network::shared().await;
    let mut c = node(&store, &network);
    c.engine.start(&alice, None).expect("start");
    c.expect_status(&alice, InstanceStatus::Connected).await;
    let resumed = store.get_instance(Visibility::All, alice.id).await.expect("instance");
    assert_eq!(resumed.phone, alice.phone, "same account, no new pairing");
    c.engine.shutdown().await;
}

/// A network that is not there: control calls answer `Unreachable`, connections fail as transient.
async fn an_unreachable_network_is_transient(store: Arc<dyn Store>) {
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        probe.local_addr().expect("addr").to_string()
    };
    let network = Network { embedded: None, addr: Some(addr), stop: None };
    let mut a = node(&store, &network);
    let instance = new_instance(&store, "nowhere").await;
    let err = a.control.scan(instance.id, None).await.expect_err("nothing listens");
    assert!(matches!(err, gw_sessions::sandbox::SandboxError::Unreachable(_)), "{err:?}");
    a.engine.start(&instance, None).expect("start");
    let failed = a
        .expect(&instance, "a transient failure", |e| {
            e.event_type == EventType::ConnectionUpdate && e.data["status"] == "disconnected"
        })
        .await;
    assert!(failed.data["last_error"].as_str().is_some_and(|e| e.contains("sandbox network")), "{}", failed.data);
    a.engine.shutdown().await;
}

/// Credentials in memory, for driving the network without an engine.
#[derive(Debug, Default)]
struct MemoryVault(std::sync::Mutex<Option<Vec<u8>>>);

#[async_trait::async_trait]
impl gw_sessions::AuthVault for MemoryVault {
    async fn load(&self) -> Result<Option<Vec<u8>>, gw_sessions::DriverError> {
        Ok(self.0.lock().expect("vault").clone())
    }
    async fn save(&self, state: &[u8]) -> Result<(), gw_sessions::DriverError> {
        *self.0.lock().expect("vault") = Some(state.to_vec());
        Ok(())
    }
    async fn invalidate(&self) -> Result<(), gw_sessions::DriverError> {
        *self.0.lock().expect("vault") = None;
        Ok(())
    }
}

async fn next_event(events: &mut gw_sessions::DriverEvents, what: &str) -> gw_sessions::DriverEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("events ended before {what}"))
}

/// A node that dies holding an inbound message it has not acknowledged (it never stored it): the network delivers
/// the message again to the account's next connection, on another node, as WhatsApp does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_unacknowledged_messages_are_delivered_again() {
    use gw_sessions::{ConnectRequest, DriverEvent};
    let mut network = Network::shared().await;
    let addr = network.addr.clone().expect("shared");
    let vault = Arc::new(MemoryVault::default());
    let instance_id = gw_core::InstanceId::new();
    let request = || ConnectRequest { instance_id, pair_phone: None };

    let first = RemoteSandbox::new(addr.clone());
    let (_connection, mut events) = first.connect(request(), vault.clone()).await.expect("connect");
    assert!(matches!(next_event(&mut events, "a QR code").await, DriverEvent::Qr { .. }));
    first.scan(instance_id, None).await.expect("scan");
    assert!(matches!(next_event(&mut events, "paired").await, DriverEvent::PairSuccess { .. }));
    assert!(matches!(next_event(&mut events, "connected").await, DriverEvent::Connected { .. }));
    let message = SandboxInbound {
        instance_id,
        from: "15550003333@s.whatsapp.net".into(),
        from_lid: None,
        push_name: None,
        text: "never stored".into(),
    };
    let injected = first.inbound(message, Duration::from_millis(200)).await.expect("inbound");
    assert!(!injected.acknowledged, "nobody stored it");
    let DriverEvent::Message(held) = next_event(&mut events, "the message").await else { panic!("a message") };
    assert_eq!(held.wa_message_id, injected.wa_message_id);
    // The node dies without acknowledging.
    first.hang_up().await;
    drop(held);

    let second = RemoteSandbox::new(addr);
    let (_connection, mut events) = second.connect(request(), vault.clone()).await.expect("connect again");
    assert!(matches!(next_event(&mut events, "connected").await, DriverEvent::Connected { .. }));
    let DriverEvent::Message(again) = next_event(&mut events, "the message again").await else {
        panic!("the unacknowledged message first")
    };
    assert_eq!(
        (again.wa_message_id.as_str(), again.text.as_deref()),
        (injected.wa_message_id.as_str(), Some("never stored"))
    );
    network.stop();
}

/// Each test gets a fresh, migrated store on each backend (the database is dropped even if the test panics).
async fn store(database: &TestDatabase) -> Arc<dyn Store> {
    database.store().await
}

gw_test_support::on_both_backends!(store =>
    second_connection_replaces_the_first_embedded,
    second_connection_replaces_the_first_shared,
    nodes_share_one_network_and_pairings_survive_restarts,
    an_unreachable_network_is_transient,
);
