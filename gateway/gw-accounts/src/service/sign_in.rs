//! Signing in: passwords, access and refresh tokens, sign-out, and who an access token belongs to.

use std::time::Instant;

use gw_core::{AuditAction, Email, SubscriptionId, Timestamp, TokenFamilyId, User, UserId};
use gw_store::{Actor, NewAuditEntry, NewRefreshToken, RefreshOutcome, StoreError, UserPatch, Visibility};

use super::{Accounts, Session};
use crate::password::Verification;
use crate::{AccountError, Principal, refresh};

impl Accounts {
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
                    Visibility::All,
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
                let user = self.store.get_user(Visibility::All, previous.user_id).await?;
                if let Err(err) = self.ensure_active(&user).await {
                    self.store.revoke_refresh_family(previous.family_id, now).await?;
                    return Err(err);
                }
                self.session(user, successor, expires_at, now)
            }
            RefreshOutcome::Reused { user_id, family_id } => {
                let user = self.store.get_user(Visibility::All, user_id).await.ok();
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
        let user = self.store.get_user(Visibility::All, token.user_id).await?;
        self.audit(user.subscription_id, AuditAction::AuthLogout, Some(user.id.to_string()), Actor::user(user.id, ip))
            .await
    }

    /// Who an access token belongs to, checked against the store on every call so that deactivating a user or a
    /// subscription, or changing a role, takes effect at once.
    pub async fn authenticate(&self, access_token: &str, ip: Option<String>) -> Result<Principal, AccountError> {
        let claims = self.tokens.verify(access_token)?;
        let user_id = claims.user_id()?;
        let user = match self.store.get_user(Visibility::All, user_id).await {
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
}
