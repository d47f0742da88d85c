//! The plugin seam, in domain terms: what a bound plugin is, where the host finds a chain's bindings and
//! components ([`PluginCatalog`], implemented over the store), and what the edge asks of the WebAssembly host
//! ([`PluginRuntime`], implemented by `gw-plugins`). Nothing here knows wasmtime, SQL or HTTP.

use serde::{Deserialize, Serialize};

use crate::{InstanceId, PluginBindingId, PluginId, PluginVersionId, SubscriptionId, Timestamp};

/// Which message events a binding sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BindingDirection {
    Inbound,
    Outbound,
    Both,
}

impl BindingDirection {
    pub fn covers(self, direction: crate::Direction) -> bool {
        match self {
            Self::Both => true,
            Self::Inbound => direction == crate::Direction::Inbound,
            Self::Outbound => direction == crate::Direction::Outbound,
        }
    }
}

/// What a chain does with a message when a plugin fails (trap, timeout, limit hit, invalid verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Skip the failed plugin; the message goes on to the next one.
    FailOpen,
    /// Drop the message.
    FailClosed,
}

/// Resource limits for one plugin call, from the subscription's tier (and its overrides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginLimits {
    pub fuel: u64,
    pub memory_bytes: u64,
    /// Wall-clock deadline for one call.
    pub timeout_ms: u32,
    pub max_module_bytes: u64,
}

/// One enabled binding of a chain, resolved to the component version it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundPlugin {
    pub binding_id: PluginBindingId,
    pub plugin_id: PluginId,
    pub plugin_name: String,
    pub version_id: PluginVersionId,
    pub version: i32,
    /// Lower-case hex SHA-256 of the component bytes: the compile cache key.
    pub sha256: String,
    /// Position in the chain; lower runs first.
    pub position: i32,
    pub direction: BindingDirection,
    /// The binding's config JSON, passed to the plugin as a string.
    pub config: serde_json::Value,
    pub failure_policy: FailurePolicy,
    pub subscription_id: SubscriptionId,
    pub limits: PluginLimits,
}

/// Why one plugin call failed, recorded on its binding and visible to the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingFailure {
    /// Stable kind, one of [`crate::PLUGIN_FAILURE_KINDS`].
    pub kind: String,
    pub message: String,
    pub at: Timestamp,
}

/// A log line a plugin wrote through the host's logging capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginLogRecord {
    pub binding_id: PluginBindingId,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    pub message: String,
    pub at: Timestamp,
}

/// A catalog could not answer (its store failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin catalog: {0}")]
pub struct CatalogError(pub String);

/// Why a key-value write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvSetError {
    /// The write breaks a limit of the contract (key or value size, keys per instance): the plugin gets this as
    /// the `err` of `kv::set`, as the WIT promises, and goes on.
    #[error("{0}")]
    Refused(String),
    /// The store failed: the call fails (`host_error`).
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Where the plugin host finds chains, components and plugin state. Implemented over the store; the host caches
/// chains and compiled components itself and is told to forget an instance's chain through
/// [`PluginRuntime::invalidate`].
#[async_trait::async_trait]
pub trait PluginCatalog: Send + Sync + std::fmt::Debug {
    /// The instance's enabled bindings whose plugin has an active version, ordered by position.
    async fn chain(&self, instance: InstanceId) -> Result<Vec<BoundPlugin>, CatalogError>;
    /// The component bytes of a stored version, by SHA-256 (hex).
    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, CatalogError>;
    /// Count a failure on the binding and keep it as the binding's last error.
    async fn record_failure(&self, binding: PluginBindingId, failure: BindingFailure) -> Result<(), CatalogError>;
    /// Keep plugin log lines (the store bounds how many it keeps per binding).
    async fn append_logs(&self, logs: Vec<PluginLogRecord>) -> Result<(), CatalogError>;
    /// The plugin's private key-value store, per (plugin, instance).
    async fn kv_get(&self, plugin: PluginId, instance: InstanceId, key: &str) -> Result<Option<Vec<u8>>, CatalogError>;
    async fn kv_set(&self, plugin: PluginId, instance: InstanceId, key: &str, value: Vec<u8>)
    -> Result<(), KvSetError>;
    async fn kv_delete(&self, plugin: PluginId, instance: InstanceId, key: &str) -> Result<(), CatalogError>;
}

/// A component the host accepted: valid, of the plugin world, compiled and smoke-run under limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedComponent {
    pub sha256: String,
    pub size_bytes: u64,
}

/// Why an upload was refused: a stable kind and a message for the author.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct PluginRejection {
    pub kind: crate::RejectionKind,
    pub message: String,
}

/// What the edge asks of the WebAssembly host.
#[async_trait::async_trait]
pub trait PluginRuntime: Send + Sync + std::fmt::Debug {
    /// Validate, compile (cached by SHA-256) and smoke-run a component under `limits`, or say why not.
    async fn prepare(&self, bytes: &[u8], limits: &PluginLimits) -> Result<PreparedComponent, PluginRejection>;
    /// The instance's bindings or active versions changed: the next event loads its chain afresh. In-flight events
    /// finish on the chain they started with.
    fn invalidate(&self, instance: InstanceId);
    /// Every instance's chain may have changed (invalidations may have been missed): load all of them afresh.
    fn invalidate_all(&self);
}
