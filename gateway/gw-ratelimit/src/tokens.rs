//! Tokens a node has taken from the cluster-wide GCRA and not yet spent, per key: the local half of the
//! local-first limiter (see `docs/src/design/local-first-limits.md`).
//!
//! Redis stays the only authority on a key's rate: a node spends a token only after Redis granted it, so the
//! cluster never admits more than Redis granted. What is local is the timing: a node asks for a batch sized to its
//! own demand (about [`HORIZON`] of it, at most an eighth of the burst, so no node hoards a key's capacity) and asks
//! again in the background when half of it is left, so a busy key's requests are decided here, without a round trip.
//! A refusal from Redis is remembered until its retry time, so a key over its limit costs no round trip either.
//! A key that is asked for rarely gets batches of one: one round trip per request, exactly as without the cache.
//!
//! Everything here is synchronous and takes `now` as an argument, so its arithmetic is tested without a clock.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Decision, Quota};

/// How much of a key's demand one batch covers: at 40,000 requests a second, batches of 4,000, ten round trips a
/// second for the key on this node.
pub(crate) const HORIZON: Duration = Duration::from_millis(100);

/// Held tokens are void after this: a grant spent much later than it was made would let a node that went quiet
/// spend an old batch on top of a full burst. It bounds how far the admitted timeline can lag the granted one.
pub(crate) const TOKEN_TTL: Duration = Duration::from_secs(1);

/// The shortest window demand is measured over: shorter ones would take two requests a microsecond apart for a
/// flood.
const DEMAND_WINDOW: Duration = Duration::from_millis(10);

/// No node holds more than this share of a key's burst, so another node is never starved by a hoard.
const BURST_SHARE: u32 = 8;

/// What Redis answered for one key: `granted` tokens (0: refused), what the key had left after, and its timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub granted: u32,
    pub remaining: u32,
    pub reset_after: Duration,
    /// When the key has a token again after this grant (zero while it has): for a refusal, the retry time; for a
    /// grant that emptied the key, how long to refuse locally once the granted tokens are spent.
    pub retry_after: Duration,
}

/// The local outcome of a check over several keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Local {
    /// Decided here: the deciding key's index and the decision. `refill` has a bit set for each key whose batch is
    /// running low and that the caller should top up in the background (its refill flag is set already).
    Decided { index: usize, decision: Decision, refill: u64 },
    /// Redis must be asked for the keys whose bits are set (no token held, no refusal remembered); they are
    /// claimed for the caller, who must [`TokenCache::store`] the answers or report [`TokenCache::refill_failed`].
    /// Nothing was spent.
    Ask(u64),
    /// Another request of this node is asking Redis for a key this check needs: wait for
    /// [`TokenCache::stored`], then decide again.
    Wait,
}

#[derive(Debug)]
struct Bucket {
    tokens: u32,
    tokens_until: Instant,
    refused_until: Option<Instant>,
    /// What Redis reported at the last grant, for the `RateLimit` headers.
    redis_remaining: u32,
    reset_at: Instant,
    /// The demand the next batch is sized on: requests per second, measured over windows of at least
    /// [`DEMAND_WINDOW`] (`seen` requests since `window_start`) and smoothed.
    per_second: f64,
    seen: u32,
    window_start: Instant,
    refilling: bool,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Self {
            tokens: 0,
            tokens_until: now,
            refused_until: None,
            redis_remaining: 0,
            reset_at: now,
            per_second: 0.0,
            seen: 0,
            window_start: now,
            refilling: false,
        }
    }

    fn count_request(&mut self, now: Instant) {
        self.seen = self.seen.saturating_add(1);
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= DEMAND_WINDOW {
            let sample = f64::from(self.seen) / elapsed.as_secs_f64();
            self.per_second = (self.per_second + sample) / 2.0;
            self.seen = 0;
            self.window_start = now;
        }
    }

    fn held(&self, now: Instant) -> u32 {
        if now < self.tokens_until { self.tokens } else { 0 }
    }

    fn refusal(&self, now: Instant) -> Option<Duration> {
        self.refused_until.filter(|until| now < *until).map(|until| until - now)
    }

    /// The batch to ask for: the demand over [`HORIZON`], between 1 and the cap (1 until demand was measured).
    fn want(&self, quota: Quota) -> u32 {
        let cap = (quota.burst / BURST_SHARE).max(1);
        let want = (self.per_second * HORIZON.as_secs_f64()).ceil();
        (want.min(f64::from(cap)) as u32).clamp(1, cap)
    }
}

type Shard = Mutex<HashMap<(u64, Quota), Bucket, foldhash::fast::RandomState>>;

/// The held tokens of every key this node uses, in shards so the two worker threads rarely meet on one lock.
pub(crate) struct TokenCache {
    shards: Box<[Shard]>,
    names: foldhash::fast::RandomState,
    /// Woken when an answer from Redis is recorded (or an ask failed), for the requests that [`Local::Wait`].
    stored: tokio::sync::Notify,
}

const SHARDS: usize = 64;

impl Default for TokenCache {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            names: Default::default(),
            stored: tokio::sync::Notify::new(),
        }
    }
}

impl TokenCache {
    fn with_bucket<R>(&self, key: &str, quota: Quota, now: Instant, f: impl FnOnce(&mut Bucket) -> R) -> R {
        let name = self.names.hash_one(key);
        let shard = &self.shards[(name as usize) % SHARDS];
        let mut buckets = shard.lock().unwrap_or_else(|p| p.into_inner());
        f(buckets.entry((name, quota)).or_insert_with(|| Bucket::new(now)))
    }

    /// Decides `checks` (all or nothing, like the Redis script) from held tokens and remembered refusals: spends
    /// one token of every key when each has one; a remembered refusal refuses without spending anything. A key
    /// that needs Redis is claimed for the caller to ask ([`Local::Ask`]), unless a batch for it is already being
    /// asked for ([`Local::Wait`]): concurrent requests of one node share one round trip.
    pub(crate) fn decide(&self, checks: &[(&str, Quota)], now: Instant) -> Local {
        debug_assert!(checks.len() <= 64);
        for _ in 0..3 {
            if let Some(local) = self.try_decide(checks, now) {
                return local;
            }
        }
        // Tokens seen in the first pass were spent by other threads three times over: ask Redis again.
        Local::Wait
    }

    fn try_decide(&self, checks: &[(&str, Quota)], now: Instant) -> Option<Local> {
        // Pass 1: what each key has, without spending.
        let (mut empty, mut in_flight) = (0u64, 0u64);
        for (index, (key, quota)) in checks.iter().enumerate() {
            let refused = self.with_bucket(key, *quota, now, |bucket| {
                bucket.count_request(now);
                if bucket.held(now) > 0 {
                    return None;
                }
                if let Some(wait) = bucket.refusal(now) {
                    return Some(Decision {
                        allowed: false,
                        quota: *quota,
                        remaining: 0,
                        reset_after: bucket.reset_at.saturating_duration_since(now),
                        retry_after: Some(wait.max(Duration::from_millis(1))),
                    });
                }
                if bucket.refilling {
                    in_flight |= 1 << index;
                } else {
                    empty |= 1 << index;
                }
                None
            });
            if let Some(decision) = refused {
                return Some(Local::Decided { index, decision, refill: 0 });
            }
        }
        if empty != 0 {
            let mut ask = 0u64;
            for (index, (key, quota)) in checks.iter().enumerate() {
                if empty & (1 << index) != 0 {
                    self.with_bucket(key, *quota, now, |bucket| {
                        if bucket.held(now) == 0 && !bucket.refilling {
                            bucket.refilling = true;
                            ask |= 1 << index;
                        }
                    });
                }
            }
            return Some(if ask != 0 { Local::Ask(ask) } else { Local::Wait });
        }
        if in_flight != 0 {
            return Some(Local::Wait);
        }
        // Pass 2: every key had a token; spend them, or give back if another thread was faster.
        let (mut spent, mut refill) = (0u64, 0u64);
        let mut tightest: Option<(usize, Decision)> = None;
        for (index, (key, quota)) in checks.iter().enumerate() {
            let decision = self.with_bucket(key, *quota, now, |bucket| {
                let held = bucket.held(now);
                if held == 0 {
                    return None;
                }
                bucket.tokens = held - 1;
                let want = bucket.want(*quota);
                if want > 1 && bucket.tokens < want / 2 && !bucket.refilling {
                    bucket.refilling = true;
                    refill |= 1 << index;
                }
                Some(Decision {
                    allowed: true,
                    quota: *quota,
                    remaining: bucket.tokens.saturating_add(bucket.redis_remaining),
                    reset_after: bucket.reset_at.saturating_duration_since(now),
                    retry_after: None,
                })
            });
            let Some(decision) = decision else {
                self.give_back(checks, spent, now);
                self.clear_refilling(checks, refill, now);
                return None;
            };
            spent |= 1 << index;
            if tightest.is_none_or(|(_, best)| decision.remaining < best.remaining) {
                tightest = Some((index, decision));
            }
        }
        tightest.map(|(index, decision)| Local::Decided { index, decision, refill })
    }

    fn give_back(&self, checks: &[(&str, Quota)], spent: u64, now: Instant) {
        for (index, (key, quota)) in checks.iter().enumerate() {
            if spent & (1 << index) != 0 {
                self.with_bucket(key, *quota, now, |bucket| bucket.tokens = bucket.tokens.saturating_add(1));
            }
        }
    }

    fn clear_refilling(&self, checks: &[(&str, Quota)], mask: u64, now: Instant) {
        for (index, (key, quota)) in checks.iter().enumerate() {
            if mask & (1 << index) != 0 {
                self.with_bucket(key, *quota, now, |bucket| bucket.refilling = false);
            }
        }
        self.stored.notify_waiters();
    }

    /// Releases the claims of an [`Local::Ask`] that will not be asked for.
    pub(crate) fn release(&self, checks: &[(&str, Quota)], mask: u64) {
        self.clear_refilling(checks, mask, Instant::now());
    }

    /// Resolves at the next [`Self::store`] or failed ask; create it before [`Self::decide`] so none is missed.
    pub(crate) fn stored(&self) -> tokio::sync::futures::Notified<'_> {
        self.stored.notified()
    }

    /// The batch to ask Redis for, for `key`.
    pub(crate) fn want(&self, key: &str, quota: Quota, now: Instant) -> u32 {
        self.with_bucket(key, quota, now, |bucket| bucket.want(quota))
    }

    /// Records Redis's answer for `key`: granted tokens join those held (and void in [`TOKEN_TTL`]); a refusal, or
    /// the wait after a grant that emptied the key, is remembered until its retry time.
    pub(crate) fn store(&self, key: &str, quota: Quota, grant: Grant, now: Instant) {
        self.with_bucket(key, quota, now, |bucket| {
            bucket.tokens = bucket.held(now).saturating_add(grant.granted);
            bucket.tokens_until = now + TOKEN_TTL;
            bucket.redis_remaining = grant.remaining;
            bucket.reset_at = now + grant.reset_after;
            // Spent tokens first, then this: a grant that emptied the key is followed by its wait, not by a round
            // trip that Redis would refuse.
            bucket.refused_until = if grant.granted == 0 {
                Some(now + grant.retry_after.max(Duration::from_millis(1)))
            } else {
                (!grant.retry_after.is_zero()).then(|| now + grant.retry_after)
            };
            bucket.refilling = false;
        });
        self.stored.notify_waiters();
    }

    /// Asking Redis for `key` failed: let a later request try again.
    pub(crate) fn refill_failed(&self, key: &str, quota: Quota, now: Instant) {
        self.with_bucket(key, quota, now, |bucket| bucket.refilling = false);
        self.stored.notify_waiters();
    }

    /// Drops keys with nothing held, nothing remembered and no recent demand (run periodically).
    pub(crate) fn forget_idle(&self, now: Instant) {
        for shard in &*self.shards {
            let mut buckets = shard.lock().unwrap_or_else(|p| p.into_inner());
            buckets.retain(|_, bucket| {
                bucket.refilling
                    || bucket.held(now) > 0
                    || bucket.refusal(now).is_some()
                    || now.saturating_duration_since(bucket.window_start) < TOKEN_TTL * 10
            });
            buckets.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(granted: u32) -> Grant {
        let retry_after = if granted == 0 { Duration::from_millis(250) } else { Duration::ZERO };
        Grant { granted, remaining: 5, reset_after: Duration::from_secs(1), retry_after }
    }

    fn allowed(local: Local) -> bool {
        matches!(local, Local::Decided { decision, .. } if decision.allowed)
    }

    #[test]
    fn spends_only_granted_tokens_then_asks_again() {
        let cache = TokenCache::default();
        let quota = Quota::per_minute(6000).with_burst(100);
        let now = Instant::now();
        assert_eq!(cache.decide(&[("k", quota)], now), Local::Ask(1), "nothing held: ask Redis");
        cache.store("k", quota, grant(3), now);
        for _ in 0..3 {
            assert!(allowed(cache.decide(&[("k", quota)], now)));
        }
        assert_eq!(cache.decide(&[("k", quota)], now), Local::Ask(1), "three granted, three spent");
    }

    #[test]
    fn one_ask_per_key_at_a_time() {
        let cache = TokenCache::default();
        let quota = Quota::per_minute(6000).with_burst(100);
        let now = Instant::now();
        assert_eq!(cache.decide(&[("k", quota)], now), Local::Ask(1));
        assert_eq!(cache.decide(&[("k", quota)], now), Local::Wait, "claimed by the first");
        cache.refill_failed("k", quota, now);
        assert_eq!(cache.decide(&[("k", quota)], now), Local::Ask(1), "released by the failure");
        cache.release(&[("k", quota)], 1);
        assert_eq!(cache.decide(&[("k", quota)], now), Local::Ask(1), "released");
    }

    #[test]
    fn a_refusal_is_remembered_until_its_retry_time() {
        let cache = TokenCache::default();
        let quota = Quota::per_minute(60).with_burst(1);
        let now = Instant::now();
        cache.store("k", quota, grant(0), now);
        let Local::Decided { index, decision, .. } = cache.decide(&[("k", quota)], now) else { panic!("decided") };
        assert_eq!((index, decision.allowed), (0, false));
        assert_eq!(decision.retry_after, Some(Duration::from_millis(250)));
        assert_eq!(cache.decide(&[("k", quota)], now + Duration::from_millis(250)), Local::Ask(1));
    }

    #[test]
    fn all_or_nothing_a_refused_request_spends_no_token_of_the_other_key() {
        let cache = TokenCache::default();
        let quota = Quota::per_minute(6000).with_burst(100);
        let now = Instant::now();
        cache.store("key", quota, grant(1), now);
        cache.store("sub", quota, grant(0), now);
        let Local::Decided { index, decision, .. } = cache.decide(&[("key", quota), ("sub", quota)], now) else {
            panic!("decided")
        };
        assert_eq!((index, decision.allowed), (1, false), "refused by the subscription");
        assert!(allowed(cache.decide(&[("key", quota)], now)), "the key's token is still there");
        // A key without tokens and one with: Redis is asked for the first only, and the second's token is kept.
        cache.store("sub2", quota, grant(1), now);
        assert_eq!(cache.decide(&[("key", quota), ("sub2", quota)], now), Local::Ask(1));
        assert!(allowed(cache.decide(&[("sub2", quota)], now)));
    }

    #[test]
    fn a_grant_that_emptied_the_key_refuses_locally_once_spent() {
        let cache = TokenCache::default();
        let quota = Quota::per_minute(60).with_burst(2);
        let now = Instant::now();
        let emptied = Grant {
            granted: 2,
            remaining: 0,
            reset_after: Duration::from_secs(2),
            retry_after: Duration::from_secs(1),
        };
        cache.store("k", quota, emptied, now);
        assert!(allowed(cache.decide(&[("k", quota)], now)));
        assert!(allowed(cache.decide(&[("k", quota)], now)));
        let Local::Decided { decision, .. } = cache.decide(&[("k", quota)], now) else { panic!("decided locally") };
        assert_eq!((decision.allowed, decision.retry_after), (false, Some(Duration::from_secs(1))));
        assert_eq!(cache.decide(&[("k", quota)], now + Duration::from_secs(1)), Local::Ask(1));
    }

    #[test]
    fn held_tokens_expire() {
        let cache = TokenCache::default();
        let quota = Quota::per_minute(6000).with_burst(100);
        let now = Instant::now();
        cache.store("k", quota, grant(10), now);
        assert_eq!(cache.decide(&[("k", quota)], now + TOKEN_TTL), Local::Ask(1));
    }

    #[test]
    fn batches_follow_demand_within_an_eighth_of_the_burst() {
        let cache = TokenCache::default();
        let quota = Quota::per_minute(6_000_000).with_burst(1_000_000);
        let now = Instant::now();
        assert_eq!(cache.want("k", quota, now), 1, "no demand seen yet: one token");
        cache.store("k", quota, grant(1000), now);
        // 500 requests in 10 ms, twice: 50,000 a second, so 5,000 for the horizon.
        for window in 1..=2 {
            for _ in 0..499 {
                cache.decide(&[("k", quota)], now);
            }
            cache.decide(&[("k", quota)], now + Duration::from_millis(10 * window));
        }
        assert_eq!(cache.want("k", quota, now), 3750, "smoothed: half of 5,000 then the mean with 5,000");
        let small = Quota::per_minute(60).with_burst(10);
        cache.store("s", small, grant(1), now);
        for _ in 0..499 {
            cache.decide(&[("s", small)], now);
        }
        cache.decide(&[("s", small)], now + Duration::from_millis(10));
        assert_eq!(cache.want("s", small, now), 1, "burst 10: batches of one");
    }

    #[test]
    fn a_busy_key_is_refilled_in_the_background_once() {
        let cache = TokenCache::default();
        let quota = Quota::per_minute(6_000_000).with_burst(1_000_000);
        let now = Instant::now();
        cache.store("k", quota, grant(200), now);
        // 100 requests in 10 ms measure the demand (10,000 a second, batches of 500 once smoothed).
        for _ in 0..99 {
            cache.decide(&[("k", quota)], now);
        }
        let later = now + Duration::from_millis(10);
        let mut refills = 0;
        for _ in 0..99 {
            if let Local::Decided { refill, .. } = cache.decide(&[("k", quota)], later) {
                refills += refill.count_ones();
            }
        }
        assert_eq!(refills, 1, "flagged once while a refill is under way");
        cache.store("k", quota, grant(100), later);
        assert!(allowed(cache.decide(&[("k", quota)], later)), "the refill's tokens join the one left");
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let cache = TokenCache::default();
        let quota = Quota::per_minute(60).with_burst(1);
        let now = Instant::now();
        cache.store("k", quota, grant(1), now);
        cache.forget_idle(now + TOKEN_TTL * 11);
        let count: usize = cache.shards.iter().map(|s| s.lock().expect("shard").len()).sum();
        assert_eq!(count, 0);
    }
}
