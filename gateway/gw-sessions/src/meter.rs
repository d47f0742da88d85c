//! What the engine tells metering: counts of what happened, through the [`Meter`] port of `gw-core`. The monthly
//! quota is not metering's business any more: the store charges it in the transaction that stores the message
//! (`MessageStore::enqueue_message`), so the quota counts exactly the messages that were accepted.

use gw_core::{InstanceId, SubscriptionId, Timestamp};
pub use gw_core::{Meter, Metered};

/// Why a send was refused by the monthly quota.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error("the monthly message quota of {limit} is used up until {resets_at}")]
    Exceeded { limit: i64, resets_at: Timestamp },
    #[error("the subscription is not active")]
    Inactive,
}

impl QuotaError {
    /// The quota refusal a store error stands for, if it is one (`at` is when the send was accepted); any other
    /// store error is returned as it is, so an outage stays an outage.
    pub fn from_store(err: gw_store::StoreError, at: Timestamp) -> Result<Self, gw_store::StoreError> {
        use gw_store::{Limit, StoreError};
        match err {
            StoreError::LimitReached(Limit::MonthlyMessages { max }) => {
                Ok(QuotaError::Exceeded { limit: max, resets_at: at.period().next().start() })
            }
            StoreError::Inactive { entity: "subscription" } => Ok(QuotaError::Inactive),
            other => Err(other),
        }
    }
}

/// A [`Meter`] straight over the store: one statistics write per event. It writes on every message; the metering
/// service batches instead.
#[derive(Debug)]
pub struct DirectMeter {
    store: std::sync::Arc<dyn gw_store::Store>,
}

impl DirectMeter {
    pub fn new(store: std::sync::Arc<dyn gw_store::Store>) -> Self {
        Self { store }
    }
}

impl Meter for DirectMeter {
    fn record(&self, _subscription: SubscriptionId, instance: InstanceId, event: Metered) {
        let delta = gw_store::MessageStatDelta {
            instance_id: instance,
            date: Timestamp::now().date(),
            messages_sent: i64::from(event == Metered::MessageSent),
            messages_received: i64::from(event == Metered::MessageReceived),
            messages_failed: i64::from(event == Metered::MessageFailed),
            api_calls: 0,
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.add_message_stats(&[delta]).await {
                tracing::warn!(%instance, error = %e, "message statistics not recorded");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gw_store::{Limit, StoreError};

    #[test]
    fn quota_refusals_are_told_from_outages() {
        let at = Timestamp::now();
        let exceeded = QuotaError::from_store(StoreError::LimitReached(Limit::MonthlyMessages { max: 3 }), at);
        assert_eq!(exceeded.ok(), Some(QuotaError::Exceeded { limit: 3, resets_at: at.period().next().start() }));
        let inactive = QuotaError::from_store(StoreError::Inactive { entity: "subscription" }, at);
        assert_eq!(inactive.ok(), Some(QuotaError::Inactive));
        let outage = QuotaError::from_store(StoreError::Unavailable("connection reset".into()), at);
        assert!(matches!(outage, Err(StoreError::Unavailable(_))), "an outage stays an outage: {outage:?}");
    }
}
