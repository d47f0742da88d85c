//! Users of a subscription: creation, listing, deactivation, password resets, and the signed-in user's own record.

use gw_core::{Email, SubscriptionId, Timestamp, User, UserId, UserRole};
use gw_store::{NewUser, Page, PageRequest, UserPatch, Visibility};

use super::{Accounts, CreateUser, checked_name};
use crate::password::check_policy;
use crate::{AccountError, Action, FieldError, Principal};

impl Accounts {
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
        Ok(self.store.list_users(Visibility::Subscription(subscription_id), page).await?)
    }

    /// Activates or deactivates a user; deactivation ends every session of the user at once.
    pub async fn set_user_active(&self, by: &Principal, user_id: UserId, active: bool) -> Result<User, AccountError> {
        self.store.get_user(by.visibility(), user_id).await?;
        by.require(Action::ManagePlatform)?;
        if user_id == by.user_id && !active {
            return Err(AccountError::invalid("is_active", "operators cannot deactivate themselves"));
        }
        let user = self
            .store
            .update_user(
                Visibility::All,
                user_id,
                UserPatch { is_active: Some(active), ..Default::default() },
                &by.actor(),
            )
            .await?;
        if !active {
            self.store.revoke_user_refresh_tokens(user_id, Timestamp::now()).await?;
        }
        Ok(user)
    }

    /// Sets a new password (checked against the policy) and ends every session of the user.
    pub async fn reset_password(&self, by: &Principal, user_id: UserId, password: &str) -> Result<User, AccountError> {
        let user = self.store.get_user(by.visibility(), user_id).await?;
        by.require(Action::ManagePlatform)?;
        check_policy(password, user.email.as_str())?;
        let hash = self.hash_password(password).await?;
        let user = self
            .store
            .update_user(
                Visibility::All,
                user_id,
                UserPatch { password: Some(hash), ..Default::default() },
                &by.actor(),
            )
            .await?;
        self.store.revoke_user_refresh_tokens(user_id, Timestamp::now()).await?;
        Ok(user)
    }

    /// The signed-in user's own record.
    pub async fn me(&self, by: &Principal) -> Result<gw_core::User, AccountError> {
        Ok(self.store.get_user(Visibility::All, by.user_id).await?)
    }
}
