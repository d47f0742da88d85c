//! The rows of the plugin tables (migration 0005) as both backends return them, their conversion into domain
//! entities, and the spellings the tables use for directions, policies and log levels.

use chrono::{DateTime, Utc};
use gw_core::{BindingDirection, FailurePolicy, Timestamp};
use gw_store::{Plugin, PluginBinding, PluginChainLink, PluginLogEntry, PluginVersion, StoreError};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

/// Longest log line kept; the host bounds lines too, this is the store's own guard.
pub(crate) const MAX_LOG_MESSAGE_BYTES: usize = 4096;

macro_rules! plugin_columns {
    () => {
        "p.id, p.subscription_id, p.name, p.description, p.active_version_id, \
         (SELECT av.version FROM plugin_versions av WHERE av.id = p.active_version_id) AS active_version, \
         (SELECT COALESCE(MAX(lv.version), 0) FROM plugin_versions lv WHERE lv.plugin_id = p.id) AS latest_version, \
         p.created_at, p.updated_at"
    };
}
pub(crate) use plugin_columns;

macro_rules! plugin_version_columns {
    () => {
        "id, plugin_id, version, sha256, size_bytes, uploaded_by, created_at"
    };
}
pub(crate) use plugin_version_columns;

macro_rules! plugin_binding_columns {
    () => {
        "id, instance_id, plugin_id, version_id, position, direction, config, enabled, failure_policy, error_count, \
         last_error, last_error_kind, last_error_at, created_at, updated_at"
    };
}
pub(crate) use plugin_binding_columns;

fn corrupt(entity: &'static str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { entity, detail: detail.to_string() }
}

pub(crate) fn direction_str(direction: BindingDirection) -> &'static str {
    match direction {
        BindingDirection::Inbound => "inbound",
        BindingDirection::Outbound => "outbound",
        BindingDirection::Both => "both",
    }
}

fn parse_direction(text: &str) -> Result<BindingDirection, StoreError> {
    match text {
        "inbound" => Ok(BindingDirection::Inbound),
        "outbound" => Ok(BindingDirection::Outbound),
        "both" => Ok(BindingDirection::Both),
        other => Err(corrupt("plugin binding", format!("direction {other:?}"))),
    }
}

pub(crate) fn policy_str(policy: FailurePolicy) -> &'static str {
    match policy {
        FailurePolicy::FailOpen => "fail_open",
        FailurePolicy::FailClosed => "fail_closed",
    }
}

fn parse_policy(text: &str) -> Result<FailurePolicy, StoreError> {
    match text {
        "fail_open" => Ok(FailurePolicy::FailOpen),
        "fail_closed" => Ok(FailurePolicy::FailClosed),
        other => Err(corrupt("plugin binding", format!("failure policy {other:?}"))),
    }
}

/// A level the schema accepts; anything else a host might pass is kept as `info` rather than lost.
pub(crate) fn log_level(level: &str) -> &'static str {
    match level.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "warn" | "warning" => "warn",
        "error" => "error",
        _ => "info",
    }
}

/// The message cut to [`MAX_LOG_MESSAGE_BYTES`] on a character boundary.
pub(crate) fn bounded_message(message: &str) -> &str {
    if message.len() <= MAX_LOG_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_LOG_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

#[derive(sqlx::FromRow)]
pub(crate) struct PluginRow {
    id: Uuid,
    subscription_id: Uuid,
    name: String,
    description: Option<String>,
    active_version_id: Option<Uuid>,
    active_version: Option<i32>,
    latest_version: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<PluginRow> for Plugin {
    fn from(row: PluginRow) -> Self {
        Plugin {
            id: row.id.into(),
            subscription_id: row.subscription_id.into(),
            name: row.name,
            description: row.description,
            active_version_id: row.active_version_id.map(Into::into),
            active_version: row.active_version,
            latest_version: row.latest_version,
            created_at: Timestamp::from_datetime(row.created_at),
            updated_at: Timestamp::from_datetime(row.updated_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PluginVersionRow {
    id: Uuid,
    plugin_id: Uuid,
    version: i32,
    sha256: String,
    size_bytes: i64,
    uploaded_by: Option<Uuid>,
    created_at: DateTime<Utc>,
}

impl From<PluginVersionRow> for PluginVersion {
    fn from(row: PluginVersionRow) -> Self {
        PluginVersion {
            id: row.id.into(),
            plugin_id: row.plugin_id.into(),
            version: row.version,
            sha256: row.sha256,
            size_bytes: row.size_bytes,
            uploaded_by: row.uploaded_by.map(Into::into),
            created_at: Timestamp::from_datetime(row.created_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PluginBindingRow {
    id: Uuid,
    instance_id: Uuid,
    plugin_id: Uuid,
    version_id: Option<Uuid>,
    position: i32,
    direction: String,
    config: Json<Value>,
    enabled: bool,
    failure_policy: String,
    error_count: i64,
    last_error: Option<String>,
    last_error_kind: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<PluginBindingRow> for PluginBinding {
    type Error = StoreError;

    fn try_from(row: PluginBindingRow) -> Result<Self, StoreError> {
        Ok(PluginBinding {
            id: row.id.into(),
            instance_id: row.instance_id.into(),
            plugin_id: row.plugin_id.into(),
            version_id: row.version_id.map(Into::into),
            position: row.position,
            direction: parse_direction(&row.direction)?,
            config: row.config.0,
            enabled: row.enabled,
            failure_policy: parse_policy(&row.failure_policy)?,
            error_count: row.error_count,
            last_error: row.last_error,
            last_error_kind: row.last_error_kind,
            last_error_at: row.last_error_at.map(Timestamp::from_datetime),
            created_at: Timestamp::from_datetime(row.created_at),
            updated_at: Timestamp::from_datetime(row.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ChainRow {
    binding_id: Uuid,
    plugin_id: Uuid,
    plugin_name: String,
    version_id: Uuid,
    version: i32,
    sha256: String,
    position: i32,
    direction: String,
    config: Json<Value>,
    failure_policy: String,
    subscription_id: Uuid,
}

impl TryFrom<ChainRow> for PluginChainLink {
    type Error = StoreError;

    fn try_from(row: ChainRow) -> Result<Self, StoreError> {
        Ok(PluginChainLink {
            binding_id: row.binding_id.into(),
            plugin_id: row.plugin_id.into(),
            plugin_name: row.plugin_name,
            version_id: row.version_id.into(),
            version: row.version,
            sha256: row.sha256,
            position: row.position,
            direction: parse_direction(&row.direction)?,
            config: row.config.0,
            failure_policy: parse_policy(&row.failure_policy)?,
            subscription_id: row.subscription_id.into(),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PluginLogRow {
    id: Uuid,
    binding_id: Uuid,
    level: String,
    message: String,
    at: DateTime<Utc>,
}

impl From<PluginLogRow> for PluginLogEntry {
    fn from(row: PluginLogRow) -> Self {
        PluginLogEntry {
            id: row.id,
            binding_id: row.binding_id.into(),
            level: row.level,
            message: row.message,
            at: Timestamp::from_datetime(row.at),
        }
    }
}
