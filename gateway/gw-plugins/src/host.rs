//! [`PluginHost`]: the engine, linker, compile cache and chain cache of one process. It implements
//! [`PluginRuntime`] (upload checks) and hands out [`PluginChain`], the [`gw_core::MessagePipeline`] that runs an
//! instance's bindings over each message.

use std::{sync::Arc, time::Instant};

use gw_core::{
    Direction, InstanceId, PluginCatalog, PluginLimits, PluginRejection, PluginRuntime, PreparedComponent,
    RejectionKind,
};
use tokio::sync::Semaphore;
use wasmtime::{Engine, component::Linker};

use crate::{
    cache::{CacheCounts, Compiled, ComponentCache, LoadError, sha256_hex},
    call::{self, CallInput, CallOutput, CallState, Clock, KvBackend, WitDirection, WitEvent, WitOrigin},
    chain::{ChainState, PluginChain},
    engine::{HostSettings, build_engine, build_linker, spawn_ticker},
};

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("wasmtime engine: {0}")]
    Engine(String),
    #[error("compile cache directory: {0}")]
    CacheDir(#[from] std::io::Error),
}

/// The WebAssembly plugin host of one process. Cheap to clone.
#[derive(Clone)]
pub struct PluginHost {
    pub(crate) inner: Arc<HostInner>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

pub(crate) struct HostInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<CallState>,
    pub(crate) cache: ComponentCache,
    pub(crate) settings: HostSettings,
    pub(crate) clock: Clock,
    /// One permit per pooled instance slot: a call waits for a slot instead of failing when all are busy.
    slots: Arc<Semaphore>,
    pub(crate) chains: ChainState,
}

impl PluginHost {
    /// Starts the host: builds the engine and the epoch ticker. `catalog` is where chains,
    /// components and plugin state come from.
    pub fn new(settings: HostSettings, catalog: Arc<dyn PluginCatalog>) -> Result<Self, HostError> {
        Self::with_clock(settings, catalog, call::system_clock())
    }

    /// As [`PluginHost::new`], with the clock plugins see (tests fix it).
    pub fn with_clock(
        settings: HostSettings,
        catalog: Arc<dyn PluginCatalog>,
        clock: Clock,
    ) -> Result<Self, HostError> {
        let engine = build_engine(&settings).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let linker = build_linker(&engine).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let cache = ComponentCache::new(&engine, settings.cache_dir.clone(), settings.compiled_capacity)?;
        spawn_ticker(&engine, settings.epoch_tick)?;
        let slots = Arc::new(Semaphore::new(usize::try_from(settings.instance_slots.max(1)).unwrap_or(1)));
        let chains = ChainState::new(catalog, &settings);
        Ok(Self { inner: Arc::new(HostInner { engine, linker, cache, settings, clock, slots, chains }) })
    }

    /// A host with no catalog (every chain is empty): for the local runner and benchmarks that call
    /// components directly.
    pub fn standalone(settings: HostSettings) -> Result<Self, HostError> {
        Self::new(settings, Arc::new(NoCatalog))
    }

    /// The message pipeline over this host.
    pub fn pipeline(&self) -> PluginChain {
        PluginChain::new(self.clone())
    }

    /// How many components were compiled and how many loaded from the disk cache.
    pub fn cache_counts(&self) -> CacheCounts {
        self.inner.cache.counts()
    }

    /// Compiles (or fetches from the cache) a component. Blocking.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<Compiled>, LoadError> {
        let sha = sha256_hex(bytes);
        self.inner.cache.load(&self.inner.engine, &self.inner.linker, &sha, bytes)
    }

    /// Runs one call of `compiled` on a fresh instance, on the calling task (no hop to another thread); waits
    /// for a free instance slot if all are busy.
    pub async fn call(&self, compiled: &Compiled, input: &CallInput) -> CallOutput {
        self.inner.call(compiled, input).await
    }
}

impl HostInner {
    pub(crate) async fn call(&self, compiled: &Compiled, input: &CallInput) -> CallOutput {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => self.slots.clone().acquire_owned().await.ok(),
        };
        let mut store = call::new_store(&self.engine, input, self.clock.clone(), self.settings.epoch_tick);
        let output = call::call(&compiled.pre, &mut store, input).await;
        // Dropping the store returns its slot to the pool, which resets the slot's memory: with `PAGEMAP_SCAN`
        // only the pages this call dirtied are copied back, about 3 us here. That is cheaper on this path than
        // handing the store to another thread (a wake-up of an idle vCPU, and the allocator's cross-thread frees,
        // measured at 12-28 us per call with a reaper thread against 10-15 us inline; see BENCHMARKS.md).
        drop(store);
        drop(permit);
        output
    }
}

/// The event the upload smoke test runs a component on.
pub fn sample_event(config: &str) -> WitEvent {
    WitEvent {
        direction: WitDirection::Inbound,
        origin: WitOrigin::Whatsapp,
        instance_id: "00000000-0000-0000-0000-000000000000".into(),
        chat_jid: "15550000000@s.whatsapp.net".into(),
        sender: "15550000000@s.whatsapp.net".into(),
        message_id: "smoke-test".into(),
        kind: "text".into(),
        text: Some("hello".into()),
        media: None,
        timestamp_ms: 0,
        config: config.into(),
    }
}

fn rejection(kind: RejectionKind, message: impl Into<String>) -> PluginRejection {
    PluginRejection { kind, message: message.into() }
}

#[async_trait::async_trait]
impl PluginRuntime for PluginHost {
    async fn prepare(&self, bytes: &[u8], limits: &PluginLimits) -> Result<PreparedComponent, PluginRejection> {
        let size = bytes.len() as u64;
        if size > limits.max_module_bytes {
            return Err(rejection(
                RejectionKind::TooLarge,
                format!("the component is {size} bytes; this plan allows at most {} bytes", limits.max_module_bytes),
            ));
        }
        let host = self.clone();
        let bytes = bytes.to_vec();
        let limits = *limits;
        let started = Instant::now();
        let compiled = tokio::task::spawn_blocking(move || host.load(&bytes))
            .await
            .map_err(|e| rejection(RejectionKind::SmokeTestFailed, format!("the check did not finish: {e}")))?;
        let result = async {
            let compiled = compiled.map_err(|error| match error {
                LoadError::Invalid(_) => rejection(RejectionKind::InvalidComponent, error.to_string()),
                LoadError::ForbiddenImport(_) => rejection(RejectionKind::ForbiddenImport, error.to_string()),
                LoadError::WrongWorld(_) => rejection(RejectionKind::WrongWorld, error.to_string()),
                LoadError::Cache(_) => rejection(RejectionKind::InvalidComponent, error.to_string()),
            })?;
            let input = CallInput::new(sample_event("{}"), limits, KvBackend::memory());
            let output = self.call(&compiled, &input).await;
            match output.result {
                Ok(verdict) => crate::chain::validate(&input.event, &verdict)
                    .map_err(|e| rejection(RejectionKind::SmokeTestFailed, format!("on a sample event: {e}")))?,
                Err(error) => {
                    return Err(rejection(
                        RejectionKind::SmokeTestFailed,
                        format!("on a sample event (config `{{}}`) the plugin failed ({}): {error}", error.kind()),
                    ));
                }
            }
            Ok(PreparedComponent { sha256: compiled.sha256.clone(), size_bytes: size })
        }
        .await;
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "plugin prepared");
        result
    }

    fn invalidate(&self, instance: InstanceId) {
        self.inner.chains.invalidate(instance);
    }

    fn invalidate_all(&self) {
        self.inner.chains.invalidate_all();
    }
}

pub(crate) fn wit_direction(direction: Direction) -> WitDirection {
    match direction {
        Direction::Inbound => WitDirection::Inbound,
        Direction::Outbound => WitDirection::Outbound,
    }
}

/// The catalog of a host that runs components only directly (the local runner): no chains, no state.
#[derive(Debug)]
struct NoCatalog;

#[async_trait::async_trait]
impl PluginCatalog for NoCatalog {
    async fn chain(&self, _: InstanceId) -> Result<Vec<gw_core::BoundPlugin>, gw_core::CatalogError> {
        Ok(Vec::new())
    }
    async fn component(&self, _: &str) -> Result<Option<Vec<u8>>, gw_core::CatalogError> {
        Ok(None)
    }
    async fn record_failure(
        &self,
        _: gw_core::PluginBindingId,
        _: gw_core::BindingFailure,
    ) -> Result<(), gw_core::CatalogError> {
        Ok(())
    }
    async fn append_logs(&self, _: Vec<gw_core::PluginLogRecord>) -> Result<(), gw_core::CatalogError> {
        Ok(())
    }
    async fn kv_get(
        &self,
        _: gw_core::PluginId,
        _: InstanceId,
        _: &str,
    ) -> Result<Option<Vec<u8>>, gw_core::CatalogError> {
        Ok(None)
    }
    async fn kv_set(
        &self,
        _: gw_core::PluginId,
        _: InstanceId,
        _: &str,
        _: Vec<u8>,
    ) -> Result<(), gw_core::KvSetError> {
        Err(gw_core::CatalogError("no key-value store in a standalone host".into()).into())
    }
    async fn kv_delete(&self, _: gw_core::PluginId, _: InstanceId, _: &str) -> Result<(), gw_core::CatalogError> {
        Ok(())
    }
}
