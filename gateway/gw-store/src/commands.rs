//! What callers hand the store: new rows, partial updates, counter deltas, filters and the acting party.

use chrono::NaiveDate;
use gw_core::{
    ApiKeyHash, ApiKeyId, AuditAction, AuditResource, DriverKind, Email, EventSelector, InstanceId, InstanceStatus,
    LimitOverrides, PasswordHash, RefreshToken, SubscriptionId, Tier, Timestamp, TokenFamilyId, UsagePeriod,
    UsageRecordType, UserId, UserRole,
};
use serde_json::Value;

/// Who carries out a mutating action, recorded in the audit log row the store writes with the change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Option<UserId>,
    pub api_key_id: Option<ApiKeyId>,
    pub ip_address: Option<String>,
}

impl Actor {
    /// The gateway itself (first-run set-up, maintenance): no user, no key, no address.
    pub fn system() -> Self {
        Self::default()
    }

    pub fn user(user_id: UserId, ip_address: Option<String>) -> Self {
        Self { user_id: Some(user_id), api_key_id: None, ip_address }
    }

    pub fn api_key(api_key_id: ApiKeyId, ip_address: Option<String>) -> Self {
        Self { user_id: None, api_key_id: Some(api_key_id), ip_address }
    }
}

/// Which subscriptions a read may see (tenant visibility; not an API key's scopes): an operator sees all, a tenant
/// only its own. A row outside it is reported as not found, so ids of other tenants do not leak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    All,
    Subscription(SubscriptionId),
}

impl Visibility {
    pub fn subscription_id(&self) -> Option<SubscriptionId> {
        match self {
            Visibility::All => None,
            Visibility::Subscription(id) => Some(*id),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    pub name: String,
    pub tier: Tier,
    pub max_instances: i32,
    pub monthly_messages: i64,
    pub limit_overrides: LimitOverrides,
}

/// A partial update; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionPatch {
    pub name: Option<String>,
    pub tier: Option<Tier>,
    pub max_instances: Option<i32>,
    pub monthly_messages: Option<i64>,
    pub is_active: Option<bool>,
    pub limit_overrides: Option<LimitOverrides>,
}

/// The outcome of a granted reservation: how much of the limit is now used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    pub used: i64,
    pub limit: i64,
}

/// The outcome of a monthly message reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessagesReserved {
    pub used: i64,
    pub limit: i64,
    pub period: UsagePeriod,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub email: Email,
    pub password: PasswordHash,
    pub name: String,
    pub role: UserRole,
    /// Required for `owner` and `member`, absent for `admin`.
    pub subscription_id: Option<SubscriptionId>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    pub name: Option<String>,
    pub role: Option<UserRole>,
    pub is_active: Option<bool>,
    pub password: Option<PasswordHash>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewInstance {
    pub name: String,
    pub subscription_id: SubscriptionId,
    pub created_by_id: Option<UserId>,
    pub driver: DriverKind,
    pub settings: Value,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstancePatch {
    pub name: Option<String>,
    pub settings: Option<Value>,
    pub is_active: Option<bool>,
}

/// A connection-state change reported by the session engine. Fields left `None` keep their value; the
/// `clear_*` flags empty a field on purpose (a QR code once paired, an error once connected).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionUpdate {
    pub status: Option<InstanceStatus>,
    pub phone: Option<String>,
    pub display_name: Option<String>,
    pub last_connected_at: Option<Timestamp>,
    pub last_disconnected_at: Option<Timestamp>,
    pub qr_code: Option<String>,
    pub qr_code_expiry: Option<Timestamp>,
    pub clear_qr_code: bool,
    pub connection_attempts: Option<i32>,
    pub last_error: Option<String>,
    pub clear_last_error: bool,
    pub at: Option<Timestamp>,
    /// The session's lease epoch: the update is written only while the instance's lease still has it.
    pub fence: Option<crate::OwnerEpoch>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewApiKey {
    /// Chosen by the caller because the key itself embeds it.
    pub id: ApiKeyId,
    pub instance_id: InstanceId,
    pub name: String,
    pub key_hash: ApiKeyHash,
    pub permissions: Vec<String>,
    pub expires_at: Option<Timestamp>,
    pub rate_limit: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiKeyPatch {
    pub name: Option<String>,
    pub permissions: Option<Vec<String>>,
    pub is_active: Option<bool>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<Timestamp>>,
    /// `Some(None)` falls back to the tier's default.
    pub rate_limit: Option<Option<i32>>,
}

/// A key found by its hash, with what the edge needs to decide in one look-up.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub key: gw_core::ApiKey,
    pub subscription_id: SubscriptionId,
    pub instance_active: bool,
    pub subscription_active: bool,
}

/// Uses of one key since the last flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiKeyUsage {
    pub key_id: ApiKeyId,
    pub uses: i64,
    pub last_used_at: Timestamp,
}

/// Increments to one instance's counters on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageStatDelta {
    pub instance_id: InstanceId,
    pub date: NaiveDate,
    pub messages_sent: i64,
    pub messages_received: i64,
    pub messages_failed: i64,
    pub api_calls: i64,
}

/// What an event taught about a contact; `None` fields keep what is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactUpsert {
    pub instance_id: InstanceId,
    /// The phone-number JID when known, otherwise the LID.
    pub jid: String,
    /// The LID, when known. With both forms given, a row known so far only by its LID becomes this one.
    pub lid: Option<String>,
    pub name: Option<String>,
    pub notify: Option<String>,
    pub is_group: Option<bool>,
    pub group_admin: Option<bool>,
    pub last_message_at: Option<Timestamp>,
    pub profile_picture_url: Option<String>,
    pub status: Option<String>,
    /// The writing session's lease epoch: with one, the upsert lands only while the instance's lease has that
    /// epoch ([`crate::StoreError::Fenced`] otherwise), so a former owner cannot write contacts after a take-over.
    /// `None` for writes that do not come from a session.
    pub fence: Option<crate::OwnerEpoch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhookConfig {
    pub instance_id: InstanceId,
    pub url: String,
    pub events: Vec<EventSelector>,
    pub secret: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookConfigPatch {
    pub url: Option<String>,
    pub events: Option<Vec<EventSelector>>,
    pub secret: Option<String>,
    pub is_active: Option<bool>,
}

/// The result of one delivery attempt, for the endpoint's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Sent { at: Timestamp },
    Failed { at: Timestamp, error: String },
}

/// Increments to one usage counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageDelta {
    pub subscription_id: SubscriptionId,
    pub instance_id: Option<InstanceId>,
    pub record_type: UsageRecordType,
    pub period: UsagePeriod,
    pub count: i64,
    pub at: Timestamp,
}

/// Which usage records to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageFilter {
    pub subscription_id: SubscriptionId,
    pub instance_id: Option<InstanceId>,
    pub period: Option<UsagePeriod>,
}

/// An audit row that does not come with another write (a sign-in, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub subscription_id: Option<SubscriptionId>,
    /// Its resource is the action's (`AuditAction::resource`).
    pub action: AuditAction,
    pub resource_id: Option<String>,
    pub actor: Actor,
}

/// Which audit rows to read; every set field narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub subscription_id: Option<SubscriptionId>,
    pub user_id: Option<UserId>,
    pub api_key_id: Option<ApiKeyId>,
    pub resource: Option<AuditResource>,
    pub action: Option<AuditAction>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// A refresh token to store: a new sign-in starts a family, a rotation continues one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefreshToken {
    pub user_id: UserId,
    pub family_id: TokenFamilyId,
    pub token_hash: Vec<u8>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What presenting a refresh token led to.
// Returned once per refresh and consumed at once; boxing the tokens would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was live: it is now consumed and its successor stored.
    Rotated { previous: RefreshToken, successor: RefreshToken },
    /// The token had already been used: the whole family is now revoked.
    Reused { user_id: UserId, family_id: TokenFamilyId },
    /// Unknown, expired or revoked: nothing changed.
    Invalid,
}
