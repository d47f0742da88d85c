//! Rows as both backends return them (plain sqlx types), and their conversion into domain entities. A value
//! that does not fit the domain (an enum spelling the gateway never wrote) is reported as corrupt, not guessed.

use chrono::{DateTime, NaiveDate, Utc};
use gw_core::{
    ApiKey, ApiKeyHash, AuditLogEntry, Contact, Email, Instance, LimitOverrides, MessageStat, PasswordHash, Redacted,
    RefreshToken, SessionData, Subscription, Timestamp, UsageRecord, User, WebhookConfig,
};
use gw_store::{ApiKeyRecord, StoreError};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

fn ts(at: DateTime<Utc>) -> Timestamp {
    Timestamp::from_datetime(at)
}

fn opt_ts(at: Option<DateTime<Utc>>) -> Option<Timestamp> {
    at.map(ts)
}

fn parse<T: std::str::FromStr>(entity: &'static str, raw: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    raw.parse().map_err(|e: T::Err| StoreError::Corrupt { entity, detail: e.to_string() })
}

macro_rules! subscription_columns {
    () => {
        "id, name, tier, max_instances, is_active, created_at, updated_at, \
     current_instances, monthly_messages, messages_used, last_usage_reset, limit_overrides"
    };
}
pub(crate) use subscription_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct SubscriptionRow {
    id: Uuid,
    name: String,
    tier: String,
    max_instances: i32,
    is_active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    current_instances: i32,
    monthly_messages: i64,
    messages_used: i64,
    last_usage_reset: DateTime<Utc>,
    limit_overrides: Json<Value>,
}

impl TryFrom<SubscriptionRow> for Subscription {
    type Error = StoreError;

    fn try_from(row: SubscriptionRow) -> Result<Self, StoreError> {
        Ok(Subscription {
            id: row.id.into(),
            name: row.name,
            tier: parse("subscription", &row.tier)?,
            max_instances: row.max_instances,
            is_active: row.is_active,
            created_at: ts(row.created_at),
            updated_at: ts(row.updated_at),
            current_instances: row.current_instances,
            monthly_messages: row.monthly_messages,
            messages_used: row.messages_used,
            last_usage_reset: ts(row.last_usage_reset),
            limit_overrides: serde_json::from_value::<LimitOverrides>(row.limit_overrides.0)
                .map_err(|e| StoreError::Corrupt { entity: "subscription", detail: e.to_string() })?,
        })
    }
}

macro_rules! user_columns {
    () => {
        "id, email, password, name, role, subscription_id, is_active, created_at, updated_at, last_login_at"
    };
}
pub(crate) use user_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: Uuid,
    email: String,
    password: String,
    name: String,
    role: String,
    subscription_id: Option<Uuid>,
    is_active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_login_at: Option<DateTime<Utc>>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        Ok(User {
            id: row.id.into(),
            email: Email::parse(&row.email)
                .map_err(|e| StoreError::Corrupt { entity: "user", detail: e.to_string() })?,
            password: PasswordHash::from_phc(row.password),
            name: row.name,
            role: parse("user", &row.role)?,
            subscription_id: row.subscription_id.map(Into::into),
            is_active: row.is_active,
            created_at: ts(row.created_at),
            updated_at: ts(row.updated_at),
            last_login_at: opt_ts(row.last_login_at),
        })
    }
}

macro_rules! instance_columns {
    () => {
        "id, name, subscription_id, created_by_id, driver, status, phone, \
     display_name, created_at, updated_at, last_connected_at, last_disconnected_at, settings, is_active, qr_code, \
     qr_code_expiry, connection_attempts, last_error, last_error_at"
    };
}
pub(crate) use instance_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct InstanceRow {
    id: Uuid,
    name: String,
    subscription_id: Uuid,
    created_by_id: Option<Uuid>,
    driver: String,
    status: String,
    phone: Option<String>,
    display_name: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_connected_at: Option<DateTime<Utc>>,
    last_disconnected_at: Option<DateTime<Utc>>,
    settings: Json<Value>,
    is_active: bool,
    qr_code: Option<String>,
    qr_code_expiry: Option<DateTime<Utc>>,
    connection_attempts: i32,
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
}

impl TryFrom<InstanceRow> for Instance {
    type Error = StoreError;

    fn try_from(row: InstanceRow) -> Result<Self, StoreError> {
        Ok(Instance {
            id: row.id.into(),
            name: row.name,
            subscription_id: row.subscription_id.into(),
            created_by_id: row.created_by_id.map(Into::into),
            driver: parse("instance", &row.driver)?,
            status: parse("instance", &row.status)?,
            phone: row.phone,
            display_name: row.display_name,
            created_at: ts(row.created_at),
            updated_at: ts(row.updated_at),
            last_connected_at: opt_ts(row.last_connected_at),
            last_disconnected_at: opt_ts(row.last_disconnected_at),
            settings: row.settings.0,
            is_active: row.is_active,
            qr_code: row.qr_code,
            qr_code_expiry: opt_ts(row.qr_code_expiry),
            connection_attempts: row.connection_attempts,
            last_error: row.last_error,
            last_error_at: opt_ts(row.last_error_at),
        })
    }
}

macro_rules! api_key_columns {
    () => {
        "id, instance_id, name, key_hash, permissions, is_active, created_at, \
     updated_at, expires_at, last_used_at, usage_count, rate_limit"
    };
}
pub(crate) use api_key_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    id: Uuid,
    instance_id: Uuid,
    name: String,
    key_hash: Vec<u8>,
    permissions: Json<Vec<String>>,
    is_active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    usage_count: i64,
    rate_limit: Option<i32>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(row: ApiKeyRow) -> Self {
        ApiKey {
            id: row.id.into(),
            instance_id: row.instance_id.into(),
            name: row.name,
            key_hash: ApiKeyHash::from_bytes(row.key_hash),
            permissions: row.permissions.0,
            is_active: row.is_active,
            created_at: ts(row.created_at),
            updated_at: ts(row.updated_at),
            expires_at: opt_ts(row.expires_at),
            last_used_at: opt_ts(row.last_used_at),
            usage_count: row.usage_count,
            rate_limit: row.rate_limit,
        }
    }
}

/// `API_KEY_COLUMNS` qualified with the `k` alias, for the edge's joined look-up.
macro_rules! api_key_record_select {
    () => {
        "SELECT k.id, k.instance_id, k.name, k.key_hash, k.permissions, \
     k.is_active, k.created_at, k.updated_at, k.expires_at, k.last_used_at, k.usage_count, k.rate_limit, \
     i.subscription_id AS owner_subscription_id, i.is_active AS instance_active, \
     s.is_active AS subscription_active \
     FROM api_keys k JOIN instances i ON i.id = k.instance_id JOIN subscriptions s ON s.id = i.subscription_id"
    };
}
pub(crate) use api_key_record_select;

#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRecordRow {
    #[sqlx(flatten)]
    key: ApiKeyRow,
    owner_subscription_id: Uuid,
    instance_active: bool,
    subscription_active: bool,
}

impl From<ApiKeyRecordRow> for ApiKeyRecord {
    fn from(row: ApiKeyRecordRow) -> Self {
        ApiKeyRecord {
            key: row.key.into(),
            subscription_id: row.owner_subscription_id.into(),
            instance_active: row.instance_active,
            subscription_active: row.subscription_active,
        }
    }
}

macro_rules! message_stat_columns {
    () => {
        "id, instance_id, date, messages_sent, messages_received, messages_failed, api_calls"
    };
}
pub(crate) use message_stat_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct MessageStatRow {
    id: Uuid,
    instance_id: Uuid,
    date: NaiveDate,
    messages_sent: i64,
    messages_received: i64,
    messages_failed: i64,
    api_calls: i64,
}

impl From<MessageStatRow> for MessageStat {
    fn from(row: MessageStatRow) -> Self {
        MessageStat {
            id: row.id.into(),
            instance_id: row.instance_id.into(),
            date: row.date,
            messages_sent: row.messages_sent,
            messages_received: row.messages_received,
            messages_failed: row.messages_failed,
            api_calls: row.api_calls,
        }
    }
}

macro_rules! contact_columns {
    () => {
        "id, instance_id, jid, lid, name, notify, is_blocked, is_group, group_admin, \
     created_at, updated_at, last_message_at, profile_picture_url, status"
    };
}
pub(crate) use contact_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct ContactRow {
    id: Uuid,
    instance_id: Uuid,
    jid: String,
    lid: Option<String>,
    name: Option<String>,
    notify: Option<String>,
    is_blocked: bool,
    is_group: bool,
    group_admin: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_message_at: Option<DateTime<Utc>>,
    profile_picture_url: Option<String>,
    status: Option<String>,
}

impl From<ContactRow> for Contact {
    fn from(row: ContactRow) -> Self {
        Contact {
            id: row.id.into(),
            instance_id: row.instance_id.into(),
            jid: row.jid,
            lid: row.lid,
            name: row.name,
            notify: row.notify,
            is_blocked: row.is_blocked,
            is_group: row.is_group,
            group_admin: row.group_admin,
            created_at: ts(row.created_at),
            updated_at: ts(row.updated_at),
            last_message_at: opt_ts(row.last_message_at),
            profile_picture_url: row.profile_picture_url,
            status: row.status,
        }
    }
}

macro_rules! webhook_config_columns {
    () => {
        "id, instance_id, url, events, secret, is_active, created_at, \
     updated_at, total_sent, total_failed, last_sent_at, last_failed_at, last_error, \
     previous_secret_expires_at, failing_since, disabled_reason"
    };
}
pub(crate) use webhook_config_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct WebhookConfigRow {
    id: Uuid,
    instance_id: Uuid,
    url: String,
    events: Json<Vec<gw_core::EventSelector>>,
    secret: String,
    is_active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    total_sent: i64,
    total_failed: i64,
    last_sent_at: Option<DateTime<Utc>>,
    last_failed_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    previous_secret_expires_at: Option<DateTime<Utc>>,
    failing_since: Option<DateTime<Utc>>,
    disabled_reason: Option<String>,
}

impl From<WebhookConfigRow> for WebhookConfig {
    fn from(row: WebhookConfigRow) -> Self {
        WebhookConfig {
            id: row.id.into(),
            instance_id: row.instance_id.into(),
            url: row.url,
            events: row.events.0,
            secret: Redacted::new(row.secret),
            is_active: row.is_active,
            created_at: ts(row.created_at),
            updated_at: ts(row.updated_at),
            total_sent: row.total_sent,
            total_failed: row.total_failed,
            last_sent_at: opt_ts(row.last_sent_at),
            last_failed_at: opt_ts(row.last_failed_at),
            last_error: row.last_error,
            previous_secret_expires_at: opt_ts(row.previous_secret_expires_at),
            failing_since: opt_ts(row.failing_since),
            disabled_reason: row.disabled_reason,
        }
    }
}

macro_rules! session_columns {
    () => {
        "id, instance_id, auth_state, created_at, updated_at, session_valid, last_backup"
    };
}
pub(crate) use session_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id: Uuid,
    instance_id: Uuid,
    auth_state: Vec<u8>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    session_valid: bool,
    last_backup: Option<DateTime<Utc>>,
}

impl From<SessionRow> for SessionData {
    fn from(row: SessionRow) -> Self {
        SessionData {
            id: row.id.into(),
            instance_id: row.instance_id.into(),
            auth_state: Redacted::new(row.auth_state),
            created_at: ts(row.created_at),
            updated_at: ts(row.updated_at),
            session_valid: row.session_valid,
            last_backup: opt_ts(row.last_backup),
        }
    }
}

macro_rules! usage_columns {
    () => {
        "id, subscription_id, instance_id, record_type, count, period, record_date, metadata"
    };
}
pub(crate) use usage_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct UsageRow {
    id: Uuid,
    subscription_id: Uuid,
    instance_id: Option<Uuid>,
    record_type: String,
    count: i64,
    period: String,
    record_date: DateTime<Utc>,
    metadata: Json<Value>,
}

impl TryFrom<UsageRow> for UsageRecord {
    type Error = StoreError;

    fn try_from(row: UsageRow) -> Result<Self, StoreError> {
        Ok(UsageRecord {
            id: row.id.into(),
            subscription_id: row.subscription_id.into(),
            instance_id: row.instance_id.map(Into::into),
            record_type: parse("usage record", &row.record_type)?,
            count: row.count,
            period: parse("usage record", &row.period)?,
            record_date: ts(row.record_date),
            metadata: row.metadata.0,
        })
    }
}

macro_rules! audit_columns {
    () => {
        "id, subscription_id, action, resource, resource_id, user_id, api_key_id, ip_address, timestamp"
    };
}
pub(crate) use audit_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: Uuid,
    subscription_id: Option<Uuid>,
    action: String,
    resource: String,
    resource_id: Option<String>,
    user_id: Option<Uuid>,
    api_key_id: Option<Uuid>,
    ip_address: Option<String>,
    timestamp: DateTime<Utc>,
}

impl TryFrom<AuditRow> for AuditLogEntry {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        Ok(AuditLogEntry {
            id: row.id.into(),
            subscription_id: row.subscription_id.map(Into::into),
            action: parse("audit log entry", &row.action)?,
            resource: parse("audit log entry", &row.resource)?,
            resource_id: row.resource_id,
            user_id: row.user_id.map(Into::into),
            api_key_id: row.api_key_id.map(Into::into),
            ip_address: row.ip_address,
            timestamp: ts(row.timestamp),
        })
    }
}

macro_rules! refresh_token_columns {
    () => {
        "id, user_id, family_id, token_hash, issued_at, expires_at, used_at, revoked_at"
    };
}
pub(crate) use refresh_token_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct RefreshTokenRow {
    id: Uuid,
    user_id: Uuid,
    family_id: Uuid,
    token_hash: Vec<u8>,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<RefreshTokenRow> for RefreshToken {
    fn from(row: RefreshTokenRow) -> Self {
        RefreshToken {
            id: row.id.into(),
            user_id: row.user_id.into(),
            family_id: row.family_id.into(),
            token_hash: row.token_hash,
            issued_at: ts(row.issued_at),
            expires_at: ts(row.expires_at),
            used_at: opt_ts(row.used_at),
            revoked_at: opt_ts(row.revoked_at),
        }
    }
}
