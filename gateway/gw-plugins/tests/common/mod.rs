//! Shared test support: an in-memory `PluginCatalog` (a test double of the store-backed catalog, not of a
//! database), builders for bindings and events, and polling with a deadline.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use gw_core::{
    BindingDirection, BindingFailure, BoundPlugin, CatalogError, Direction, FailurePolicy, InstanceId, MessageEvent,
    MessageId, MessageKind, Origin, PluginBindingId, PluginCatalog, PluginId, PluginLimits, PluginLogRecord,
    PluginVersionId, SubscriptionId, Timestamp,
};
use gw_plugins::{HostSettings, PluginHost, sha256_hex};

#[derive(Debug, Default)]
pub struct MemoryCatalog {
    pub chains: Mutex<HashMap<InstanceId, Vec<BoundPlugin>>>,
    pub components: Mutex<HashMap<String, Vec<u8>>>,
    pub failures: Mutex<Vec<(PluginBindingId, BindingFailure)>>,
    pub logs: Mutex<Vec<PluginLogRecord>>,
    pub kv: Mutex<HashMap<(PluginId, InstanceId, String), Vec<u8>>>,
    pub chain_loads: AtomicU64,
    /// `kv_get` calls entered so far.
    pub kv_gets: AtomicU64,
    /// Keys per (plugin, instance) before `kv_set` is refused; 0 is no limit.
    pub max_keys: AtomicU64,
    /// When set, `kv_get` announces itself and then waits for a permit: a test can hold an event in flight.
    pub kv_gate: Mutex<Option<(Arc<tokio::sync::Notify>, Arc<tokio::sync::Semaphore>)>>,
    /// The same for `chain`, after it has read the chain: a test can race a load against an invalidation.
    pub chain_gate: Mutex<Option<(Arc<tokio::sync::Notify>, Arc<tokio::sync::Semaphore>)>>,
}

#[async_trait::async_trait]
impl PluginCatalog for MemoryCatalog {
    async fn chain(&self, instance: InstanceId) -> Result<Vec<BoundPlugin>, CatalogError> {
        self.chain_loads.fetch_add(1, Ordering::SeqCst);
        let chain = self.chains.lock().unwrap().get(&instance).cloned().unwrap_or_default();
        let gate = self.chain_gate.lock().unwrap().take();
        if let Some((entered, permits)) = gate {
            entered.notify_one();
            permits.acquire().await.unwrap().forget();
        }
        Ok(chain)
    }
    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, CatalogError> {
        Ok(self.components.lock().unwrap().get(sha256).cloned())
    }
    async fn record_failure(&self, binding: PluginBindingId, failure: BindingFailure) -> Result<(), CatalogError> {
        self.failures.lock().unwrap().push((binding, failure));
        Ok(())
    }
    async fn append_logs(&self, logs: Vec<PluginLogRecord>) -> Result<(), CatalogError> {
        self.logs.lock().unwrap().extend(logs);
        Ok(())
    }
    async fn kv_get(&self, plugin: PluginId, instance: InstanceId, key: &str) -> Result<Option<Vec<u8>>, CatalogError> {
        self.kv_gets.fetch_add(1, Ordering::SeqCst);
        let gate = self.kv_gate.lock().unwrap().clone();
        if let Some((entered, permits)) = gate {
            entered.notify_one();
            permits.acquire().await.unwrap().forget();
        }
        Ok(self.kv.lock().unwrap().get(&(plugin, instance, key.to_owned())).cloned())
    }
    async fn kv_set(
        &self,
        plugin: PluginId,
        instance: InstanceId,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), gw_core::KvSetError> {
        let mut kv = self.kv.lock().unwrap();
        let key = (plugin, instance, key.to_owned());
        // The store's per-instance key limit (the store's contract suite checks the real one); a test sets it low.
        let max_keys = self.max_keys.load(Ordering::SeqCst);
        let others = kv.keys().filter(|k| k.0 == plugin && k.1 == instance && **k != key).count() as u64;
        if max_keys > 0 && others >= max_keys {
            return Err(gw_core::KvSetError::Refused(format!("keys limit reached (at most {max_keys})")));
        }
        kv.insert(key, value);
        Ok(())
    }
    async fn kv_delete(&self, plugin: PluginId, instance: InstanceId, key: &str) -> Result<(), CatalogError> {
        self.kv.lock().unwrap().remove(&(plugin, instance, key.to_owned()));
        Ok(())
    }
}

impl MemoryCatalog {
    /// Stores a component and returns its hash.
    pub fn store(&self, bytes: Vec<u8>) -> String {
        let sha = sha256_hex(&bytes);
        self.components.lock().unwrap().insert(sha.clone(), bytes);
        sha
    }

    pub fn set_chain(&self, instance: InstanceId, chain: Vec<BoundPlugin>) {
        self.chains.lock().unwrap().insert(instance, chain);
    }

    pub fn failures_of(&self, binding: PluginBindingId) -> Vec<BindingFailure> {
        self.failures.lock().unwrap().iter().filter(|(b, _)| *b == binding).map(|(_, f)| f.clone()).collect()
    }

    pub fn logs_of(&self, binding: PluginBindingId) -> Vec<PluginLogRecord> {
        self.logs.lock().unwrap().iter().filter(|l| l.binding_id == binding).cloned().collect()
    }

    /// Waits (polling, with a deadline) until `binding` has at least `n` failures recorded; they are written off
    /// the request path.
    pub async fn wait_failures(&self, binding: PluginBindingId, n: usize) -> Vec<BindingFailure> {
        wait_until(&format!("{n} failure(s) recorded on {binding}"), || {
            let failures = self.failures_of(binding);
            (failures.len() >= n).then_some(failures)
        })
        .await
    }
}

pub async fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    gw_test_support::eventually_within(Duration::from_secs(10), what, async || check()).await
}

pub fn limits() -> PluginLimits {
    PluginLimits { fuel: 50_000_000, memory_bytes: 32 << 20, timeout_ms: 200, max_module_bytes: 4 << 20 }
}

pub fn guest(name: &str) -> Vec<u8> {
    let path = gw_plugins::guests::path(name).unwrap_or_else(|| panic!("no guest named {name}"));
    std::fs::read(path).unwrap()
}

/// A binding of guest `name` (stored in `catalog`).
pub fn binding(
    catalog: &MemoryCatalog,
    name: &str,
    position: i32,
    direction: BindingDirection,
    policy: FailurePolicy,
    config: serde_json::Value,
) -> BoundPlugin {
    let sha256 = catalog.store(guest(name));
    BoundPlugin {
        binding_id: PluginBindingId::new(),
        plugin_id: PluginId::new(),
        plugin_name: name.into(),
        version_id: PluginVersionId::new(),
        version: 1,
        sha256,
        position,
        direction,
        config,
        failure_policy: policy,
        subscription_id: SubscriptionId::new(),
        limits: limits(),
    }
}

pub fn event(instance: InstanceId, direction: Direction, chat: &str, text: &str) -> MessageEvent {
    event_of(SubscriptionId::new(), instance, direction, chat, text)
}

/// An event of `subscription`'s instance.
pub fn event_of(
    subscription: SubscriptionId,
    instance: InstanceId,
    direction: Direction,
    chat: &str,
    text: &str,
) -> MessageEvent {
    MessageEvent {
        direction,
        subscription_id: subscription,
        instance_id: instance,
        message_id: MessageId::new(),
        chat_jid: chat.into(),
        sender: chat.into(),
        kind: MessageKind::Text,
        text: Some(text.into()),
        media: None,
        timestamp: Timestamp::now(),
        origin: if direction == Direction::Inbound { Origin::WhatsApp } else { Origin::Api },
    }
}

pub fn settings() -> HostSettings {
    // Compiled components are shared by the test binaries through a cache dir under the target dir, so each
    // component is compiled once per build rather than once per test.
    let cache_dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gw-plugins-cwasm");
    HostSettings { instance_slots: 16, cache_dir: Some(cache_dir), ..HostSettings::default() }
}

pub fn host(catalog: Arc<MemoryCatalog>) -> PluginHost {
    PluginHost::new(settings(), catalog).unwrap()
}
