//! Connects many sandbox instances on one node and reports the time to connect them all and the memory each
//! costs once connected (resident set growth / instances). Two phases: first pairing (QR, scan, save session),
//! then a "restart" that resumes every instance from its stored session on a fresh engine.
//!
//! `cargo bench -p gw-sessions --bench connect_many` (env `INSTANCES`, default 1000; `DATABASE_URL` to use
//! PostgreSQL instead of a temporary SQLite file).

use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_core::{DriverKind, EventType, InstanceStatus, LimitOverrides, Tier};
use gw_sessions::sandbox::{SandboxDriver, SandboxNetwork};
use gw_sessions::{DirectMeter, Engine, SessionCipher};

use gw_store::{Actor, NewInstance, NewSubscription, Store};
use serde_json::json;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn engine(store: Arc<dyn Store>, network: Arc<SandboxNetwork>) -> Engine {
    Engine::builder(store.clone(), Arc::new(DirectMeter::new(store)), Arc::new(SessionCipher::new(&[3; 32])))
        .driver(DriverKind::Sandbox, Arc::new(SandboxDriver::new(network)))
        // The benchmark watches every connection event; a production bus may drop events for slow readers.
        .config(gw_sessions::EngineConfig { bus_capacity: 1 << 17, ..Default::default() })
        .build()
}

/// Waits until `count` instances reported `connected`.
async fn connected(events: &mut tokio::sync::broadcast::Receiver<gw_core::GatewayEvent>, count: usize) {
    let mut seen = std::collections::HashSet::new();
    while seen.len() < count {
        match tokio::time::timeout(Duration::from_secs(120), events.recv()).await {
            Ok(Ok(e)) if e.event_type == EventType::ConnectionUpdate && e.data["status"] == "connected" => {
                seen.insert(e.instance_id);
            }
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            other => panic!("waiting for connections: {other:?}"),
        }
    }
}

fn main() {
    let count: usize = std::env::var("INSTANCES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let dir = std::env::temp_dir().join(format!("gw-connect-many-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| format!("sqlite://{}", dir.join("bench.db").display()));
        let store = gw_store_sql::open(&url, &gw_store_sql::OpenOptions::default()).await.expect("store");
        let subscription = store
            .create_subscription(
                NewSubscription {
                    name: format!("bench-{}", std::process::id()),
                    tier: Tier::Enterprise,
                    max_instances: i32::try_from(count).unwrap_or(i32::MAX),
                    monthly_messages: 1_000_000,
                    limit_overrides: LimitOverrides::default(),
                },
                &Actor::system(),
            )
            .await
            .expect("subscription");
        let mut instances = Vec::with_capacity(count);
        for n in 0..count {
            let new = NewInstance {
                name: format!("i{n}"),
                subscription_id: subscription.id,
                created_by_id: None,
                driver: DriverKind::Sandbox,
                settings: json!({}),
            };
            instances.push(store.create_instance(new, &Actor::system()).await.expect("instance"));
        }

        // Phase 1: first pairing of every instance.
        let network = SandboxNetwork::new();
        let first = engine(store.clone(), network.clone());
        let mut events = first.subscribe();
        let started = Instant::now();
        for instance in &instances {
            first.start(instance, None).expect("start");
        }
        let mut qr_seen = std::collections::HashSet::new();
        let mut connected_seen = std::collections::HashSet::new();
        while connected_seen.len() < count {
            let e = match tokio::time::timeout(Duration::from_secs(120), events.recv()).await {
                Ok(Ok(e)) => e,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => panic!("lagged by {n} events"),
                other => panic!("waiting for pairing: {other:?}"),
            };
            if e.event_type == EventType::QrUpdated && qr_seen.insert(e.instance_id) {
                network.scan(e.instance_id, None).await.expect("scan");
            }
            if e.event_type == EventType::ConnectionUpdate && e.data["status"] == "connected" {
                connected_seen.insert(e.instance_id);
            }
        }
        let pairing = started.elapsed();
        first.shutdown().await;
        drop(first);

        // Phase 2: a fresh engine resumes them all from their stored sessions (a node restart).
        let before = rss_bytes();
        let second = engine(store.clone(), SandboxNetwork::new());
        let mut events = second.subscribe();
        let started = Instant::now();
        let resumed = second.resume_all().await.expect("resume");
        assert_eq!(resumed, count);
        connected(&mut events, count).await;
        let resume = started.elapsed();
        let after = rss_bytes();
        let per_instance = after.saturating_sub(before) / count as u64;
        let statuses = store.list_resumable_instances().await.expect("list");
        assert!(statuses.iter().all(|i| i.status == InstanceStatus::Connected));

        println!("backend: {}", store.backend());
        println!("instances: {count}");
        println!(
            "first pairing of all: {:.2} s ({:.0} instances/s)",
            pairing.as_secs_f64(),
            count as f64 / pairing.as_secs_f64()
        );
        println!(
            "resume all after restart: {:.2} s ({:.0} instances/s)",
            resume.as_secs_f64(),
            count as f64 / resume.as_secs_f64()
        );
        println!(
            "resident set: {:.1} MiB before resume, {:.1} MiB with all connected",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0
        );
        println!("memory per connected instance: {:.1} KiB", per_instance as f64 / 1024.0);
        println!("projected for 10,000 instances: {:.0} MiB", (per_instance * 10_000) as f64 / 1048576.0);
        second.shutdown().await;
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    });
}
