//! What handlers share: the store, the account services, and the edge's own settings.

use std::sync::Arc;
use std::time::Duration;

use gw_accounts::Accounts;
use gw_ratelimit::RateLimiter;
use gw_store::Store;

/// Settings of the HTTP edge itself.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    /// Wall-clock deadline of one plugin call, part of every plugin's limits.
    pub plugin_timeout_ms: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
            plugin_timeout_ms: 50,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub accounts: Arc<Accounts>,
    pub settings: Arc<HttpSettings>,
    /// Per-key request limits.
    pub limiter: Arc<dyn RateLimiter>,
    /// The session engine: instance lifecycle, sends, live events.
    pub engine: gw_sessions::Engine,
    /// The simulated WhatsApp network's control API; `None` when the sandbox is disabled.
    pub sandbox: Option<Arc<gw_sessions::sandbox::SandboxNetwork>>,
    /// The WebAssembly plugin host: checks uploads and is told when an instance's chain changes. `None` when
    /// this node runs no plugin host (uploads are then refused with `plugins-unavailable`).
    pub plugins: Option<Arc<dyn gw_core::PluginRuntime>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("store", &self.store).field("settings", &self.settings).finish_non_exhaustive()
    }
}
