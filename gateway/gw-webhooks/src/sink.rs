//! The outbox side: events in, delivery rows out, before the engine acknowledges anything.

use std::sync::Arc;

use gw_core::{EventSink, EventSinkError, EventType, GatewayEvent};
use gw_store::{NewWebhookEvent, Store};
use tokio::sync::Notify;

use crate::dispatcher::envelope;

/// Persists one delivery per active endpoint subscribed to the event, then wakes the local dispatcher.
#[derive(Clone)]
pub struct WebhookSink {
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink").finish_non_exhaustive()
    }
}

impl WebhookSink {
    pub(crate) fn new(store: Arc<dyn Store>, wake: Arc<Notify>) -> Self {
        Self { store, wake }
    }
}

#[async_trait::async_trait]
impl EventSink for WebhookSink {
    async fn publish(&self, event: &GatewayEvent) -> Result<(), EventSinkError> {
        if event.event_type == EventType::WebhookTest {
            return Ok(());
        }
        let new = NewWebhookEvent {
            instance_id: event.instance_id,
            event_id: event.id,
            event_type: event.event_type.as_str().to_owned(),
            payload: envelope(event),
            at: event.occurred_at,
        };
        let created = self.store.enqueue_webhook_event(&new).await.map_err(|e| EventSinkError(e.to_string()))?;
        if !created.is_empty() {
            self.wake.notify_one();
        }
        Ok(())
    }
}
