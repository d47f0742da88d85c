//! Plugins: named plugins of a subscription, their uploaded versions (component bytes shared by SHA-256), bindings
//! of a plugin to an instance, the bounded log of each binding and each plugin's private key-value store.
//!
//! [`StoreCatalog`] is the plugin host's view of all this ([`gw_core::PluginCatalog`]), over any [`crate::Store`].

use std::sync::Arc;

use async_trait::async_trait;
use gw_core::{
    BindingDirection, BindingFailure, BoundPlugin, CatalogError, FailurePolicy, InstanceId, KvSetError,
    PluginBindingId, PluginCatalog, PluginId, PluginLimits, PluginLogRecord, PluginVersionId, Subscription,
    SubscriptionId, Timestamp, UserId,
};
use serde_json::Value;
use uuid::Uuid;

use crate::{Actor, Page, PageRequest, StoreResult, Visibility};

/// Log lines kept per binding; older ones are trimmed as new ones arrive.
pub const PLUGIN_LOG_KEEP: u32 = 500;
// The key-value limits are the plugin contract's (gw-core), the ones the host checks first.
pub use gw_core::{PLUGIN_KV_MAX_KEY_BYTES, PLUGIN_KV_MAX_KEYS, PLUGIN_KV_MAX_VALUE_BYTES};

/// A named plugin of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plugin {
    pub id: PluginId,
    pub subscription_id: SubscriptionId,
    pub name: String,
    pub description: Option<String>,
    pub active_version_id: Option<PluginVersionId>,
    /// The number of the active version, if any.
    pub active_version: Option<i32>,
    /// The highest version number uploaded so far (0 before the first upload).
    pub latest_version: i32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One uploaded version of a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginVersion {
    pub id: PluginVersionId,
    pub plugin_id: PluginId,
    /// 1, 2, 3, … per plugin, in upload order.
    pub version: i32,
    /// Lower-case hex SHA-256 of the component bytes.
    pub sha256: String,
    pub size_bytes: i64,
    pub uploaded_by: Option<UserId>,
    pub created_at: Timestamp,
}

/// A plugin bound to an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginBinding {
    pub id: PluginBindingId,
    pub instance_id: InstanceId,
    pub plugin_id: PluginId,
    /// A pinned version; `None` follows the plugin's active version.
    pub version_id: Option<PluginVersionId>,
    pub position: i32,
    pub direction: BindingDirection,
    pub config: Value,
    pub enabled: bool,
    pub failure_policy: FailurePolicy,
    pub error_count: i64,
    pub last_error: Option<String>,
    pub last_error_kind: Option<String>,
    pub last_error_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One stored log line of a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLogEntry {
    /// Time-ordered: the page cursor.
    pub id: Uuid,
    pub binding_id: PluginBindingId,
    pub level: String,
    pub message: String,
    pub at: Timestamp,
}

/// A plugin to create. `max_count` is the subscription's `plugin_max_count`, enforced atomically with the insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPlugin {
    pub subscription_id: SubscriptionId,
    pub name: String,
    pub description: Option<String>,
    pub max_count: i64,
}

/// An uploaded component, already accepted by the plugin host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPluginVersion {
    pub plugin_id: PluginId,
    pub sha256: String,
    pub bytes: Vec<u8>,
    pub uploaded_by: Option<UserId>,
}

/// A binding to create. The plugin must belong to the instance's subscription and a pinned version to the plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPluginBinding {
    pub instance_id: InstanceId,
    pub plugin_id: PluginId,
    pub version_id: Option<PluginVersionId>,
    /// `None` appends after the instance's last binding.
    pub position: Option<i32>,
    pub direction: BindingDirection,
    pub config: Value,
    pub enabled: bool,
    pub failure_policy: FailurePolicy,
}

/// A partial update of a binding; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginBindingPatch {
    /// `Some(None)` unpins (follow the active version), `Some(Some(v))` pins.
    pub version_id: Option<Option<PluginVersionId>>,
    pub position: Option<i32>,
    pub direction: Option<BindingDirection>,
    pub config: Option<Value>,
    pub enabled: Option<bool>,
    pub failure_policy: Option<FailurePolicy>,
    /// Clears the error count and last error.
    pub reset_errors: bool,
}

/// One link of an instance's chain, as the store resolves it: the binding joined to the version it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginChainLink {
    pub binding_id: PluginBindingId,
    pub plugin_id: PluginId,
    pub plugin_name: String,
    pub version_id: PluginVersionId,
    pub version: i32,
    pub sha256: String,
    pub position: i32,
    pub direction: BindingDirection,
    pub config: Value,
    pub failure_policy: FailurePolicy,
    pub subscription_id: SubscriptionId,
}

#[async_trait]
pub trait PluginStore: Send + Sync {
    /// Creates a plugin, refused with `LimitReached(Plugins)` when the subscription already has `max_count`; the
    /// count and the insert are one transaction with the subscription's row locked, so concurrent creates never
    /// overshoot.
    async fn create_plugin(&self, new: NewPlugin, actor: &Actor) -> StoreResult<Plugin>;
    async fn get_plugin(&self, scope: Visibility, id: PluginId) -> StoreResult<Plugin>;
    async fn list_plugins(&self, scope: Visibility, page: PageRequest) -> StoreResult<Page<Plugin>>;
    /// Deletes the plugin with its versions, bindings, logs and key-value data; returns the instances that were
    /// bound to it (their chains changed). Component bytes no other version uses are removed too.
    async fn delete_plugin(&self, scope: Visibility, id: PluginId, actor: &Actor) -> StoreResult<Vec<InstanceId>>;
    /// Stores a version numbered one above the plugin's latest (atomically); the plugin's first version becomes
    /// its active one. Identical bytes are stored once.
    async fn add_plugin_version(
        &self,
        scope: Visibility,
        new: NewPluginVersion,
        actor: &Actor,
    ) -> StoreResult<PluginVersion>;
    /// Versions, newest first.
    async fn list_plugin_versions(&self, scope: Visibility, plugin_id: PluginId) -> StoreResult<Vec<PluginVersion>>;
    /// Makes `version` the plugin's active one (an earlier one: a rollback).
    async fn activate_plugin_version(
        &self,
        scope: Visibility,
        plugin_id: PluginId,
        version: i32,
        actor: &Actor,
    ) -> StoreResult<Plugin>;
    /// Instances with a binding of the plugin.
    async fn plugin_instances(&self, plugin_id: PluginId) -> StoreResult<Vec<InstanceId>>;

    /// Binds a plugin of the instance's subscription (else the plugin is not found) to the instance.
    async fn create_plugin_binding(&self, new: NewPluginBinding, actor: &Actor) -> StoreResult<PluginBinding>;
    async fn get_plugin_binding(&self, instance_id: InstanceId, id: PluginBindingId) -> StoreResult<PluginBinding>;
    /// The instance's bindings in chain order (position, then creation).
    async fn list_plugin_bindings(&self, instance_id: InstanceId) -> StoreResult<Vec<PluginBinding>>;
    async fn update_plugin_binding(
        &self,
        instance_id: InstanceId,
        id: PluginBindingId,
        patch: PluginBindingPatch,
        actor: &Actor,
    ) -> StoreResult<PluginBinding>;
    async fn delete_plugin_binding(
        &self,
        instance_id: InstanceId,
        id: PluginBindingId,
        actor: &Actor,
    ) -> StoreResult<()>;

    /// The instance's enabled bindings whose plugin has a version to run (pinned, or active), in chain order.
    async fn plugin_chain(&self, instance_id: InstanceId) -> StoreResult<Vec<PluginChainLink>>;
    /// The component bytes with this SHA-256 (hex).
    async fn plugin_component(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Counts a failure on the binding and keeps it as the last error. A binding deleted meanwhile is ignored.
    async fn record_plugin_failure(&self, binding_id: PluginBindingId, failure: &BindingFailure) -> StoreResult<()>;
    /// Appends log lines and trims each binding they touch to its newest `keep`. Lines of deleted bindings are
    /// dropped.
    async fn append_plugin_logs(&self, logs: &[PluginLogRecord], keep: u32) -> StoreResult<()>;
    /// A binding's log, newest first.
    async fn list_plugin_logs(
        &self,
        instance_id: InstanceId,
        binding_id: PluginBindingId,
        page: PageRequest,
    ) -> StoreResult<Page<PluginLogEntry>>;

    async fn plugin_kv_get(
        &self,
        plugin_id: PluginId,
        instance_id: InstanceId,
        key: &str,
    ) -> StoreResult<Option<Vec<u8>>>;
    /// Refused with `LimitReached` beyond [`PLUGIN_KV_MAX_KEY_BYTES`], [`PLUGIN_KV_MAX_VALUE_BYTES`] or
    /// [`PLUGIN_KV_MAX_KEYS`].
    async fn plugin_kv_set(
        &self,
        plugin_id: PluginId,
        instance_id: InstanceId,
        key: &str,
        value: &[u8],
    ) -> StoreResult<()>;
    async fn plugin_kv_delete(&self, plugin_id: PluginId, instance_id: InstanceId, key: &str) -> StoreResult<()>;
}

/// Turns a subscription into the limits its plugins run under (tier defaults, overrides, the configured timeout).
pub type PluginLimitsFn = Arc<dyn Fn(&Subscription) -> PluginLimits + Send + Sync>;

/// [`PluginCatalog`] over the store: what the plugin host reads and records.
#[derive(Clone)]
pub struct StoreCatalog {
    store: Arc<dyn crate::Store>,
    limits: PluginLimitsFn,
}

impl std::fmt::Debug for StoreCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCatalog").field("store", &self.store).finish_non_exhaustive()
    }
}

impl StoreCatalog {
    pub fn new(store: Arc<dyn crate::Store>, limits: PluginLimitsFn) -> Self {
        Self { store, limits }
    }
}

fn catalog_err(err: crate::StoreError) -> CatalogError {
    CatalogError(err.to_string())
}

#[async_trait]
impl PluginCatalog for StoreCatalog {
    async fn chain(&self, instance: InstanceId) -> Result<Vec<BoundPlugin>, CatalogError> {
        let links = self.store.plugin_chain(instance).await.map_err(catalog_err)?;
        let Some(first) = links.first() else {
            return Ok(Vec::new());
        };
        // Every link of one instance belongs to the instance's subscription: one look-up serves them all.
        let subscription = self.store.get_subscription(first.subscription_id).await.map_err(catalog_err)?;
        let limits = (self.limits)(&subscription);
        Ok(links
            .into_iter()
            .map(|link| BoundPlugin {
                binding_id: link.binding_id,
                plugin_id: link.plugin_id,
                plugin_name: link.plugin_name,
                version_id: link.version_id,
                version: link.version,
                sha256: link.sha256,
                position: link.position,
                direction: link.direction,
                config: link.config,
                failure_policy: link.failure_policy,
                subscription_id: link.subscription_id,
                limits,
            })
            .collect())
    }

    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, CatalogError> {
        self.store.plugin_component(sha256).await.map_err(catalog_err)
    }

    async fn record_failure(&self, binding: PluginBindingId, failure: BindingFailure) -> Result<(), CatalogError> {
        self.store.record_plugin_failure(binding, &failure).await.map_err(catalog_err)
    }

    async fn append_logs(&self, logs: Vec<PluginLogRecord>) -> Result<(), CatalogError> {
        self.store.append_plugin_logs(&logs, PLUGIN_LOG_KEEP).await.map_err(catalog_err)
    }

    async fn kv_get(&self, plugin: PluginId, instance: InstanceId, key: &str) -> Result<Option<Vec<u8>>, CatalogError> {
        self.store.plugin_kv_get(plugin, instance, key).await.map_err(catalog_err)
    }

    async fn kv_set(
        &self,
        plugin: PluginId,
        instance: InstanceId,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), KvSetError> {
        self.store.plugin_kv_set(plugin, instance, key, &value).await.map_err(|err| match err {
            // A limit of the contract is the plugin's to handle (the WIT's `err`), not a failure of the host.
            crate::StoreError::LimitReached(crate::Limit::PluginKv { what, max }) => {
                KvSetError::Refused(format!("{what} limit reached (at most {max})"))
            }
            other => KvSetError::Catalog(catalog_err(other)),
        })
    }

    async fn kv_delete(&self, plugin: PluginId, instance: InstanceId, key: &str) -> Result<(), CatalogError> {
        self.store.plugin_kv_delete(plugin, instance, key).await.map_err(catalog_err)
    }
}
