//! Per-key rate limiting with the generic cell rate algorithm (GCRA).
//!
//! - [`LocalLimiter`]: in-process, on `governor`, one keyed limiter per distinct quota (a governor keyed limiter
//!   has one quota for all its keys).
//! - [`RedisLimiter`]: cluster-wide, one `EVALSHA` round trip per decision; the script reads the theoretical arrival
//!   time, decides, and writes it back with an expiry, using Redis `TIME` so nodes' clocks do not matter.
//! - [`FallbackLimiter`]: Redis when it answers within a deadline, the local limiter when it does not; it logs once
//!   per outage, counts fallback decisions, and goes back to Redis by itself when Redis answers again.
//!
//! Architecture invariant: no HTTP here. The edge turns a [`Decision`] into `RateLimit` headers and a 429.

mod local;
mod redis_gcra;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

pub use local::LocalLimiter;
pub use redis_gcra::RedisLimiter;

/// A rate: `per_minute` requests per minute on average, with up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    pub per_minute: u32,
    pub burst: u32,
}

impl Quota {
    pub fn per_minute(per_minute: u32) -> Self {
        Self { per_minute: per_minute.max(1), burst: 1 }
    }

    pub fn with_burst(self, burst: u32) -> Self {
        Self { burst: burst.max(1), ..self }
    }

    /// The time between two requests at the steady rate.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute.max(1)
    }
}

/// The outcome of one check, with what the IETF `RateLimit` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub quota: Quota,
    /// Requests that could be made right now without being refused.
    pub remaining: u32,
    /// Until the limiter is back to full burst capacity.
    pub reset_after: Duration,
    /// For a refused request: when the next one would be allowed.
    pub retry_after: Option<Duration>,
}

/// Why a limiter could not decide (only the Redis limiter can fail; callers fall back).
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply from the rate-limit script: {0}")]
    Reply(String),
}

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request against `key` under `quota` and says whether it may proceed.
    async fn check(&self, key: &str, quota: Quota) -> Decision;
}

/// Redis first, the local limiter whenever Redis fails or is slow; never an error to the caller.
pub struct FallbackLimiter {
    redis: RedisLimiter,
    local: LocalLimiter,
    timeout: Duration,
    degraded: AtomicBool,
    fallback_decisions: AtomicU64,
}

impl std::fmt::Debug for FallbackLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackLimiter").field("timeout", &self.timeout).field("degraded", &self.degraded).finish()
    }
}

impl FallbackLimiter {
    pub fn new(redis: RedisLimiter, local: LocalLimiter, timeout: Duration) -> Self {
        Self { redis, local, timeout, degraded: AtomicBool::new(false), fallback_decisions: AtomicU64::new(0) }
    }

    /// Whether the last decision had to be made locally.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Decisions made locally because Redis failed, since start (for metrics).
    pub fn fallback_decisions(&self) -> u64 {
        self.fallback_decisions.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl RateLimiter for FallbackLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Decision {
        let outcome = match tokio::time::timeout(self.timeout, self.redis.try_check(key, quota)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(LimiterError::Timeout(self.timeout)),
        };
        match outcome {
            Ok(decision) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("redis answers again; rate limits are cluster-wide once more");
                }
                decision
            }
            Err(err) => {
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%err, "redis unavailable; rate limits fall back to this node's local limiter");
                }
                self.fallback_decisions.fetch_add(1, Ordering::Relaxed);
                self.local.check(key, quota).await
            }
        }
    }
}

/// Shared handle.
pub type SharedLimiter = Arc<dyn RateLimiter>;
