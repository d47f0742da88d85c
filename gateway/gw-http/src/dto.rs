//! The JSON shapes of the API. Requests refuse unknown fields; responses never carry secrets.

use gw_accounts::{Session, TierLimits};
use gw_core::{
    AuditAction, AuditLogEntry, AuditResource, EventSelector, Instance, LimitOverrides, Subscription, Timestamp, User,
};
use gw_store::Page;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A page of a list and the cursor of the next one (`null` on the last page).
#[derive(Debug, Serialize, ToSchema)]
pub struct PageDto<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> PageDto<T> {
    pub fn from_page<U>(page: Page<U>, f: impl FnMut(U) -> T) -> Self {
        let next_cursor = page.next.map(|c| c.encode());
        Self { items: page.items.into_iter().map(f).collect(), next_cursor }
    }
}

/// An instant as the API writes it (RFC 3339, UTC, six fractional digits), shared with webhook payloads.
pub use gw_core::Rfc3339 as Time;

pub(crate) fn ts(t: Timestamp) -> Time {
    Time(t)
}

pub(crate) fn opt_ts(t: Option<Timestamp>) -> Option<Time> {
    t.map(Time)
}

/// The role of a subscription's user: any role but the platform's `admin`.
#[derive(Debug)]
pub struct TenantRole;

impl utoipa::PartialSchema for TenantRole {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let roles = gw_core::UserRole::ALL.iter().filter(|r| **r != gw_core::UserRole::Admin).map(|r| r.as_str());
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(roles))
            .into()
    }
}

impl ToSchema for TenantRole {}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "owner@acme.example.com")]
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDto {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Shown once; store it safely. Each use returns a new one and consumes the old.
    pub refresh_token: String,
    pub refresh_expires_at: Time,
    pub user: UserDto,
}

impl From<Session> for SessionDto {
    fn from(session: Session) -> Self {
        let expires_in =
            (session.access_expires_at.as_datetime() - Timestamp::now().as_datetime()).num_seconds().max(0);
        Self {
            access_token: session.access_token,
            token_type: "Bearer",
            expires_in,
            refresh_token: session.refresh_token,
            refresh_expires_at: ts(session.refresh_expires_at),
            user: session.user.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserDto {
    pub id: String,
    pub email: String,
    pub name: String,
    #[schema(value_type = gw_core::UserRole, example = "owner")]
    pub role: String,
    pub subscription_id: Option<String>,
    pub is_active: bool,
    pub created_at: Time,
    pub updated_at: Time,
    pub last_login_at: Option<Time>,
}

impl From<User> for UserDto {
    fn from(user: User) -> Self {
        Self {
            id: user.id.to_string(),
            email: user.email.to_string(),
            name: user.name,
            role: user.role.to_string(),
            subscription_id: user.subscription_id.map(|id| id.to_string()),
            is_active: user.is_active,
            created_at: ts(user.created_at),
            updated_at: ts(user.updated_at),
            last_login_at: opt_ts(user.last_login_at),
        }
    }
}

/// Limits that replace the tier's defaults; omitted ones keep the default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitOverridesDto {
    #[schema(minimum = 0)]
    pub max_instances: Option<i32>,
    #[schema(minimum = 0)]
    pub monthly_messages: Option<i64>,
    #[schema(minimum = 1)]
    pub api_rate_limit_per_minute: Option<i32>,
    /// Requests per minute of all the subscription's API keys together.
    #[schema(minimum = 1)]
    pub requests_per_minute: Option<i32>,
    #[schema(minimum = 0)]
    pub plugin_max_count: Option<i32>,
    #[schema(minimum = 1)]
    pub plugin_max_module_bytes: Option<i64>,
    #[schema(minimum = 1)]
    pub plugin_fuel: Option<i64>,
    #[schema(minimum = 1)]
    pub plugin_memory_bytes: Option<i64>,
}

impl From<LimitOverridesDto> for LimitOverrides {
    fn from(dto: LimitOverridesDto) -> Self {
        LimitOverrides {
            max_instances: dto.max_instances,
            monthly_messages: dto.monthly_messages,
            api_rate_limit_per_minute: dto.api_rate_limit_per_minute,
            requests_per_minute: dto.requests_per_minute,
            plugin_max_count: dto.plugin_max_count,
            plugin_max_module_bytes: dto.plugin_max_module_bytes,
            plugin_fuel: dto.plugin_fuel,
            plugin_memory_bytes: dto.plugin_memory_bytes,
        }
    }
}

impl From<LimitOverrides> for LimitOverridesDto {
    fn from(o: LimitOverrides) -> Self {
        LimitOverridesDto {
            max_instances: o.max_instances,
            monthly_messages: o.monthly_messages,
            api_rate_limit_per_minute: o.api_rate_limit_per_minute,
            requests_per_minute: o.requests_per_minute,
            plugin_max_count: o.plugin_max_count,
            plugin_max_module_bytes: o.plugin_max_module_bytes,
            plugin_fuel: o.plugin_fuel,
            plugin_memory_bytes: o.plugin_memory_bytes,
        }
    }
}

/// The limits in force: the tier's defaults with the subscription's overrides.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsDto {
    pub max_instances: i32,
    pub monthly_messages: i64,
    pub api_rate_limit_per_minute: i32,
    pub requests_per_minute: i32,
    pub plugin_max_count: i32,
    pub plugin_max_module_bytes: i64,
    pub plugin_fuel: i64,
    pub plugin_memory_bytes: i64,
}

impl From<TierLimits> for LimitsDto {
    fn from(l: TierLimits) -> Self {
        Self {
            max_instances: l.max_instances,
            monthly_messages: l.monthly_messages,
            api_rate_limit_per_minute: l.api_rate_limit_per_minute,
            requests_per_minute: l.requests_per_minute,
            plugin_max_count: l.plugin_max_count,
            plugin_max_module_bytes: l.plugin_max_module_bytes,
            plugin_fuel: l.plugin_fuel,
            plugin_memory_bytes: l.plugin_memory_bytes,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionDto {
    pub id: String,
    pub name: String,
    #[schema(value_type = gw_core::Tier, example = "starter")]
    pub tier: String,
    pub is_active: bool,
    pub created_at: Time,
    pub updated_at: Time,
    pub current_instances: i32,
    pub messages_used: i64,
    pub last_usage_reset: Time,
    pub limit_overrides: LimitOverridesDto,
    pub limits: LimitsDto,
}

impl SubscriptionDto {
    pub fn new(subscription: Subscription, limits: TierLimits) -> Self {
        Self {
            id: subscription.id.to_string(),
            name: subscription.name,
            tier: subscription.tier.to_string(),
            is_active: subscription.is_active,
            created_at: ts(subscription.created_at),
            updated_at: ts(subscription.updated_at),
            current_instances: subscription.current_instances,
            messages_used: subscription.messages_used,
            last_usage_reset: ts(subscription.last_usage_reset),
            limit_overrides: subscription.limit_overrides.into(),
            limits: limits.into(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscriptionRequest {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    #[schema(value_type = gw_core::Tier, example = "starter")]
    pub tier: String,
    #[serde(default)]
    pub limit_overrides: LimitOverridesDto,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscriptionRequest {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    #[schema(value_type = Option<gw_core::Tier>)]
    pub tier: Option<String>,
    /// Replaces every override at once.
    pub limit_overrides: Option<LimitOverridesDto>,
    pub is_active: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub email: String,
    /// At least 12 and at most 128 characters, at least 5 distinct ones, not containing the email.
    #[schema(min_length = 12, max_length = 128)]
    pub password: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    #[schema(value_type = TenantRole, example = "owner")]
    pub role: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    /// At least 12 and at most 128 characters, at least 5 distinct ones, not containing the user's email.
    #[schema(min_length = 12, max_length = 128)]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceDto {
    pub id: String,
    pub name: String,
    pub subscription_id: String,
    pub created_by_id: Option<String>,
    #[schema(value_type = gw_core::DriverKind, example = "sandbox")]
    pub driver: String,
    #[schema(value_type = gw_core::InstanceStatus, example = "created")]
    pub status: String,
    pub phone: Option<String>,
    pub display_name: Option<String>,
    #[schema(value_type = Object)]
    pub settings: Value,
    pub is_active: bool,
    pub created_at: Time,
    pub updated_at: Time,
    pub last_connected_at: Option<Time>,
    pub last_disconnected_at: Option<Time>,
    pub qr_code_expiry: Option<Time>,
    pub connection_attempts: i32,
    pub last_error: Option<String>,
    pub last_error_at: Option<Time>,
    /// The id of the cluster node running the instance's session (null when none does). Filled by
    /// `GET /v1/instances/{id}`; null in lists and in the answers to changes.
    pub owner_node: Option<String>,
}

/// A node of the cluster, as operators see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterNodeDto {
    pub id: String,
    /// Where the node serves HTTP.
    pub address: String,
    pub started_at: Time,
    pub heartbeat_at: Time,
    /// How many instance sessions the node runs.
    pub instances: u64,
    /// How many sessions it takes at most.
    pub capacity: u32,
}

impl From<gw_store::ClusterNode> for ClusterNodeDto {
    fn from(n: gw_store::ClusterNode) -> Self {
        Self {
            id: n.id.to_string(),
            address: n.address,
            started_at: n.started_at.into(),
            heartbeat_at: n.heartbeat_at.into(),
            instances: n.instances,
            capacity: n.capacity,
        }
    }
}

/// The live nodes of the cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterNodesDto {
    pub items: Vec<ClusterNodeDto>,
}

impl From<Instance> for InstanceDto {
    fn from(i: Instance) -> Self {
        Self {
            id: i.id.to_string(),
            name: i.name,
            subscription_id: i.subscription_id.to_string(),
            created_by_id: i.created_by_id.map(|id| id.to_string()),
            driver: i.driver.to_string(),
            status: i.status.to_string(),
            phone: i.phone,
            display_name: i.display_name,
            settings: i.settings,
            is_active: i.is_active,
            created_at: ts(i.created_at),
            updated_at: ts(i.updated_at),
            last_connected_at: opt_ts(i.last_connected_at),
            last_disconnected_at: opt_ts(i.last_disconnected_at),
            qr_code_expiry: opt_ts(i.qr_code_expiry),
            connection_attempts: i.connection_attempts,
            last_error: i.last_error,
            last_error_at: opt_ts(i.last_error_at),
            owner_node: None,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstanceRequest {
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: String,
    /// Default `sandbox`.
    #[schema(value_type = Option<gw_core::DriverKind>)]
    pub driver: Option<String>,
    /// A JSON object of per-instance settings (at most 16 KiB).
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
    /// Operators only: the subscription to create the instance in.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub subscription_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateInstanceRequest {
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: Option<String>,
    /// Replaces the settings: a JSON object (at most 16 KiB).
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
    pub is_active: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryDto {
    pub id: String,
    pub subscription_id: Option<String>,
    pub action: AuditAction,
    pub resource: AuditResource,
    pub resource_id: Option<String>,
    pub user_id: Option<String>,
    pub api_key_id: Option<String>,
    pub ip_address: Option<String>,
    pub timestamp: Time,
}

impl From<AuditLogEntry> for AuditEntryDto {
    fn from(e: AuditLogEntry) -> Self {
        Self {
            id: e.id.to_string(),
            subscription_id: e.subscription_id.map(|id| id.to_string()),
            action: e.action,
            resource: e.resource,
            resource_id: e.resource_id,
            user_id: e.user_id.map(|id| id.to_string()),
            api_key_id: e.api_key_id.map(|id| id.to_string()),
            ip_address: e.ip_address,
            timestamp: ts(e.timestamp),
        }
    }
}

/// An API key as listed: never its secret or hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyDto {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    #[schema(value_type = Vec<gw_core::KeyScope>)]
    pub permissions: Vec<String>,
    pub is_active: bool,
    pub created_at: Time,
    pub updated_at: Time,
    pub expires_at: Option<Time>,
    pub last_used_at: Option<Time>,
    pub usage_count: i64,
    /// Requests per minute; `null` takes the tier's default.
    pub rate_limit: Option<i32>,
}

impl From<gw_core::ApiKey> for ApiKeyDto {
    fn from(k: gw_core::ApiKey) -> Self {
        Self {
            id: k.id.to_string(),
            instance_id: k.instance_id.to_string(),
            name: k.name,
            permissions: k.permissions,
            is_active: k.is_active,
            created_at: ts(k.created_at),
            updated_at: ts(k.updated_at),
            expires_at: opt_ts(k.expires_at),
            last_used_at: opt_ts(k.last_used_at),
            usage_count: k.usage_count,
            rate_limit: k.rate_limit,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: String,
    /// At least one scope.
    #[schema(value_type = Vec<gw_core::KeyScope>, min_items = 1)]
    pub permissions: Vec<String>,
    /// RFC 3339; must be in the future.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Requests per minute; omitted takes the tier's default.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub rate_limit: Option<i32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKeyDto {
    /// The full key. Shown once: store it now.
    pub key: String,
    pub api_key: ApiKeyDto,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKeyRequest {
    /// How long the old key stays valid, in seconds (default 86400, at most 7 days).
    #[schema(minimum = 0, maximum = 604_800)]
    pub grace_period_secs: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedApiKeyDto {
    /// The new key. Shown once.
    pub key: String,
    pub api_key: ApiKeyDto,
    /// The old key, now expiring at the end of the grace period.
    pub previous: ApiKeyDto,
}

/// Where an instance's connection stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceStatusDto {
    pub id: String,
    pub name: String,
    #[schema(value_type = gw_core::InstanceStatus, example = "connected")]
    pub status: String,
    pub phone: Option<String>,
    pub display_name: Option<String>,
    pub last_connected_at: Option<Time>,
    pub last_disconnected_at: Option<Time>,
    pub connection_attempts: i32,
    pub last_error: Option<String>,
    pub last_error_at: Option<Time>,
}

impl From<Instance> for InstanceStatusDto {
    fn from(i: Instance) -> Self {
        Self {
            id: i.id.to_string(),
            name: i.name,
            status: i.status.to_string(),
            phone: i.phone,
            display_name: i.display_name,
            last_connected_at: opt_ts(i.last_connected_at),
            last_disconnected_at: opt_ts(i.last_disconnected_at),
            connection_attempts: i.connection_attempts,
            last_error: i.last_error,
            last_error_at: opt_ts(i.last_error_at),
        }
    }
}

/// A webhook endpoint as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDto {
    pub id: String,
    pub instance_id: String,
    pub url: String,
    /// Subscribed event types, or `["*"]`.
    pub events: Vec<EventSelector>,
    pub is_active: bool,
    /// Why the gateway disabled it (410 Gone, failing too long); `null` while active.
    pub disabled_reason: Option<String>,
    pub created_at: Time,
    pub updated_at: Time,
    pub total_sent: i64,
    pub total_failed: i64,
    pub last_sent_at: Option<Time>,
    pub last_failed_at: Option<Time>,
    pub last_error: Option<String>,
    /// Start of the current run of failures; `null` after a success.
    pub failing_since: Option<Time>,
    /// Until when the previous secret (before the last rotation) also signs deliveries.
    pub previous_secret_expires_at: Option<Time>,
}

impl From<gw_core::WebhookConfig> for WebhookDto {
    fn from(c: gw_core::WebhookConfig) -> Self {
        Self {
            id: c.id.to_string(),
            instance_id: c.instance_id.to_string(),
            url: c.url,
            events: c.events,
            is_active: c.is_active,
            disabled_reason: c.disabled_reason,
            created_at: ts(c.created_at),
            updated_at: ts(c.updated_at),
            total_sent: c.total_sent,
            total_failed: c.total_failed,
            last_sent_at: opt_ts(c.last_sent_at),
            last_failed_at: opt_ts(c.last_failed_at),
            last_error: c.last_error,
            failing_since: opt_ts(c.failing_since),
            previous_secret_expires_at: opt_ts(c.previous_secret_expires_at),
        }
    }
}

/// One attempt to deliver.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttemptDto {
    pub attempt: i32,
    pub at: Time,
    /// The receiver's status; `null` when no response came (timeout, refused address, connection error).
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// The start of the response body (at most 1 KiB).
    pub response_excerpt: Option<String>,
}

/// One event's delivery to one endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDeliveryDto {
    pub id: String,
    pub webhook_id: String,
    /// The `webhook-id` header: the same on every attempt and replay.
    pub event_id: String,
    #[schema(value_type = gw_core::EventType)]
    pub event_type: String,
    /// `pending`, `delivering`, `succeeded` or `dead`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Time,
    pub created_at: Time,
    pub last_attempt_at: Option<Time>,
    /// The body sent (the Standard Webhooks envelope).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub attempt_log: Vec<WebhookAttemptDto>,
}

impl From<gw_store::WebhookDelivery> for WebhookDeliveryDto {
    fn from(d: gw_store::WebhookDelivery) -> Self {
        Self {
            id: d.id.to_string(),
            webhook_id: d.config_id.to_string(),
            event_id: d.event_id.to_string(),
            event_type: d.event_type,
            status: d.status.to_string(),
            attempts: d.attempts,
            next_attempt_at: ts(d.next_attempt_at),
            created_at: ts(d.created_at),
            last_attempt_at: opt_ts(d.last_attempt_at),
            payload: serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::String(d.payload)),
            attempt_log: d
                .attempt_log
                .into_iter()
                .map(|a| WebhookAttemptDto {
                    attempt: a.attempt,
                    at: ts(a.at),
                    status_code: a.status_code,
                    latency_ms: a.latency_ms,
                    error: a.error,
                    response_excerpt: a.response_excerpt,
                })
                .collect(),
        }
    }
}
