//! Why does the Redis deadline fire on a healthy Redis? Runs the real [`FallbackLimiter`] wired as the binary wires
//! it (a lazy connection, a start-up ping, then decisions) under light load against a real Redis, and reports:
//! how many decisions fell back, the latency of each Redis round trip (measured beside the deadline), which
//! decisions were slow (the first ones? spread over the run?), and how late a 1 ms timer fires meanwhile (a slow
//! decision with a late timer is scheduling, not Redis).
//!
//! ```text
//! cargo run -p gw-ratelimit --example fallback_probe            # 40 s at 25 decisions/s, the default deadline
//! PROBE_SECS=40 PROBE_RATE=25 PROBE_TIMEOUT_MS=20 PROBE_WARM=1 PROBE_URL=redis://127.0.0.1:6379 cargo run ...
//! ```
//!
//! `PROBE_WARM=1` warms the limiter as the binary now does at start-up ([`FallbackLimiter::warm_up`]);
//! `PROBE_WARM=0` reproduces the old start-up (a ping only). `PROBE_FLUSH_SCRIPTS=1` first empties Redis's script
//! cache (`SCRIPT FLUSH`, as after a Redis restart) so the NOSCRIPT path is exercised. Only a loopback Redis is
//! accepted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gw_ratelimit::{FallbackLimiter, LocalLimiter, Quota, RateLimiter, RedisLimiter};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[allow(clippy::unwrap_used)]
fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(probe());
}

#[allow(clippy::unwrap_used)]
async fn probe() {
    let url: String = env("PROBE_URL", "redis://127.0.0.1:6379".to_owned());
    assert!(url.starts_with("redis://127.") || url.starts_with("redis://localhost"), "loopback Redis only: {url}");
    let secs: u64 = env("PROBE_SECS", 40);
    let rate: u64 = env("PROBE_RATE", 25);
    let timeout =
        Duration::from_millis(env("PROBE_TIMEOUT_MS", gw_ratelimit::DEFAULT_REDIS_TIMEOUT.as_millis() as u64));
    let warm: u8 = env("PROBE_WARM", 1);
    let diagnose = env::<u8>("PROBE_DIAGNOSE", 0) == 1;
    let prefix = format!("gw-probe:{}:", std::process::id());

    if env::<u8>("PROBE_FLUSH_SCRIPTS", 0) == 1 {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut connection).await.unwrap();
        println!("script cache flushed");
    }

    // As the binary: a lazy connection, a start-up ping (which connects), then the fallback limiter.
    let redis = RedisLimiter::connect_lazy(&url, prefix.clone()).unwrap();
    let raw = redis.clone();
    let started = Instant::now();
    redis.ping(Duration::from_secs(2)).await.unwrap();
    println!("start-up ping: {:?}", started.elapsed());
    let limiter = Arc::new(FallbackLimiter::new(redis, LocalLimiter::new(), timeout));
    if warm == 1 {
        let started = Instant::now();
        limiter.warm_up(Duration::from_secs(2)).await.unwrap();
        println!("warm-up: {:?}", started.elapsed());
    }

    // A 1 ms timer, to see whether the runtime itself is late while a decision is slow.
    let timer_late_max_us = Arc::new(AtomicU64::new(0));
    let timer_late_over_10ms = Arc::new(AtomicU64::new(0));
    let ticker = {
        let (max, over) = (timer_late_max_us.clone(), timer_late_over_10ms.clone());
        tokio::spawn(async move {
            loop {
                let asked = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                let late = asked.elapsed().saturating_sub(Duration::from_millis(1));
                max.fetch_max(late.as_micros() as u64, Ordering::Relaxed);
                if late > Duration::from_millis(10) {
                    over.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let quota = Quota::per_minute(6000).with_burst(100);
    let total = secs * rate;
    let mut interval = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let run_started = Instant::now();
    for n in 0..total {
        interval.tick().await;
        let (limiter, raw) = (limiter.clone(), raw.clone());
        tasks.spawn(async move {
            let key = format!("key-{}", n % 20);
            let checks = [(key.as_str(), quota), ("sub", quota)];
            let asked = Instant::now();
            if diagnose {
                // The same round trip as the limiter's, on its own task so that it runs to the end after the
                // deadline: how long did the slow ones really take?
                let owned: Vec<(String, Quota)> = checks.iter().map(|(k, q)| ((*k).to_owned(), *q)).collect();
                let mut call = tokio::spawn(async move {
                    let borrowed: Vec<(&str, Quota)> = owned.iter().map(|(k, q)| (k.as_str(), *q)).collect();
                    let asked = Instant::now();
                    let ok = raw.try_check_all(&borrowed).await.is_ok();
                    (asked.elapsed(), ok)
                });
                let (fell_back, outcome) = match tokio::time::timeout(timeout, &mut call).await {
                    Ok(outcome) => (false, outcome),
                    Err(_) => (true, call.await),
                };
                let decided = asked.elapsed().min(timeout);
                let (inner, ok) = outcome.unwrap_or((Duration::MAX, false));
                return (n, run_started.elapsed(), decided, fell_back, asked.elapsed(), inner, ok);
            }
            let before = limiter.fallback_decisions();
            limiter.check_all(&checks).await;
            let decided = asked.elapsed();
            (n, run_started.elapsed(), decided, limiter.fallback_decisions() > before, decided, decided, true)
        });
    }
    let mut results = Vec::new();
    while let Some(result) = tasks.join_next().await {
        results.push(result.unwrap());
    }
    ticker.abort();
    results.sort_by_key(|r| r.0);

    // Real mode counts per decision from the shared counter, so with concurrent decisions a fallback may be
    // attributed to a neighbour; the total is exact. Diagnose mode attributes exactly.
    for (n, at, decided, fell_back, total, inner, _) in results.iter().filter(|r| r.3 || r.4 > timeout / 2).take(40) {
        println!(
            "  decision #{n} at {at:.2?}: decided in {decided:?} (fell back: {fell_back}); round trip {total:?}, \
             of which the call itself {inner:?}"
        );
    }
    let fallbacks = if diagnose { results.iter().filter(|r| r.3).count() as u64 } else { limiter.fallback_decisions() };
    let mut latencies: Vec<Duration> = results.iter().map(|r| r.4).collect();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    println!(
        "{} decisions over {secs} s at {rate}/s, deadline {timeout:?}, warm-up {}, {}: {fallbacks} fell back",
        results.len(),
        if warm == 1 { "yes" } else { "no" },
        if diagnose { "diagnosing (round trips run past the deadline)" } else { "real FallbackLimiter" },
    );
    println!(
        "round trip: p50 {:?} p99 {:?} p99.9 {:?} max {:?}; failures {}",
        pct(0.5),
        pct(0.99),
        pct(0.999),
        latencies.last().copied().unwrap_or_default(),
        results.iter().filter(|r| !r.6).count()
    );
    println!(
        "1 ms timer: latest wake-up {:?} late; {} wake-ups over 10 ms late",
        Duration::from_micros(timer_late_max_us.load(Ordering::Relaxed)),
        timer_late_over_10ms.load(Ordering::Relaxed)
    );
}
