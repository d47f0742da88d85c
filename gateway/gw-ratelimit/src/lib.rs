//! Per-key rate limiting with the generic cell rate algorithm (GCRA).
//!
//! - [`LocalLimiter`]: in-process, on `governor`, one keyed limiter per distinct quota (a governor keyed limiter
//!   has one quota for all its keys).
//! - [`RedisLimiter`]: cluster-wide, one `EVALSHA` round trip per decision; the script reads the theoretical arrival
//!   time, decides, and writes it back with an expiry, using Redis `TIME` so nodes' clocks do not matter.
//! - [`FallbackLimiter`]: Redis when it answers within a deadline, the local limiter when it does not; it logs once
//!   per outage, counts fallback decisions, and goes back to Redis by itself when Redis answers again. While Redis
//!   fails, one decision at a time asks it and the rest are local at once, so a hung Redis does not make every
//!   request wait out the deadline.
//!
//! - [`pubsub`]: a reconnecting Redis publish/subscribe channel, which the binary uses to tell every node to drop
//!   cached API keys.
//!
//! Architecture invariant: no HTTP here. The edge turns a [`Decision`] into `RateLimit` headers and a 429.

mod local;
pub mod pubsub;
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

/// How long a decision waits for Redis before it is made locally, unless configured otherwise. Redis answers in
/// well under a millisecond, but on a small, busy machine the node's threads (or Redis's) can be off the CPU for
/// tens of milliseconds: measured on 2 shared cores at a load average of 7-8, stalls of 20-100 ms several times a
/// minute, which a 20 ms deadline turned into local decisions on a healthy Redis (`examples/fallback_probe.rs`).
/// A refused or closed connection fails at once whatever this is; a Redis that hangs costs the full wait, and then
/// only to one decision at a time (the others are made locally at once while Redis is failing).
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// Redis first, the local limiter whenever Redis fails or is slow; never an error to the caller.
pub struct FallbackLimiter {
    redis: RedisLimiter,
    local: LocalLimiter,
    timeout: Duration,
    degraded: AtomicBool,
    /// Whether a decision is asking Redis while it is degraded (see [`Probe`]).
    probing: AtomicBool,
    fallback_decisions: AtomicU64,
}

/// The one decision allowed to ask a failing Redis at a time; frees the slot when dropped, also when the decision's
/// future is (a cancelled request), so the limiter can never stop probing.
struct Probe<'a>(&'a AtomicBool);

impl<'a> Probe<'a> {
    fn start(slot: &'a AtomicBool) -> Option<Self> {
        slot.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).ok().map(|_| Probe(slot))
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl std::fmt::Debug for FallbackLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackLimiter").field("timeout", &self.timeout).field("degraded", &self.degraded).finish()
    }
}

impl FallbackLimiter {
    pub fn new(redis: RedisLimiter, local: LocalLimiter, timeout: Duration) -> Self {
        Self {
            redis,
            local,
            timeout,
            degraded: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            fallback_decisions: AtomicU64::new(0),
        }
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

impl FallbackLimiter {
    /// Records that Redis is not answering before any decision was asked for (a node starting during an
    /// outage): logged once, reported as degraded, and cleared by the first decision Redis makes.
    pub fn mark_unreachable(&self, err: &LimiterError) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(%err, "redis unavailable; rate limits fall back to this node's local limiter");
        }
    }

    /// Makes the first decision as fast as the rest: connects and loads the script (a node calls it at start-up,
    /// before it serves). A failure is returned for the caller to report (see [`Self::mark_unreachable`]);
    /// decisions then fall back until Redis answers.
    pub async fn warm_up(&self, timeout: Duration) -> Result<(), LimiterError> {
        self.redis.ping(timeout).await?;
        self.redis.load_script(timeout).await
    }

    fn redis_answered(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("redis answers again; rate limits are cluster-wide once more");
        }
    }

    fn redis_failed(&self, err: &LimiterError) {
        self.mark_unreachable(err);
        self.fallback_decisions.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl RateLimiter for FallbackLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Decision {
        self.check_all(&[(key, quota)]).await.1
    }

    async fn check_all(&self, checks: &[(&str, Quota)]) -> (usize, Decision) {
        // While Redis is failing, one decision at a time asks it (the probe that notices its return) and the others
        // are made locally at once: a Redis that hangs costs one deadline per probe, not one per request, which is
        // what lets the deadline be long enough for a busy machine's stalls.
        let _probe = if self.is_degraded() {
            match Probe::start(&self.probing) {
                Some(probe) => Some(probe),
                None => {
                    self.fallback_decisions.fetch_add(1, Ordering::Relaxed);
                    return self.local.check_all(checks).await;
                }
            }
        } else {
            None
        };
        let outcome = match tokio::time::timeout(self.timeout, self.redis.try_check_all(checks)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(LimiterError::Timeout(self.timeout)),
        };
        match outcome {
            Ok(decision) => {
                self.redis_answered();
                decision
            }
            Err(err) => {
                self.redis_failed(&err);
                self.local.check_all(checks).await
            }
        }
    }

    fn stats(&self) -> LimiterStats {
        LimiterStats {
            backend: "redis+local",
            degraded: self.is_degraded(),
            fallback_decisions: self.fallback_decisions(),
        }
    }

    fn retain_recent(&self) {
        self.local.forget_idle();
    }
}

/// Shared handle.
pub type SharedLimiter = Arc<dyn RateLimiter>;

/// A Redis connection made on first use and remade after a failure, with short timeouts: a decision waits for
/// Redis only as long as the fallback's deadline anyway. `TCP_NODELAY`, which redis-rs leaves off: decisions are
/// small commands multiplexed on one connection, and Nagle's algorithm would hold a command back while an earlier
/// one waits for its reply.
fn lazy_connection(url: &str) -> Result<redis::aio::ConnectionManager, LimiterError> {
    use redis::IntoConnectionInfo as _;
    let info = url.into_connection_info()?;
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    let client = redis::Client::open(info.set_tcp_settings(tcp))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1);
    Ok(redis::aio::ConnectionManager::new_lazy_with_config(client, config)?)
}

async fn ping(connection: &redis::aio::ConnectionManager, timeout: Duration) -> Result<(), LimiterError> {
    let mut connection = connection.clone();
    match tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut connection)).await {
        Ok(reply) => reply.map(|_| ()).map_err(LimiterError::from),
        Err(_) => Err(LimiterError::Timeout(timeout)),
    }
}
