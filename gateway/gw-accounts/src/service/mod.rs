//! The account services: sign-in, tokens, subscriptions, users, instances, API keys and audit reads, with every
//! permission and scope check in one place. One `Accounts` value; its methods are grouped by aggregate, a file
//! each, and share the store, the password hasher and the key cache held here.

mod api_keys;
mod audit;
mod instances;
mod key_use;
mod sign_in;
mod subscriptions;
mod users;

use std::sync::Arc;

use chrono::Duration;
use gw_core::{
    ApiKey, DriverKind, LimitOverrides, PasswordHash, Redacted, Subscription, SubscriptionId, Tier, Timestamp, User,
    UserRole,
};
use gw_store::Store;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::api_keys::ApiKeyHasher;
use crate::key_auth::{InvalidationPublisher, KeyCache, LocalKeys, UsageCounter, key_cache};
use crate::password::Verification;
use crate::throttle::FailureThrottle;
use crate::{
    AccountError, FieldError, JwtSettings, PasswordHasherService, ThrottlePolicy, TierCatalog, TierLimits, TokenIssuer,
};

/// Everything the account services are configured with.
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    pub jwt: JwtSettings,
    pub refresh_ttl: Duration,
    pub tiers: TierCatalog,
    pub email_throttle: ThrottlePolicy,
    pub ip_throttle: ThrottlePolicy,
    /// Server-side secret mixed into API key hashes.
    pub api_key_pepper: Redacted<String>,
}

/// A signed-in session: a short-lived access token and the refresh token that renews it.
#[derive(Debug, Clone)]
pub struct Session {
    pub access_token: String,
    pub access_expires_at: Timestamp,
    pub refresh_token: String,
    pub refresh_expires_at: Timestamp,
    pub user: User,
}

#[derive(Debug, Clone)]
pub struct CreateSubscription {
    pub name: String,
    pub tier: Tier,
    pub overrides: LimitOverrides,
}

#[derive(Debug, Clone, Default)]
pub struct UpdateSubscription {
    pub name: Option<String>,
    pub tier: Option<Tier>,
    pub overrides: Option<LimitOverrides>,
    pub is_active: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct CreateUser {
    pub email: String,
    pub password: String,
    pub name: String,
    pub role: UserRole,
}

#[derive(Debug, Clone)]
pub struct CreateInstance {
    pub name: String,
    pub driver: DriverKind,
    pub settings: Value,
    /// For operators only: the subscription to create it in. Tenants create in their own.
    pub subscription_id: Option<SubscriptionId>,
}

#[derive(Debug, Clone)]
pub struct CreateApiKey {
    pub name: String,
    pub permissions: Vec<String>,
    pub expires_at: Option<Timestamp>,
    /// Requests per minute; `None` takes the tier's default.
    pub rate_limit: Option<i32>,
}

/// A rotation's result: the new key (its secret shown once) and the old one, now expiring after the grace period.
#[derive(Debug, Clone)]
pub struct RotatedApiKey {
    pub key: ApiKey,
    pub secret: Redacted<String>,
    pub previous: ApiKey,
}

/// The longest a rotated-out key may stay valid.
pub const MAX_ROTATION_GRACE: Duration = Duration::days(7);

#[derive(Debug, Clone, Default)]
pub struct UpdateInstance {
    pub name: Option<String>,
    pub settings: Option<Value>,
    pub is_active: Option<bool>,
}

const MAX_SETTINGS_BYTES: usize = 16 * 1024;

fn checked_name(field: &'static str, raw: &str, max: usize) -> Result<String, AccountError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(AccountError::invalid(field, "must not be empty"));
    }
    if name.chars().count() > max {
        return Err(AccountError::invalid(field, format!("must be at most {max} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(AccountError::invalid(field, "must not contain control characters"));
    }
    Ok(name.to_owned())
}

fn checked_settings(settings: Value) -> Result<Value, AccountError> {
    if !settings.is_object() {
        return Err(AccountError::invalid("settings", "must be a JSON object"));
    }
    if settings.to_string().len() > MAX_SETTINGS_BYTES {
        return Err(AccountError::invalid("settings", format!("must be at most {MAX_SETTINGS_BYTES} bytes")));
    }
    Ok(settings)
}

fn checked_limits(limits: &TierLimits) -> Result<(), AccountError> {
    match limits.invalid_field() {
        Some(field) => Err(AccountError::Validation(vec![FieldError {
            field: "limit_overrides",
            message: format!("{field} is out of range"),
        }])),
        None => Ok(()),
    }
}

/// The account services.
pub struct Accounts {
    store: Arc<dyn Store>,
    hasher: Arc<PasswordHasherService>,
    tokens: TokenIssuer,
    refresh_ttl: Duration,
    tiers: TierCatalog,
    email_throttle: FailureThrottle,
    ip_throttle: FailureThrottle,
    /// Argon2 is CPU- and memory-heavy: at most this many hashes at once, off the async runtime.
    hashing: Semaphore,
    api_key_hasher: ApiKeyHasher,
    key_cache: KeyCache,
    /// Each worker thread's copies of keys in `key_cache`.
    local_keys: LocalKeys,
    key_usage: UsageCounter,
    /// Tells other nodes to drop cached keys; `None` on a single node.
    invalidations: Option<Arc<dyn InvalidationPublisher>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").field("tokens", &self.tokens).finish_non_exhaustive()
    }
}

impl Accounts {
    pub fn new(store: Arc<dyn Store>, hasher: PasswordHasherService, config: AccountsConfig) -> Self {
        let parallelism = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Self {
            store,
            hasher: Arc::new(hasher),
            tokens: TokenIssuer::new(config.jwt),
            refresh_ttl: config.refresh_ttl,
            tiers: config.tiers,
            email_throttle: FailureThrottle::new(config.email_throttle),
            ip_throttle: FailureThrottle::new(config.ip_throttle),
            hashing: Semaphore::new(parallelism),
            api_key_hasher: ApiKeyHasher::new(config.api_key_pepper.expose().as_bytes()),
            key_cache: key_cache(),
            local_keys: LocalKeys::default(),
            key_usage: UsageCounter::default(),
            invalidations: None,
        }
    }

    /// Publishes every key-cache invalidation, so other nodes drop what this one changed.
    pub fn with_invalidation_publisher(mut self, publisher: Arc<dyn InvalidationPublisher>) -> Self {
        self.invalidations = Some(publisher);
        self
    }

    pub fn tiers(&self) -> &TierCatalog {
        &self.tiers
    }

    /// The limits in force for a subscription: its tier's defaults with its overrides.
    pub fn effective_limits(&self, subscription: &Subscription) -> TierLimits {
        self.tiers.limits(subscription.tier).with_overrides(&subscription.limit_overrides)
    }

    async fn hash_password(&self, password: &str) -> Result<PasswordHash, AccountError> {
        let _permit = self.hashing.acquire().await.map_err(|e| AccountError::Internal(e.to_string()))?;
        let hasher = self.hasher.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(|e| AccountError::Internal(e.to_string()))?
            .map_err(|e| AccountError::Internal(e.to_string()))
    }

    async fn verify_password(
        &self,
        password: &str,
        stored: Option<PasswordHash>,
    ) -> Result<Verification, AccountError> {
        let _permit = self.hashing.acquire().await.map_err(|e| AccountError::Internal(e.to_string()))?;
        let hasher = self.hasher.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hasher.verify(&password, stored.as_ref()))
            .await
            .map_err(|e| AccountError::Internal(e.to_string()))
    }
}
