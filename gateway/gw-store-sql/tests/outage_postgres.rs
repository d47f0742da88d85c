//! A PostgreSQL connection terminated under the store (`pg_terminate_backend`, as a fast shutdown or a failover
//! does) is an outage, `StoreError::Unavailable` (the edge's 503 with `Retry-After`), never a backend error (500);
//! and the pool recovers by itself.

use std::sync::Arc;
use std::time::Duration;

use gw_core::{LimitOverrides, Tier, Timestamp};
use gw_store::{Actor, NewSubscription, StoreError, SubscriptionStore};
use gw_store_sql::testing::PgTestDatabase;
use gw_store_sql::{OpenOptions, PgStore};
use sqlx::{Connection, PgConnection};

const DEADLINE: Duration = Duration::from_secs(10);

/// Terminates every connection to the current database except the caller's; returns how many.
async fn terminate_others(admin: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t",
    )
    .fetch_one(admin)
    .await
    .expect("terminate")
}

/// How many of the database's other sessions wait on a lock.
async fn waiting_on_locks(admin: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'",
    )
    .fetch_one(admin)
    .await
    .expect("pg_stat_activity")
}

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
    let mut admin = PgConnection::connect(database.url()).await.expect("admin connection");
    sqlx::query("BEGIN").execute(&mut admin).await.expect("begin");
    sqlx::query("LOCK TABLE subscriptions IN ACCESS EXCLUSIVE MODE").execute(&mut admin).await.expect("lock");
    let reads = (0..3).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.get_subscription(sub.id).await.map(|_| ()) })
    });
    let write = {
        let store = store.clone();
        tokio::spawn(async move { store.reserve_messages(sub.id, 1, Timestamp::now()).await.map(|_| ()) })
    };
    let waiting: Vec<_> = reads.chain(std::iter::once(write)).collect();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while waiting_on_locks(&mut admin).await < 4 {
        assert!(tokio::time::Instant::now() < deadline, "the store's statements never waited on the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(terminate_others(&mut admin).await >= 4);
    sqlx::query("ROLLBACK").execute(&mut admin).await.expect("release");
    for task in waiting {
        let result = tokio::time::timeout(DEADLINE, task).await.expect("answered").expect("task");
        assert!(matches!(result, Err(StoreError::Unavailable(_))), "terminated mid-query: {result:?}");
    }

    // Idle pooled connections terminated between statements: the next statements either get a fresh connection
    // or report an outage, never a backend error; and the store answers again without a restart.
    for _ in 0..5 {
        terminate_others(&mut admin).await;
        match store.get_subscription(sub.id).await {
            Ok(_) | Err(StoreError::Unavailable(_)) => {}
            Err(other) => panic!("terminated while idle: {other:?}"),
        }
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match store.get_subscription(sub.id).await {
            Ok(read) => {
                assert_eq!(read.messages_used, 0, "the terminated reservation was not applied");
                break;
            }
            Err(StoreError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("the pool did not recover: {other:?}"),
        }
    }
    let _ = admin.close().await;
    store.close().await;
    database.drop_database().await;
}
