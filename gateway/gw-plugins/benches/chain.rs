//! Per-event plugin cost on the request path: one fresh instance per event, its store dropped (and its memory
//! slot reset) within the measured time.
//!
//! `cargo bench -p gw-plugins --bench chain` (release). Prints p50/p99 for:
//! - one call on a fresh instance (`PluginHost::call`: new store, instantiate, call, drop the store), which is
//!   the per-plugin cost;
//! - the whole pipeline (`PluginChain::process`: the cached chain, the calls, the verdicts) with 1 and 5
//!   bindings;
//! - the same filter logic compiled natively, as the floor.
//!
//! Each case runs for two builds of the same filter: `bench_filter` (Rust's standard library, so the component
//! carries the WASI adapter for panic output) and `bench_filter_lean` (`#![no_std]` on the SDK's `lean` runtime,
//! importing only the plugin world).
//!
//! Iterations: `GW_BENCH_ITERATIONS` (default 20000). Host settings to compare: `GW_BENCH_KEEP_RESIDENT` (bytes
//! of each memory slot kept resident), `GW_BENCH_PAGEMAP_SCAN=0|1`, `GW_BENCH_MEMORY_INIT_COW=0|1`.
#![allow(clippy::unwrap_used, missing_debug_implementations)]

#[path = "../../../plugins/bench-filter/src/logic.rs"]
mod logic;

extern crate alloc;

use std::{
    collections::HashMap,
    hint::black_box,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use gw_core::{
    BindingDirection, BindingFailure, BoundPlugin, CatalogError, Direction, FailurePolicy, InstanceId, MessageEvent,
    MessageId, MessageKind, MessagePipeline, Origin, PluginBindingId, PluginCatalog, PluginId, PluginLimits,
    PluginLogRecord, PluginVersionId, SubscriptionId, Timestamp,
};
use gw_plugins::{CallInput, HostSettings, KvBackend, PluginHost, guests, sample_event, sha256_hex};

const TEXT: &str = "Hello, see http://example.com for the details of your order";

#[derive(Debug, Default)]
struct Catalog {
    chains: Mutex<HashMap<InstanceId, Vec<BoundPlugin>>>,
    components: Mutex<HashMap<String, Vec<u8>>>,
}

#[async_trait::async_trait]
impl PluginCatalog for Catalog {
    async fn chain(&self, instance: InstanceId) -> Result<Vec<BoundPlugin>, CatalogError> {
        Ok(self.chains.lock().unwrap().get(&instance).cloned().unwrap_or_default())
    }
    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, CatalogError> {
        Ok(self.components.lock().unwrap().get(sha256).cloned())
    }
    async fn record_failure(&self, _: PluginBindingId, f: BindingFailure) -> Result<(), CatalogError> {
        panic!("the benchmark plugin failed: {f:?}");
    }
    async fn append_logs(&self, _: Vec<PluginLogRecord>) -> Result<(), CatalogError> {
        Ok(())
    }
    async fn kv_get(&self, _: PluginId, _: InstanceId, _: &str) -> Result<Option<Vec<u8>>, CatalogError> {
        Ok(None)
    }
    async fn kv_set(&self, _: PluginId, _: InstanceId, _: &str, _: Vec<u8>) -> Result<(), gw_core::KvSetError> {
        Ok(())
    }
    async fn kv_delete(&self, _: PluginId, _: InstanceId, _: &str) -> Result<(), CatalogError> {
        Ok(())
    }
}

fn limits() -> PluginLimits {
    PluginLimits { fuel: 10_000_000, memory_bytes: 16 << 20, timeout_ms: 50, max_module_bytes: 4 << 20 }
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99), samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64 * 1e6)
}

fn report(name: &str, plugins: u32, samples: Vec<Duration>) {
    let (p50, p99, mean) = percentiles(samples);
    let per = f64::from(plugins.max(1));
    println!("| {name} | {p50:.2} | {p99:.2} | {mean:.2} | {:.2} | {:.2} |", p50 / per, p99 / per);
}

fn main() {
    let iterations: usize = std::env::var("GW_BENCH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    println!("iterations: {iterations}; times in microseconds");
    println!("| case | p50 | p99 | mean | p50 per plugin | p99 per plugin |");
    println!("| --- | --- | --- | --- | --- | --- |");

    // Native floor: the same logic, compiled for the host.
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        black_box(logic::decide(black_box(TEXT)));
        samples.push(started.elapsed());
    }
    report("native Rust, same logic (floor)", 1, samples);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _guard = runtime.enter();
    let catalog = Arc::new(Catalog::default());
    let mut settings = HostSettings::default();
    if let Some(bytes) = std::env::var("GW_BENCH_KEEP_RESIDENT").ok().and_then(|v| v.parse().ok()) {
        settings.keep_resident_bytes = bytes;
    }
    let flag = |name: &str| std::env::var(name).ok().map(|v| v != "0" && v != "false");
    if let Some(cow) = flag("GW_BENCH_MEMORY_INIT_COW") {
        settings.memory_init_cow = cow;
    }
    if let Some(scan) = flag("GW_BENCH_PAGEMAP_SCAN") {
        settings.pagemap_scan = scan;
    }
    println!(
        "<!-- keep resident: {} bytes, pagemap_scan: {}, memory_init_cow: {} -->",
        settings.keep_resident_bytes, settings.pagemap_scan, settings.memory_init_cow
    );
    let host = PluginHost::new(settings, catalog.clone()).unwrap();

    for (guest, path) in [("std", guests::BENCH_FILTER), ("no_std", guests::BENCH_FILTER_LEAN)] {
        let bytes = std::fs::read(path).unwrap();
        let sha = sha256_hex(&bytes);
        catalog.components.lock().unwrap().insert(sha.clone(), bytes.clone());

        // One call, fresh instance.
        let compiled = host.load(&bytes).unwrap();
        let mut event = sample_event("{}");
        event.text = Some(TEXT.into());
        let input = CallInput::new(event, limits(), KvBackend::memory());
        let samples = runtime.block_on(async {
            let output = host.call(&compiled, &input).await;
            assert!(output.result.is_ok(), "{:?}", output.result);
            println!("<!-- {guest}: {} bytes, fuel per call: {} -->", bytes.len(), output.fuel_used);
            for _ in 0..1000 {
                black_box(host.call(&compiled, &input).await);
            }
            let mut samples = Vec::with_capacity(iterations);
            for _ in 0..iterations {
                let started = Instant::now();
                black_box(host.call(&compiled, &input).await);
                samples.push(started.elapsed());
            }
            samples
        });
        report(&format!("{guest}: one call, fresh instance (call)"), 1, samples);

        // The pipeline, 1 and 5 bindings.
        for plugins in [1, 5] {
            let instance = InstanceId::new();
            let chain: Vec<BoundPlugin> = (0..plugins)
                .map(|position| BoundPlugin {
                    binding_id: PluginBindingId::new(),
                    plugin_id: PluginId::new(),
                    plugin_name: "bench_filter".into(),
                    version_id: PluginVersionId::new(),
                    version: 1,
                    sha256: sha.clone(),
                    position,
                    direction: BindingDirection::Both,
                    config: serde_json::json!({}),
                    failure_policy: FailurePolicy::FailClosed,
                    subscription_id: SubscriptionId::new(),
                    limits: limits(),
                })
                .collect();
            catalog.chains.lock().unwrap().insert(instance, chain);
            let pipeline = host.pipeline();
            let event = MessageEvent {
                direction: Direction::Outbound,
                subscription_id: SubscriptionId::new(),
                instance_id: instance,
                message_id: MessageId::new(),
                chat_jid: "15550001111@s.whatsapp.net".into(),
                sender: String::new(),
                kind: MessageKind::Text,
                text: Some(TEXT.into()),
                media: None,
                timestamp: Timestamp::now(),
                origin: Origin::Api,
            };
            let samples = runtime.block_on(async {
                for _ in 0..1000 {
                    black_box(pipeline.process(event.clone()).await);
                }
                let mut samples = Vec::with_capacity(iterations);
                for _ in 0..iterations {
                    let event = event.clone();
                    let started = Instant::now();
                    let outcome = pipeline.process(event).await;
                    samples.push(started.elapsed());
                    black_box(outcome);
                }
                samples
            });
            report(&format!("{guest}: pipeline, {plugins} plugin(s) (process)"), plugins as u32, samples);
        }
    }
}
