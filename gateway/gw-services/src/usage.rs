//! Usage: monthly usage records of a subscription or an instance, and an instance's daily message statistics.
//! A key reads its own instance's counters whatever its scopes; another instance's key gets not-found.

use std::sync::Arc;

use chrono::NaiveDate;
use gw_accounts::Principal;
use gw_core::{InstanceId, MessageStat, Subscription, SubscriptionId, UsagePeriod, UsageRecord};
use gw_store::{Store, StoreError, UsageFilter};

use crate::access::{Access, AccessError};
use crate::caller::Caller;

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The usage service.
#[derive(Clone)]
pub struct Usage {
    access: Access,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Usage").finish_non_exhaustive()
    }
}

impl Usage {
    pub fn new(access: Access) -> Self {
        Self { store: access.store().clone(), access }
    }

    /// The instance's subscription, if the caller may read the instance's counters.
    async fn readable(&self, caller: &Caller, id: InstanceId) -> Result<SubscriptionId, UsageError> {
        Ok(self.access.instance_subscription(caller, id).await?)
    }

    /// A subscription (for its quota) and its usage records of `period`.
    pub async fn subscription(
        &self,
        by: &Principal,
        id: SubscriptionId,
        period: UsagePeriod,
    ) -> Result<(Subscription, Vec<UsageRecord>), UsageError> {
        let subscription = self.access.accounts().get_subscription(by, id).await.map_err(AccessError::from)?;
        let records =
            self.store.list_usage(UsageFilter { subscription_id: id, instance_id: None, period: Some(period) }).await?;
        Ok((subscription, records))
    }

    pub async fn instance(
        &self,
        caller: &Caller,
        id: InstanceId,
        period: UsagePeriod,
    ) -> Result<Vec<UsageRecord>, UsageError> {
        let subscription_id = self.readable(caller, id).await?;
        let filter = UsageFilter { subscription_id, instance_id: Some(id), period: Some(period) };
        Ok(self.store.list_usage(filter).await?)
    }

    /// Daily statistics over the inclusive range `range` yields, parsed only once the instance is known to be
    /// visible (another tenant's instance is not-found whatever the query says).
    pub async fn stats<E>(
        &self,
        caller: &Caller,
        id: InstanceId,
        range: impl FnOnce() -> Result<(NaiveDate, NaiveDate), E>,
    ) -> Result<(NaiveDate, NaiveDate, Vec<MessageStat>), E>
    where
        E: From<UsageError>,
    {
        self.readable(caller, id).await?;
        let (from, to) = range()?;
        let days = self.store.list_message_stats(id, from, to).await.map_err(UsageError::from)?;
        Ok((from, to, days))
    }
}
