//! Plugins: named WebAssembly plugins of a subscription, their uploaded versions, and their bindings to instances.
//! Users need an owner's role for changes (members read); keys need `plugins:write`, which reaches the plugins of
//! the key's subscription and the bindings of the key's own instance. Every change that alters what an instance
//! runs tells the plugin runtime to forget that instance's chain.
//!
//! The upload flow lives here: tier limits, the runtime's check ([`PluginRuntime::prepare`], which the binary
//! implements over the WebAssembly host), the store write, and invalidation.

use std::future::Future;
use std::sync::Arc;

use gw_accounts::{Action, FieldError};
use gw_core::{
    BindingDirection, FailurePolicy, InstanceId, PluginBindingId, PluginId, PluginLimits, PluginRejection,
    PluginRuntime, PluginVersionId, SubscriptionId,
};
use gw_store::{
    NewPlugin, NewPluginBinding, NewPluginVersion, Page, PageRequest, Plugin, PluginBinding, PluginBindingPatch,
    PluginLogEntry, PluginVersion, Store, StoreError, Visibility,
};
use serde_json::Value;
use sha2::Digest as _;

use crate::access::{Access, AccessError};
use crate::caller::{Caller, Need};

/// Highest position a client may give a binding. Positions only order the chain, so a bound costs nothing, and it
/// keeps "after the last binding" (`MAX + 1`) inside `i32`.
pub const MAX_BINDING_POSITION: i32 = 1_000_000;
/// A binding's config is handed to the plugin on every call; keep it small.
pub const MAX_CONFIG_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{}: {}", .0.field, .0.message)]
    Invalid(FieldError),
    /// This node runs no plugin host, so nothing can be checked or uploaded.
    #[error("this node runs no plugin host")]
    Unavailable,
    /// The runtime refused the component.
    #[error("plugin rejected: {0}")]
    Rejected(PluginRejection),
}

fn invalid(field: &'static str, message: impl Into<String>) -> PluginError {
    PluginError::Invalid(FieldError { field, message: message.into() })
}

/// A new plugin.
#[derive(Debug)]
pub struct CreatePlugin<'a> {
    pub name: &'a str,
    pub description: Option<String>,
    /// Operators must name it; tenants may (their own) or not.
    pub subscription_id: Option<&'a str>,
}

/// A new binding; `version` pins a version number. `plugin_id` is parsed once the caller is known to be allowed
/// (a malformed id is an unknown plugin).
#[derive(Debug)]
pub struct Bind {
    pub plugin_id: String,
    pub version: Option<i32>,
    pub position: Option<i32>,
    pub direction: BindingDirection,
    pub config: Value,
    pub enabled: bool,
    pub failure_policy: FailurePolicy,
}

/// A binding change; `version: Some(None)` unpins.
#[derive(Debug, Default)]
pub struct Rebind {
    pub version: Option<Option<i32>>,
    pub position: Option<i32>,
    pub direction: Option<BindingDirection>,
    pub config: Option<Value>,
    pub enabled: Option<bool>,
    pub failure_policy: Option<FailurePolicy>,
    pub reset_errors: bool,
}

/// The plugin service.
#[derive(Clone)]
pub struct Plugins {
    access: Access,
    store: Arc<dyn Store>,
    runtime: Option<Arc<dyn PluginRuntime>>,
    timeout_ms: u32,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins").field("runtime", &self.runtime.is_some()).finish_non_exhaustive()
    }
}

fn validate_position(position: Option<i32>) -> Result<(), PluginError> {
    if position.is_some_and(|p| !(0..=MAX_BINDING_POSITION).contains(&p)) {
        return Err(invalid("position", format!("must be between 0 and {MAX_BINDING_POSITION}")));
    }
    Ok(())
}

/// A plugin reads its config as an object (`{}` when the binding has none), and the document says so.
pub fn validate_config(config: &Value) -> Result<(), PluginError> {
    if !config.is_object() {
        return Err(invalid("config", "must be a JSON object"));
    }
    if serde_json::to_vec(config).map(|v| v.len()).unwrap_or(usize::MAX) > MAX_CONFIG_BYTES {
        return Err(invalid("config", format!("at most {MAX_CONFIG_BYTES} bytes of JSON")));
    }
    Ok(())
}

impl Plugins {
    /// `runtime` is `None` when this node runs no plugin host (uploads are then refused); `timeout_ms` is the
    /// wall-clock deadline of one call, part of every plugin's limits.
    pub fn new(access: Access, runtime: Option<Arc<dyn PluginRuntime>>, timeout_ms: u32) -> Self {
        Self { store: access.store().clone(), access, runtime, timeout_ms }
    }

    fn invalidate(&self, instances: impl IntoIterator<Item = InstanceId>) {
        if let Some(runtime) = &self.runtime {
            for instance in instances {
                runtime.invalidate(instance);
            }
        }
    }

    async fn invalidate_plugin(&self, plugin: PluginId) -> Result<(), PluginError> {
        if self.runtime.is_some() {
            let instances = self.store.plugin_instances(plugin).await?;
            self.invalidate(instances);
        }
        Ok(())
    }

    /// The limits of the subscription's tier and overrides, as the runtime applies them.
    async fn limits(&self, subscription_id: SubscriptionId) -> Result<PluginLimits, PluginError> {
        let subscription = self.store.get_subscription(subscription_id).await?;
        Ok(self.access.accounts().effective_limits(&subscription).plugin_limits(self.timeout_ms))
    }

    /// Creates a named plugin; refused beyond the tier's `plugin_max_count`.
    pub async fn create(&self, caller: &Caller, new: CreatePlugin<'_>) -> Result<Plugin, PluginError> {
        let scope = self.access.plugin_scope(caller)?;
        self.access.require(caller, Action::ManagePlugins)?;
        let named = new
            .subscription_id
            .map(|s| s.parse::<SubscriptionId>().map_err(|_| PluginError::NotFound("subscription")))
            .transpose()?;
        let subscription_id = match (scope, named) {
            (Visibility::Subscription(own), None) => own,
            (Visibility::Subscription(own), Some(named)) if named == own => own,
            (Visibility::Subscription(_), Some(_)) => return Err(PluginError::NotFound("subscription")),
            (Visibility::All, Some(named)) => named,
            (Visibility::All, None) => return Err(invalid("subscription_id", "operators must name the subscription")),
        };
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(invalid("name", "1 to 100 characters"));
        }
        if new.description.as_ref().is_some_and(|d| d.chars().count() > 1000) {
            return Err(invalid("description", "at most 1000 characters"));
        }
        let subscription = self.store.get_subscription(subscription_id).await?;
        let limits = self.access.accounts().effective_limits(&subscription);
        let new = NewPlugin {
            subscription_id,
            name: name.to_owned(),
            description: new.description,
            max_count: i64::from(limits.plugin_max_count),
        };
        Ok(self.store.create_plugin(new, &caller.actor()).await?)
    }

    /// The caller's plugins (an operator's: every subscription's).
    pub async fn list(&self, caller: &Caller, page: PageRequest) -> Result<Page<Plugin>, PluginError> {
        let scope = self.access.plugin_scope(caller)?;
        self.access.require(caller, Action::ReadPlugins)?;
        Ok(self.store.list_plugins(scope, page).await?)
    }

    pub async fn get(&self, caller: &Caller, id: PluginId) -> Result<Plugin, PluginError> {
        Ok(self.access.plugin(caller, id, Action::ReadPlugins).await?)
    }

    /// Deletes the plugin with its versions, bindings, logs and data; bound instances stop running it.
    pub async fn delete(&self, caller: &Caller, id: PluginId) -> Result<(), PluginError> {
        let plugin = self.access.plugin(caller, id, Action::ManagePlugins).await?;
        let scope = Visibility::Subscription(plugin.subscription_id);
        let instances = self.store.delete_plugin(scope, id, &caller.actor()).await?;
        self.invalidate(instances);
        Ok(())
    }

    /// Uploads a version: `read` gets the subscription's size limit and returns the component's bytes (it runs
    /// only once the caller is allowed and a runtime exists); the runtime checks them under the tier's limits
    /// before anything is stored. Answers the version and the plugin's active version number.
    pub async fn upload<E, F, Fut>(
        &self,
        caller: &Caller,
        id: PluginId,
        read: F,
    ) -> Result<(PluginVersion, Option<i32>), E>
    where
        E: From<PluginError>,
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        let plugin = self.access.plugin(caller, id, Action::ManagePlugins).await.map_err(PluginError::from)?;
        let runtime = self.runtime.clone().ok_or(PluginError::Unavailable)?;
        let limits = self.limits(plugin.subscription_id).await?;
        let bytes = read(limits.max_module_bytes).await?;
        runtime.prepare(&bytes, &limits).await.map_err(PluginError::Rejected)?;
        // The store's key is computed here, from the bytes it stores, so the host's look-up by hash always finds them.
        let sha256 = format!("{:x}", sha2::Sha256::digest(&bytes));
        let uploaded_by = match caller {
            Caller::User(p) => Some(p.user_id),
            Caller::Key(_) => None,
        };
        let version = self
            .store
            .add_plugin_version(
                Visibility::Subscription(plugin.subscription_id),
                NewPluginVersion { plugin_id: id, sha256, bytes, uploaded_by },
                &caller.actor(),
            )
            .await
            .map_err(PluginError::from)?;
        let plugin = self.store.get_plugin(Visibility::All, id).await.map_err(PluginError::from)?;
        if plugin.active_version_id == Some(version.id) {
            // The first version went live: bindings waiting for one now run it.
            self.invalidate_plugin(id).await?;
        }
        Ok((version, plugin.active_version))
    }

    /// The plugin's versions, newest first, and its active version number.
    pub async fn versions(
        &self,
        caller: &Caller,
        id: PluginId,
    ) -> Result<(Vec<PluginVersion>, Option<i32>), PluginError> {
        let plugin = self.access.plugin(caller, id, Action::ReadPlugins).await?;
        let versions = self.store.list_plugin_versions(Visibility::Subscription(plugin.subscription_id), id).await?;
        Ok((versions, plugin.active_version))
    }

    /// Makes a version the active one (an earlier one: a rollback); the next events run it.
    pub async fn activate(&self, caller: &Caller, id: PluginId, version: i32) -> Result<Plugin, PluginError> {
        let plugin = self.access.plugin(caller, id, Action::ManagePlugins).await?;
        let scope = Visibility::Subscription(plugin.subscription_id);
        let plugin = self.store.activate_plugin_version(scope, id, version, &caller.actor()).await?;
        self.invalidate_plugin(id).await?;
        Ok(plugin)
    }

    /// The id of `version` of the plugin, for pinning.
    async fn version_id(
        &self,
        subscription_id: SubscriptionId,
        plugin_id: PluginId,
        version: i32,
    ) -> Result<PluginVersionId, PluginError> {
        let versions = self.store.list_plugin_versions(Visibility::Subscription(subscription_id), plugin_id).await?;
        versions.into_iter().find(|v| v.version == version).map(|v| v.id).ok_or(PluginError::NotFound("plugin version"))
    }

    /// Binds a plugin of the instance's subscription to the instance.
    pub async fn bind(
        &self,
        caller: &Caller,
        instance_id: InstanceId,
        bind: Bind,
    ) -> Result<PluginBinding, PluginError> {
        let instance = self.access.instance(caller, instance_id, Need::MANAGE_PLUGINS).await?;
        let plugin_id: PluginId = bind.plugin_id.parse().map_err(|_| PluginError::NotFound("plugin"))?;
        validate_position(bind.position)?;
        validate_config(&bind.config)?;
        let pinned = match bind.version {
            Some(v) => Some(self.version_id(instance.subscription_id, plugin_id, v).await?),
            None => None,
        };
        let new = NewPluginBinding {
            instance_id,
            plugin_id,
            version_id: pinned,
            position: bind.position,
            direction: bind.direction,
            config: bind.config,
            enabled: bind.enabled,
            failure_policy: bind.failure_policy,
        };
        let binding = self.store.create_plugin_binding(new, &caller.actor()).await?;
        self.invalidate([instance_id]);
        Ok(binding)
    }

    /// The instance's bindings in chain order.
    pub async fn bindings(&self, caller: &Caller, instance_id: InstanceId) -> Result<Vec<PluginBinding>, PluginError> {
        self.access.instance(caller, instance_id, Need::READ_PLUGINS).await?;
        Ok(self.store.list_plugin_bindings(instance_id).await?)
    }

    pub async fn binding(
        &self,
        caller: &Caller,
        instance_id: InstanceId,
        binding_id: PluginBindingId,
    ) -> Result<PluginBinding, PluginError> {
        self.access.instance(caller, instance_id, Need::READ_PLUGINS).await?;
        Ok(self.store.get_plugin_binding(instance_id, binding_id).await?)
    }

    /// Changes a binding: pin or unpin a version, reorder, switch direction, config, enabled or failure policy, or
    /// reset its error count.
    pub async fn rebind(
        &self,
        caller: &Caller,
        instance_id: InstanceId,
        binding_id: PluginBindingId,
        change: Rebind,
    ) -> Result<PluginBinding, PluginError> {
        let instance = self.access.instance(caller, instance_id, Need::MANAGE_PLUGINS).await?;
        validate_position(change.position)?;
        if let Some(config) = &change.config {
            validate_config(config)?;
        }
        let version_id = match change.version {
            Some(Some(v)) => {
                let current = self.store.get_plugin_binding(instance_id, binding_id).await?;
                Some(Some(self.version_id(instance.subscription_id, current.plugin_id, v).await?))
            }
            Some(None) => Some(None),
            None => None,
        };
        let patch = PluginBindingPatch {
            version_id,
            position: change.position,
            direction: change.direction,
            config: change.config,
            enabled: change.enabled,
            failure_policy: change.failure_policy,
            reset_errors: change.reset_errors,
        };
        let binding = self.store.update_plugin_binding(instance_id, binding_id, patch, &caller.actor()).await?;
        self.invalidate([instance_id]);
        Ok(binding)
    }

    pub async fn unbind(
        &self,
        caller: &Caller,
        instance_id: InstanceId,
        binding_id: PluginBindingId,
    ) -> Result<(), PluginError> {
        self.access.instance(caller, instance_id, Need::MANAGE_PLUGINS).await?;
        self.store.delete_plugin_binding(instance_id, binding_id, &caller.actor()).await?;
        self.invalidate([instance_id]);
        Ok(())
    }

    /// What the binding's plugin logged, newest first.
    pub async fn logs(
        &self,
        caller: &Caller,
        instance_id: InstanceId,
        binding_id: PluginBindingId,
        page: PageRequest,
    ) -> Result<Page<PluginLogEntry>, PluginError> {
        self.access.instance(caller, instance_id, Need::READ_PLUGINS).await?;
        Ok(self.store.list_plugin_logs(instance_id, binding_id, page).await?)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::validate_config;

    /// The fuzzer bound a plugin with `"config": [[], {}]`, which the document (an object) does not allow.
    #[test]
    fn a_binding_config_is_an_object() {
        assert!(validate_config(&json!({"rules": []})).is_ok());
        for refused in [json!([[], {}]), json!("text"), json!(1), json!(null), json!(true)] {
            assert!(validate_config(&refused).is_err(), "{refused} must be refused");
        }
    }
}
