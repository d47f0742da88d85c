//! Fixtures the engine's test files share.

use std::sync::Arc;

use gw_core::{DriverKind, EventType, GatewayEvent, Instance, InstanceStatus, LimitOverrides, Tier};
use gw_sessions::sandbox::SandboxControl;
use gw_sessions::{DirectMeter, Engine, EngineBuilder, EngineConfig, SessionCipher};
use gw_store::{Actor, NewInstance, NewSubscription, Store, Visibility};
use serde_json::json;
use tokio::sync::broadcast;

/// An engine over `store` with direct metering and one session key for every node of a test.
#[allow(dead_code, reason = "not every test file that shares the fixtures builds its engines here")]
pub fn engine(store: &Arc<dyn Store>) -> EngineBuilder {
    Engine::builder(store.clone(), Arc::new(DirectMeter::new(store.clone())), Arc::new(SessionCipher::new(&[9; 32])))
}

/// Reconnects within milliseconds (`from` at first, at most `max`), so tests that lose connections stay quick.
#[allow(dead_code, reason = "not every test file that shares the fixtures reconnects")]
pub fn fast_reconnects(from_ms: u64, max_ms: u64) -> EngineConfig {
    EngineConfig {
        backoff_initial: std::time::Duration::from_millis(from_ms),
        backoff_max: std::time::Duration::from_millis(max_ms),
        ..Default::default()
    }
}

pub async fn tenant(store: &Arc<dyn Store>, monthly_messages: i64) -> gw_core::Subscription {
    store
        .create_subscription(
            NewSubscription {
                name: format!("tenant-{}", gw_core::SubscriptionId::new()),
                tier: Tier::Pro,
                max_instances: 10,
                monthly_messages,
                limit_overrides: LimitOverrides::default(),
            },
            &Actor::system(),
        )
        .await
        .expect("subscription")
}

pub async fn new_instance(store: &Arc<dyn Store>, subscription: &gw_core::Subscription, name: &str) -> Instance {
    new_instance_on(store, subscription, name, DriverKind::Sandbox).await
}

#[allow(dead_code, reason = "not every test file that shares the fixtures needs another driver")]
pub async fn new_instance_on(
    store: &Arc<dyn Store>,
    subscription: &gw_core::Subscription,
    name: &str,
    driver: DriverKind,
) -> Instance {
    store
        .create_instance(
            NewInstance {
                name: name.into(),
                subscription_id: subscription.id,
                created_by_id: None,
                driver,
                settings: json!({}),
            },
            &Actor::system(),
        )
        .await
        .expect("instance")
}

/// Waits (up to `deadline`) for the first event of `instance` on `events` that `matches`, skipping others and lost
/// ones; fails the test naming `what`.
#[allow(dead_code, reason = "not every test file that shares the fixtures waits for events")]
pub async fn next_event(
    events: &mut broadcast::Receiver<GatewayEvent>,
    instance: &Instance,
    deadline: std::time::Duration,
    what: &str,
    matches: impl Fn(&GatewayEvent) -> bool,
) -> GatewayEvent {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(event) if event.instance_id == instance.id && matches(&event) => return event,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event bus closed: {e}"),
            }
        }
    };
    tokio::time::timeout(deadline, wait).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits (up to `deadline`) until `instance` reports connection status `status`.
#[allow(dead_code, reason = "not every test file that shares the fixtures waits for events")]
pub async fn expect_status(
    events: &mut broadcast::Receiver<GatewayEvent>,
    instance: &Instance,
    deadline: std::time::Duration,
    status: InstanceStatus,
) -> GatewayEvent {
    next_event(events, instance, deadline, status.as_str(), |e| {
        e.event_type == EventType::ConnectionUpdate && e.data["status"] == status.as_str()
    })
    .await
}

/// Starts `instance` on `engine`, scans its QR code through `phone` (any node's handle on the sandbox network) as
/// `name`, and returns the instance as stored once connected.
#[allow(dead_code, reason = "not every test file that shares the fixtures pairs")]
pub async fn pair(
    engine: &Engine,
    events: &mut broadcast::Receiver<GatewayEvent>,
    store: &Arc<dyn Store>,
    instance: &Instance,
    phone: &dyn SandboxControl,
    name: &str,
    deadline: std::time::Duration,
) -> Instance {
    engine.start(instance, None).expect("start");
    let qr = next_event(events, instance, deadline, "a QR code", |e| e.event_type == EventType::QrUpdated).await;
    assert!(qr.data["qr"].as_str().is_some_and(|q| q.starts_with("2@sandbox,")), "{}", qr.data);
    phone.scan(instance.id, Some(name.into())).await.expect("scan");
    expect_status(events, instance, deadline, InstanceStatus::Connected).await;
    store.get_instance(Visibility::All, instance.id).await.expect("instance")
}

/// Runs `test` on a fresh PostgreSQL store (and hands it the database URL, for a second connection), then drops the
/// database. Without PostgreSQL it returns at once (the harness prints `SKIPPED`; with `CI` set it fails instead).
#[allow(dead_code)]
pub async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(database) = gw_store_sql::testing::PgTestDatabase::create().await else { return };
    let options = gw_store_sql::OpenOptions::default();
    let store = Arc::new(gw_store_sql::PgStore::open(database.url(), &options).await.expect("postgres"));
    test(store.clone(), database.url().to_owned()).await;
    store.close().await;
    database.drop_database().await;
}
