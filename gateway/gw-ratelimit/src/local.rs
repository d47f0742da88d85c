//! The in-process limiter on `governor`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{RateLimiter as Governor, clock::QuantaInstant};
use gw_core::PerThread;

use crate::{Decision, Quota, RateLimiter};

/// Keys are held as a 64-bit hash of their name (foldhash with this process's random seed; the names are the
/// gateway's own, `key:<uuid>` and `sub:<uuid>`, not chosen by clients), so a decision allocates nothing; two
/// names would share a limit only on a 64-bit collision. The map uses that hash as is instead of hashing it again.
type Keyed =
    Governor<u64, DashMapStateStore<u64, BuildHasherDefault<PreHashed>>, DefaultClock, StateInformationMiddleware>;

/// A `u64` key that is already a hash, used as its own hash.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys reach this hasher; fold anything else rather than ignore it.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
}

/// One governor keyed limiter per distinct quota, created on first use.
#[derive(Default)]
pub struct LocalLimiter {
    limiters: RwLock<QuotaMap>,
    /// Each thread's view of `limiters` (which only grows), so a decision does not take the shared lock: its
    /// reader count is a cache line that both workers would write on every request.
    by_thread: PerThread<RefCell<QuotaMap>>,
    clock: DefaultClock,
    names: foldhash::fast::RandomState,
}

type QuotaMap = HashMap<Quota, Arc<Keyed>, foldhash::fast::RandomState>;

impl std::fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter").finish_non_exhaustive()
    }
}

fn governor_quota(quota: Quota) -> governor::Quota {
    let burst = NonZeroU32::new(quota.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    governor::Quota::with_period(quota.emission_interval())
        .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl LocalLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request against `key` under `quota`, synchronously.
    fn decide(&self, key: &str, quota: Quota) -> Decision {
        use std::hash::BuildHasher as _;
        let name = self.names.hash_one(key);
        let known = self.by_thread.get();
        if let Some(limiter) = known.borrow().get(&quota) {
            return self.decision(limiter, name, quota);
        }
        let limiter = self
            .limiters
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(quota)
            .or_insert_with(|| {
                let keyed =
                    Governor::dashmap_with_clock_and_hasher(governor_quota(quota), self.clock.clone(), <_>::default());
                Arc::new(keyed.with_middleware::<StateInformationMiddleware>())
            })
            .clone();
        known.borrow_mut().insert(quota, limiter.clone());
        self.decision(&limiter, name, quota)
    }

    fn decision(&self, limiter: &Keyed, name: u64, quota: Quota) -> Decision {
        let interval = quota.emission_interval();
        match limiter.check_key(&name) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let used = quota.burst.saturating_sub(remaining);
                Decision { allowed: true, quota, remaining, reset_after: interval * used, retry_after: None }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.now());
                Decision {
                    allowed: false,
                    quota,
                    remaining: 0,
                    reset_after: wait + interval * quota.burst.saturating_sub(1),
                    retry_after: Some(wait.max(Duration::from_millis(1))),
                }
            }
        }
    }

    /// Forgets keys that are back to full capacity, so memory follows the active keys (run periodically).
    pub fn forget_idle(&self) {
        for limiter in self.limiters.read().unwrap_or_else(|p| p.into_inner()).values() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    fn now(&self) -> QuantaInstant {
        self.clock.now()
    }
}

#[async_trait]
impl RateLimiter for LocalLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Decision {
        self.decide(key, quota)
    }

    async fn check_all(&self, checks: &[(&str, Quota)]) -> (usize, Decision) {
        crate::tightest(checks, |key, quota| self.decide(key, quota))
    }

    fn check_all_now(&self, checks: &[(&str, Quota)]) -> Option<(usize, Decision)> {
        Some(crate::tightest(checks, |key, quota| self.decide(key, quota)))
    }

    fn retain_recent(&self) {
        self.forget_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_is_allowed_then_refused_per_key() {
        let limiter = LocalLimiter::new();
        let quota = Quota::per_minute(60).with_burst(3);
        for expected_remaining in [2, 1, 0] {
            let decision = limiter.check("a", quota).await;
            assert!(decision.allowed);
            assert_eq!(decision.remaining, expected_remaining);
        }
        let refused = limiter.check("a", quota).await;
        assert!(!refused.allowed);
        let retry = refused.retry_after.expect("retry after");
        assert!(retry <= Duration::from_secs(1) && retry > Duration::from_millis(900), "{retry:?}");
        assert!(limiter.check("b", quota).await.allowed, "keys are independent");
        let (index, now) =
            limiter.check_all_now(&[("b", quota), ("a", quota)]).expect("the local limiter answers at once");
        assert_eq!((index, now.allowed), (1, false), "refused by the exhausted key, as check_all would be");
        assert!(limiter.check("a", Quota::per_minute(600)).await.allowed, "quotas are independent");
    }
}
