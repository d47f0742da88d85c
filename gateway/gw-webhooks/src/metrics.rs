//! Delivery counters, kept in memory and rendered as Prometheus text by whoever serves metrics.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0];

#[derive(Debug, Default)]
pub struct Metrics {
    attempts: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    dead: AtomicU64,
    disabled: AtomicU64,
    latency_micros_sum: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    queue_depth: AtomicI64,
    recovered: AtomicU64,
    leases_lost: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub attempts: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub dead: u64,
    pub disabled: u64,
    pub queue_depth: i64,
    /// Deliveries this dispatcher took over because their lease had run out (their dispatcher died or stalled).
    pub recovered: u64,
    /// Deliveries this dispatcher held whose lease ran out and another dispatcher took over before a renewal.
    pub leases_lost: u64,
}

impl Metrics {
    pub(crate) fn attempt(&self, latency: Duration, success: bool) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if success { &self.succeeded } else { &self.failed }.fetch_add(1, Ordering::Relaxed);
        self.latency_micros_sum.fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
        let secs = latency.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn dead(&self) {
        self.dead.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn disabled(&self) {
        self.disabled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn recovered(&self, count: usize) {
        self.recovered.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub(crate) fn leases_lost(&self, count: usize) {
        self.leases_lost.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_queue_depth(&self, depth: i64) {
        self.queue_depth.store(depth, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            attempts: self.attempts.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
            disabled: self.disabled.load(Ordering::Relaxed),
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            recovered: self.recovered.load(Ordering::Relaxed),
            leases_lost: self.leases_lost.load(Ordering::Relaxed),
        }
    }

    /// Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        let _ = writeln!(out, "# TYPE gateway_webhook_attempts_total counter");
        let _ = writeln!(out, "gateway_webhook_attempts_total{{outcome=\"success\"}} {}", s.succeeded);
        let _ = writeln!(out, "gateway_webhook_attempts_total{{outcome=\"failure\"}} {}", s.failed);
        let _ = writeln!(out, "# TYPE gateway_webhook_dead_letters_total counter");
        let _ = writeln!(out, "gateway_webhook_dead_letters_total {}", s.dead);
        let _ = writeln!(out, "# TYPE gateway_webhook_endpoints_disabled_total counter");
        let _ = writeln!(out, "gateway_webhook_endpoints_disabled_total {}", s.disabled);
        let _ = writeln!(out, "# TYPE gateway_webhook_deliveries_recovered_total counter");
        let _ = writeln!(out, "gateway_webhook_deliveries_recovered_total {}", s.recovered);
        let _ = writeln!(out, "# TYPE gateway_webhook_leases_lost_total counter");
        let _ = writeln!(out, "gateway_webhook_leases_lost_total {}", s.leases_lost);
        let _ = writeln!(out, "# TYPE gateway_webhook_queue_depth gauge");
        let _ = writeln!(out, "gateway_webhook_queue_depth {}", s.queue_depth);
        let _ = writeln!(out, "# TYPE gateway_webhook_latency_seconds histogram");
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "gateway_webhook_latency_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "gateway_webhook_latency_seconds_bucket{{le=\"+Inf\"}} {}", s.attempts);
        let sum = self.latency_micros_sum.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "gateway_webhook_latency_seconds_sum {sum}");
        let _ = writeln!(out, "gateway_webhook_latency_seconds_count {}", s.attempts);
        out
    }
}
