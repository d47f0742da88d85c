//! Webhooks: an instance's endpoints (the secret shown once), secret rotation with a grace period, test fires, the
//! delivery log and replays. Owners (or keys with `webhooks:write`) manage them; members read.

use std::sync::Arc;

use gw_accounts::FieldError;
use gw_core::{EventSelector, InstanceId, Timestamp, WebhookConfig, WebhookConfigId, WebhookDeliveryId};
use gw_store::{NewWebhookConfig, Page, PageRequest, Store, StoreError, WebhookConfigPatch, WebhookDelivery};
use gw_webhooks::{Dispatcher, SigningSecret, TestFire};

use crate::access::{Access, AccessError};
use crate::caller::{Caller, Need};

/// Most event types one endpoint names.
pub const MAX_EVENTS: usize = 32;
/// Longest grace period for a rotated secret.
pub const MAX_GRACE_SECS: i64 = 7 * 24 * 3600;
/// The grace period when none is asked for.
pub const DEFAULT_GRACE_SECS: i64 = 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The URL breaks the egress rules (scheme, private address, …).
    #[error("the webhook URL is refused: {0}")]
    UrlRefused(String),
    #[error("{}: {}", .0.field, .0.message)]
    Invalid(FieldError),
    /// Delivery is off on this node, so nothing can be fired.
    #[error("webhook delivery is disabled on this node")]
    Disabled,
}

fn invalid(field: &'static str, message: impl Into<String>) -> WebhookError {
    WebhookError::Invalid(FieldError { field, message: message.into() })
}

/// A new endpoint or a rotated secret, with the secret: the only time it is shown.
#[derive(Debug)]
pub struct WithSecret {
    pub secret: String,
    pub webhook: WebhookConfig,
}

/// The webhook service.
#[derive(Clone)]
pub struct Webhooks {
    access: Access,
    store: Arc<dyn Store>,
    policy: Arc<gw_egress::EgressPolicy>,
    dispatcher: Option<Dispatcher>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").field("delivery", &self.dispatcher.is_some()).finish_non_exhaustive()
    }
}

impl Webhooks {
    /// `dispatcher` is `None` when this node delivers nothing (test fires are then refused).
    pub fn new(access: Access, policy: Arc<gw_egress::EgressPolicy>, dispatcher: Option<Dispatcher>) -> Self {
        Self { store: access.store().clone(), access, policy, dispatcher }
    }

    /// The local dispatcher, if this node delivers (its metrics are part of `/metrics`).
    pub fn dispatcher(&self) -> Option<&Dispatcher> {
        self.dispatcher.as_ref()
    }

    /// Wakes the local dispatcher so a replayed or re-enabled delivery need not wait for its next poll.
    fn wake(&self) {
        if let Some(dispatcher) = &self.dispatcher {
            dispatcher.wake();
        }
    }

    fn check_url(&self, url: &str) -> Result<(), WebhookError> {
        self.policy.validate_url(url).map(|_| ()).map_err(|e| WebhookError::UrlRefused(e.to_string()))
    }

    /// The tenant's list as selectors, in its order; the first entry that names no event type is the error.
    fn parse_events(events: &[String]) -> Result<Vec<EventSelector>, WebhookError> {
        if events.is_empty() || events.len() > MAX_EVENTS {
            return Err(invalid("events", format!("list 1 to {MAX_EVENTS} event types, or [\"*\"]")));
        }
        events
            .iter()
            .map(|event| {
                event.parse::<EventSelector>().map_err(|_| {
                    invalid("events", format!("`{event}` is not an event type (the book's events reference)"))
                })
            })
            .collect()
    }

    /// Adds an endpoint for `events` (all of them when `None`) with a new signing secret.
    pub async fn create(
        &self,
        caller: &Caller,
        id: InstanceId,
        url: String,
        events: Option<Vec<String>>,
    ) -> Result<WithSecret, WebhookError> {
        let instance = self.access.instance(caller, id, Need::MANAGE_WEBHOOKS).await?;
        self.check_url(&url)?;
        let events = match events {
            Some(events) => Self::parse_events(&events)?,
            None => vec![EventSelector::All],
        };
        let secret = SigningSecret::generate();
        let new = NewWebhookConfig { instance_id: instance.id, url, events, secret: secret.clone() };
        let webhook = self.store.create_webhook_config(new, &caller.actor()).await?;
        Ok(WithSecret { secret, webhook })
    }

    pub async fn list(&self, caller: &Caller, id: InstanceId) -> Result<Vec<WebhookConfig>, WebhookError> {
        let instance = self.access.instance(caller, id, Need::READ_WEBHOOKS).await?;
        Ok(self.store.list_webhook_configs(instance.id).await?)
    }

    pub async fn get(
        &self,
        caller: &Caller,
        id: InstanceId,
        webhook: WebhookConfigId,
    ) -> Result<WebhookConfig, WebhookError> {
        let instance = self.access.instance(caller, id, Need::READ_WEBHOOKS).await?;
        Ok(self.store.get_webhook_config(instance.id, webhook).await?)
    }

    /// Changes the URL or the events, or re-enables / disables the endpoint.
    pub async fn update(
        &self,
        caller: &Caller,
        id: InstanceId,
        webhook: WebhookConfigId,
        url: Option<String>,
        events: Option<Vec<String>>,
        is_active: Option<bool>,
    ) -> Result<WebhookConfig, WebhookError> {
        let instance = self.access.instance(caller, id, Need::MANAGE_WEBHOOKS).await?;
        if let Some(url) = &url {
            self.check_url(url)?;
        }
        let events = events.as_deref().map(Self::parse_events).transpose()?;
        let patch = WebhookConfigPatch { url, events, secret: None, is_active };
        let config = self.store.update_webhook_config(instance.id, webhook, patch, &caller.actor()).await?;
        if config.is_active {
            self.wake();
        }
        Ok(config)
    }

    pub async fn delete(&self, caller: &Caller, id: InstanceId, webhook: WebhookConfigId) -> Result<(), WebhookError> {
        let instance = self.access.instance(caller, id, Need::MANAGE_WEBHOOKS).await?;
        Ok(self.store.delete_webhook_config(instance.id, webhook, &caller.actor()).await?)
    }

    /// Issues a new secret; the old one keeps signing for the grace period `grace_secs` yields (parsed only once
    /// the caller is known to be allowed; default [`DEFAULT_GRACE_SECS`]).
    pub async fn rotate_secret<E>(
        &self,
        caller: &Caller,
        id: InstanceId,
        webhook: WebhookConfigId,
        grace_secs: impl FnOnce() -> Result<Option<i64>, E>,
    ) -> Result<WithSecret, E>
    where
        E: From<WebhookError>,
    {
        let instance = self.access.instance(caller, id, Need::MANAGE_WEBHOOKS).await.map_err(WebhookError::from)?;
        let grace = grace_secs()?.unwrap_or(DEFAULT_GRACE_SECS);
        if !(0..=MAX_GRACE_SECS).contains(&grace) {
            return Err(invalid("grace_period_secs", format!("0 to {MAX_GRACE_SECS} seconds")).into());
        }
        let until = Timestamp::now().checked_add(chrono::Duration::seconds(grace)).unwrap_or_else(Timestamp::now);
        let secret = SigningSecret::generate();
        let webhook = self
            .store
            .rotate_webhook_secret(instance.id, webhook, secret.clone(), until, &caller.actor())
            .await
            .map_err(WebhookError::from)?;
        Ok(WithSecret { secret, webhook })
    }

    /// Sends a signed `webhook.test` to the endpoint now (nothing is stored).
    pub async fn test_fire(
        &self,
        caller: &Caller,
        id: InstanceId,
        webhook: WebhookConfigId,
    ) -> Result<TestFire, WebhookError> {
        let instance = self.access.instance(caller, id, Need::MANAGE_WEBHOOKS).await?;
        let config = self.store.get_webhook_config(instance.id, webhook).await?;
        let dispatcher = self.dispatcher.as_ref().ok_or(WebhookError::Disabled)?;
        Ok(dispatcher.test_fire(&config, instance.subscription_id).await)
    }

    pub async fn deliveries(
        &self,
        caller: &Caller,
        id: InstanceId,
        webhook: WebhookConfigId,
        page: PageRequest,
    ) -> Result<Page<WebhookDelivery>, WebhookError> {
        let instance = self.access.instance(caller, id, Need::READ_WEBHOOKS).await?;
        let config = self.store.get_webhook_config(instance.id, webhook).await?;
        Ok(self.store.list_webhook_deliveries(instance.id, config.id, page).await?)
    }

    pub async fn delivery(
        &self,
        caller: &Caller,
        id: InstanceId,
        webhook: WebhookConfigId,
        delivery: WebhookDeliveryId,
    ) -> Result<WebhookDelivery, WebhookError> {
        let instance = self.access.instance(caller, id, Need::READ_WEBHOOKS).await?;
        Ok(self.store.get_webhook_delivery(instance.id, webhook, delivery).await?)
    }

    /// Sends one delivery again (same `webhook-id`), whatever its state.
    pub async fn replay(
        &self,
        caller: &Caller,
        id: InstanceId,
        webhook: WebhookConfigId,
        delivery: WebhookDeliveryId,
    ) -> Result<WebhookDelivery, WebhookError> {
        let instance = self.access.instance(caller, id, Need::MANAGE_WEBHOOKS).await?;
        let delivery = self
            .store
            .replay_webhook_delivery(instance.id, webhook, delivery, Timestamp::now(), &caller.actor())
            .await?;
        self.wake();
        Ok(delivery)
    }

    /// Sends again every finished delivery created in `[from, to)`; answers how many.
    pub async fn replay_range(
        &self,
        caller: &Caller,
        id: InstanceId,
        webhook: WebhookConfigId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<u64, WebhookError> {
        let instance = self.access.instance(caller, id, Need::MANAGE_WEBHOOKS).await?;
        if from >= to {
            return Err(invalid("to", "must be after `from`"));
        }
        let config = self.store.get_webhook_config(instance.id, webhook).await?;
        let replayed = self
            .store
            .replay_webhook_deliveries(instance.id, config.id, from, to, Timestamp::now(), &caller.actor())
            .await?;
        self.wake();
        Ok(replayed)
    }
}
