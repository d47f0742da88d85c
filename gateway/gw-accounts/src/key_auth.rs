//! Authenticating API calls with keys: a short-lived cache in front of the store, and usage counted in memory and
//! written in batches (never one write per request).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gw_core::{ApiKeyId, InstanceId, PerThread, SubscriptionId, Timestamp};
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
    /// When the key was checked: the time the request's use is counted at (one clock read serves both).
    pub verified_at: Timestamp,
    /// The cache's entry, shared: a request copies nothing of it.
    verified: std::sync::Arc<VerifiedKey>,
}

/// A key as the cache keeps it: the record, its effective limits, and the names its requests are counted under by
/// the rate limiter (built once when the key is loaded, not on every request).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VerifiedKey {
    pub(crate) record: ApiKeyRecord,
    rate_limit_per_minute: u32,
    subscription_rate_limit_per_minute: u32,
    key_limit: String,
    subscription_limit: String,
    /// When the record was read from the store: no cache level may trust it after [`KEY_CACHE_TTL`].
    loaded_at: Instant,
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
            loaded_at: Instant::now(),
        }
    }

    fn is_fresh(&self) -> bool {
        self.loaded_at.elapsed() < KEY_CACHE_TTL
    }
}

impl KeyPrincipal {
    pub(crate) fn new(
        verified: std::sync::Arc<VerifiedKey>,
        ip_address: Option<std::net::IpAddr>,
        verified_at: Timestamp,
    ) -> Self {
        Self {
            key_id: verified.record.key.id,
            instance_id: verified.record.key.instance_id,
            subscription_id: verified.record.subscription_id,
            rate_limit_per_minute: verified.rate_limit_per_minute,
            subscription_rate_limit_per_minute: verified.subscription_rate_limit_per_minute,
            ip_address,
            verified_at,
            verified,
        }
    }

    pub fn permissions(&self) -> &[String] {
        &self.verified.record.key.permissions
    }

    pub fn has_scope(&self, scope: gw_core::KeyScope) -> bool {
        self.permissions().iter().any(|p| p == scope.as_str())
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

/// Keys a thread has recently verified, in front of the shared [`KeyCache`]. A hit touches only this thread's
/// memory: the shared cache's bookkeeping (its read log, the entry's and the value's reference counts) is a set of
/// cache lines every request of every worker would write. Each thread holds its own copy of a key, so even the
/// copy's reference count stays on this core.
///
/// Coherence: any invalidation bumps [`LocalKeys::generation`] after clearing the shared cache, and a thread drops
/// its whole map when it sees a new generation; an entry also expires with the record's own load time, so this
/// level never extends how long a record is trusted.
#[derive(Debug, Default)]
pub(crate) struct LocalKeys {
    generation: AtomicU64,
    threads: PerThread<RefCell<ThreadKeys>>,
}

#[derive(Debug, Default)]
struct ThreadKeys {
    generation: u64,
    keys: HashMap<[u8; 32], Arc<VerifiedKey>, BuildHasherDefault<DigestHasher>>,
}

/// A thread keeps at most this many keys; past it, it starts afresh (the shared cache still has them).
const LOCAL_KEYS_PER_THREAD: usize = 4096;

impl LocalKeys {
    /// The generation to pass to [`LocalKeys::remember`]: read it before asking the shared cache.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn get(&self, digest: &[u8; 32]) -> Option<Arc<VerifiedKey>> {
        let generation = self.generation();
        let mut thread = self.threads.get().borrow_mut();
        if thread.generation != generation {
            thread.keys.clear();
            thread.generation = generation;
            return None;
        }
        match thread.keys.get(digest) {
            Some(key) if key.is_fresh() => Some(key.clone()),
            Some(_) => {
                thread.keys.remove(digest);
                None
            }
            None => None,
        }
    }

    /// Keeps this thread's own copy of a key read from the shared cache at `generation`, unless an invalidation
    /// came in between (the key may be what it invalidated). Returns the copy.
    pub(crate) fn remember(&self, digest: [u8; 32], key: &VerifiedKey, generation: u64) -> Arc<VerifiedKey> {
        let copy = Arc::new(key.clone());
        let mut thread = self.threads.get().borrow_mut();
        if self.generation() != generation {
            return copy;
        }
        if thread.generation != generation {
            thread.keys.clear();
            thread.generation = generation;
        }
        if thread.keys.len() >= LOCAL_KEYS_PER_THREAD {
            thread.keys.clear();
        }
        thread.keys.insert(digest, copy.clone());
        copy
    }

    /// Every thread forgets every key before its next look-up. Call after invalidating the shared cache.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Key digests are keyed HMAC outputs, uniform and not chosen by clients: eight of their bytes are a hash.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let len = bytes.len().min(8);
        word[..len].copy_from_slice(&bytes[..len]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
    }
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

/// Key ids are the gateway's own, not chosen by clients: a fast hash (seeded per process) is enough.
type KeyUses = HashMap<ApiKeyId, (i64, Timestamp), foldhash::fast::RandomState>;

/// Uses per key since the last flush, counted per thread (a request locks only its own thread's map).
#[derive(Debug, Default)]
pub(crate) struct UsageCounter {
    pending: PerThread<Mutex<KeyUses>>,
}

fn add_uses(pending: &mut KeyUses, key_id: ApiKeyId, uses: i64, at: Timestamp) {
    let entry = pending.entry(key_id).or_insert((0, at));
    entry.0 += uses;
    entry.1 = entry.1.max(at);
}

fn lock(pending: &Mutex<KeyUses>) -> std::sync::MutexGuard<'_, KeyUses> {
    pending.lock().unwrap_or_else(|p| p.into_inner())
}

impl UsageCounter {
    pub(crate) fn record(&self, key_id: ApiKeyId, at: Timestamp) {
        add_uses(&mut lock(self.pending.get()), key_id, 1, at);
    }

    /// Takes everything counted so far, one entry per key (the caller writes it, and puts it back if the write
    /// fails).
    pub(crate) fn drain(&self) -> Vec<ApiKeyUsage> {
        let mut all = KeyUses::default();
        for pending in self.pending.iter() {
            for (key_id, (uses, at)) in lock(pending).drain() {
                add_uses(&mut all, key_id, uses, at);
            }
        }
        all.into_iter().map(|(key_id, (uses, last_used_at))| ApiKeyUsage { key_id, uses, last_used_at }).collect()
    }

    pub(crate) fn restore(&self, batch: &[ApiKeyUsage]) {
        let mut pending = lock(self.pending.get());
        for usage in batch {
            add_uses(&mut pending, usage.key_id, usage.uses, usage.last_used_at);
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

    fn verified(loaded_at: Instant) -> VerifiedKey {
        let now = Timestamp::now();
        let key = gw_core::ApiKey {
            id: ApiKeyId::new(),
            instance_id: InstanceId::new(),
            name: "k".into(),
            key_hash: gw_core::ApiKeyHash::from_bytes(vec![7; 32]),
            permissions: vec!["messages:read".into()],
            is_active: true,
            created_at: now,
            updated_at: now,
            expires_at: None,
            last_used_at: None,
            usage_count: 0,
            rate_limit: None,
        };
        let record = ApiKeyRecord {
            key,
            subscription_id: SubscriptionId::new(),
            instance_active: true,
            subscription_active: true,
        };
        VerifiedKey { loaded_at, ..VerifiedKey::new(record, 60, 600) }
    }

    #[test]
    fn a_thread_keeps_its_own_copy_until_any_invalidation() {
        let local = LocalKeys::default();
        let digest = [1u8; 32];
        let key = verified(Instant::now());
        assert!(local.get(&digest).is_none());
        let generation = local.generation();
        let copy = local.remember(digest, &key, generation);
        assert_eq!(*copy, key);
        let hit = local.get(&digest).expect("kept");
        assert!(Arc::ptr_eq(&hit, &copy), "the thread's own copy, not the shared one");
        local.invalidate();
        assert!(local.get(&digest).is_none(), "an invalidation empties every thread's copies");

        // Read from the shared cache before an invalidation, remembered after it: not kept.
        let before = local.generation();
        local.invalidate();
        local.remember(digest, &key, before);
        assert!(local.get(&digest).is_none());

        // On another thread: nothing of this thread's.
        local.remember(digest, &key, local.generation());
        std::thread::scope(|scope| {
            scope.spawn(|| assert!(local.get(&digest).is_none(), "copies are per thread"));
        });
        assert!(local.get(&digest).is_some());
    }

    #[test]
    fn an_invalidation_on_one_thread_empties_another_threads_copies() {
        let local = LocalKeys::default();
        let digest = [3u8; 32];
        let key = verified(Instant::now());
        let (kept, invalidated) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|scope| {
            let worker = scope.spawn(|| {
                local.remember(digest, &key, local.generation());
                let before = local.get(&digest).is_some();
                kept.wait();
                invalidated.wait();
                (before, local.get(&digest).is_some())
            });
            kept.wait();
            local.invalidate(); // as a revocation handled on this thread does
            invalidated.wait();
            let (before, after) = worker.join().expect("worker");
            assert!(before, "the worker had its copy");
            assert!(!after, "the revocation on another thread reached the worker's copy at once");
        });
    }

    #[test]
    fn a_copy_expires_with_the_record_it_was_made_from() {
        let local = LocalKeys::default();
        let Some(long_ago) = Instant::now().checked_sub(KEY_CACHE_TTL + Duration::from_secs(1)) else {
            return; // a machine up for less than the TTL cannot express the past instant
        };
        local.remember([2; 32], &verified(long_ago), local.generation());
        assert!(local.get(&[2; 32]).is_none(), "loaded more than the TTL ago: asked for again");
    }

    #[test]
    fn uses_counted_on_many_threads_drain_as_one_entry_per_key() {
        let counter = UsageCounter::default();
        let key = ApiKeyId::new();
        let at = Timestamp::now();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| (0..250).for_each(|_| counter.record(key, at)));
            }
        });
        let batch = counter.drain();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].uses, 1000);
        assert!(counter.drain().is_empty());
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
