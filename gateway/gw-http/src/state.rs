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
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self { trusted_proxies: Vec::new(), request_timeout: Duration::from_secs(30), max_body_bytes: 1024 * 1024 }
    }
}

/// What the webhook endpoints need: the URL rules, and the dispatcher (`None` when delivery is off on this node).
#[derive(Debug, Clone, Default)]
pub struct WebhookEdge {
    pub policy: Arc<gw_egress::EgressPolicy>,
    pub dispatcher: Option<gw_webhooks::Dispatcher>,
}

impl WebhookEdge {
    /// Wakes the local dispatcher after a replay or a re-enable, so it need not wait for its next poll.
    pub fn wake(&self) {
        if let Some(dispatcher) = &self.dispatcher {
            dispatcher.wake();
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
    /// Webhook URL rules and delivery.
    pub webhooks: WebhookEdge,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("store", &self.store).field("settings", &self.settings).finish_non_exhaustive()
    }
}
