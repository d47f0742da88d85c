//! Authenticating API calls with keys: the two-level key cache, usage counting, and invalidation across nodes.

use std::sync::Arc;

use gw_core::{ApiKey, Timestamp};
use gw_store::StoreError;

use super::Accounts;
use crate::AccountError;
use crate::key_auth::{CachedKey, KeyInvalidation, KeyPrincipal, VerifiedKey};

impl Accounts {
    async fn load_key(&self, hash: &gw_core::ApiKeyHash) -> Result<CachedKey, StoreError> {
        let Some(record) = self.store.find_api_key_by_hash(hash).await? else {
            return Ok(CachedKey::Unknown);
        };
        let subscription = self.store.get_subscription(record.subscription_id).await?;
        let limits = self.effective_limits(&subscription);
        let rate_limit_per_minute = record.key.rate_limit.unwrap_or(limits.api_rate_limit_per_minute);
        Ok(CachedKey::Found(std::sync::Arc::new(VerifiedKey::new(
            record,
            rate_limit_per_minute.max(1) as u32,
            limits.requests_per_minute.max(1) as u32,
        ))))
    }

    /// Verifies an API key: shape and checksum first (no look-up for garbage), then the cached record, then its
    /// state. Counts the use (written in batches by [`Accounts::flush_key_usage`]).
    pub async fn authenticate_key(
        &self,
        key: &str,
        ip: Option<std::net::IpAddr>,
    ) -> Result<KeyPrincipal, AccountError> {
        crate::api_keys::parse(key).map_err(|_| AccountError::InvalidApiKey)?;
        let digest = self.api_key_hasher.digest(key);
        let verified = match self.local_keys.get(&digest) {
            Some(verified) => verified,
            // Boxed: the look-up's state (the cache's and the store's futures) would otherwise be part of every
            // request's future, moved and allocated with it even when this thread already has the key.
            None => Box::pin(self.shared_key(digest)).await?,
        };
        let record = &verified.record;
        // The hash matched by equality in the index; compare again in constant time so no code path depends on
        // how much of a guessed hash matched.
        if !constant_time_eq(record.key.key_hash.as_bytes(), &digest) {
            return Err(AccountError::InvalidApiKey);
        }
        let now = Timestamp::now();
        if !record.key.is_active {
            return Err(AccountError::ApiKeyRevoked);
        }
        if record.key.expires_at.is_some_and(|at| at <= now) {
            return Err(AccountError::ApiKeyExpired);
        }
        if !record.instance_active || !record.subscription_active {
            return Err(AccountError::ApiKeyInactive);
        }
        self.key_usage.record(record.key.id, now);
        Ok(KeyPrincipal::new(verified, ip, now))
    }

    /// A key from the shared cache (or the store), and this thread's copy of it.
    async fn shared_key(&self, digest: [u8; 32]) -> Result<Arc<VerifiedKey>, AccountError> {
        let generation = self.local_keys.generation();
        // A plain look-up first: it skips the loader's coalescing machinery.
        let cached = match self.key_cache.get(&digest[..]).await {
            Some(cached) => cached,
            None => self
                .key_cache
                .try_get_with(digest.to_vec(), self.load_key(&gw_core::ApiKeyHash::from_bytes(digest.to_vec())))
                .await
                .map_err(|err| shared_load_error(&err))?,
        };
        match cached {
            CachedKey::Found(verified) => Ok(self.local_keys.remember(digest, &verified, generation)),
            CachedKey::Unknown => Err(AccountError::InvalidApiKey),
        }
    }

    /// Writes the key uses counted since the last flush; on failure they are kept for the next one.
    pub async fn flush_key_usage(&self) -> Result<usize, AccountError> {
        let batch = self.key_usage.drain();
        if batch.is_empty() {
            return Ok(0);
        }
        if let Err(err) = self.store.record_api_key_usage(&batch).await {
            self.key_usage.restore(&batch);
            return Err(err.into());
        }
        Ok(batch.len())
    }

    /// Forgets cached keys after a change that may affect many of them (an instance or subscription changed), here
    /// and on every node.
    pub(super) fn invalidate_all_keys(&self) {
        self.key_cache.invalidate_all();
        self.local_keys.invalidate();
        self.publish(&KeyInvalidation::All);
    }

    pub(super) async fn invalidate_key(&self, key: &ApiKey) {
        self.key_cache.invalidate(key.key_hash.as_bytes()).await;
        self.local_keys.invalidate();
        self.publish(&KeyInvalidation::Key(key.key_hash.as_bytes().to_vec()));
    }

    fn publish(&self, invalidation: &KeyInvalidation) {
        if let Some(publisher) = &self.invalidations {
            publisher.publish(invalidation);
        }
    }

    /// Applies an invalidation published by a node (this one included) to this node's cache only.
    pub async fn apply_invalidation(&self, invalidation: &KeyInvalidation) {
        match invalidation {
            KeyInvalidation::All => self.key_cache.invalidate_all(),
            KeyInvalidation::Key(hash) => self.key_cache.invalidate(hash.as_slice()).await,
        }
        // After the shared cache: a thread that reads the old generation then refills from the shared cache gets
        // what it holds now.
        self.local_keys.invalidate();
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

/// The cache shares one look-up's error among its waiters (`Arc`), so the error cannot be moved out: an outage is
/// rebuilt as an outage (the edge's 503, retry later), anything else is internal.
fn shared_load_error(err: &std::sync::Arc<StoreError>) -> AccountError {
    match err.as_ref() {
        StoreError::Unavailable(cause) => {
            AccountError::Store(StoreError::Unavailable(format!("API key look-up: {cause}").into()))
        }
        other => AccountError::Internal(format!("API key look-up failed: {other}: {other:?}")),
    }
}
