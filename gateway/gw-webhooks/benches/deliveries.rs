//! Signed webhook deliveries per second to a receiver on 127.0.0.1 (keep-alive HTTP/1.1 connection pool).
//!
//! 1. `sign+send`: the dispatcher's hot path without the store: Standard Webhooks signature over a ~300-byte body,
//!    POST through the SSRF-guarded client, response read; `CONCURRENCY` requests in flight.
//! 2. `outbox (sqlite|postgres)`: end to end through the durable outbox: `N` events enqueued (one transaction
//!    each, as the engine does), then the real `Dispatcher` claims, signs, sends and records them all.
//!
//! `cargo bench -p gw-webhooks --bench deliveries` (set GW_BENCH_N to change N; PostgreSQL is used when
//! GW_TEST_POSTGRES_URL or the default local server answers).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use gw_core::{DriverKind, EventSink, EventType, GatewayEvent, Tier, Timestamp};
use gw_egress::{EgressPolicy, GuardedClient};
use gw_store::{Actor, NewInstance, NewSubscription, NewWebhookConfig, Store};
use gw_store_sql::{OpenOptions, PgStore, SqliteStore};
use gw_webhooks::{Dispatcher, DispatcherConfig, SigningSecret, signature_header};
use serde_json::json;

const CONCURRENCY: usize = 64;

fn policy() -> EgressPolicy {
    EgressPolicy {
        allow_http: true,
        allow_cidrs: vec!["127.0.0.0/8".parse().expect("cidr")],
        pool_idle_per_host: CONCURRENCY * 2,
        ..EgressPolicy::default()
    }
}

async fn receiver(count: Arc<AtomicU64>) -> String {
    let app = Router::new().route(
        "/hook",
        post(move || {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn body(i: usize) -> String {
    json!({
        "type": "message.received",
        "timestamp": "2026-11-29T09:00:00.000Z",
        "data": {"id": format!("0190b1a2-0000-7000-8000-{i:012}"), "chat_jid": "15550001111@s.whatsapp.net",
                 "from": "15550002222@s.whatsapp.net", "kind": "text", "text": "hello from the benchmark",
                 "status": "received", "instance_id": "0190b1a2-0000-7000-8000-000000000001"}
    })
    .to_string()
}

async fn sign_and_send(n: usize) {
    let count = Arc::new(AtomicU64::new(0));
    let url = Arc::new(receiver(count.clone()).await);
    let client = GuardedClient::new(policy()).expect("client");
    let secret = Arc::new(vec![SigningSecret::parse(&SigningSecret::generate()).expect("secret")]);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, url, secret, next) = (client.clone(), url.clone(), secret.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= n {
                        return;
                    }
                    let body = body(i);
                    let id = format!("evt_{i}");
                    let ts = Timestamp::now().as_datetime().timestamp();
                    let mut headers = http::HeaderMap::new();
                    headers.insert("content-type", http::HeaderValue::from_static("application/json"));
                    headers.insert("webhook-id", http::HeaderValue::from_str(&id).expect("id"));
                    headers.insert("webhook-timestamp", http::HeaderValue::from(ts));
                    let sig = signature_header(&secret, &id, ts, body.as_bytes());
                    headers.insert("webhook-signature", http::HeaderValue::from_str(&sig).expect("sig"));
                    let response = client.post(&url, headers, body.into_bytes()).await.expect("delivered");
                    assert!(response.status.is_success());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let elapsed = started.elapsed();
    assert_eq!(count.load(Ordering::Relaxed), n as u64);
    println!(
        "sign+send: {n} signed deliveries in {:.2} s = {:.0}/s ({CONCURRENCY} in flight)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}

async fn outbox(name: &str, store: Arc<dyn Store>, n: usize) {
    let count = Arc::new(AtomicU64::new(0));
    let url = receiver(count.clone()).await;
    let sub = store
        .create_subscription(
            NewSubscription {
                name: "Bench".into(),
                tier: Tier::Enterprise,
                max_instances: 10,
                monthly_messages: 10_000_000,
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
                settings: json!({}),
            },
            &Actor::system(),
        )
        .await
        .expect("instance");
    store
        .create_webhook_config(
            NewWebhookConfig {
                instance_id: instance.id,
                url,
                events: vec![gw_core::EventSelector::All],
                secret: SigningSecret::generate(),
            },
            &Actor::system(),
        )
        .await
        .expect("endpoint");
    let config = DispatcherConfig {
        max_in_flight: 256,
        max_in_flight_per_endpoint: 256,
        batch_size: 512,
        poll_interval: Duration::from_millis(50),
        ..DispatcherConfig::default()
    };
    let dispatcher = Dispatcher::new(store.clone(), GuardedClient::new(policy()).expect("client"), config);
    let sink = dispatcher.sink();
    let started = Instant::now();
    let enqueuers: Vec<_> = (0..8)
        .map(|w| {
            let sink = sink.clone();
            let instance = instance.clone();
            tokio::spawn(async move {
                for i in (w..n).step_by(8) {
                    let event = GatewayEvent::new(
                        EventType::MessageReceived,
                        instance.subscription_id,
                        instance.id,
                        Timestamp::now(),
                        json!({"text": "hello from the benchmark", "n": i}),
                    );
                    sink.publish(&event).await.expect("durable");
                }
            })
        })
        .collect();
    for e in enqueuers {
        e.await.expect("enqueue");
    }
    let enqueued = started.elapsed();
    let started = Instant::now();
    let handle = dispatcher.spawn();
    let deadline = Instant::now() + Duration::from_secs(600);
    while store.webhook_queue_depth().await.expect("depth") > 0 {
        assert!(Instant::now() < deadline, "outbox not drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = started.elapsed();
    handle.stop().await;
    assert!(count.load(Ordering::Relaxed) >= n as u64);
    println!(
        "outbox {name}: enqueue {n} events {:.0}/s; dispatch (claim+sign+send+record) {:.0}/s; end to end {:.0}/s",
        n as f64 / enqueued.as_secs_f64(),
        n as f64 / drained.as_secs_f64(),
        n as f64 / (enqueued + drained).as_secs_f64()
    );
}

fn main() {
    let n: usize = std::env::var("GW_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        sign_and_send(n).await;
        let dir = std::env::temp_dir().join(format!("gw-bench-{}", uuid::Uuid::now_v7().simple()));
        let url = format!("sqlite://{}/gateway.db", dir.display());
        let sqlite = Arc::new(SqliteStore::open(&url, &OpenOptions::default()).await.expect("sqlite"));
        outbox("sqlite", sqlite, n).await;
        let _ = std::fs::remove_dir_all(dir);
        match gw_store_sql::testing::PgTestDatabase::create().await {
            Some(database) => {
                let options = OpenOptions { max_connections: 16, ..OpenOptions::default() };
                let pg = Arc::new(PgStore::open(database.url(), &options).await.expect("pg"));
                outbox("postgres", pg.clone(), n).await;
                pg.close().await;
                database.drop_database().await;
            }
            None => println!("outbox postgres: SKIPPED (no PostgreSQL)"),
        }
    });
}
