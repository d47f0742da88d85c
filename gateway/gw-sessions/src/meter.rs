//! What the engine tells metering: quota reservations before a send is accepted, and counts of what happened.

use gw_core::{InstanceId, SubscriptionId, Timestamp};

/// One countable thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metered {
    MessageSent,
    MessageReceived,
    MessageFailed,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error("the monthly message quota of {limit} is used up until {resets_at}")]
    Exceeded { limit: i64, resets_at: Timestamp },
    #[error("the subscription is not active")]
    Inactive,
    #[error("quota could not be checked: {0}")]
    Unavailable(String),
}

/// Quota and counters, as the session engine needs them. Implemented over the metering service by the binary.
#[async_trait::async_trait]
pub trait Meter: Send + Sync + std::fmt::Debug {
    /// Reserves `count` messages of the subscription's monthly quota, atomically across nodes.
    async fn reserve_messages(&self, subscription: SubscriptionId, count: u32) -> Result<(), QuotaError>;
    /// Counts one event; never blocks on I/O.
    fn record(&self, subscription: SubscriptionId, instance: InstanceId, event: Metered);
}

/// A [`Meter`] straight over the store: one reservation and one statistics write per event. Correct on any number
/// of nodes, but it writes on every message; the metering service batches instead.
#[derive(Debug)]
pub struct DirectMeter {
    store: std::sync::Arc<dyn gw_store::Store>,
}

impl DirectMeter {
    pub fn new(store: std::sync::Arc<dyn gw_store::Store>) -> Self {
        Self { store }
    }
}

#[async_trait::async_trait]
impl Meter for DirectMeter {
    async fn reserve_messages(&self, subscription: SubscriptionId, count: u32) -> Result<(), QuotaError> {
        use gw_store::{Limit, StoreError};
        match self.store.reserve_messages(subscription, i64::from(count), Timestamp::now()).await {
            Ok(_) => Ok(()),
            Err(StoreError::LimitReached(Limit::MonthlyMessages { max })) => {
                Err(QuotaError::Exceeded { limit: max, resets_at: Timestamp::now().period().next().start() })
            }
            Err(StoreError::Inactive { .. }) => Err(QuotaError::Inactive),
            Err(e) => Err(QuotaError::Unavailable(e.to_string())),
        }
    }

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
