//! Fixtures the engine's test files share.

use std::sync::Arc;

use gw_core::{DriverKind, GatewayEvent, Instance, LimitOverrides, Tier};
use gw_store::{Actor, NewInstance, NewSubscription, Store};
use serde_json::json;
use tokio::sync::broadcast;

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
    store
        .create_instance(
            NewInstance {
                name: name.into(),
                subscription_id: subscription.id,
                created_by_id: None,
                driver: DriverKind::Sandbox,
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
