//! Authenticating API calls with keys: a short-lived cache in front of the store, and usage counted in memory and
//! written in batches (never one write per request).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use gw_core::{ApiKeyId, InstanceId, SubscriptionId, Timestamp};
use gw_store::{ApiKeyRecord, ApiKeyUsage};

/// A verified key, as a request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrincipal {
    pub key_id: ApiKeyId,
    pub instance_id: InstanceId,
    pub subscription_id: SubscriptionId,
    pub permissions: Vec<String>,
    /// The key's own limit, or its subscription's effective default.
    pub rate_limit_per_minute: u32,
    pub ip_address: Option<String>,
}

impl KeyPrincipal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.permissions.iter().any(|p| p == scope)
    }
}

/// What the cache keeps per key hash: the record and the effective rate limit, or that no such key exists.
#[derive(Debug, Clone)]
pub(crate) enum CachedKey {
    // Shared: the cache clones its values on every hit.
    Found { record: std::sync::Arc<ApiKeyRecord>, rate_limit_per_minute: u32 },
    Unknown,
}

/// How long a verified key is trusted without asking the store again. Changes made through this node invalidate
/// at once; the TTL bounds how stale a change made elsewhere can be until cross-node invalidation lands.
pub(crate) const KEY_CACHE_TTL: Duration = Duration::from_secs(30);

pub(crate) type KeyCache = moka::future::Cache<Vec<u8>, CachedKey>;

pub(crate) fn key_cache() -> KeyCache {
    moka::future::Cache::builder().max_capacity(100_000).time_to_live(KEY_CACHE_TTL).build()
}

/// Uses per key since the last flush.
#[derive(Debug, Default)]
pub(crate) struct UsageCounter {
    pending: Mutex<HashMap<ApiKeyId, (i64, Timestamp)>>,
}

impl UsageCounter {
    pub(crate) fn record(&self, key_id: ApiKeyId, at: Timestamp) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pending.entry(key_id).or_insert((0, at));
        entry.0 += 1;
        entry.1 = entry.1.max(at);
    }

    /// Takes everything counted so far (the caller writes it, and puts it back if the write fails).
    pub(crate) fn drain(&self) -> Vec<ApiKeyUsage> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.drain().map(|(key_id, (uses, last_used_at))| ApiKeyUsage { key_id, uses, last_used_at }).collect()
    }

    pub(crate) fn restore(&self, batch: &[ApiKeyUsage]) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for usage in batch {
            let entry = pending.entry(usage.key_id).or_insert((0, usage.last_used_at));
            entry.0 += usage.uses;
            entry.1 = entry.1.max(usage.last_used_at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_accumulates_and_drains_once() {
        let counter = UsageCounter::default();
        let key = ApiKeyId::new();
        let t1 = Timestamp::now();
        for _ in 0..5 {
            counter.record(key, t1);
        }
        let batch = counter.drain();
        assert_eq!(batch.len(), 1);
        assert_eq!((batch[0].uses, batch[0].last_used_at), (5, t1));
        assert!(counter.drain().is_empty());
        counter.restore(&batch);
        counter.record(key, t1);
        assert_eq!(counter.drain()[0].uses, 6, "a failed flush loses nothing");
    }
}
