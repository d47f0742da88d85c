//! Managing an instance's API keys: issue, list, revoke, rotate with a grace period, delete.

use chrono::Duration;
use gw_core::{ApiKey, ApiKeyId, Instance, InstanceId, Redacted, Timestamp};
use gw_store::{ApiKeyPatch, NewApiKey, Page, PageRequest};

use super::{Accounts, CreateApiKey, MAX_ROTATION_GRACE, RotatedApiKey, checked_name};
use crate::api_keys::{ApiKeyHasher, SCOPES};
use crate::{AccountError, Action, FieldError, Principal};

impl Accounts {
    pub fn api_key_hasher(&self) -> &ApiKeyHasher {
        &self.api_key_hasher
    }

    /// The instance, if the caller may see it, and the caller may manage its keys.
    async fn key_owner(&self, by: &Principal, instance_id: InstanceId) -> Result<Instance, AccountError> {
        let instance = self.store.get_instance(by.visibility(), instance_id).await?;
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
}
