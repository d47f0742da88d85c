//! Gateway events: what happened to an instance, in one envelope for the live stream and the webhook dispatcher.

use serde::{Deserialize, Serialize};

use crate::{EventId, EventType, InstanceId, SubscriptionId, Timestamp};

/// One thing that happened. `id` is stable: a webhook retried ten times carries the same id each time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct GatewayEvent {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub subscription_id: SubscriptionId,
    pub instance_id: InstanceId,
    pub occurred_at: Timestamp,
    /// The event's payload; its shape per type is documented in the README.
    pub data: serde_json::Value,
}

impl GatewayEvent {
    pub fn new(
        event_type: EventType,
        subscription_id: SubscriptionId,
        instance_id: InstanceId,
        occurred_at: Timestamp,
        data: serde_json::Value,
    ) -> Self {
        Self { id: EventId::new(), event_type, subscription_id, instance_id, occurred_at, data }
    }
}

/// Why an event could not be accepted by a sink. The engine treats this as "not durable yet" and retries or
/// refuses to acknowledge the message it came from.
#[derive(Debug, Clone, thiserror::Error)]
#[error("event sink failed: {0}")]
pub struct EventSinkError(pub String);

/// Somewhere events go: the live-stream bus, the webhook outbox. `publish` returns once the event is as durable as
/// the sink promises (the webhook outbox: persisted), so the engine may then acknowledge the message it came from.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync + std::fmt::Debug {
    async fn publish(&self, event: &GatewayEvent) -> Result<(), EventSinkError>;
}
