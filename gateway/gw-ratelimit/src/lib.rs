//! Per-key rate limiting with the generic cell rate algorithm (GCRA).
//!
//! - [`LocalLimiter`]: in-process, on `governor`, one keyed limiter per distinct quota (a governor keyed limiter
//!   has one quota for all its keys).
//! - [`RedisLimiter`]: cluster-wide, one `EVALSHA` round trip per decision; the script reads the theoretical arrival
//!   time, decides, and writes it back with an expiry, using Redis `TIME` so nodes' clocks do not matter.
//! - [`FallbackLimiter`]: what the binary uses with Redis. Local-first: a node takes small batches of tokens from
//!   the Redis GCRA (sized to its own demand, refilled in the background before they run out) and spends them
//!   without a round trip, and remembers Redis's refusals until their retry time; so Redis stays the authority on
//!   every key's cluster-wide rate while a busy key costs a round trip per batch, not per request. When Redis does
//!   not answer within a deadline, the local limiter decides; it logs once per outage, counts fallback decisions,
//!   and goes back to Redis by itself when Redis answers again. While Redis fails, one decision at a time asks it
//!   and the rest are local at once, so a hung Redis does not make every request wait out the deadline.
//!
//! Architecture invariant: no HTTP here. The edge turns a [`Decision`] into `RateLimit` headers and a 429.

mod fallback;
mod local;
mod redis_gcra;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use fallback::{DEFAULT_REDIS_TIMEOUT, FallbackLimiter};
pub use local::LocalLimiter;
pub use redis_gcra::RedisLimiter;
pub use tokens::Grant;

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

impl From<gw_redis::RedisFailure> for LimiterError {
    fn from(failure: gw_redis::RedisFailure) -> Self {
        match failure {
            gw_redis::RedisFailure::Redis(err) => LimiterError::Redis(err),
            gw_redis::RedisFailure::Timeout(timeout) => LimiterError::Timeout(timeout),
        }
    }
}

/// What a limiter reports for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterStats {
    /// `local`, `redis` or `redis+local` (Redis with the local fallback).
    pub backend: &'static str,
    /// Whether decisions are currently made locally because Redis failed.
    pub degraded: bool,
    /// Decisions made locally because Redis failed, since start.
    pub fallback_decisions: u64,
}

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request against `key` under `quota` and says whether it may proceed.
    async fn check(&self, key: &str, quota: Quota) -> Decision;

    /// Counts one request against several limits (a key's and its subscription's) and returns the deciding one,
    /// by index into `checks`: a refusing limit, or, when all allow, the one with the least left (the tighter one,
    /// which is what the `RateLimit` headers report). The local limiter checks in order and stops at the first
    /// refusal, so later limits are not charged for a refused request; the Redis limiter decides all keys in one
    /// script, all or nothing.
    async fn check_all(&self, checks: &[(&str, Quota)]) -> (usize, Decision);

    /// [`RateLimiter::check_all`] answered at once by a limiter that needs no I/O (the local one), saving the
    /// boxed future on every request; `None` means: call `check_all`.
    fn check_all_now(&self, _checks: &[(&str, Quota)]) -> Option<(usize, Decision)> {
        None
    }

    fn stats(&self) -> LimiterStats {
        LimiterStats { backend: "local", degraded: false, fallback_decisions: 0 }
    }

    /// Lets in-process state forget keys back at full capacity (run periodically); nothing to do for Redis.
    fn retain_recent(&self) {}
}

/// What [`RateLimiter::check_all`] returns for an empty list.
fn no_limits() -> (usize, Decision) {
    let quota = Quota::per_minute(1);
    (0, Decision { allowed: true, quota, remaining: 0, reset_after: Duration::ZERO, retry_after: None })
}

/// [`RateLimiter::check_all`] over a synchronous `decide`: in order, stopping at the first refusal.
fn tightest(checks: &[(&str, Quota)], mut decide: impl FnMut(&str, Quota) -> Decision) -> (usize, Decision) {
    let mut tightest: Option<(usize, Decision)> = None;
    for (index, (key, quota)) in checks.iter().enumerate() {
        let decision = decide(key, *quota);
        if !decision.allowed {
            return (index, decision);
        }
        if tightest.is_none_or(|(_, best)| decision.remaining < best.remaining) {
            tightest = Some((index, decision));
        }
    }
    tightest.unwrap_or_else(no_limits)
}

/// Shared handle.
pub type SharedLimiter = Arc<dyn RateLimiter>;
