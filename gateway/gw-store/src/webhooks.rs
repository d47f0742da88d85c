//! Webhook delivery: the durable outbox of events bound for tenants' endpoints, how dispatchers claim it, and the
//! log of attempts.
//!
//! Life of a delivery: `pending` (due at `next_attempt_at`) -> `delivering` (claimed under a lease by one
//! dispatcher) -> `succeeded`, back to `pending` with a later `next_attempt_at`, or `dead`. A dispatcher that dies
//! while delivering loses its lease; once `lease_until` passes, any dispatcher may claim the row again. Leases are
//! short and the owner renews them while it works ([`WebhookDeliveryStore::renew_webhook_leases`]), so a live
//! dispatcher keeps its rows however long an attempt takes and a dead one's rows are free again within one lease.
//! Completion and renewal are fenced by the claim token, so a dispatcher whose lease ran out can neither overwrite
//! the result of the one that took over nor take the row back.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use gw_core::{
    EventId, InstanceId, ParseEnumError, Redacted, SubscriptionId, Timestamp, WebhookConfig, WebhookConfigId,
    WebhookDeliveryId,
};
use uuid::Uuid;

use crate::{Actor, Page, PageRequest, StoreResult};

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    Pending,
    Delivering,
    Succeeded,
    Dead,
}

impl DeliveryStatus {
    pub const fn as_str(&self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivering => "delivering",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Dead => "dead",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryStatus {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(DeliveryStatus::Pending),
            "delivering" => Ok(DeliveryStatus::Delivering),
            "succeeded" => Ok(DeliveryStatus::Succeeded),
            "dead" => Ok(DeliveryStatus::Dead),
            _ => Err(ParseEnumError {
                kind: "delivery status",
                value: s.to_owned(),
                expected: "pending delivering succeeded dead",
            }),
        }
    }
}

/// One event to put in the outbox of every active endpoint of its instance that subscribes to its type.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhookEvent {
    pub instance_id: InstanceId,
    pub event_id: EventId,
    pub event_type: String,
    /// The body every attempt sends, byte for byte (the Standard Webhooks envelope).
    pub payload: String,
    pub at: Timestamp,
}

/// One attempt to deliver, as the log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttempt {
    pub attempt: i32,
    pub at: Timestamp,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// The start of the response body, at most [`RESPONSE_EXCERPT_MAX`] bytes.
    pub response_excerpt: Option<String>,
}

/// The longest response excerpt the log keeps.
pub const RESPONSE_EXCERPT_MAX: usize = 1024;

/// A delivery with its attempts, for the delivery log.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    pub id: WebhookDeliveryId,
    pub config_id: WebhookConfigId,
    pub instance_id: InstanceId,
    pub event_id: EventId,
    pub event_type: String,
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: Timestamp,
    pub created_at: Timestamp,
    pub last_attempt_at: Option<Timestamp>,
    /// Oldest first.
    pub attempt_log: Vec<WebhookAttempt>,
}

/// A delivery a dispatcher claimed, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: WebhookDeliveryId,
    pub config_id: WebhookConfigId,
    pub instance_id: InstanceId,
    pub event_id: EventId,
    pub event_type: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i32,
    /// Fences the completion and the lease's renewals: only the holder of the current claim may complete or
    /// renew it.
    pub claim_token: Uuid,
    /// The row was still `delivering` under an earlier claim whose lease had run out (its dispatcher died or
    /// stalled): this claim took it over.
    pub taken_over: bool,
    pub url: String,
    pub secret: Redacted<String>,
    /// The secret replaced by the last rotation, while its grace period lasts.
    pub previous_secret: Option<Redacted<String>>,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Succeeded,
    RetryAt(Timestamp),
    /// Out of retries: dead-lettered, replayable by hand.
    Dead,
    /// The endpoint answered 410 Gone: the delivery is dead and the endpoint disabled.
    Gone,
}

/// The result of one attempt, to record.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryCompletion {
    pub id: WebhookDeliveryId,
    pub claim_token: Uuid,
    pub config_id: WebhookConfigId,
    pub at: Timestamp,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
    pub next: NextStep,
}

/// An endpoint the gateway disabled while completing deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisabledEndpoint {
    pub config_id: WebhookConfigId,
    pub instance_id: InstanceId,
    pub subscription_id: SubscriptionId,
    pub url: String,
    pub reason: String,
}

/// What `complete_webhook_deliveries` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompletionReport {
    /// Completions whose claim had been taken over by another dispatcher (their lease ran out): not recorded.
    pub stale: usize,
    pub disabled: Vec<DisabledEndpoint>,
}

#[async_trait]
pub trait WebhookDeliveryStore: Send + Sync {
    /// Puts the event in the outbox of each active endpoint of the instance subscribed to its type, in one
    /// transaction, due at once. Idempotent per (endpoint, event): a redelivered event adds nothing. Returns the
    /// deliveries created.
    async fn enqueue_webhook_event(&self, event: &NewWebhookEvent) -> StoreResult<Vec<WebhookDeliveryId>>;

    /// Claims up to `limit` due deliveries of active endpoints (pending and due, or delivering with an expired
    /// lease), marking them delivering until `lease_until`. Concurrent claimers never receive the same row.
    async fn claim_webhook_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>>;

    /// Extends to `lease_until` the lease of every delivery still claimed under one of `claim_tokens` (still
    /// `delivering` with that token), in one statement per few hundred tokens, and returns the ids renewed. A row
    /// that another dispatcher took over carries that dispatcher's token and is left alone, so a renewal never takes
    /// a row back; the caller learns which of its rows it lost from the ids missing in the answer. An expired lease
    /// that nobody took over yet is renewed (the claim is still the caller's).
    async fn renew_webhook_leases(
        &self,
        claim_tokens: &[Uuid],
        lease_until: Timestamp,
    ) -> StoreResult<Vec<WebhookDeliveryId>>;

    /// Records attempts and their consequences in one transaction: the attempt log, the delivery's next state,
    /// the endpoint's counters and failure run; disables endpoints that answered 410 or have failed without a
    /// success since longer than `auto_disable_after` (with an audit row each).
    async fn complete_webhook_deliveries(
        &self,
        batch: &[DeliveryCompletion],
        auto_disable_after: chrono::Duration,
    ) -> StoreResult<CompletionReport>;

    /// When the next pending delivery of an active endpoint falls due (or a lease runs out).
    async fn next_webhook_due_at(&self) -> StoreResult<Option<Timestamp>>;

    /// Deliveries not yet finished (pending or delivering), all endpoints.
    async fn webhook_queue_depth(&self) -> StoreResult<i64>;

    /// The endpoint's deliveries, newest first, with their attempts.
    async fn list_webhook_deliveries(
        &self,
        instance_id: InstanceId,
        config_id: WebhookConfigId,
        page: PageRequest,
    ) -> StoreResult<Page<WebhookDelivery>>;

    async fn get_webhook_delivery(
        &self,
        instance_id: InstanceId,
        config_id: WebhookConfigId,
        id: WebhookDeliveryId,
    ) -> StoreResult<WebhookDelivery>;

    /// Makes one finished delivery (succeeded or dead) due again at `at`; a pending one is made due at once.
    async fn replay_webhook_delivery(
        &self,
        instance_id: InstanceId,
        config_id: WebhookConfigId,
        id: WebhookDeliveryId,
        at: Timestamp,
        actor: &Actor,
    ) -> StoreResult<WebhookDelivery>;

    /// Makes every finished delivery of the endpoint created in `from..to` due again at `at`. Returns how many.
    async fn replay_webhook_deliveries(
        &self,
        instance_id: InstanceId,
        config_id: WebhookConfigId,
        from: Timestamp,
        to: Timestamp,
        at: Timestamp,
        actor: &Actor,
    ) -> StoreResult<u64>;

    /// Replaces the signing secret; the old one keeps signing (beside the new one) until `old_valid_until`.
    async fn rotate_webhook_secret(
        &self,
        instance_id: InstanceId,
        id: WebhookConfigId,
        new_secret: String,
        old_valid_until: Timestamp,
        actor: &Actor,
    ) -> StoreResult<WebhookConfig>;
}
