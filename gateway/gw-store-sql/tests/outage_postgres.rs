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

/// A TCP relay between the store and PostgreSQL that the test can cut (listener closed: connections refused; every
/// relayed connection dropped) and restore on the same port: the network side of an outage, with a real server.
struct Relay {
    address: std::net::SocketAddr,
    upstream: String,
    tasks: Option<tokio::task::JoinSet<()>>,
}

impl Relay {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the relay");
        let address = listener.local_addr().expect("relay address");
        let mut relay = Self { address, upstream, tasks: None };
        relay.serve(listener);
        relay
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream.clone();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(async move {
            let mut relayed = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                relayed.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        self.tasks = Some(tasks);
    }

    /// Refuses new connections and drops the relayed ones (aborting the accept task drops its relays too).
    async fn cut(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.shutdown().await;
        }
    }

    async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.address).await.expect("rebind the relay's port");
        self.serve(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_unreachable_statements_fail_at_once_and_recover_after() {
    let Some(database) = PgTestDatabase::create().await else { return };
    let mut url = url::Url::parse(database.url()).expect("database url");
    let upstream = format!("{}:{}", url.host_str().expect("host"), url.port().unwrap_or(5432));
    let mut relay = Relay::start(upstream).await;
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(relay.address.port())).expect("port");
    let options = OpenOptions { max_connections: 4, acquire_timeout: Duration::from_secs(5), ..OpenOptions::default() };
    let store = Arc::new(PgStore::open(url.as_str(), &options).await.expect("open through the relay"));
    let sub = store
        .create_subscription(
            NewSubscription {
                name: "Gate".into(),
                tier: Tier::Free,
                max_instances: 1,
                monthly_messages: 100,
                limit_overrides: LimitOverrides::default(),
            },
            &Actor::system(),
        )
        .await
        .expect("subscription");
    assert!(!store.known_down());

    relay.cut().await;
    // The first statements find the connections gone (or wait for a refused one) and close the gate.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !store.known_down() {
        assert!(tokio::time::Instant::now() < deadline, "the outage was never noticed");
        let result = store.get_subscription(sub.id).await;
        assert!(matches!(result, Err(StoreError::Unavailable(_))), "during the outage: {result:?}");
    }
    // From then on, well under the 5 s acquire timeout: the gate answers without waiting for a connection.
    for _ in 0..20 {
        let asked = std::time::Instant::now();
        let result = store.get_subscription(sub.id).await;
        assert!(matches!(result, Err(StoreError::Unavailable(_))), "during the outage: {result:?}");
        assert!(asked.elapsed() < Duration::from_secs(1), "an outage answer took {:?}", asked.elapsed());
    }

    relay.restore().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match store.get_subscription(sub.id).await {
            Ok(read) => {
                assert_eq!(read.id, sub.id);
                break;
            }
            Err(StoreError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("the store did not recover after the database came back: {other:?}"),
        }
    }
    assert!(!store.known_down(), "the probe opened the gate again");
    store.close().await;
    database.drop_database().await;
}
