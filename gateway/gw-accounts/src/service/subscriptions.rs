//! Subscriptions: created and re-limited by operators, read by their tenants.

use gw_core::{Subscription, SubscriptionId};
use gw_store::{NewSubscription, Page, PageRequest, StoreError, SubscriptionPatch};

use super::{Accounts, CreateSubscription, UpdateSubscription, checked_limits, checked_name};
use crate::{AccountError, Action, Principal};

impl Accounts {
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
    pub(super) fn ensure_visible(&self, by: &Principal, id: SubscriptionId) -> Result<(), AccountError> {
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
}
