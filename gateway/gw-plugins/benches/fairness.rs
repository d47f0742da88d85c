//! Fairness under attack: the victim tenant's per-event plugin latency with and without an attacking tenant on
//! the same host, for each attack of issue #15.
//!
//! `cargo bench --workspace --bench fairness` (release). The victim (its own subscription) runs the keyword
//! responder, one event at a time; the attacker (another subscription) sends `GW_BENCH_SENDERS` (default 4)
//! concurrent streams of events whose text triggers `hostile_abuse`. Each attack runs with
//! `chains_per_subscription` 1 and 2 and with that limit lifted (1,000), so the table shows what admission buys; every
//! event of a chain shares one budget either way. Measured is `PluginChain::process` (the plugin part of inbound
//! processing), not the store or the send path. Times in milliseconds; the ratio is the victim's p99 against
//! a baseline (no attacker) measured just before each attack.
//!
//! `GW_BENCH_SECONDS` (default 3) per case.
#![allow(clippy::unwrap_used, missing_debug_implementations)]

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use gw_core::{
    BindingDirection, BindingFailure, BoundPlugin, CatalogError, Direction, FailurePolicy, InstanceId, MessageEvent,
    MessageId, MessageKind, MessagePipeline, Origin, PluginBindingId, PluginCatalog, PluginId, PluginLimits,
    PluginLogRecord, PluginVersionId, SubscriptionId, Timestamp,
};
use gw_plugins::{HostSettings, PluginChain, PluginHost, guests, sha256_hex};

/// A catalog in memory whose key-value reads take as long as a store round trip.
#[derive(Debug, Default)]
struct Catalog {
    chains: Mutex<HashMap<InstanceId, Vec<BoundPlugin>>>,
    components: Mutex<HashMap<String, Vec<u8>>>,
}

/// What one key-value read costs (a store round trip on a busy node).
const KV_LATENCY: Duration = Duration::from_millis(1);

#[async_trait::async_trait]
impl PluginCatalog for Catalog {
    async fn chain(&self, instance: InstanceId) -> Result<Vec<BoundPlugin>, CatalogError> {
        Ok(self.chains.lock().unwrap().get(&instance).cloned().unwrap_or_default())
    }
    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, CatalogError> {
        Ok(self.components.lock().unwrap().get(sha256).cloned())
    }
    async fn record_failure(&self, _: PluginBindingId, _: BindingFailure) -> Result<(), CatalogError> {
        Ok(())
    }
    async fn append_logs(&self, _: Vec<PluginLogRecord>) -> Result<(), CatalogError> {
        Ok(())
    }
    async fn kv_get(&self, _: PluginId, _: InstanceId, _: &str) -> Result<Option<Vec<u8>>, CatalogError> {
        tokio::time::sleep(KV_LATENCY).await;
        Ok(None)
    }
    async fn kv_set(&self, _: PluginId, _: InstanceId, _: &str, _: Vec<u8>) -> Result<(), gw_core::KvSetError> {
        Ok(())
    }
    async fn kv_delete(&self, _: PluginId, _: InstanceId, _: &str) -> Result<(), CatalogError> {
        Ok(())
    }
}

/// The limits: 50 ms, a generous tier's fuel and memory (large enough for a 120 MiB string).
fn limits() -> PluginLimits {
    PluginLimits { fuel: 10_000_000, memory_bytes: 200 << 20, timeout_ms: 50, max_module_bytes: 4 << 20 }
}

fn bound(
    catalog: &Catalog,
    guest: &str,
    subscription: SubscriptionId,
    position: i32,
    config: serde_json::Value,
) -> BoundPlugin {
    let bytes = std::fs::read(guests::path(guest).unwrap()).unwrap();
    let sha256 = sha256_hex(&bytes);
    catalog.components.lock().unwrap().insert(sha256.clone(), bytes);
    BoundPlugin {
        binding_id: PluginBindingId::new(),
        plugin_id: PluginId::new(),
        plugin_name: guest.into(),
        version_id: PluginVersionId::new(),
        version: 1,
        sha256,
        position,
        direction: BindingDirection::Inbound,
        config,
        failure_policy: FailurePolicy::FailOpen,
        subscription_id: subscription,
        limits: limits(),
    }
}

fn event(subscription: SubscriptionId, instance: InstanceId, text: &str) -> MessageEvent {
    MessageEvent {
        direction: Direction::Inbound,
        subscription_id: subscription,
        instance_id: instance,
        message_id: MessageId::new(),
        chat_jid: "15550003333@s.whatsapp.net".into(),
        sender: "15550003333@s.whatsapp.net".into(),
        kind: MessageKind::Text,
        text: Some(text.into()),
        media: None,
        timestamp: Timestamp::now(),
        origin: Origin::WhatsApp,
    }
}

struct Attack {
    name: &'static str,
    text: &'static str,
    copies: i32,
}

const ATTACKS: &[Attack] = &[
    Attack { name: "clock::now spin", text: "spin", copies: 1 },
    Attack { name: "allocate and touch memory", text: "touch", copies: 1 },
    Attack { name: "key-value spin (1 ms reads)", text: "kvspin", copies: 1 },
    Attack { name: "clock spin, bound 3 times", text: "spin", copies: 3 },
    Attack { name: "clock spin, bound 10 times", text: "spin", copies: 10 },
    Attack { name: "120 MiB log line", text: "log 125829120", copies: 1 },
    Attack { name: "120 MiB modify", text: "modify 125829120", copies: 1 },
    Attack { name: "1,000 replies of 256 chars", text: "replies 1000 256", copies: 1 },
];

struct Figures {
    p50: f64,
    p99: f64,
    attacker_events: u64,
    /// Victim events whose responder did not answer (it failed).
    victim_failed: u64,
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e3
}

async fn run_case(
    chain: &PluginChain,
    victim: (SubscriptionId, InstanceId),
    attacker: Option<(SubscriptionId, InstanceId, &'static str)>,
    seconds: u64,
    senders: usize,
) -> Figures {
    let stop = Arc::new(AtomicBool::new(false));
    let attacked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    if let Some((subscription, instance, text)) = attacker {
        for _ in 0..senders {
            let (chain, stop, attacked) = (chain.clone(), stop.clone(), attacked.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Relaxed) {
                    chain.process(event(subscription, instance, text)).await;
                    attacked.fetch_add(1, Relaxed);
                }
            }));
        }
    }
    let mut samples = Vec::new();
    let mut missed = 0;
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        let started = Instant::now();
        let outcome = chain.process(event(victim.0, victim.1, "what is the price?")).await;
        samples.push(started.elapsed());
        // Without a reply the victim's plugin failed (its deadline passed on an overloaded machine): counted.
        missed += u64::from(outcome.replies.is_empty());
        // A paced sender, as a person or a webhook would be: 2 ms between messages.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    samples.sort();
    Figures {
        p50: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
        attacker_events: attacked.load(Relaxed),
        victim_failed: missed,
    }
}

fn main() {
    let seconds: u64 = std::env::var("GW_BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let senders: usize = std::env::var("GW_BENCH_SENDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("{seconds} s per case, {senders} attacking senders, 2 worker threads; victim times in ms");
    println!(
        "| attack | chains per subscription | baseline p50 | baseline p99 | victim p50 | victim p99 | p99 / baseline p99 | victim failures | attacker events |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    runtime.block_on(async {
        for per_subscription in [1, 2, 1_000] {
            let catalog = Arc::new(Catalog::default());
            // The victim writes to one chat far faster than a person: the per-chat reply guard is not measured here.
            let reply_guard = gw_plugins::ReplyGuardSettings {
                replies_per_chat_per_minute: u32::MAX,
                reply_burst_per_chat: u32::MAX,
                ping_pong_exchanges: 0,
                ..Default::default()
            };
            let settings =
                HostSettings { chains_per_subscription: per_subscription, reply_guard, ..HostSettings::default() };
            let chain = PluginHost::new(settings, catalog.clone()).unwrap().pipeline();
            let victim = (SubscriptionId::new(), InstanceId::new());
            let rules = serde_json::json!({"rules": [{"keywords": ["price"], "reply": "See our price list."}]});
            catalog
                .chains
                .lock()
                .unwrap()
                .insert(victim.1, vec![bound(&catalog, "keyword_responder", victim.0, 1, rules)]);
            // Warm up: compile and cache both chains.
            for _ in 0..50 {
                chain.process(event(victim.0, victim.1, "price")).await;
            }
            for attack in ATTACKS {
                let attacker = (SubscriptionId::new(), InstanceId::new());
                let bindings = (1..=attack.copies)
                    .map(|p| bound(&catalog, "hostile_abuse", attacker.0, p, serde_json::json!({})))
                    .collect();
                catalog.chains.lock().unwrap().insert(attacker.1, bindings);
                chain.process(event(attacker.0, attacker.1, "warm up")).await;
                // Each attack against a baseline measured just before it: the machine's load drifts.
                let baseline = run_case(&chain, victim, None, seconds, senders).await;
                let figures =
                    run_case(&chain, victim, Some((attacker.0, attacker.1, attack.text)), seconds, senders).await;
                println!(
                    "| {} | {per_subscription} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
                    attack.name,
                    baseline.p50,
                    baseline.p99,
                    figures.p50,
                    figures.p99,
                    figures.p99 / baseline.p99,
                    figures.victim_failed,
                    figures.attacker_events
                );
            }
        }
    });
}
