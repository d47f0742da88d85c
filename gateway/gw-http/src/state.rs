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

/// What every handler gets. One `Arc`: axum clones the state for every request, and cloning a dozen shared
/// pointers (each an atomic increment on a cache line the other workers also touch) cost about a tenth of a small
/// request's time here.
#[derive(Clone)]
pub struct AppState(Arc<AppContext>);

impl AppState {
    pub fn new(context: AppContext) -> Self {
        Self(Arc::new(context))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppContext;

    fn deref(&self) -> &AppContext {
        &self.0
    }
}

pub struct AppContext {
    pub store: Arc<dyn Store>,
    pub accounts: Arc<Accounts>,
    pub settings: Arc<HttpSettings>,
    /// Per-key request limits.
    pub limiter: Arc<dyn RateLimiter>,
    /// The session engine: instance lifecycle, sends, live events.
    pub engine: gw_sessions::Engine,
    /// The simulated WhatsApp network's control API (in this process or the shared network's); `None` when the
    /// sandbox is disabled.
    pub sandbox: Option<Arc<dyn gw_sessions::sandbox::SandboxControl>>,
    /// The WebAssembly plugin host: checks uploads and is told when an instance's chain changes. `None` when
    /// this node runs no plugin host (uploads are then refused with `plugins-unavailable`).
    pub plugins: Option<Arc<dyn gw_core::PluginRuntime>>,
    /// Webhook URL rules and delivery.
    pub webhooks: WebhookEdge,
    /// Usage counters (API calls per key request), flushed in batches by the binary.
    pub metering: Arc<gw_metering::Metering>,
    /// The edge's own counters, for `/metrics`.
    pub metrics: Arc<EdgeMetrics>,
}

/// One metric for the text exposition: name, type, help, and samples as (labels, value).
type Metric<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, u64)]);

/// Counters of the edge's decisions since start.
#[derive(Debug, Default)]
pub struct EdgeMetrics {
    /// Requests authenticated with an API key (and so rate-limited and counted); per thread, as every such
    /// request adds to it.
    pub key_requests: gw_core::PerThread<std::sync::atomic::AtomicU64>,
    /// Refused by the key's own limit.
    pub rate_limited_key: std::sync::atomic::AtomicU64,
    /// Refused by the subscription's limit.
    pub rate_limited_subscription: std::sync::atomic::AtomicU64,
}

impl AppContext {
    /// Prometheus text exposition of the edge's counters, the limiter's state and metering.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering::Relaxed;
        let limiter = self.limiter.stats();
        let metering = self.metering.stats();
        let backend = format!("{{backend=\"{}\"}}", limiter.backend);
        let metrics: [Metric<'_>; 6] = [
            (
                "gateway_api_key_requests_total",
                "counter",
                "Requests authenticated with an API key.",
                &[("", self.metrics.key_requests.iter().map(|count| count.load(Relaxed)).sum())],
            ),
            (
                "gateway_rate_limited_total",
                "counter",
                "Requests refused with 429 by a rate limit.",
                &[
                    ("{limit=\"key\"}", self.metrics.rate_limited_key.load(Relaxed)),
                    ("{limit=\"subscription\"}", self.metrics.rate_limited_subscription.load(Relaxed)),
                ],
            ),
            (
                "gateway_ratelimit_redis_degraded",
                "gauge",
                "1 while Redis is unreachable and limits are local to this node.",
                &[(&backend, u64::from(limiter.degraded))],
            ),
            (
                "gateway_ratelimit_fallback_decisions_total",
                "counter",
                "Rate-limit decisions made locally because Redis failed.",
                &[("", limiter.fallback_decisions)],
            ),
            ("gateway_usage_flushes_total", "counter", "Successful usage flushes.", &[("", metering.flushes)]),
            (
                "gateway_usage_flush_failures_total",
                "counter",
                "Usage flushes that failed (their counts are kept for the next one).",
                &[("", metering.failed_flushes)],
            ),
        ];
        let mut out = String::with_capacity(1024);
        for (name, kind, help, samples) in metrics {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        }
        if let Some(dispatcher) = &self.webhooks.dispatcher {
            out.push_str(&dispatcher.metrics().render_prometheus());
        }
        out
    }
}

impl std::fmt::Debug for AppContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppContext")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
