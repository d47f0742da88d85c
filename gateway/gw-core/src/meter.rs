//! What the session engine tells metering: counts of what happened. A port: the engine (`gw-sessions`) calls it,
//! metering (`gw-metering`) implements it, and neither crate depends on the other.

use crate::{InstanceId, SubscriptionId};

/// One countable thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metered {
    MessageSent,
    MessageReceived,
    MessageFailed,
}

/// Counters, as the session engine needs them. Implemented over the metering service by the binary.
pub trait Meter: Send + Sync + std::fmt::Debug {
    /// Counts one event; never blocks on I/O.
    fn record(&self, subscription: SubscriptionId, instance: InstanceId, event: Metered);
}
