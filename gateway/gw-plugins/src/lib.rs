//! The WebAssembly plugin host (the only crate that depends on wasmtime).
//!
//! - [`PluginHost`] owns the process's engine (pooling allocator, fuel, epoch deadlines), the linker that defines
//!   what a plugin may import, and the compile cache (by SHA-256, in memory and on disk). It implements
//!   [`gw_core::PluginRuntime`]: the upload checks.
//! - [`PluginChain`] implements [`gw_core::MessagePipeline`]: every message event runs through its instance's
//!   bindings, each on a fresh instance, under the tier's limits.
//! - [`runner`] runs one plugin on one event locally (`gateway plugin run`).
//! - [`guests`] names the components built from `plugins/` by this crate's build script (for tests and benches).

mod cache;
mod call;
mod chain;
mod engine;
mod error;
mod host;
mod reply_guard;
pub mod runner;

pub use cache::{CacheCounts, Compiled, LoadError, sha256_hex};
pub use call::{
    Budget, CallInput, CallOutput, Clock, KvBackend, LogLine, MAX_KV_KEY_BYTES, MAX_KV_VALUE_BYTES,
    MAX_KV_WRITES_PER_CALL, MAX_LOG_LINE_BYTES, MAX_LOG_LINES_PER_CALL, MAX_TRANSFER_BYTES, WitAction, WitDirection,
    WitEvent, WitMedia, WitOrigin, WitReply, WitVerdict, system_clock,
};
pub use chain::{MAX_REPLIES, MAX_REPLY_CHARS, PluginChain};
pub use engine::HostSettings;
pub use error::PluginError;
pub use host::{HostError, PluginHost, sample_event};
pub use reply_guard::ReplyGuardSettings;

/// Paths of the guest components built from `plugins/` by the build script.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));

    /// The path of a guest by name (`keyword_responder`, `hostile_trap`, ...).
    pub fn path(name: &str) -> Option<&'static str> {
        ALL.iter().find(|(guest, _)| *guest == name).map(|(_, path)| *path)
    }
}
