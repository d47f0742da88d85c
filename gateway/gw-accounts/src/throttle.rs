//! Sign-in throttling: too many failed sign-ins for one email, or from one address, within a window block further
//! attempts for that key until the oldest failure leaves the window. Per node and in memory: an attacker spread
//! over N nodes gets N times the budget, which is still far below what guessing needs.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many failures a key may have within a window.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    pub max_failures: usize,
    pub window: Duration,
}

/// A sliding-window failure counter per key.
#[derive(Debug)]
pub struct FailureThrottle {
    policy: ThrottlePolicy,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl FailureThrottle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self { policy, failures: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Instant>>> {
        // A panic while holding this lock cannot leave the map inconsistent: every update is one push or pop.
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `Some(wait)` while `key` is blocked.
    pub fn retry_after(&self, key: &str, now: Instant) -> Option<Duration> {
        let mut failures = self.lock();
        let entries = failures.get_mut(key)?;
        while entries.front().is_some_and(|t| now.duration_since(*t) >= self.policy.window) {
            entries.pop_front();
        }
        if entries.is_empty() {
            failures.remove(key);
            return None;
        }
        if entries.len() < self.policy.max_failures {
            return None;
        }
        let oldest = *entries.front()?;
        Some(self.policy.window.saturating_sub(now.duration_since(oldest)).max(Duration::from_secs(1)))
    }

    pub fn record_failure(&self, key: &str, now: Instant) {
        let mut failures = self.lock();
        // Bound memory: a flood of distinct keys evicts expired entries first.
        if failures.len() > 100_000 {
            let window = self.policy.window;
            failures.retain(|_, entries| entries.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let entries = failures.entry(key.to_owned()).or_default();
        entries.push_back(now);
        while entries.len() > self.policy.max_failures {
            entries.pop_front();
        }
    }

    pub fn clear(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_until_the_window_passes() {
        let throttle = FailureThrottle::new(ThrottlePolicy { max_failures: 3, window: Duration::from_secs(60) });
        let t0 = Instant::now();
        for n in 0..3 {
            assert_eq!(throttle.retry_after("ann", t0), None, "attempt {n} allowed");
            throttle.record_failure("ann", t0 + Duration::from_secs(n));
        }
        assert_eq!(throttle.retry_after("ann", t0 + Duration::from_secs(10)), Some(Duration::from_secs(50)));
        assert_eq!(throttle.retry_after("bob", t0), None, "other keys are unaffected");
        assert_eq!(throttle.retry_after("ann", t0 + Duration::from_secs(60)), None, "oldest failure expired");
    }

    #[test]
    fn success_clears_the_key() {
        let throttle = FailureThrottle::new(ThrottlePolicy { max_failures: 1, window: Duration::from_secs(60) });
        let t0 = Instant::now();
        throttle.record_failure("ann", t0);
        assert!(throttle.retry_after("ann", t0).is_some());
        throttle.clear("ann");
        assert_eq!(throttle.retry_after("ann", t0), None);
    }
}
