//! One plugin call: a fresh store and instance per event, the host side of the plugin world (log, kv, config,
//! clock), limits (fuel, memory, epoch deadline), and the classification of what went wrong.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use gw_core::{InstanceId, PluginCatalog, PluginId, PluginLimits};
use wasmtime::{ResourceLimiter, Store, Trap, component::ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView, p2::pipe::MemoryOutputPipe};

use crate::error::{PluginError, truncate};

wasmtime::component::bindgen!({
    path: "../../plugin-sdk/wit",
    world: "plugin",
    // The key-value store is the one capability that waits on I/O (the catalog); it is async so a call runs on
    // the async worker that handles the event, with no hop to a blocking thread.
    // Every import is async so a host call can hand the worker back (see `CallState::charge`): a guest that
    // spins on a cheap import burns little guest fuel, so fuel-based yields alone would not slice it.
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use gateway::plugin::types::{
    Action as WitAction, Direction as WitDirection, Media as WitMedia, MessageEvent as WitEvent, Origin as WitOrigin,
    Reply as WitReply, Verdict as WitVerdict,
};

// The contract's limits live in gw-core, with the store's and the send path's (one source of truth).
pub use gw_core::{
    PLUGIN_KV_MAX_KEY_BYTES as MAX_KV_KEY_BYTES, PLUGIN_KV_MAX_VALUE_BYTES as MAX_KV_VALUE_BYTES,
    PLUGIN_KV_MAX_WRITES_PER_CALL as MAX_KV_WRITES_PER_CALL, PLUGIN_MAX_LOG_LINE_BYTES as MAX_LOG_LINE_BYTES,
    PLUGIN_MAX_LOG_LINES_PER_CALL as MAX_LOG_LINES_PER_CALL,
};
/// Bytes of stderr (panic messages) kept per call.
pub const MAX_STDERR_BYTES: usize = 4096;
/// Table elements an instance may grow to.
const MAX_TABLE_ELEMENTS: usize = 10_000;
/// Fuel between two yields of a running call to the async runtime: about 20-50 us of guest code here, against
/// about 16k fuel for a whole typical filter call, so ordinary calls never yield. Host calls count too.
const YIELD_EVERY_FUEL: u64 = 200_000;
/// Bytes a guest may pass to the host in one crossing (the arguments of one host call, or the verdict). Checked by
/// wasmtime against the string and list lengths before anything is copied (`Store::set_hostcall_fuel`). The
/// contract's largest legitimate crossing is a verdict: 5 replies and a modified text of 4,096 characters, at
/// most 4 bytes each, about 100 KiB; anything beyond is refused before it costs a copy.
pub const MAX_TRANSFER_BYTES: usize = 128 << 10;
/// Host fuel between two yields: host calls are slower per unit of fuel than guest code (each crosses into the
/// host), so they hand the worker back about every 20 calls rather than every 200.
const HOST_YIELD_EVERY_FUEL: u64 = 20_000;
/// Fuel one host call costs besides the bytes it is given: a guest spinning on `clock::now` pays for it.
const HOST_CALL_FUEL: u64 = 1_000;
/// Fuel one key-value call costs: it waits on the store, a shared resource.
const KV_CALL_FUEL: u64 = 10_000;

/// The clock plugins see, injectable so tests are deterministic. Unix milliseconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
    })
}

/// Where a call's key-value capability goes.
#[derive(Clone)]
pub enum KvBackend {
    /// The plugin's store through the catalog.
    Catalog { catalog: Arc<dyn PluginCatalog>, plugin: PluginId, instance: InstanceId },
    /// A map in memory: the upload smoke test and the local runner.
    Memory(Arc<Mutex<BTreeMap<String, Vec<u8>>>>),
}

impl std::fmt::Debug for KvBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Catalog { plugin, instance, .. } => {
                f.debug_struct("Catalog").field("plugin", plugin).field("instance", instance).finish()
            }
            Self::Memory(_) => f.write_str("Memory"),
        }
    }
}

impl KvBackend {
    pub fn memory() -> Self {
        Self::Memory(Arc::default())
    }
}

/// A log line as the guest wrote it (bounded).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// The store's data: everything one call may touch.
#[allow(missing_debug_implementations)] // holds the WASI context and the catalog; nothing useful to print
pub struct CallState {
    limiter: Limiter,
    pub(crate) table: ResourceTable,
    /// Built on first use: most calls never touch WASI, and building it costs on every event.
    wasi: Option<WasiCtx>,
    stderr: Option<MemoryOutputPipe>,
    config: String,
    clock: Clock,
    kv: KvBackend,
    kv_writes: u32,
    deadline: Instant,
    limits: PluginLimits,
    /// Fuel this call may use (guest and host together) and what host calls have used of it so far.
    fuel_available: u64,
    host_fuel: u64,
    /// Host fuel at which the next host call hands the worker back.
    next_host_yield: u64,
    logs: Vec<LogLine>,
    logs_dropped: u32,
    /// Set when a host capability failed; the trap it causes is reported as this instead.
    host_failure: Option<PluginError>,
}

struct Limiter {
    memory_bytes: usize,
    refused: Option<String>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let message = format!(
                "memory limit reached: the plugin asked to grow its memory from {current} to {desired} bytes; \
                 its limit is {} bytes",
                self.memory_bytes
            );
            self.refused = Some(message.clone());
            // An error (not `Ok(false)`) traps at once with this message, instead of letting the guest's allocator
            // turn the refusal into a bare `unreachable`.
            return Err(wasmtime::Error::msg(message));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let stderr = &mut self.stderr;
        let ctx = self.wasi.get_or_insert_with(|| {
            let pipe = MemoryOutputPipe::new(MAX_STDERR_BYTES);
            *stderr = Some(pipe.clone());
            // Deny-all: no preopened directories, no environment, no arguments, no network; stdout discarded.
            WasiCtxBuilder::new().stderr(pipe).build()
        });
        WasiCtxView { ctx, table: &mut self.table }
    }
}

impl CallState {
    fn fail_host(&mut self, error: PluginError) -> wasmtime::Error {
        let message = error.to_string();
        self.host_failure = Some(error);
        wasmtime::Error::msg(message)
    }

    /// Charges a host call to the call's budget: its fuel (a fixed cost plus one unit per byte it was given) and
    /// the deadline, which the epoch does not enforce inside host code. Hands the worker back every
    /// `HOST_YIELD_EVERY_FUEL` units, as guest fuel does every `YIELD_EVERY_FUEL`.
    async fn charge(&mut self, fuel: u64) -> wasmtime::Result<()> {
        self.host_fuel = self.host_fuel.saturating_add(fuel);
        if self.host_fuel > self.fuel_available {
            return Err(self.fail_host(PluginError::OutOfFuel { limit: self.limits.fuel }));
        }
        if Instant::now() >= self.deadline {
            return Err(self.fail_host(PluginError::Timeout { timeout_ms: self.limits.timeout_ms }));
        }
        if self.host_fuel >= self.next_host_yield {
            self.next_host_yield = self.host_fuel.saturating_add(HOST_YIELD_EVERY_FUEL);
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The catalog store this call's key-value capability goes to.
    fn kv_target(&mut self) -> wasmtime::Result<(Arc<dyn PluginCatalog>, PluginId, InstanceId)> {
        match &self.kv {
            KvBackend::Catalog { catalog, plugin, instance } => Ok((catalog.clone(), *plugin, *instance)),
            KvBackend::Memory(_) => Err(self.fail_host(PluginError::Host("no catalog key-value store".into()))),
        }
    }

    /// Awaits a catalog KV operation bounded by the call's deadline: the epoch deadline does not interrupt host
    /// code, so the host enforces it here.
    async fn kv_bounded<T>(
        &mut self,
        operation: impl Future<Output = Result<T, gw_core::CatalogError>> + Send,
    ) -> wasmtime::Result<T> {
        match tokio::time::timeout(self.remaining(), operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.fail_host(PluginError::Host(format!("key-value store: {error}")))),
            Err(_) => {
                Err(self.fail_host(PluginError::Host("key-value store did not answer before the deadline".into())))
            }
        }
    }
}

impl gateway::plugin::types::Host for CallState {}

impl gateway::plugin::log::Host for CallState {
    async fn write(&mut self, level: gateway::plugin::log::Level, message: String) -> wasmtime::Result<()> {
        use gateway::plugin::log::Level;
        self.charge(HOST_CALL_FUEL + message.len() as u64).await?;
        if self.logs.len() >= MAX_LOG_LINES_PER_CALL {
            self.logs_dropped = self.logs_dropped.saturating_add(1);
            return Ok(());
        }
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.logs.push(LogLine { level, message: truncate(message, MAX_LOG_LINE_BYTES) });
        Ok(())
    }
}

impl gateway::plugin::config::Host for CallState {
    async fn get(&mut self) -> wasmtime::Result<String> {
        self.charge(HOST_CALL_FUEL + self.config.len() as u64).await?;
        Ok(self.config.clone())
    }
}

impl gateway::plugin::clock::Host for CallState {
    async fn now(&mut self) -> wasmtime::Result<i64> {
        self.charge(HOST_CALL_FUEL).await?;
        Ok((self.clock)())
    }
}

impl gateway::plugin::kv::Host for CallState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.charge(KV_CALL_FUEL + key.len() as u64).await?;
        if key.len() > MAX_KV_KEY_BYTES {
            return Ok(None);
        }
        if let KvBackend::Memory(map) = &self.kv {
            return Ok(map.lock().map_err(|_| wasmtime::Error::msg("kv map poisoned"))?.get(&key).cloned());
        }
        let (catalog, plugin, instance) = self.kv_target()?;
        self.kv_bounded(catalog.kv_get(plugin, instance, &key)).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        self.charge(KV_CALL_FUEL + (key.len() + value.len()) as u64).await?;
        if key.len() > MAX_KV_KEY_BYTES {
            return Ok(Err(format!("key longer than {MAX_KV_KEY_BYTES} bytes")));
        }
        if value.len() > MAX_KV_VALUE_BYTES {
            return Ok(Err(format!("value of {} bytes; at most {MAX_KV_VALUE_BYTES} allowed", value.len())));
        }
        if self.kv_writes >= MAX_KV_WRITES_PER_CALL {
            return Ok(Err(format!("at most {MAX_KV_WRITES_PER_CALL} writes per call")));
        }
        self.kv_writes += 1;
        if let KvBackend::Memory(map) = &self.kv {
            map.lock().map_err(|_| wasmtime::Error::msg("kv map poisoned"))?.insert(key, value);
            return Ok(Ok(()));
        }
        let (catalog, plugin, instance) = self.kv_target()?;
        match tokio::time::timeout(self.remaining(), catalog.kv_set(plugin, instance, &key, value)).await {
            Ok(Ok(())) => Ok(Ok(())),
            // A limit only the store knows (keys per instance): the plugin's `err`, as the WIT says.
            Ok(Err(gw_core::KvSetError::Refused(reason))) => Ok(Err(reason)),
            Ok(Err(gw_core::KvSetError::Catalog(error))) => {
                Err(self.fail_host(PluginError::Host(format!("key-value store: {error}"))))
            }
            Err(_) => {
                Err(self.fail_host(PluginError::Host("key-value store did not answer before the deadline".into())))
            }
        }
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.charge(KV_CALL_FUEL + key.len() as u64).await?;
        if key.len() > MAX_KV_KEY_BYTES || self.kv_writes >= MAX_KV_WRITES_PER_CALL {
            return Ok(());
        }
        self.kv_writes += 1;
        if let KvBackend::Memory(map) = &self.kv {
            map.lock().map_err(|_| wasmtime::Error::msg("kv map poisoned"))?.remove(&key);
            return Ok(());
        }
        let (catalog, plugin, instance) = self.kv_target()?;
        self.kv_bounded(catalog.kv_delete(plugin, instance, &key)).await
    }
}

/// What a call needs besides the component.
#[derive(Debug, Clone)]
pub struct CallInput {
    pub event: WitEvent,
    pub limits: PluginLimits,
    pub kv: KvBackend,
    /// What is left of a budget shared with other calls (a chain's, per event); `None`: the whole of `limits`.
    pub budget: Option<Budget>,
}

impl CallInput {
    /// A call with the whole of `limits` to itself.
    pub fn new(event: WitEvent, limits: PluginLimits, kv: KvBackend) -> Self {
        Self { event, limits, kv, budget: None }
    }

    /// The fuel and the deadline this call runs under.
    fn budget(&self) -> Budget {
        self.budget.unwrap_or_else(|| Budget::of(&self.limits))
    }
}

/// Fuel and time left to spend: one per event for a whole chain, so a chain of ten bindings gets no more than a
/// chain of one.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Guest and host fuel together; `u64::MAX` when the tier sets no fuel limit.
    pub fuel: u64,
    pub deadline: Instant,
}

impl Budget {
    /// The whole of `limits`, from now.
    pub fn of(limits: &PluginLimits) -> Self {
        Self {
            fuel: if limits.fuel == 0 { u64::MAX } else { limits.fuel },
            deadline: Instant::now() + Duration::from_millis(u64::from(limits.timeout_ms)),
        }
    }

    /// Whether nothing is left to start another call with.
    pub fn spent(&self) -> bool {
        self.fuel == 0 || Instant::now() >= self.deadline
    }
}

/// What a call produced.
#[derive(Debug)]
pub struct CallOutput {
    pub result: Result<WitVerdict, PluginError>,
    pub logs: Vec<LogLine>,
    pub logs_dropped: u32,
    pub fuel_used: u64,
    /// What the guest wrote to stderr (a panic message), bounded.
    pub stderr: String,
}

pub(crate) fn new_store(
    engine: &wasmtime::Engine,
    input: &CallInput,
    clock: Clock,
    epoch_tick: Duration,
) -> Store<CallState> {
    let budget = input.budget();
    let state = CallState {
        limiter: Limiter {
            memory_bytes: usize::try_from(input.limits.memory_bytes).unwrap_or(usize::MAX),
            refused: None,
        },
        table: ResourceTable::new(),
        wasi: None,
        stderr: None,
        config: input.event.config.clone(),
        clock,
        kv: input.kv.clone(),
        kv_writes: 0,
        deadline: budget.deadline,
        limits: input.limits,
        fuel_available: budget.fuel,
        host_fuel: 0,
        next_host_yield: HOST_YIELD_EVERY_FUEL,
        logs: Vec::new(),
        logs_dropped: 0,
        host_failure: None,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    // Fuel is always on in the engine; a limit of 0 in a tier would make every call fail, so treat it as "no
    // fuel limit" and let the deadline bound the call.
    let _ = store.set_fuel(budget.fuel);
    // What the guest hands the host is length-checked against this before it is copied.
    store.set_hostcall_fuel(MAX_TRANSFER_BYTES);
    // Calls run on the async worker that handles the event; a long one hands the worker back every so often, so
    // a plugin that computes until its deadline delays other tasks by one interval at a time, not by its deadline.
    let _ = store.fuel_async_yield_interval(Some(YIELD_EVERY_FUEL));
    let tick_ms = epoch_tick.as_millis().max(1) as u64;
    let remaining_ms =
        u64::try_from(budget.deadline.saturating_duration_since(Instant::now()).as_millis()).unwrap_or(u64::MAX);
    // One extra tick: the current tick is already partly over when the call starts.
    store.set_epoch_deadline(remaining_ms.div_ceil(tick_ms).max(1) + 1);
    store.epoch_deadline_trap();
    store
}

/// Instantiates `pre` in `store`, calls `handle` once, and classifies the outcome. The caller drops the store
/// (which returns the instance's slot to the pool).
pub(crate) async fn call(pre: &PluginPre<CallState>, store: &mut Store<CallState>, input: &CallInput) -> CallOutput {
    let fuel_limit = input.budget().fuel;
    let result = match pre.instantiate_async(&mut *store).await {
        Ok(plugin) => plugin.call_handle(&mut *store, &input.event).await,
        Err(error) => Err(error),
    };
    let guest_fuel = fuel_limit.saturating_sub(store.get_fuel().unwrap_or(0));
    let state = store.data_mut();
    let fuel_used = guest_fuel.saturating_add(state.host_fuel);
    let stderr = state
        .stderr
        .as_ref()
        .map(|pipe| String::from_utf8_lossy(&pipe.contents()).trim_end().to_owned())
        .unwrap_or_default();
    let result = result.map_err(|error| {
        // A `#![no_std]` plugin (the SDK's `lean` runtime) has no stderr: its panic handler logs the message.
        let panic_message = match stderr.is_empty() {
            true => state
                .logs
                .iter()
                .rev()
                .find(|line| line.level == "error" && line.message.starts_with("panicked at"))
                .map_or("", |line| line.message.as_str()),
            false => stderr.as_str(),
        }
        .to_owned();
        classify(error, state, &input.limits, &panic_message)
    });
    CallOutput { result, logs: std::mem::take(&mut state.logs), logs_dropped: state.logs_dropped, fuel_used, stderr }
}

/// `panic_message`: what the guest said when it panicked (its stderr, or its last panic log line), or "".
fn classify(error: wasmtime::Error, state: &mut CallState, limits: &PluginLimits, panic_message: &str) -> PluginError {
    if let Some(failure) = state.host_failure.take() {
        return failure;
    }
    if let Some(message) = state.limiter.refused.take() {
        return PluginError::MemoryLimit(message);
    }
    // `exit` (WASI) unwinds the call as an error carrying the code; there is no fault to show, so no backtrace.
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        let mut message = format!("the plugin called exit({}) instead of returning a verdict", exit.0);
        if !panic_message.is_empty() {
            message = format!("{message}; it wrote: {panic_message}");
        }
        return PluginError::Trap(truncate(message, 2048));
    }
    // wasmtime refused to copy more than `MAX_TRANSFER_BYTES` from the guest. Inside a host call the guest is
    // still on the stack (a backtrace); after `handle` returned, it was the verdict.
    if format!("{error:#}").contains("too much data is being copied between the host and the guest") {
        return match error.downcast_ref::<wasmtime::WasmBacktrace>() {
            None => PluginError::InvalidVerdict(format!(
                "the verdict is larger than {MAX_TRANSFER_BYTES} bytes; it was refused before it was copied"
            )),
            Some(_) => PluginError::Trap(format!(
                "the plugin passed more than {MAX_TRANSFER_BYTES} bytes to one host call (log, key-value or \
                 config); it was refused before it was copied"
            )),
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => return PluginError::OutOfFuel { limit: limits.fuel },
        Some(Trap::Interrupt) => return PluginError::Timeout { timeout_ms: limits.timeout_ms },
        _ => {}
    }
    let cause = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    let mut message = if panic_message.is_empty() { cause } else { format!("{panic_message}\n{cause}") };
    // The guest's own function names (plugins keep their name section), innermost first, repeats folded, the
    // standard library's panic machinery left out.
    if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        let mut frames: Vec<(String, usize)> = Vec::new();
        for line in backtrace.to_string().lines() {
            // `   3:   0x2021 - plugin.wasm!name`
            let Some((_, name)) = line.split_once('!') else { continue };
            let name = name.trim().to_owned();
            let runtime = ["std[", "core[", "__rustc", "std::", "core::", "abort", "alloc::", "alloc["];
            if runtime.iter().any(|prefix| name.starts_with(prefix)) {
                continue;
            }
            match frames.last_mut() {
                Some((last, count)) if *last == name => *count += 1,
                _ => frames.push((name, 1)),
            }
        }
        for (name, count) in frames.iter().take(12) {
            message.push_str(&format!("\n  at {name}"));
            if *count > 1 {
                message.push_str(&format!(" (x{count})"));
            }
        }
    }
    PluginError::Trap(truncate(message, 2048))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{HostSettings, PluginHost};
    use gateway::plugin::{kv::Host as _, log::Host as _};

    fn state_store() -> Store<CallState> {
        let host = PluginHost::standalone(HostSettings { instance_slots: 1, ..HostSettings::default() }).unwrap();
        let input = CallInput::new(
            crate::sample_event("{}"),
            PluginLimits { fuel: 1_000_000, memory_bytes: 1 << 20, timeout_ms: 1_000, max_module_bytes: 1 },
            KvBackend::memory(),
        );
        new_store(&host.inner.engine, &input, system_clock(), Duration::from_millis(1))
    }

    #[tokio::test]
    async fn kv_refuses_oversized_values_and_keys_and_too_many_writes() {
        let mut store = state_store();
        let state = store.data_mut();
        let refused = state.set("k".into(), vec![0; MAX_KV_VALUE_BYTES + 1]).await.unwrap();
        assert_eq!(refused, Err(format!("value of {} bytes; at most 4096 allowed", MAX_KV_VALUE_BYTES + 1)));
        assert!(state.set("k".repeat(MAX_KV_KEY_BYTES + 1), vec![1]).await.unwrap().is_err());
        assert_eq!(state.get("k".into()).await.unwrap(), None, "nothing was written");
        state.set("k".into(), vec![0; MAX_KV_VALUE_BYTES]).await.unwrap().unwrap();
        assert_eq!(state.get("k".into()).await.unwrap().map(|v| v.len()), Some(MAX_KV_VALUE_BYTES));
        for i in 1..MAX_KV_WRITES_PER_CALL {
            state.set(format!("k{i}"), vec![1]).await.unwrap().unwrap();
        }
        assert_eq!(state.set("one-more".into(), vec![1]).await.unwrap(), Err("at most 16 writes per call".into()));
    }

    #[tokio::test]
    async fn logs_are_bounded_per_call_in_count_and_size() {
        let mut store = state_store();
        let state = store.data_mut();
        for _ in 0..MAX_LOG_LINES_PER_CALL + 7 {
            state.write(gateway::plugin::log::Level::Info, "x".repeat(5000)).await.unwrap();
        }
        assert_eq!(state.logs.len(), MAX_LOG_LINES_PER_CALL);
        assert_eq!(state.logs_dropped, 7);
        assert!(state.logs[0].message.len() <= MAX_LOG_LINE_BYTES + '…'.len_utf8());
    }
}
