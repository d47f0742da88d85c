//! The process's one wasmtime [`Engine`] (pooling allocator, fuel, epoch interruption with a ticker thread) and
//! the [`Linker`] that defines what a plugin may import: the plugin world, plus the few WASI interfaces Rust's
//! standard library links for panic output, served from a deny-all context. Anything else makes
//! `instantiate_pre` fail, which the upload path reports as `forbidden_import`.

use std::{path::PathBuf, time::Duration};

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
    component::{HasData, Linker, ResourceTable},
};
use wasmtime_wasi::{cli::WasiCli, p2::bindings as wasi};

use crate::call::{CallState, Plugin};

/// How the host is set up. Defaults suit one node; the binary fills it from its config.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Where compiled components (`.cwasm`) are kept across restarts; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Plugin instances alive at once (the pooling allocator's slots). Calls beyond it wait for a slot.
    pub instance_slots: u32,
    /// The largest linear memory any tier may grant; a slot reserves this much address space.
    pub max_memory_bytes: u64,
    /// Bytes of each memory slot kept mapped after use and reset in place: the next instance finds them
    /// present (no page faults), and a reset writes back only what was dirtied, with no `madvise`. See
    /// `pagemap_scan`.
    pub keep_resident_bytes: usize,
    /// Find the pages a call dirtied with Linux's `PAGEMAP_SCAN` (6.7+) and reset only those; without it the
    /// first `keep_resident_bytes` of a slot are reset whether touched or not. Ignored where unsupported.
    pub pagemap_scan: bool,
    /// Map a module's initial memory copy-on-write (wasmtime's default) instead of copying it into the slot. CoW
    /// makes instantiation cheap but every first write to a page is a fault plus a TLB shootdown across threads.
    pub memory_init_cow: bool,
    /// Granularity of call deadlines.
    pub epoch_tick: Duration,
    /// How long an instance's resolved chain is reused before it is loaded again (invalidation is immediate).
    pub chain_ttl: Duration,
    /// Compiled components kept in memory.
    pub compiled_capacity: u64,
    /// Plugin replies to a message that is itself a plugin reply of this depth or deeper are discarded.
    pub max_reply_depth: u8,
    /// Log lines one binding may keep per minute; the rest are counted and dropped.
    pub log_lines_per_minute: u32,
    /// Events of one subscription whose chains run at once on this node; later ones queue (in order) for that
    /// subscription alone, so one tenant's plugins never hold more than this many workers and instance slots and
    /// another tenant's events do not wait behind them.
    pub chains_per_subscription: u32,
    /// Automated replies per chat: rate, burst and ping-pong detection.
    pub reply_guard: crate::ReplyGuardSettings,
}

impl Default for HostSettings {
    fn default() -> Self {
        Self {
            cache_dir: None,
            instance_slots: 128,
            max_memory_bytes: 256 << 20,
            keep_resident_bytes: 1 << 20,
            pagemap_scan: true,
            memory_init_cow: true,
            epoch_tick: Duration::from_millis(1),
            chain_ttl: Duration::from_secs(30),
            compiled_capacity: 512,
            max_reply_depth: 1,
            log_lines_per_minute: 120,
            chains_per_subscription: 2,
            reply_guard: crate::ReplyGuardSettings::default(),
        }
    }
}

/// Core instances, memories and tables a plugin component may have: Rust guests built for wasm32-wasip2 have a
/// handful of core instances (the program, the WASI adapter, the shims between them) and one or two memories.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const MAX_MEMORIES_PER_COMPONENT: u32 = 2;
const MAX_TABLES_PER_COMPONENT: u32 = 8;

pub(crate) fn build_engine(settings: &HostSettings) -> wasmtime::Result<Engine> {
    let slots = settings.instance_slots.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots * MAX_CORE_INSTANCES_PER_COMPONENT)
        .total_memories(slots * MAX_MEMORIES_PER_COMPONENT)
        .total_tables(slots * MAX_TABLES_PER_COMPONENT)
        // A call runs on a fiber of its own (async), whose stack comes from this pool.
        .total_stacks(slots)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .max_memory_size(usize::try_from(settings.max_memory_bytes).unwrap_or(usize::MAX))
        .linear_memory_keep_resident(settings.keep_resident_bytes)
        .table_keep_resident(64 << 10)
        .pagemap_scan(if settings.pagemap_scan { Enabled::Auto } else { Enabled::No });
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(settings.memory_init_cow)
        .consume_fuel(true)
        .epoch_interruption(true)
        // The world is synchronous; component-model async support costs about 20% per call.
        .concurrency_support(false)
        .cranelift_opt_level(OptLevel::Speed)
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(20));
    Engine::new(&config)
}

/// Increments the engine's epoch every `tick` until the engine is gone.
pub(crate) fn spawn_ticker(engine: &Engine, tick: Duration) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new().name("gw-plugins-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(tick);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        }
    })?;
    Ok(())
}

struct Table;

impl HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

pub(crate) fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    Plugin::add_to_linker::<CallState, wasmtime::component::HasSelf<CallState>>(&mut linker, |state| state)?;
    // What Rust's std links on wasm32-wasip2 to print a panic message and exit; the context behind it is
    // deny-all (no environment, no arguments, stdin empty, stdout discarded, stderr a bounded pipe).
    let l = &mut linker;
    wasi::io::error::add_to_linker::<CallState, Table>(l, |s| &mut s.table)?;
    wasi::io::poll::add_to_linker::<CallState, Table>(l, |s| &mut s.table)?;
    wasi::io::streams::add_to_linker::<CallState, Table>(l, |s| &mut s.table)?;
    use wasmtime_wasi::cli::WasiCliView;
    wasi::cli::exit::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    wasi::cli::environment::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    wasi::cli::stdin::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    wasi::cli::stdout::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    wasi::cli::stderr::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    wasi::cli::terminal_input::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    wasi::cli::terminal_output::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    wasi::cli::terminal_stdin::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    wasi::cli::terminal_stdout::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    wasi::cli::terminal_stderr::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    Ok(linker)
}

/// Interface names (without version) a component may import.
pub(crate) const ALLOWED_IMPORT_PREFIXES: &[&str] = &[
    "gateway:plugin/",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-",
];
