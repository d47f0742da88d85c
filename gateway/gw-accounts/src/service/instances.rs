//! Instances: a tenant's WhatsApp numbers, within the subscription's slots.

use gw_core::{Instance, UserRole};
use gw_store::{InstancePatch, NewInstance, Page, PageRequest, StoreError};

use super::{Accounts, CreateInstance, UpdateInstance, checked_name, checked_settings};
use crate::{AccountError, Action, Principal};

impl Accounts {
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
        Ok(self.store.list_instances(by.visibility(), page).await?)
    }

    pub async fn get_instance(&self, by: &Principal, id: gw_core::InstanceId) -> Result<Instance, AccountError> {
        by.require(Action::ReadInstances)?;
        Ok(self.store.get_instance(by.visibility(), id).await?)
    }

    pub async fn update_instance(
        &self,
        by: &Principal,
        id: gw_core::InstanceId,
        update: UpdateInstance,
    ) -> Result<Instance, AccountError> {
        // Visibility first: another tenant's instance is not found, not forbidden.
        self.store.get_instance(by.visibility(), id).await?;
        by.require(Action::ManageInstances)?;
        let patch = InstancePatch {
            name: update.name.as_deref().map(|n| checked_name("name", n, 100)).transpose()?,
            settings: update.settings.map(checked_settings).transpose()?,
            is_active: update.is_active,
        };
        let instance = self.store.update_instance(by.visibility(), id, patch, &by.actor()).await?;
        self.invalidate_all_keys();
        Ok(instance)
    }

    pub async fn delete_instance(&self, by: &Principal, id: gw_core::InstanceId) -> Result<(), AccountError> {
        self.store.get_instance(by.visibility(), id).await?;
        by.require(Action::ManageInstances)?;
        self.store.delete_instance(by.visibility(), id, &by.actor()).await?;
        self.invalidate_all_keys();
        Ok(())
    }
}
