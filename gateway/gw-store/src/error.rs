//! The errors a store reports, typed so callers branch on them and the edge maps each once.

use std::error::Error as StdError;

/// A unique key of the data model; a write that would duplicate one fails with [`StoreError::Conflict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UniqueKey {
    /// `users.email` (platform-wide, case-insensitive through normalisation).
    UserEmail,
    /// `instances (subscription_id, name)`.
    InstanceName,
    /// `api_keys.key_hash`.
    ApiKeyHash,
    /// `message_stats (instance_id, date)`.
    MessageStatDay,
    /// `contacts (instance_id, jid)`.
    ContactJid,
    /// `session_data.instance_id`: one session per instance.
    SessionInstance,
    /// `usage_records (subscription_id, instance_id, record_type, period)`.
    UsageRecordPeriod,
    /// `plugins (subscription_id, name)`.
    PluginName,
    /// `plugin_versions (plugin_id, version)`: two uploads raced for one number (retry).
    PluginVersion,
    /// `plugin_bindings (instance_id, plugin_id)`: a plugin is bound to an instance at most once.
    PluginBinding,
    /// A primary key (an id generated twice: a bug, not a user error).
    PrimaryKey,
}

impl UniqueKey {
    /// The stable name used in error payloads.
    pub const fn as_str(&self) -> &'static str {
        match self {
            UniqueKey::UserEmail => "user_email",
            UniqueKey::InstanceName => "instance_name",
            UniqueKey::ApiKeyHash => "api_key_hash",
            UniqueKey::MessageStatDay => "message_stat_day",
            UniqueKey::ContactJid => "contact_jid",
            UniqueKey::SessionInstance => "session_instance",
            UniqueKey::UsageRecordPeriod => "usage_record_period",
            UniqueKey::PluginName => "plugin_name",
            UniqueKey::PluginVersion => "plugin_version",
            UniqueKey::PluginBinding => "plugin_binding",
            UniqueKey::PrimaryKey => "primary_key",
        }
    }
}

/// A limit a reservation can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `subscriptions.max_instances`.
    Instances { max: i64 },
    /// `subscriptions.monthly_messages` in the current period.
    MonthlyMessages { max: i64 },
    /// The subscription's `plugin_max_count`.
    Plugins { max: i64 },
    /// A plugin's key-value store: `what` is `key_bytes`, `value_bytes` or `keys`.
    PluginKv { what: &'static str, max: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No row of that kind with that id in the caller's scope.
    #[error("{entity} not found")]
    NotFound { entity: &'static str },

    /// The write would duplicate a unique key.
    #[error("{entity} already exists ({})", key.as_str())]
    Conflict { entity: &'static str, key: UniqueKey },

    /// The row is still referenced by others and the data model restricts its deletion.
    #[error("{entity} is still in use by {referenced_by}")]
    InUse { entity: &'static str, referenced_by: &'static str },

    /// A reservation would exceed the limit.
    #[error("limit reached: {0:?}")]
    LimitReached(Limit),

    /// The subscription (or another parent) is deactivated, so the action is refused.
    #[error("{entity} is inactive")]
    Inactive { entity: &'static str },

    /// A pagination cursor that this store did not issue.
    #[error("invalid pagination cursor")]
    InvalidCursor,

    /// A value read back does not fit the domain (an unknown enum spelling, say): the database was changed behind
    /// the gateway's back.
    #[error("stored {entity} is corrupt: {detail}")]
    Corrupt { entity: &'static str, detail: String },

    /// A session's write carried an owner epoch that is no longer the instance's: another node took the instance
    /// over. The session that made the write must stop at once.
    #[error("instance {instance} is owned by another node now (fenced)")]
    Fenced { instance: gw_core::InstanceId },

    /// The database could not be reached (connection refused, pool timed out).
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),

    /// Any other database failure.
    #[error("database error")]
    Backend(#[source] Box<dyn StdError + Send + Sync>),
}

impl StoreError {
    pub fn not_found(entity: &'static str) -> Self {
        StoreError::NotFound { entity }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    pub fn conflict_key(&self) -> Option<UniqueKey> {
        match self {
            StoreError::Conflict { key, .. } => Some(*key),
            _ => None,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
