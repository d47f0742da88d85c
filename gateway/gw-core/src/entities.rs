//! The entities of the data model (`shared/design/data-model.md`), as read back from the store.

use chrono::NaiveDate;
use serde_json::Value;

use crate::{
    ApiKeyHash, ApiKeyId, AuditLogId, ContactId, DriverKind, Email, InstanceId, InstanceStatus, MessageStatId,
    PasswordHash, RefreshTokenId, SessionDataId, SubscriptionId, Tier, Timestamp, TokenFamilyId, UsagePeriod,
    UsageRecordId, UsageRecordType, UserId, UserRole, WebhookConfigId,
};

/// A tenant: its tier, enforced limits and live counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub name: String,
    pub tier: Tier,
    pub max_instances: i32,
    pub is_active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Live counter of instances; never above `max_instances` through the store's reservation.
    pub current_instances: i32,
    /// Monthly message allowance.
    pub monthly_messages: i64,
    /// Messages reserved in the period that began at `last_usage_reset`.
    pub messages_used: i64,
    /// Start of the usage period `messages_used` counts.
    pub last_usage_reset: Timestamp,
    /// Limits set for this subscription in place of its tier's defaults.
    pub limit_overrides: LimitOverrides,
}

/// Per-subscription limits that replace the tier's defaults; `None` keeps the default. `max_instances` and
/// `monthly_messages` are also materialised on the subscription row, where the atomic reservations read them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_messages: Option<i64>,
    /// Default requests per minute of an API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_rate_limit_per_minute: Option<i32>,
    /// Requests per minute of all the subscription's API keys together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_max_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_max_module_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_fuel: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_memory_bytes: Option<i64>,
}

/// A refresh token, stored only as a hash. Each use consumes it and issues its successor in the same family;
/// presenting a consumed token again revokes the whole family (the token was stolen or replayed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub id: RefreshTokenId,
    pub user_id: UserId,
    pub family_id: TokenFamilyId,
    pub token_hash: Vec<u8>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// A person who signs in: an operator (`admin`, no subscription) or a member of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub password: PasswordHash,
    pub name: String,
    pub role: UserRole,
    pub subscription_id: Option<SubscriptionId>,
    pub is_active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_login_at: Option<Timestamp>,
}

/// One WhatsApp account driven through the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: InstanceId,
    pub name: String,
    pub subscription_id: SubscriptionId,
    pub created_by_id: Option<UserId>,
    pub driver: DriverKind,
    pub status: InstanceStatus,
    pub phone: Option<String>,
    pub display_name: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_connected_at: Option<Timestamp>,
    pub last_disconnected_at: Option<Timestamp>,
    pub settings: Value,
    pub is_active: bool,
    pub qr_code: Option<String>,
    pub qr_code_expiry: Option<Timestamp>,
    pub connection_attempts: i32,
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
}

/// An API key of an instance. Only its hash is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub instance_id: InstanceId,
    pub name: String,
    pub key_hash: ApiKeyHash,
    pub permissions: Vec<String>,
    pub is_active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub usage_count: i64,
    /// Requests per minute; `None` takes the tier's default.
    pub rate_limit: Option<i32>,
}

/// Message counters of one instance on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageStat {
    pub id: MessageStatId,
    pub instance_id: InstanceId,
    pub date: NaiveDate,
    pub messages_sent: i64,
    pub messages_received: i64,
    pub messages_failed: i64,
    pub api_calls: i64,
}

/// A person or group an instance talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: ContactId,
    pub instance_id: InstanceId,
    /// The phone-number JID when known, otherwise the LID.
    pub jid: String,
    /// The contact's LID (`…@lid`), when WhatsApp told us.
    pub lid: Option<String>,
    pub name: Option<String>,
    pub notify: Option<String>,
    pub is_blocked: bool,
    pub is_group: bool,
    pub group_admin: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_message_at: Option<Timestamp>,
    pub profile_picture_url: Option<String>,
    pub status: Option<String>,
}

/// A tenant URL that receives the instance's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub id: WebhookConfigId,
    pub instance_id: InstanceId,
    pub url: String,
    /// What it receives, in the order the tenant listed them.
    pub events: Vec<crate::EventSelector>,
    /// Signing secret (`whsec_…`); shown to the tenant once.
    pub secret: crate::Redacted<String>,
    pub is_active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub total_sent: i64,
    pub total_failed: i64,
    pub last_sent_at: Option<Timestamp>,
    pub last_failed_at: Option<Timestamp>,
    pub last_error: Option<String>,
    /// Until when the secret replaced by the last rotation still signs deliveries (both signatures are sent).
    pub previous_secret_expires_at: Option<Timestamp>,
    /// Start of the current run of failed attempts; `None` after a success.
    pub failing_since: Option<Timestamp>,
    /// Why the gateway disabled the endpoint (410 Gone, failing too long); cleared when it is re-enabled.
    pub disabled_reason: Option<String>,
}

impl WebhookConfig {
    /// Whether the endpoint wants events of this type: listed by name, or `"*"` (every type but the test event,
    /// which is only ever fired at one endpoint on request).
    pub fn subscribes(&self, event_type: &str) -> bool {
        self.events.iter().any(|selector| selector.selects(event_type))
    }
}

/// An instance's persisted WhatsApp session, so a restart needs no new pairing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionData {
    pub id: SessionDataId,
    pub instance_id: InstanceId,
    /// Encrypted by the session engine before it reaches the store; opaque here.
    pub auth_state: crate::Redacted<Vec<u8>>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub session_valid: bool,
    pub last_backup: Option<Timestamp>,
}

/// A usage counter of a subscription (and optionally one instance) for one period.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    pub id: UsageRecordId,
    pub subscription_id: SubscriptionId,
    /// `None` for usage not attributed to an instance, including usage of instances since deleted.
    pub instance_id: Option<InstanceId>,
    pub record_type: UsageRecordType,
    pub count: i64,
    pub period: UsagePeriod,
    pub record_date: Timestamp,
    pub metadata: Value,
}

/// One mutating action: who did what to which resource, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLogEntry {
    pub id: AuditLogId,
    /// The subscription the resource belongs to; `None` for platform-level actions.
    pub subscription_id: Option<SubscriptionId>,
    pub action: crate::AuditAction,
    pub resource: crate::AuditResource,
    pub resource_id: Option<String>,
    pub user_id: Option<UserId>,
    pub api_key_id: Option<ApiKeyId>,
    pub ip_address: Option<String>,
    pub timestamp: Timestamp,
}

/// A message the gateway sent or received.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: crate::MessageId,
    pub instance_id: InstanceId,
    pub direction: crate::Direction,
    pub chat_jid: String,
    pub sender_jid: Option<String>,
    /// WhatsApp's own id, once known (outbound: after sending).
    pub wa_message_id: Option<String>,
    pub kind: crate::MessageKind,
    /// The kind-specific payload (location, contact card, media metadata, reaction target; inbound metadata).
    pub content: crate::MessageContent,
    pub text: Option<String>,
    pub quoted_message_id: Option<String>,
    pub status: crate::MessageStatus,
    pub failure_reason: Option<String>,
    pub idempotency_key: Option<String>,
    /// Stored as its label: `api`, `plugin_reply:<depth>` or `whatsapp`.
    pub origin: crate::Origin,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub read_at: Option<Timestamp>,
}
