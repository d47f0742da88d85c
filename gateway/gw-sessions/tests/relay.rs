//! Live events across nodes: two engines on one PostgreSQL database, each with its own relay. Waits are on events,
//! bounded by a timeout.

use std::sync::Arc;
use std::time::Duration;

use gw_core::{DriverKind, EventType, GatewayEvent, Instance, InstanceStatus};
use gw_sessions::sandbox::{SandboxControl, SandboxDriver, SandboxInbound, SandboxNetwork};
use gw_sessions::{DirectMeter, Engine, EngineConfig, EventRelay, SessionCipher};
use gw_store::{NodeFanout, Store};
use gw_store_sql::testing::PgTestDatabase;
use gw_store_sql::{OpenOptions, PgFanout, PgStore};
use serde_json::json;
use tokio::sync::{broadcast, watch};

mod common;

const WAIT: Duration = Duration::from_secs(10);

struct Node {
    engine: Engine,
    events: broadcast::Receiver<GatewayEvent>,
    relay: Arc<EventRelay>,
}

async fn node(store: &Arc<dyn Store>, url: &str, network: &Arc<SandboxNetwork>, stop: &watch::Receiver<bool>) -> Node {
    let relay = EventRelay::new();
    let engine = Engine::builder(
        store.clone(),
        Arc::new(DirectMeter::new(store.clone())),
        Arc::new(SessionCipher::new(&[9; 32])),
    )
    .driver(DriverKind::Sandbox, Arc::new(SandboxDriver::new(network.clone())))
    .sink(relay.clone())
    .config(EngineConfig { backoff_initial: Duration::from_millis(20), ..Default::default() })
    .build();
    let fanout: Arc<dyn NodeFanout> = Arc::new(PgFanout::connect(url).await.expect("fanout"));
    relay.spawn(fanout, engine.clone(), stop.clone()).expect("spawned once");
    let events = engine.subscribe();
    Node { engine, events, relay }
}

/// Every event of `instance` that arrives within `window` after `until` matched, up to and including it.
async fn until(
    node: &mut Node,
    instance: &Instance,
    what: &str,
    matches: impl Fn(&GatewayEvent) -> bool,
) -> Vec<GatewayEvent> {
    let mut seen = Vec::new();
    let wait = async {
        loop {
            match node.events.recv().await {
                Ok(event) if event.instance_id == instance.id => {
                    let done = matches(&event);
                    seen.push(event);
                    if done {
                        return;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("bus closed: {e}"),
            }
        }
    };
    tokio::time::timeout(WAIT, wait).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    seen
}

async fn new_instance(store: &Arc<dyn Store>) -> Instance {
    let subscription = common::tenant(store, 1000).await;
    common::new_instance(store, &subscription, "relayed").await
}

fn connected(e: &GatewayEvent) -> bool {
    e.event_type == EventType::ConnectionUpdate && e.data["status"] == InstanceStatus::Connected.as_str()
}

/// Node b's bus shows what happens on node a, once each, and a's own bus does not get its events back; an event
/// larger than one NOTIFY carries (a long message) arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_events_reach_this_nodes_bus_once() {
    let Some(database) = PgTestDatabase::create().await else { return };
    let pg = Arc::new(PgStore::open(database.url(), &OpenOptions::default()).await.expect("postgres"));
    let store: Arc<dyn Store> = pg.clone();
    let (stop, stopped) = watch::channel(false);
    let network = SandboxNetwork::new();
    let mut a = node(&store, database.url(), &network, &stopped).await;
    let mut b = node(&store, database.url(), &network, &stopped).await;
    let instance = new_instance(&store).await;

    // The listeners are up once a's first event reaches b; the QR event proves it.
    a.engine.start(&instance, None).expect("start");
    let qr = until(&mut b, &instance, "the QR code on b", |e| e.event_type == EventType::QrUpdated).await;
    let qr = qr.last().expect("qr").clone();
    network.scan(instance.id, Some("Relayed".into())).await.expect("scan");
    let on_a = until(&mut a, &instance, "connected on a", connected).await;
    let on_b = until(&mut b, &instance, "connected on b", connected).await;
    let ids = |events: &[GatewayEvent]| events.iter().map(|e| e.id).collect::<Vec<_>>();
    let after_qr_a: Vec<_> = on_a.iter().skip_while(|e| e.id != qr.id).skip(1).cloned().collect();
    assert_eq!(ids(&after_qr_a), ids(&on_b), "b sees a's events in a's order, each once");

    let text = "long ".repeat(4_000);
    let message = SandboxInbound {
        instance_id: instance.id,
        from: "15550004444@s.whatsapp.net".into(),
        from_lid: None,
        push_name: None,
        text: text.clone(),
    };
    assert!(network.inbound(message, WAIT).await.expect("inbound").acknowledged);
    let received = |e: &GatewayEvent| e.event_type == EventType::MessageReceived;
    let on_b = until(&mut b, &instance, "the long message on b", received).await;
    assert_eq!(on_b.last().expect("message").data["text"], json!(text), "20 kB arrive whole");
    let on_a = until(&mut a, &instance, "the long message on a", received).await;
    let message_id = on_a.last().expect("message").id;
    assert_eq!(on_b.last().expect("message").id, message_id);

    // a publishes one more event; if a had re-published b's copy or heard its own, a second copy of the message
    // would come first.
    network.drop_connection(instance.id).expect("blip");
    let rest = until(&mut a, &instance, "a's next event", |e| e.event_type == EventType::ConnectionUpdate).await;
    assert!(rest.iter().all(|e| e.id != message_id), "a's own event did not come back: {rest:?}");
    assert_eq!((a.relay.dropped(), b.relay.dropped()), (0, 0));

    let _ = stop.send(true);
    a.engine.shutdown().await;
    b.engine.shutdown().await;
    pg.close().await;
    database.drop_database().await;
}

/// When the relay's connection to the database drops, the node records a gap (its SSE streams tell clients to
/// resync), and other nodes' events reach it again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_listener_is_a_gap_and_other_nodes_events_come_again() {
    let Some(database) = PgTestDatabase::create().await else { return };
    let pg = Arc::new(PgStore::open(database.url(), &OpenOptions::default()).await.expect("postgres"));
    let store: Arc<dyn Store> = pg.clone();
    let (stop, stopped) = watch::channel(false);
    let network = SandboxNetwork::new();
    let a = node(&store, database.url(), &network, &stopped).await;
    let mut b = node(&store, database.url(), &network, &stopped).await;
    let instance = new_instance(&store).await;
    a.engine.start(&instance, None).expect("start");
    until(&mut b, &instance, "the QR code on b", |e| e.event_type == EventType::QrUpdated).await;
    network.scan(instance.id, Some("Relayed".into())).await.expect("scan");
    until(&mut b, &instance, "connected on b", connected).await;

    let mut gaps = b.engine.relay_gaps();
    assert_eq!(*gaps.borrow_and_update(), 0, "no gap while the listener was up");
    assert!(database.terminate_connections(None).await > 0, "the listeners' connections were there to drop");
    tokio::time::timeout(WAIT, gaps.changed()).await.expect("a gap within the wait").expect("the engine lives");
    // What b heard before the drop does not count.
    while !matches!(b.events.try_recv(), Err(broadcast::error::TryRecvError::Empty)) {}

    // a's events reach b again: blips until one of their status changes shows on b (the first ones may fall into
    // the gap, before b listens again).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        network.drop_connection(instance.id).ok();
        let heard = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                match b.events.recv().await {
                    Ok(event) if event.instance_id == instance.id => return,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("bus closed: {e}"),
                }
            }
        })
        .await;
        if heard.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "b never heard a's events again after the gap");
    }

    let _ = stop.send(true);
    a.engine.shutdown().await;
    b.engine.shutdown().await;
    pg.close().await;
    database.drop_database().await;
}
