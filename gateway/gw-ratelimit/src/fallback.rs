//! The limiter the binary uses with Redis: local-first batches of the Redis GCRA, and the local limiter when Redis
//! fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::tokens::{Local, TokenCache};
use crate::{Decision, LimiterError, LimiterStats, LocalLimiter, Quota, RateLimiter, RedisLimiter};

/// How long a decision waits for Redis before it is made locally, unless configured otherwise. Redis answers in
/// well under a millisecond, but on a small, busy machine the node's threads (or Redis's) can be off the CPU for
/// tens of milliseconds: measured on 2 shared cores at a load average of 7-8, stalls of 20-100 ms several times a
/// minute, which a 20 ms deadline turned into local decisions on a healthy Redis (`examples/fallback_probe.rs`).
/// A refused or closed connection fails at once whatever this is; a Redis that hangs costs the full wait, and then
/// only to one decision at a time (the others are made locally at once while Redis is failing).
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// How often a decision re-asks Redis when other requests spent the tokens it was just granted, before it asks
/// for an exact per-request decision instead.
const TAKE_ATTEMPTS: usize = 4;

/// Redis first (through held batches of tokens), the local limiter whenever Redis fails or is slow; never an error
/// to the caller.
pub struct FallbackLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    redis: RedisLimiter,
    local: LocalLimiter,
    /// `None`: one Redis round trip per decision (the exact mode, [`FallbackLimiter::exact`]).
    tokens: Option<TokenCache>,
    timeout: Duration,
    degraded: AtomicBool,
    /// Whether a decision is asking Redis while it is degraded (see [`Probe`]).
    probing: AtomicBool,
    fallback_decisions: AtomicU64,
    round_trips: AtomicU64,
}

/// Keys claimed for one ask of Redis: released when dropped unless Redis's answers were recorded.
struct Claims<'a> {
    tokens: &'a TokenCache,
    takes: &'a [(&'a str, Quota, u32)],
    answered: bool,
}

impl Claims<'_> {
    fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        if !self.answered {
            for (key, quota, _) in self.takes {
                self.tokens.refill_failed(key, *quota, Instant::now());
            }
        }
    }
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
        f.debug_struct("FallbackLimiter")
            .field("timeout", &self.inner.timeout)
            .field("local_first", &self.inner.tokens.is_some())
            .field("degraded", &self.inner.degraded)
            .finish()
    }
}

impl FallbackLimiter {
    /// Local-first: decisions spend batches of tokens taken from Redis (see the crate's documentation).
    pub fn new(redis: RedisLimiter, local: LocalLimiter, timeout: Duration) -> Self {
        Self::build(redis, local, timeout, Some(TokenCache::default()))
    }

    /// One Redis round trip per decision, as before local-first batches (for comparison in tests and benchmarks).
    pub fn exact(redis: RedisLimiter, local: LocalLimiter, timeout: Duration) -> Self {
        Self::build(redis, local, timeout, None)
    }

    fn build(redis: RedisLimiter, local: LocalLimiter, timeout: Duration, tokens: Option<TokenCache>) -> Self {
        Self {
            inner: Arc::new(Inner {
                redis,
                local,
                tokens,
                timeout,
                degraded: AtomicBool::new(false),
                probing: AtomicBool::new(false),
                fallback_decisions: AtomicU64::new(0),
                round_trips: AtomicU64::new(0),
            }),
        }
    }

    /// Whether the last decision had to be made locally.
    pub fn is_degraded(&self) -> bool {
        self.inner.degraded.load(Ordering::Relaxed)
    }

    /// Decisions made locally because Redis failed, since start (for metrics).
    pub fn fallback_decisions(&self) -> u64 {
        self.inner.fallback_decisions.load(Ordering::Relaxed)
    }

    /// Scripts run in Redis for decisions and batches, since start: what local-first saves.
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// Records that Redis is not answering before any decision was asked for (a node starting during an
    /// outage): logged once, reported as degraded, and cleared by the first decision Redis makes.
    pub fn mark_unreachable(&self, err: &LimiterError) {
        self.inner.mark_unreachable(err);
    }

    /// Makes the first decision as fast as the rest: connects and loads the scripts (a node calls it at start-up,
    /// before it serves). A failure is returned for the caller to report (see [`Self::mark_unreachable`]);
    /// decisions then fall back until Redis answers.
    pub async fn warm_up(&self, timeout: Duration) -> Result<(), LimiterError> {
        self.inner.redis.ping(timeout).await?;
        self.inner.redis.load_script(timeout).await
    }
}

impl Inner {
    fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    fn mark_unreachable(&self, err: &LimiterError) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(%err, "redis unavailable; rate limits fall back to this node's local limiter");
        }
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

    async fn exact(&self, checks: &[(&str, Quota)]) -> Result<(usize, Decision), LimiterError> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.timeout, self.redis.try_check_all(checks)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(LimiterError::Timeout(self.timeout)),
        }
    }

    /// Asks Redis for a batch of each key in `mask` (claimed by [`TokenCache::decide`]) and records the answers, or
    /// releases the claims: also when this future is dropped half-way (a cancelled request), so a key is never left
    /// claimed with nobody asking.
    async fn take(&self, tokens: &TokenCache, checks: &[(&str, Quota)], mask: u64) -> Result<(), LimiterError> {
        let now = Instant::now();
        let takes: Vec<(&str, Quota, u32)> = checks
            .iter()
            .enumerate()
            .filter(|(index, _)| mask & (1 << index) != 0)
            .map(|(_, (key, quota))| (*key, *quota, tokens.want(key, *quota, now)))
            .collect();
        let claims = Claims { tokens, takes: &takes, answered: false };
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let grants = match tokio::time::timeout(self.timeout, self.redis.try_take(&takes)).await {
            Ok(outcome) => outcome?,
            Err(_) => return Err(LimiterError::Timeout(self.timeout)),
        };
        let now = Instant::now();
        for ((key, quota, _), grant) in takes.iter().zip(grants) {
            tokens.store(key, *quota, grant, now);
        }
        claims.answered();
        Ok(())
    }

    /// Tops up the keys in `mask` in the background, before their batches run out. A failure marks Redis as
    /// failing, so decisions take the fallback's path (and its probe notices Redis's return).
    fn spawn_refill(self: &Arc<Self>, checks: &[(&str, Quota)], mask: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to refill on: the next request that finds no token asks Redis itself.
            if let Some(tokens) = &self.tokens {
                for (index, (key, quota)) in checks.iter().enumerate() {
                    if mask & (1 << index) != 0 {
                        tokens.refill_failed(key, *quota, Instant::now());
                    }
                }
            }
            return;
        };
        let keys: Vec<(String, Quota)> = checks
            .iter()
            .enumerate()
            .filter(|(index, _)| mask & (1 << index) != 0)
            .map(|(_, (key, quota))| ((*key).to_owned(), *quota))
            .collect();
        let inner = self.clone();
        runtime.spawn(async move {
            let Some(tokens) = &inner.tokens else { return };
            let checks: Vec<(&str, Quota)> = keys.iter().map(|(key, quota)| (key.as_str(), *quota)).collect();
            if let Err(err) = inner.take(tokens, &checks, (1u64 << checks.len()) - 1).await {
                inner.mark_unreachable(&err);
            }
        });
    }

    /// Decides from held tokens when it can (and starts the refills that decision asks for).
    fn decide_locally(self: &Arc<Self>, tokens: &TokenCache, checks: &[(&str, Quota)]) -> Local {
        let local = tokens.decide(checks, Instant::now());
        if let Local::Decided { refill, .. } = local
            && refill != 0
        {
            self.spawn_refill(checks, refill);
        }
        local
    }

    async fn check_all(self: &Arc<Self>, checks: &[(&str, Quota)]) -> (usize, Decision) {
        if checks.is_empty() {
            return crate::no_limits();
        }
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
        if _probe.is_none()
            && let Some(tokens) = &self.tokens
        {
            for _ in 0..TAKE_ATTEMPTS {
                let stored = tokens.stored();
                tokio::pin!(stored);
                stored.as_mut().enable();
                match self.decide_locally(tokens, checks) {
                    Local::Decided { index, decision, .. } => return (index, decision),
                    Local::Ask(mask) => {
                        if let Err(err) = self.take(tokens, checks, mask).await {
                            self.redis_failed(&err);
                            return self.local.check_all(checks).await;
                        }
                    }
                    // Another request of this node is asking Redis for a key this one needs; its answer (or its
                    // failure, or the deadline) wakes this one to decide again.
                    Local::Wait => {
                        let _ = tokio::time::timeout(self.timeout, stored).await;
                    }
                }
            }
        }
        match self.exact(checks).await {
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
}

#[async_trait]
impl RateLimiter for FallbackLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Decision {
        self.check_all(&[(key, quota)]).await.1
    }

    async fn check_all(&self, checks: &[(&str, Quota)]) -> (usize, Decision) {
        self.inner.check_all(checks).await
    }

    /// Held tokens and remembered refusals answer at once; a key without either needs the asynchronous path.
    fn check_all_now(&self, checks: &[(&str, Quota)]) -> Option<(usize, Decision)> {
        let tokens = self.inner.tokens.as_ref()?;
        if self.is_degraded() || checks.is_empty() {
            return None;
        }
        match self.inner.decide_locally(tokens, checks) {
            Local::Decided { index, decision, .. } => Some((index, decision)),
            // A claim made here is released: the asynchronous path claims again and asks.
            Local::Ask(mask) => {
                tokens.release(checks, mask);
                None
            }
            Local::Wait => None,
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
        self.inner.local.forget_idle();
        if let Some(tokens) = &self.inner.tokens {
            tokens.forget_idle(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request cancelled while it asks Redis (its future dropped) releases its claim, so the next request asks
    /// instead of waiting for an answer that will never come.
    #[test]
    fn a_dropped_ask_releases_its_claim() {
        let tokens = TokenCache::default();
        let quota = Quota::per_minute(600).with_burst(10);
        let now = Instant::now();
        assert_eq!(tokens.decide(&[("k", quota)], now), Local::Ask(1));
        let takes = [("k", quota, 1)];
        drop(Claims { tokens: &tokens, takes: &takes, answered: false });
        assert_eq!(tokens.decide(&[("k", quota)], now), Local::Ask(1), "released: this one asks");
        Claims { tokens: &tokens, takes: &takes, answered: false }.answered();
        assert_eq!(tokens.decide(&[("k", quota)], now), Local::Wait, "an answered ask releases nothing itself");
    }
}
