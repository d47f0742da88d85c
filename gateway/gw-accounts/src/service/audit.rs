//! Reading the audit log.

use gw_core::AuditLogEntry;
use gw_store::{AuditFilter, Page, PageRequest, StoreError, Visibility};

use super::Accounts;
use crate::{AccountError, Action, Principal};

impl Accounts {
    /// Audit rows, newest first. Tenants read only their own subscription's, whatever filter they pass.
    pub async fn list_audit(
        &self,
        by: &Principal,
        mut filter: AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditLogEntry>, AccountError> {
        by.require(Action::ReadAudit)?;
        if let Visibility::Subscription(own) = by.visibility() {
            if filter.subscription_id.is_some_and(|id| id != own) {
                return Err(StoreError::not_found("subscription").into());
            }
            filter.subscription_id = Some(own);
        }
        Ok(self.store.list_audit(filter, page).await?)
    }
}
