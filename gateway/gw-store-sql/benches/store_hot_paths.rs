//! Throughput and latency of the store operations on the edge's hot paths, on both backends:
//! the atomic monthly-message reservation (one per accepted send) and the API-key look-up by hash (one per cache
//! miss), and the plugin host's chain look-up (one per chain-cache miss). Run: `cargo bench -p gw-store-sql --bench store_hot_paths`. Results go in BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_core::{ApiKeyHash, BindingDirection, DriverKind, FailurePolicy, Tier, Timestamp};
use gw_store::{
    Actor, NewApiKey, NewInstance, NewPlugin, NewPluginBinding, NewPluginVersion, NewSubscription, Store, Visibility,
};
use gw_store_sql::testing::PgTestDatabase;
use gw_store_sql::{OpenOptions, PgStore, SqliteStore};

const SEQUENTIAL_OPS: usize = 3_000;
const CONCURRENT_CLIENTS: usize = 16;
const OPS_PER_CLIENT: usize = 500;
const SENDERS: usize = 64;
const SENDS_PER_CLIENT: usize = 200;

struct Stats {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn summarise(mut latencies: Vec<Duration>, elapsed: Duration) -> Stats {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    Stats { ops_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(), p50: at(0.50), p99: at(0.99) }
}

fn report(backend: &str, what: &str, stats: &Stats) {
    println!(
        "| {backend} | {what} | {:.0} | {:.0} | {:.0} |",
        stats.ops_per_sec,
        stats.p50.as_secs_f64() * 1e6,
        stats.p99.as_secs_f64() * 1e6
    );
}

async fn bench(backend: &str, store: Arc<dyn Store>) {
    let sub = store
        .create_subscription(
            NewSubscription {
                name: "bench".into(),
                tier: Tier::Enterprise,
                max_instances: 10,
                monthly_messages: i64::MAX / 2,
                limit_overrides: Default::default(),
            },
            &Actor::system(),
        )
        .await
        .expect("subscription");
    let instance = store
        .create_instance(
            NewInstance {
                name: "bench".into(),
                subscription_id: sub.id,
                created_by_id: None,
                driver: DriverKind::Sandbox,
                settings: serde_json::json!({}),
            },
            &Actor::system(),
        )
        .await
        .expect("instance");
    let hash = ApiKeyHash::from_bytes(vec![7; 32]);
    store
        .create_api_key(
            NewApiKey {
                id: gw_core::ApiKeyId::new(),
                instance_id: instance.id,
                name: "bench".into(),
                key_hash: hash.clone(),
                permissions: vec!["messages:send".into()],
                expires_at: None,
                rate_limit: None,
            },
            &Actor::system(),
        )
        .await
        .expect("key");

    // Sequential: one client, latency of a single round trip.
    let mut latencies = Vec::with_capacity(SEQUENTIAL_OPS);
    let started = Instant::now();
    for _ in 0..SEQUENTIAL_OPS {
        let t = Instant::now();
        store.reserve_messages(sub.id, 1, Timestamp::now()).await.expect("reserve");
        latencies.push(t.elapsed());
    }
    report(backend, "reserve_messages, 1 client", &summarise(latencies, started.elapsed()));

    // Concurrent: contention on the one subscription row, as under a burst of sends.
    let started = Instant::now();
    // Collected before awaiting any, so all clients run at once.
    let clients: Vec<_> = (0..CONCURRENT_CLIENTS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(OPS_PER_CLIENT);
                for _ in 0..OPS_PER_CLIENT {
                    let t = Instant::now();
                    store.reserve_messages(sub.id, 1, Timestamp::now()).await.expect("reserve");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for client in futures_join(clients.into_iter()).await {
        latencies.extend(client);
    }
    report(
        backend,
        &format!("reserve_messages, {CONCURRENT_CLIENTS} clients"),
        &summarise(latencies, started.elapsed()),
    );
    let used = store.get_subscription(sub.id).await.expect("read").messages_used;
    assert_eq!(used as usize, SEQUENTIAL_OPS + CONCURRENT_CLIENTS * OPS_PER_CLIENT, "no reservation lost");

    // Accepted sends (outbox row + idempotency key + quota unit, committed before the answer) from as many clients
    // as the HTTP benchmark's connections, beside the same number of clients each committing one reservation per
    // operation (the cost of a commit per send, measured in the same run).
    let used_before = store.get_subscription(sub.id).await.expect("read").messages_used;
    let per_commit = concurrently(SENDERS, SENDS_PER_CLIENT, {
        let store = store.clone();
        move |_, _| {
            let store = store.clone();
            async move {
                store.reserve_messages(sub.id, 1, Timestamp::now()).await.expect("reserve");
            }
        }
    })
    .await;
    report(backend, &format!("reserve_messages, {SENDERS} clients (a commit each)"), &per_commit);
    let grouped = concurrently(SENDERS, SENDS_PER_CLIENT, {
        let store = store.clone();
        let instance = instance.clone();
        move |client, n| {
            let (store, new) = (store.clone(), outbound(&instance, client, n));
            async move {
                let enqueued = store.enqueue_message(new).await.expect("enqueue");
                assert!(matches!(enqueued, gw_store::Enqueued::Created(_)));
            }
        }
    })
    .await;
    report(backend, &format!("enqueue_message, {SENDERS} clients (group commit)"), &grouped);
    let used = store.get_subscription(sub.id).await.expect("read").messages_used - used_before;
    assert_eq!(used as usize, 2 * SENDERS * SENDS_PER_CLIENT, "every reservation and every send charged once");

    let mut latencies = Vec::with_capacity(SEQUENTIAL_OPS);
    let started = Instant::now();
    for _ in 0..SEQUENTIAL_OPS {
        let t = Instant::now();
        let found = store.find_api_key_by_hash(&hash).await.expect("lookup");
        assert!(found.is_some());
        latencies.push(t.elapsed());
    }
    report(backend, "find_api_key_by_hash, 1 client", &summarise(latencies, started.elapsed()));

    // The plugin host's chain look-up on a cache miss: three bindings joined to their versions.
    for n in 0..3u8 {
        let plugin = store
            .create_plugin(
                NewPlugin { subscription_id: sub.id, name: format!("p{n}"), description: None, max_count: 10 },
                &Actor::system(),
            )
            .await
            .expect("plugin");
        store
            .add_plugin_version(
                Visibility::All,
                NewPluginVersion {
                    plugin_id: plugin.id,
                    sha256: format!("{n:02x}").repeat(32),
                    bytes: vec![n; 60_000],
                    uploaded_by: None,
                },
                &Actor::system(),
            )
            .await
            .expect("version");
        store
            .create_plugin_binding(
                NewPluginBinding {
                    instance_id: instance.id,
                    plugin_id: plugin.id,
                    version_id: None,
                    position: None,
                    direction: BindingDirection::Both,
                    config: serde_json::json!({"rules": []}),
                    enabled: true,
                    failure_policy: FailurePolicy::FailOpen,
                },
                &Actor::system(),
            )
            .await
            .expect("binding");
    }
    let mut latencies = Vec::with_capacity(SEQUENTIAL_OPS);
    let started = Instant::now();
    for _ in 0..SEQUENTIAL_OPS {
        let t = Instant::now();
        let chain = store.plugin_chain(instance.id).await.expect("chain");
        assert_eq!(chain.len(), 3);
        latencies.push(t.elapsed());
    }
    report(backend, "plugin_chain (3 bindings), 1 client", &summarise(latencies, started.elapsed()));
}

/// `clients` tasks each running `op(client, n)` `ops` times in a row; latencies of every operation.
async fn concurrently<F, Fut>(clients: usize, ops: usize, op: F) -> Stats
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(ops);
                for n in 0..ops {
                    let t = Instant::now();
                    op(client, n).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let latencies = futures_join(tasks.into_iter()).await.into_iter().flatten().collect();
    summarise(latencies, started.elapsed())
}

/// A text send with its own idempotency key, as the HTTP send path builds it.
fn outbound(instance: &gw_core::Instance, client: usize, n: usize) -> gw_store::NewOutboundMessage {
    let key = format!("bench-{client}-{n}");
    gw_store::NewOutboundMessage {
        id: gw_core::MessageId::new(),
        instance_id: instance.id,
        charge_to: instance.subscription_id,
        wa_message_id: format!("3EB0{}", uuid::Uuid::now_v7().simple()),
        chat_jid: "15550004242@s.whatsapp.net".into(),
        kind: gw_core::MessageKind::Text,
        content: gw_core::MessageContent::text(),
        text: Some("load test message".into()),
        quoted_message_id: None,
        media: None,
        request_hash: Some(key.as_bytes().to_vec()),
        idempotency_key: Some(key),
        origin: gw_core::Origin::Api,
        dropped_reason: None,
        at: Timestamp::now(),
    }
}

async fn futures_join<T: Send + 'static>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("client task"));
    }
    out
}

#[tokio::main]
async fn main() {
    println!("| backend | operation | ops/s | p50 (us) | p99 (us) |");
    println!("| --- | --- | --- | --- | --- |");

    let dir = std::env::temp_dir().join(format!("gw-bench-{}", uuid::Uuid::now_v7().simple()));
    let url = format!("sqlite://{}/bench.db", dir.display());
    let sqlite = SqliteStore::open(&url, &OpenOptions::default()).await.expect("sqlite");
    bench("sqlite", Arc::new(sqlite)).await;
    let _ = std::fs::remove_dir_all(&dir);

    match PgTestDatabase::create().await {
        Some(database) => {
            let store = Arc::new(PgStore::open(database.url(), &OpenOptions::default()).await.expect("postgres"));
            bench("postgres", store.clone()).await;
            store.close().await;
            database.drop_database().await;
        }
        None => println!("(PostgreSQL unreachable: its rows are missing)"),
    }
}
