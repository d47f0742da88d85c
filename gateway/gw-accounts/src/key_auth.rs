//! Authenticating API calls with keys: a short-lived cache in front of the store, and usage counted in memory and
//! written in batches (never one write per request).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use gw_core::{ApiKeyId, InstanceId, SubscriptionId, Timestamp};
use gw_store::{ApiKeyRecord, ApiKeyUsage};

/// A verified key, as a request sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPrincipal {
    pub key_id: ApiKeyId,
    pub instance_id: InstanceId,
    pub subscription_id: SubscriptionId,
    /// The key's own limit, or its subscription's effective default.
    pub rate_limit_per_minute: u32,
    /// The limit on all of the subscription's keys together (its tier's `requests_per_minute`).
    pub subscription_rate_limit_per_minute: u32,
    pub ip_address: Option<std::net::IpAddr>,
    /// The cache's entry, shared: a request copies nothing of it.
    verified: std::sync::Arc<VerifiedKey>,
}

/// A key as the cache keeps it: the record, its effective limits, and the names its requests are counted under by
/// the rate limiter (built once when the key is loaded, not on every request).
#[derive(Debug, PartialEq)]
pub(crate) struct VerifiedKey {
    pub(crate) record: ApiKeyRecord,
    rate_limit_per_minute: u32,
    subscription_rate_limit_per_minute: u32,
    key_limit: String,
    subscription_limit: String,
}

impl VerifiedKey {
    pub(crate) fn new(
        record: ApiKeyRecord,
        rate_limit_per_minute: u32,
        subscription_rate_limit_per_minute: u32,
    ) -> Self {
        Self {
            key_limit: format!("key:{}", record.key.id),
            subscription_limit: format!("sub:{}", record.subscription_id),
            record,
            rate_limit_per_minute,
            subscription_rate_limit_per_minute,
        }
    }
}

impl KeyPrincipal {
    pub(crate) fn new(verified: std::sync::Arc<VerifiedKey>, ip_address: Option<std::net::IpAddr>) -> Self {
        Self {
            key_id: verified.record.key.id,
            instance_id: verified.record.key.instance_id,
            subscription_id: verified.record.subscription_id,
            rate_limit_per_minute: verified.rate_limit_per_minute,
            subscription_rate_limit_per_minute: verified.subscription_rate_limit_per_minute,
            ip_address,
            verified,
        }
    }

    pub fn permissions(&self) -> &[String] {
        &self.verified.record.key.permissions
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.permissions().iter().any(|p| p == scope)
    }

    /// The names under which the key's own requests and its subscription's are counted by the rate limiter.
    pub fn limiter_keys(&self) -> (&str, &str) {
        (&self.verified.key_limit, &self.verified.subscription_limit)
    }
}

/// What the cache keeps per key hash: the verified key (shared: the cache clones its values on every hit), or
/// that no such key exists.
#[derive(Debug, Clone)]
pub(crate) enum CachedKey {
    Found(std::sync::Arc<VerifiedKey>),
    Unknown,
}

/// How long a verified key is trusted without asking the store again. Changes made through this node invalidate
/// at once, and, with Redis configured, on every node through a published [`KeyInvalidation`]; the TTL bounds
/// how stale a change can be when that message is lost (Redis down).
pub(crate) const KEY_CACHE_TTL: Duration = Duration::from_secs(30);

pub(crate) type KeyCache = moka::future::Cache<Vec<u8>, CachedKey>;

pub(crate) fn key_cache() -> KeyCache {
    moka::future::Cache::builder().max_capacity(100_000).time_to_live(KEY_CACHE_TTL).build()
}

/// What every node must forget from its key cache after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyInvalidation {
    /// One key, by its stored hash (never the key itself).
    Key(Vec<u8>),
    /// Every key: an instance or a subscription changed, which may affect many keys.
    All,
}

impl KeyInvalidation {
    /// The wire form: `key:<hex of the hash>` or `all`.
    pub fn encode(&self) -> String {
        match self {
            KeyInvalidation::All => "all".to_owned(),
            KeyInvalidation::Key(hash) => {
                let mut out = String::with_capacity(4 + hash.len() * 2);
                out.push_str("key:");
                for byte in hash {
                    out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
                    out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
                }
                out
            }
        }
    }

    pub fn decode(raw: &str) -> Option<Self> {
        if raw == "all" {
            return Some(KeyInvalidation::All);
        }
        let hex = raw.strip_prefix("key:")?;
        if hex.len() % 2 != 0 || hex.is_empty() {
            return None;
        }
        let digits = hex.as_bytes();
        let value = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
        digits
            .chunks(2)
            .map(|pair| Some(value(pair[0])? << 4 | value(pair[1])?))
            .collect::<Option<Vec<u8>>>()
            .map(KeyInvalidation::Key)
    }
}

/// Tells the other nodes what to forget. The binary implements it over Redis publish/subscribe; it must not block.
pub trait InvalidationPublisher: Send + Sync + std::fmt::Debug {
    fn publish(&self, invalidation: &KeyInvalidation);
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
    fn invalidations_round_trip_and_garbage_is_refused() {
        for inv in [KeyInvalidation::All, KeyInvalidation::Key(vec![0, 1, 0xab, 0xff])] {
            assert_eq!(KeyInvalidation::decode(&inv.encode()), Some(inv));
        }
        assert_eq!(KeyInvalidation::Key(vec![0x0f, 0xa0]).encode(), "key:0fa0");
        for garbage in ["", "key:", "key:abc", "key:zz", "keys:00", "ALL"] {
            assert_eq!(KeyInvalidation::decode(garbage), None, "{garbage}");
        }
    }

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
