//! The account services: sign-in, tokens, subscriptions, users, instances and audit reads, with every permission
//! and scope check in one place.

use std::sync::Arc;
use std::time::Instant;

use chrono::Duration;
use gw_core::{
    ApiKey, ApiKeyId, AuditAction, AuditLogEntry, DriverKind, Email, Instance, InstanceId, LimitOverrides,
    PasswordHash, Redacted, Subscription, SubscriptionId, Tier, Timestamp, TokenFamilyId, User, UserId, UserRole,
};
use gw_store::{
    Actor, ApiKeyPatch, AuditFilter, InstancePatch, NewApiKey, NewAuditEntry, NewInstance, NewRefreshToken,
    NewSubscription, NewUser, Page, PageRequest, RefreshOutcome, Scope, Store, StoreError, SubscriptionPatch,
    UserPatch,
};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::api_keys::{ApiKeyHasher, SCOPES};
use crate::key_auth::{
    CachedKey, InvalidationPublisher, KeyCache, KeyInvalidation, KeyPrincipal, LocalKeys, UsageCounter, VerifiedKey,
    key_cache,
};
use crate::password::{Verification, check_policy};
use crate::throttle::FailureThrottle;
use crate::{
    AccountError, Action, FieldError, JwtSettings, PasswordHasherService, Principal, ThrottlePolicy, TierCatalog,
    TierLimits, TokenIssuer, refresh,
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

    // ---- sign-in ------------------------------------------------------------------------------------------------

    /// Signs a user in with email and password.
    pub async fn login(&self, email: &str, password: &str, ip: Option<String>) -> Result<Session, AccountError> {
        let email = Email::parse(email).map_err(|e| AccountError::invalid("email", e.to_string()))?;
        let email_key = email.as_str().to_owned();
        let ip_key = ip.clone().unwrap_or_default();
        let now = Instant::now();
        let wait = [
            self.email_throttle.retry_after(&email_key, now),
            ip.as_ref().and_then(|_| self.ip_throttle.retry_after(&ip_key, now)),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(retry_after) = wait {
            return Err(AccountError::Throttled { retry_after });
        }

        let user = self.store.find_user_by_email(&email).await?;
        let verification = self.verify_password(password, user.as_ref().map(|u| u.password.clone())).await?;
        let (user, needs_rehash) = match (user, verification) {
            (Some(user), Verification::Valid { needs_rehash }) => (user, needs_rehash),
            _ => {
                self.email_throttle.record_failure(&email_key, Instant::now());
                if ip.is_some() {
                    self.ip_throttle.record_failure(&ip_key, Instant::now());
                }
                return Err(AccountError::InvalidCredentials);
            }
        };
        self.email_throttle.clear(&email_key);
        self.ensure_active(&user).await?;

        if needs_rehash {
            let rehashed = self.hash_password(password).await?;
            self.store
                .update_user(
                    Scope::All,
                    user.id,
                    UserPatch { password: Some(rehashed), ..Default::default() },
                    &Actor::system(),
                )
                .await?;
        }
        let now = Timestamp::now();
        self.store.record_login(user.id, now).await?;
        let actor = Actor::user(user.id, ip);
        self.audit(user.subscription_id, AuditAction::AuthLogin, Some(user.id.to_string()), actor).await?;
        let user = User { last_login_at: Some(now), ..user };
        self.start_session(user, TokenFamilyId::new(), now).await
    }

    async fn ensure_active(&self, user: &User) -> Result<(), AccountError> {
        if !user.is_active {
            return Err(AccountError::AccountInactive);
        }
        if let Some(subscription_id) = user.subscription_id
            && !self.store.get_subscription(subscription_id).await?.is_active
        {
            return Err(AccountError::AccountInactive);
        }
        Ok(())
    }

    async fn start_session(
        &self,
        user: User,
        family_id: TokenFamilyId,
        now: Timestamp,
    ) -> Result<Session, AccountError> {
        let (refresh_token, token_hash) = refresh::generate();
        let refresh_expires_at = self.refresh_expiry(now)?;
        self.store
            .create_refresh_token(NewRefreshToken {
                user_id: user.id,
                family_id,
                token_hash,
                issued_at: now,
                expires_at: refresh_expires_at,
            })
            .await?;
        self.session(user, refresh_token, refresh_expires_at, now)
    }

    fn refresh_expiry(&self, now: Timestamp) -> Result<Timestamp, AccountError> {
        now.checked_add(self.refresh_ttl).ok_or_else(|| AccountError::Internal("refresh expiry out of range".into()))
    }

    fn session(
        &self,
        user: User,
        refresh_token: String,
        refresh_expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Session, AccountError> {
        let (access_token, claims) = self.tokens.issue(user.id, user.subscription_id, user.role, now)?;
        let access_expires_at = Timestamp::from(
            chrono::DateTime::from_timestamp(claims.exp, 0)
                .ok_or_else(|| AccountError::Internal("token expiry out of range".into()))?,
        );
        Ok(Session { access_token, access_expires_at, refresh_token, refresh_expires_at, user })
    }

    /// Exchanges a refresh token for a new session; the presented token is consumed. Presenting a consumed token
    /// again revokes every session descended from the same sign-in.
    pub async fn refresh(&self, refresh_token: &str, ip: Option<String>) -> Result<Session, AccountError> {
        if !refresh::looks_valid(refresh_token) {
            return Err(AccountError::InvalidRefreshToken);
        }
        let now = Timestamp::now();
        let (successor, token_hash) = refresh::generate();
        let expires_at = self.refresh_expiry(now)?;
        let outcome = self
            .store
            .rotate_refresh_token(
                &refresh::hash(refresh_token),
                NewRefreshToken {
                    // Taken from the consumed token by the store.
                    user_id: UserId::from_uuid(uuid::Uuid::nil()),
                    family_id: TokenFamilyId::from_uuid(uuid::Uuid::nil()),
                    token_hash,
                    issued_at: now,
                    expires_at,
                },
                now,
            )
            .await?;
        match outcome {
            RefreshOutcome::Rotated { previous, .. } => {
                let user = self.store.get_user(Scope::All, previous.user_id).await?;
                if let Err(err) = self.ensure_active(&user).await {
                    self.store.revoke_refresh_family(previous.family_id, now).await?;
                    return Err(err);
                }
                self.session(user, successor, expires_at, now)
            }
            RefreshOutcome::Reused { user_id, family_id } => {
                let user = self.store.get_user(Scope::All, user_id).await.ok();
                tracing::warn!(%user_id, ?family_id, "refresh token reused; its family is revoked");
                self.audit(
                    user.and_then(|u| u.subscription_id),
                    AuditAction::AuthRefreshReuse,
                    Some(user_id.to_string()),
                    Actor { user_id: Some(user_id), api_key_id: None, ip_address: ip },
                )
                .await?;
                Err(AccountError::RefreshTokenReused)
            }
            RefreshOutcome::Invalid => Err(AccountError::InvalidRefreshToken),
        }
    }

    /// Ends the session the refresh token belongs to (its whole family). Unknown tokens are ignored, so logging out
    /// twice is not an error.
    pub async fn logout(&self, refresh_token: &str, ip: Option<String>) -> Result<(), AccountError> {
        if !refresh::looks_valid(refresh_token) {
            return Ok(());
        }
        let Some(token) = self.store.find_refresh_token(&refresh::hash(refresh_token)).await? else {
            return Ok(());
        };
        self.store.revoke_refresh_family(token.family_id, Timestamp::now()).await?;
        let user = self.store.get_user(Scope::All, token.user_id).await?;
        self.audit(user.subscription_id, AuditAction::AuthLogout, Some(user.id.to_string()), Actor::user(user.id, ip))
            .await
    }

    /// Who an access token belongs to, checked against the store on every call so that deactivating a user or a
    /// subscription, or changing a role, takes effect at once.
    pub async fn authenticate(&self, access_token: &str, ip: Option<String>) -> Result<Principal, AccountError> {
        let claims = self.tokens.verify(access_token)?;
        let user_id = claims.user_id()?;
        let user = match self.store.get_user(Scope::All, user_id).await {
            Ok(user) => user,
            Err(StoreError::NotFound { .. }) => return Err(AccountError::AccountInactive),
            Err(err) => return Err(err.into()),
        };
        self.ensure_active(&user).await?;
        Ok(Principal { user_id: user.id, role: user.role, subscription_id: user.subscription_id, ip_address: ip })
    }

    async fn audit(
        &self,
        subscription_id: Option<SubscriptionId>,
        action: AuditAction,
        resource_id: Option<String>,
        actor: Actor,
    ) -> Result<(), AccountError> {
        self.store.append_audit(NewAuditEntry { subscription_id, action, resource_id, actor }).await?;
        Ok(())
    }

    // ---- subscriptions ------------------------------------------------------------------------------------------

    pub async fn create_subscription(
        &self,
        by: &Principal,
        new: CreateSubscription,
    ) -> Result<Subscription, AccountError> {
        by.require(Action::ManagePlatform)?;
        let name = checked_name("name", &new.name, 200)?;
        let limits = self.tiers.limits(new.tier).with_overrides(&new.overrides);
        checked_limits(&limits)?;
        Ok(self
            .store
            .create_subscription(
                NewSubscription {
                    name,
                    tier: new.tier,
                    max_instances: limits.max_instances,
                    monthly_messages: limits.monthly_messages,
                    limit_overrides: new.overrides,
                },
                &by.actor(),
            )
            .await?)
    }

    pub async fn list_subscriptions(
        &self,
        by: &Principal,
        page: PageRequest,
    ) -> Result<Page<Subscription>, AccountError> {
        by.require(Action::ManagePlatform)?;
        Ok(self.store.list_subscriptions(page).await?)
    }

    /// Another tenant's resources are not found, never forbidden: checked before any permission.
    fn ensure_visible(&self, by: &Principal, id: SubscriptionId) -> Result<(), AccountError> {
        if by.sees(id) { Ok(()) } else { Err(StoreError::not_found("subscription").into()) }
    }

    pub async fn get_subscription(&self, by: &Principal, id: SubscriptionId) -> Result<Subscription, AccountError> {
        self.ensure_visible(by, id)?;
        by.require(Action::ReadSubscription)?;
        Ok(self.store.get_subscription(id).await?)
    }

    /// Renames, re-tiers, re-limits, activates or deactivates a subscription. A change of tier or overrides
    /// recomputes the enforced limits from the new tier's defaults and the (new) overrides.
    pub async fn update_subscription(
        &self,
        by: &Principal,
        id: SubscriptionId,
        update: UpdateSubscription,
    ) -> Result<Subscription, AccountError> {
        let updated = self.apply_subscription_update(by, id, update).await?;
        // Activation, limits and tier all feed cached key decisions.
        self.invalidate_all_keys();
        Ok(updated)
    }

    async fn apply_subscription_update(
        &self,
        by: &Principal,
        id: SubscriptionId,
        update: UpdateSubscription,
    ) -> Result<Subscription, AccountError> {
        self.ensure_visible(by, id)?;
        by.require(Action::ManagePlatform)?;
        let name = update.name.as_deref().map(|n| checked_name("name", n, 200)).transpose()?;
        let (max_instances, monthly_messages) = if update.tier.is_some() || update.overrides.is_some() {
            let current = self.store.get_subscription(id).await?;
            let tier = update.tier.unwrap_or(current.tier);
            let overrides = update.overrides.as_ref().unwrap_or(&current.limit_overrides);
            let limits = self.tiers.limits(tier).with_overrides(overrides);
            checked_limits(&limits)?;
            (Some(limits.max_instances), Some(limits.monthly_messages))
        } else {
            (None, None)
        };
        Ok(self
            .store
            .update_subscription(
                id,
                SubscriptionPatch {
                    name,
                    tier: update.tier,
                    max_instances,
                    monthly_messages,
                    is_active: update.is_active,
                    limit_overrides: update.overrides,
                },
                &by.actor(),
            )
            .await?)
    }

    // ---- users --------------------------------------------------------------------------------------------------

    pub async fn create_user(
        &self,
        by: &Principal,
        subscription_id: SubscriptionId,
        new: CreateUser,
    ) -> Result<User, AccountError> {
        self.ensure_visible(by, subscription_id)?;
        by.require(Action::ManagePlatform)?;
        let mut errors = Vec::new();
        let email = Email::parse(&new.email).map_err(|e| FieldError { field: "email", message: e.to_string() });
        if let Err(e) = &email {
            errors.push(e.clone());
        }
        if let Err(AccountError::Validation(mut e)) = checked_name("name", &new.name, 200) {
            errors.append(&mut e);
        }
        if new.role == UserRole::Admin {
            errors.push(FieldError { field: "role", message: "must be owner or member".into() });
        }
        if let Err(policy) = check_policy(&new.password, &new.email) {
            errors.push(FieldError { field: "password", message: policy.to_string() });
        }
        let email = match email {
            Ok(email) if errors.is_empty() => email,
            _ => return Err(AccountError::Validation(errors)),
        };
        let password = self.hash_password(&new.password).await?;
        Ok(self
            .store
            .create_user(
                NewUser {
                    email,
                    password,
                    name: new.name.trim().to_owned(),
                    role: new.role,
                    subscription_id: Some(subscription_id),
                },
                &by.actor(),
            )
            .await?)
    }

    /// The users of a subscription; tenants see their own subscription's.
    pub async fn list_users(
        &self,
        by: &Principal,
        subscription_id: SubscriptionId,
        page: PageRequest,
    ) -> Result<Page<User>, AccountError> {
        self.ensure_visible(by, subscription_id)?;
        by.require(Action::ReadSubscription)?;
        self.store.get_subscription(subscription_id).await?;
        Ok(self.store.list_users(Scope::Subscription(subscription_id), page).await?)
    }

    /// Activates or deactivates a user; deactivation ends every session of the user at once.
    pub async fn set_user_active(&self, by: &Principal, user_id: UserId, active: bool) -> Result<User, AccountError> {
        self.store.get_user(by.scope(), user_id).await?;
        by.require(Action::ManagePlatform)?;
        if user_id == by.user_id && !active {
            return Err(AccountError::invalid("is_active", "operators cannot deactivate themselves"));
        }
        let user = self
            .store
            .update_user(Scope::All, user_id, UserPatch { is_active: Some(active), ..Default::default() }, &by.actor())
            .await?;
        if !active {
            self.store.revoke_user_refresh_tokens(user_id, Timestamp::now()).await?;
        }
        Ok(user)
    }

    /// Sets a new password (checked against the policy) and ends every session of the user.
    pub async fn reset_password(&self, by: &Principal, user_id: UserId, password: &str) -> Result<User, AccountError> {
        let user = self.store.get_user(by.scope(), user_id).await?;
        by.require(Action::ManagePlatform)?;
        check_policy(password, user.email.as_str())?;
        let hash = self.hash_password(password).await?;
        let user = self
            .store
            .update_user(Scope::All, user_id, UserPatch { password: Some(hash), ..Default::default() }, &by.actor())
            .await?;
        self.store.revoke_user_refresh_tokens(user_id, Timestamp::now()).await?;
        Ok(user)
    }

    // ---- instances ----------------------------------------------------------------------------------------------

    pub async fn create_instance(&self, by: &Principal, new: CreateInstance) -> Result<Instance, AccountError> {
        let subscription_id = match (by.role, by.subscription_id, new.subscription_id) {
            (UserRole::Admin, _, Some(id)) => id,
            (UserRole::Admin, _, None) => {
                return Err(AccountError::invalid("subscription_id", "operators must name the subscription"));
            }
            (_, Some(own), None) => own,
            (_, Some(own), Some(id)) if id == own => own,
            (_, _, Some(_)) => return Err(StoreError::not_found("subscription").into()),
            (_, None, None) => return Err(AccountError::Forbidden),
        };
        by.require(Action::ManageInstances)?;
        let name = checked_name("name", &new.name, 100)?;
        let settings = checked_settings(new.settings)?;
        Ok(self
            .store
            .create_instance(
                NewInstance { name, subscription_id, created_by_id: Some(by.user_id), driver: new.driver, settings },
                &by.actor(),
            )
            .await?)
    }

    pub async fn list_instances(&self, by: &Principal, page: PageRequest) -> Result<Page<Instance>, AccountError> {
        by.require(Action::ReadInstances)?;
        Ok(self.store.list_instances(by.scope(), page).await?)
    }

    /// The signed-in user's own record.
    pub async fn me(&self, by: &Principal) -> Result<gw_core::User, AccountError> {
        Ok(self.store.get_user(Scope::All, by.user_id).await?)
    }

    pub async fn get_instance(&self, by: &Principal, id: gw_core::InstanceId) -> Result<Instance, AccountError> {
        by.require(Action::ReadInstances)?;
        Ok(self.store.get_instance(by.scope(), id).await?)
    }

    pub async fn update_instance(
        &self,
        by: &Principal,
        id: gw_core::InstanceId,
        update: UpdateInstance,
    ) -> Result<Instance, AccountError> {
        // Visibility first: another tenant's instance is not found, not forbidden.
        self.store.get_instance(by.scope(), id).await?;
        by.require(Action::ManageInstances)?;
        let patch = InstancePatch {
            name: update.name.as_deref().map(|n| checked_name("name", n, 100)).transpose()?,
            settings: update.settings.map(checked_settings).transpose()?,
            is_active: update.is_active,
        };
        let instance = self.store.update_instance(by.scope(), id, patch, &by.actor()).await?;
        self.invalidate_all_keys();
        Ok(instance)
    }

    pub async fn delete_instance(&self, by: &Principal, id: gw_core::InstanceId) -> Result<(), AccountError> {
        self.store.get_instance(by.scope(), id).await?;
        by.require(Action::ManageInstances)?;
        self.store.delete_instance(by.scope(), id, &by.actor()).await?;
        self.invalidate_all_keys();
        Ok(())
    }

    // ---- API keys -----------------------------------------------------------------------------------------------

    pub fn api_key_hasher(&self) -> &ApiKeyHasher {
        &self.api_key_hasher
    }

    /// The instance, if the caller may see it, and the caller may manage its keys.
    async fn key_owner(&self, by: &Principal, instance_id: InstanceId) -> Result<Instance, AccountError> {
        let instance = self.store.get_instance(by.scope(), instance_id).await?;
        by.require(Action::ManageApiKeys)?;
        Ok(instance)
    }

    fn checked_key_request(new: &CreateApiKey) -> Result<(String, Vec<String>), AccountError> {
        let mut errors = Vec::new();
        let name = match checked_name("name", &new.name, 100) {
            Ok(name) => Some(name),
            Err(AccountError::Validation(mut e)) => {
                errors.append(&mut e);
                None
            }
            Err(other) => return Err(other),
        };
        let mut permissions: Vec<String> = Vec::new();
        if new.permissions.is_empty() {
            errors.push(FieldError {
                field: "permissions",
                message: format!("name at least one of: {}", SCOPES.join(", ")),
            });
        }
        for scope in &new.permissions {
            if scope.parse::<gw_core::KeyScope>().is_err() {
                errors.push(FieldError {
                    field: "permissions",
                    message: format!("{scope:?} is not a scope; expected any of: {}", SCOPES.join(", ")),
                });
            } else if !permissions.contains(scope) {
                permissions.push(scope.clone());
            }
        }
        if new.expires_at.is_some_and(|at| at <= Timestamp::now()) {
            errors.push(FieldError { field: "expires_at", message: "must be in the future".into() });
        }
        if new.rate_limit.is_some_and(|limit| !(1..=1_000_000).contains(&limit)) {
            errors.push(FieldError {
                field: "rate_limit",
                message: "must be between 1 and 1000000 requests per minute".into(),
            });
        }
        match name {
            Some(name) if errors.is_empty() => Ok((name, permissions)),
            _ => Err(AccountError::Validation(errors)),
        }
    }

    /// Creates a key for an instance; the returned secret is the only time the key is ever shown.
    pub async fn create_api_key(
        &self,
        by: &Principal,
        instance_id: InstanceId,
        new: CreateApiKey,
    ) -> Result<(ApiKey, Redacted<String>), AccountError> {
        self.key_owner(by, instance_id).await?;
        let (name, permissions) = Self::checked_key_request(&new)?;
        let id = ApiKeyId::new();
        let secret = crate::api_keys::generate(id);
        let key = self
            .store
            .create_api_key(
                NewApiKey {
                    id,
                    instance_id,
                    name,
                    key_hash: self.api_key_hasher.hash(secret.expose()),
                    permissions,
                    expires_at: new.expires_at,
                    rate_limit: new.rate_limit,
                },
                &by.actor(),
            )
            .await?;
        Ok((key, secret))
    }

    pub async fn list_api_keys(
        &self,
        by: &Principal,
        instance_id: InstanceId,
        page: PageRequest,
    ) -> Result<Page<ApiKey>, AccountError> {
        self.key_owner(by, instance_id).await?;
        Ok(self.store.list_api_keys(instance_id, page).await?)
    }

    pub async fn get_api_key(
        &self,
        by: &Principal,
        instance_id: InstanceId,
        id: ApiKeyId,
    ) -> Result<ApiKey, AccountError> {
        self.key_owner(by, instance_id).await?;
        Ok(self.store.get_api_key(instance_id, id).await?)
    }

    /// Revokes a key at once. It stays listed (revoked) for the record; delete it to remove it.
    pub async fn revoke_api_key(
        &self,
        by: &Principal,
        instance_id: InstanceId,
        id: ApiKeyId,
    ) -> Result<ApiKey, AccountError> {
        self.key_owner(by, instance_id).await?;
        let patch = ApiKeyPatch { is_active: Some(false), ..Default::default() };
        let revoked = self.store.update_api_key(instance_id, id, patch, &by.actor()).await?;
        self.invalidate_key(&revoked).await;
        Ok(revoked)
    }

    /// Issues a successor with the same name, scopes, rate limit and expiry, and lets the old key live on for
    /// `grace` (at most 7 days), so clients can switch without downtime.
    pub async fn rotate_api_key(
        &self,
        by: &Principal,
        instance_id: InstanceId,
        id: ApiKeyId,
        grace: Duration,
    ) -> Result<RotatedApiKey, AccountError> {
        self.key_owner(by, instance_id).await?;
        if grace < Duration::zero() || grace > MAX_ROTATION_GRACE {
            return Err(AccountError::invalid("grace_period_secs", "must be between 0 and 604800 seconds"));
        }
        let old = self.store.get_api_key(instance_id, id).await?;
        if !old.is_active {
            return Err(AccountError::invalid("key", "a revoked key cannot be rotated"));
        }
        let new_id = ApiKeyId::new();
        let secret = crate::api_keys::generate(new_id);
        let key = self
            .store
            .create_api_key(
                NewApiKey {
                    id: new_id,
                    instance_id,
                    name: old.name.clone(),
                    key_hash: self.api_key_hasher.hash(secret.expose()),
                    permissions: old.permissions.clone(),
                    expires_at: old.expires_at,
                    rate_limit: old.rate_limit,
                },
                &by.actor(),
            )
            .await?;
        // If this second write failed, both keys would stay valid: the safe way to fail a rotation.
        let grace_end =
            Timestamp::now().checked_add(grace).ok_or_else(|| AccountError::Internal("grace out of range".into()))?;
        let expires_at = old.expires_at.map_or(grace_end, |at| at.min(grace_end));
        let patch = ApiKeyPatch { expires_at: Some(Some(expires_at)), ..Default::default() };
        let previous = self.store.update_api_key(instance_id, id, patch, &by.actor()).await?;
        self.invalidate_key(&previous).await;
        Ok(RotatedApiKey { key, secret, previous })
    }

    pub async fn delete_api_key(
        &self,
        by: &Principal,
        instance_id: InstanceId,
        id: ApiKeyId,
    ) -> Result<(), AccountError> {
        self.key_owner(by, instance_id).await?;
        let key = self.store.get_api_key(instance_id, id).await?;
        self.store.delete_api_key(instance_id, id, &by.actor()).await?;
        self.invalidate_key(&key).await;
        Ok(())
    }

    // ---- authenticating API calls with keys ---------------------------------------------------------------------

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
    fn invalidate_all_keys(&self) {
        self.key_cache.invalidate_all();
        self.local_keys.invalidate();
        self.publish(&KeyInvalidation::All);
    }

    async fn invalidate_key(&self, key: &ApiKey) {
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

    // ---- audit log ----------------------------------------------------------------------------------------------

    /// Audit rows, newest first. Tenants read only their own subscription's, whatever filter they pass.
    pub async fn list_audit(
        &self,
        by: &Principal,
        mut filter: AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditLogEntry>, AccountError> {
        by.require(Action::ReadAudit)?;
        if let Scope::Subscription(own) = by.scope() {
            if filter.subscription_id.is_some_and(|id| id != own) {
                return Err(StoreError::not_found("subscription").into());
            }
            filter.subscription_id = Some(own);
        }
        Ok(self.store.list_audit(filter, page).await?)
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
