//! A PostgreSQL connection terminated under the store (`pg_terminate_backend`, as a fast shutdown or a failover
//! does) is an outage, `StoreError::Unavailable` (the edge's 503 with `Retry-After`), never a backend error (500);
//! and the pool recovers by itself.

use std::sync::Arc;
use std::time::Duration;

use gw_core::{LimitOverrides, Tier, Timestamp};
use gw_store::{Actor, NewSubscription, StoreError, SubscriptionStore};
use gw_store_sql::testing::{LockMode, PgTestDatabase};
use gw_store_sql::{OpenOptions, PgStore};
use gw_test_support::{eventually_within, until_within};

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_are_unavailable_and_the_pool_recovers() {
    let Some(database) = PgTestDatabase::create().await else { return };
    let options = OpenOptions { max_connections: 8, ..OpenOptions::default() };
    let store = Arc::new(PgStore::open(database.url(), &options).await.expect("open"));
    let sub = store
        .create_subscription(
            NewSubscription {
                name: "Outage".into(),
                tier: Tier::Free,
                max_instances: 1,
                monthly_messages: 100,
                limit_overrides: LimitOverrides::default(),
            },
            &Actor::system(),
        )
        .await
        .expect("subscription");

    // Mid-query: a lock held by another session makes the store's statements wait inside PostgreSQL, and the
    // termination reaches them there (SQLSTATE 57P01, "terminating connection due to administrator command").
    let lock = database.lock_table("subscriptions", LockMode::AccessExclusive).await;
    let reads = (0..3).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.get_subscription(sub.id).await.map(|_| ()) })
    });
    let write = {
        let store = store.clone();
        tokio::spawn(async move { store.reserve_messages(sub.id, 1, Timestamp::now()).await.map(|_| ()) })
    };
    let waiting: Vec<_> = reads.chain(std::iter::once(write)).collect();
    until_within(DEADLINE, "the store's statements to wait on the lock", async || {
        database.sessions_waiting_on_locks().await >= 4
    })
    .await;
    assert!(database.terminate_connections(Some(&lock)).await >= 4);
    lock.release().await;
    for task in waiting {
        let result = tokio::time::timeout(DEADLINE, task).await.expect("answered").expect("task");
        assert!(matches!(result, Err(StoreError::Unavailable(_))), "terminated mid-query: {result:?}");
    }

    // Idle pooled connections terminated between statements: the next statements either get a fresh connection
    // or report an outage, never a backend error; and the store answers again without a restart.
    for _ in 0..5 {
        database.terminate_connections(None).await;
        match store.get_subscription(sub.id).await {
            Ok(_) | Err(StoreError::Unavailable(_)) => {}
            Err(other) => panic!("terminated while idle: {other:?}"),
        }
    }
    let read =
        eventually_within(DEADLINE, "the pool to answer again", async || match store.get_subscription(sub.id).await {
            Ok(read) => Some(read),
            Err(StoreError::Unavailable(_)) => None,
            Err(other) => panic!("the pool did not recover: {other:?}"),
        })
        .await;
    assert_eq!(read.messages_used, 0, "the terminated reservation was not applied");
    store.close().await;
    database.drop_database().await;
}
