//! The keyword responder in Rust, JavaScript (componentize-js) and Python (componentize-py), side by side in one
//! run: what it costs to make each component ready (compile, or load from the disk cache) and per event (one
//! fresh instance per call, store dropped within the measured time, as on the request path).
//!
//! `cargo bench --workspace --bench polyglot` (release). The JavaScript and Python components are built from
//! source by gw-test-support's `polyglot` module (it needs `npm ci` in plugin-sdk/js and componentize-py); a
//! language whose tools are missing is left out with a `SKIPPED` line. Iterations: `GW_BENCH_ITERATIONS`
//! (default 2000).
#![allow(clippy::unwrap_used, missing_debug_implementations)]

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use gw_core::PluginLimits;
use gw_plugins::{CallInput, HostSettings, KvBackend, PluginHost, guests, sample_event};
use gw_test_support::polyglot::{self, Language};

const TEXT: &str = "Hello, what is the price of the blue lamp?";
const CONFIG: &str = r#"{"rules": [{"keywords": ["hours"], "reply": "We open at nine", "match": "contains"},
    {"keywords": ["price", "cost"], "reply": "Our prices: example.com/prices"}]}"#;

fn limits() -> PluginLimits {
    PluginLimits { fuel: 500_000_000, memory_bytes: 256 << 20, timeout_ms: 10_000, max_module_bytes: u64::MAX }
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99), samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64 * 1e6)
}

fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1e3)
}

fn main() {
    let iterations: usize = std::env::var("GW_BENCH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let mut components = vec![("Rust", std::fs::read(guests::KEYWORD_RESPONDER).unwrap())];
    for (label, language) in [("JavaScript", Language::JavaScript), ("Python", Language::Python)] {
        match polyglot::guest(language, "keyword-responder") {
            Some(path) => components.push((label, std::fs::read(path).unwrap())),
            None => println!("SKIPPED: {label} (its tools are not installed)"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let settings = || HostSettings { cache_dir: Some(cache.path().to_path_buf()), ..HostSettings::default() };

    println!("iterations: {iterations}; compile and load in milliseconds, per event in microseconds");
    println!(
        "| guest | component bytes | compile (ms) | load from disk cache (ms) | .cwasm bytes | fuel per event | \
         p50 per event | p99 per event | mean |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (label, bytes) in components {
        // A host per guest and phase: the first compiles (and writes the .cwasm), the second finds it on disk.
        let started = Instant::now();
        let compiled = PluginHost::standalone(settings()).unwrap().load(&bytes).unwrap();
        let compile = started.elapsed();
        drop(compiled);
        let host = PluginHost::standalone(settings()).unwrap();
        let started = Instant::now();
        let compiled = host.load(&bytes).unwrap();
        let load = started.elapsed();
        assert_eq!(host.cache_counts().loaded_from_disk, 1, "{label}: loaded from the disk cache");
        let cwasm: u64 = std::fs::read_dir(cache.path())
            .unwrap()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(&compiled.sha256))
            .map(|entry| entry.metadata().unwrap().len())
            .sum();

        let mut event = sample_event(CONFIG);
        event.text = Some(TEXT.into());
        let input = CallInput::new(event, limits(), KvBackend::memory());
        let (fuel, samples) = runtime.block_on(async {
            let output = host.call(&compiled, &input).await;
            let verdict = output.result.unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(verdict.replies.len(), 1, "{label} answers");
            for _ in 0..iterations.div_ceil(10) {
                black_box(host.call(&compiled, &input).await);
            }
            let mut samples = Vec::with_capacity(iterations);
            for _ in 0..iterations {
                let started = Instant::now();
                black_box(host.call(&compiled, &input).await);
                samples.push(started.elapsed());
            }
            (output.fuel_used, samples)
        });
        let (p50, p99, mean) = percentiles(samples);
        println!(
            "| {label} | {} | {} | {} | {cwasm} | {fuel} | {p50:.1} | {p99:.1} | {mean:.1} |",
            bytes.len(),
            ms(compile),
            ms(load)
        );
    }
}
