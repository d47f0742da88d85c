//! The settings' shape and defaults: what an operator can set, section by section.

use gw_accounts::TierCatalog;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A configured secret: serialisable (figment merges through serde) but never printed.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Not configured: generated on first run and kept with the data (development), or refused (production).
    pub fn is_unset(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The defaults earlier versions used when a secret was not configured. They are public (they are in this file and
/// in every copy of it), so anyone can sign tokens or read sessions with them. Nothing uses them any more (an
/// unconfigured secret is generated on first run), but an operator may have copied one into a configuration: such a
/// value is refused in production and on any non-loopback address, and warned about on loopback.
pub(super) const PUBLIC_DEVELOPMENT_SECRETS: [(&str, &str); 3] = [
    ("auth.jwt_secret", "development-only-jwt-secret-do-not-use-in-production"),
    ("auth.api_key_pepper", "development-only-api-key-pepper-do-not-use-in-production"),
    ("sessions.encryption_key", "ZGV2ZWxvcG1lbnQtb25seS1zZXNzaW9uLWtleS0zMmI="),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    #[default]
    Auto,
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub mode: Mode,
    /// Where the gateway keeps its own files (generated secrets, the plugin cache); empty: the SQLite file's
    /// directory, else `./data`.
    pub data_dir: String,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub log: LogSettings,
    pub admin: AdminSettings,
    pub auth: AuthSettings,
    pub sessions: SessionSettings,
    pub whatsapp: WhatsAppSettings,
    pub webhooks: WebhookSettings,
    pub plugins: PluginSettings,
    pub tiers: TierCatalog,
    pub redis: RedisSettings,
    pub metrics: MetricsSettings,
    pub cluster: ClusterSettings,
}

/// Several nodes on one PostgreSQL database: leases decide which node runs each instance's session (see
/// `docs/src/design/cluster-ownership.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// How long an instance's lease lasts unrenewed: a dead node's instances move after at most this long.
    pub lease_ttl_ms: u64,
    /// The address other nodes and operators know this node by; empty: `server.listen`.
    pub node_address: String,
    /// At most this many sessions run on this node.
    pub capacity: u32,
    /// The slow poll for sends accepted on other nodes, behind the immediate wake-ups.
    pub poll_interval_ms: u64,
}

/// Redis: cluster-wide rate limits and cross-node key-cache invalidation. Off when `url` is empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port[/db]`; empty keeps every limit in this process.
    pub url: Secret,
    /// A rate-limit decision Redis has not answered within this is made locally (the fallback).
    pub timeout_ms: u64,
    /// Prefix of every key and channel the gateway uses, so deployments can share a Redis.
    pub key_prefix: String,
    /// Spend batches of tokens taken from Redis instead of one round trip per decision (the default; see
    /// `docs/src/design/local-first-limits.md`). `false` is the exact mode, kept for comparison.
    pub local_first: bool,
}

/// The Prometheus endpoint, on a listener of its own so it is not exposed with the API. Off when empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// `address:port` serving `GET /metrics`; empty for none.
    pub listen: String,
}

/// Webhook delivery (README: webhooks).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Runs the dispatcher on this node and records events in the outbox.
    pub enabled: bool,
    /// Accepts `http://` endpoint URLs (local development); `https://` otherwise.
    pub allow_http: bool,
    /// CIDR ranges exempt from the SSRF address rules (e.g. `127.0.0.0/8` for tests, an on-premises receiver).
    pub allow_private_cidrs: Vec<String>,
    /// Delay before each attempt in milliseconds, the first included; its length is the number of attempts.
    pub schedule_ms: Vec<u64>,
    pub connect_timeout_ms: u64,
    /// Whole attempt, connect to last byte.
    pub timeout_ms: u64,
    pub max_in_flight: usize,
    pub max_in_flight_per_endpoint: usize,
    /// An endpoint failing without a success for this long is disabled.
    pub auto_disable_after_secs: u64,
    /// Bytes of each response kept in the delivery log (at most 1024).
    pub response_capture_bytes: usize,
    /// How often an idle dispatcher looks for work other nodes queued.
    pub poll_interval_ms: u64,
    /// How long a claimed delivery stays with its dispatcher without renewal. The dispatcher renews the leases it
    /// holds every third of this while attempts run, so this is how late a crashed node's deliveries are sent by
    /// another node, not a limit on an attempt. 1000 to 600000.
    pub lease_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        let defaults = gw_webhooks::DispatcherConfig::default();
        Self {
            enabled: true,
            allow_http: false,
            allow_private_cidrs: Vec::new(),
            schedule_ms: defaults.schedule.iter().map(|d| d.as_millis() as u64).collect(),
            connect_timeout_ms: 5_000,
            timeout_ms: 15_000,
            max_in_flight: defaults.max_in_flight,
            max_in_flight_per_endpoint: defaults.max_in_flight_per_endpoint,
            auto_disable_after_secs: defaults.auto_disable_after.as_secs(),
            response_capture_bytes: 1024,
            poll_interval_ms: 1_000,
            lease_ms: defaults.lease.as_millis() as u64,
        }
    }
}

/// The WebAssembly plugin host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Run tenants' plugins; off, uploads are refused and messages pass unchanged.
    pub enabled: bool,
    /// Where compiled components are cached (by SHA-256 and engine version); empty: `plugin-cache` beside a SQLite
    /// database, else `./data/plugin-cache`.
    pub cache_dir: String,
    /// Wall-clock deadline of one event's plugin chain (all its bindings together), in milliseconds.
    pub timeout_ms: u32,
    /// Events of one subscription whose plugin chains run at once on a node; the rest queue for that subscription.
    pub chains_per_subscription: u32,
    /// Plugin replies one instance may send to one chat per minute, on average.
    pub replies_per_chat_per_minute: u32,
    /// Plugin replies one instance may send to one chat at once.
    pub reply_burst_per_chat: u32,
    /// Prompt answers to automated replies in a row that make a chat a ping-pong between automated parties
    /// (its plugin replies are then discarded until it is quiet); 0 turns detection off.
    pub ping_pong_exchanges: u32,
    /// How soon after an automated reply an answer counts as prompt, and how long a ping-pong chat must be quiet.
    pub ping_pong_window_ms: u64,
}

/// The real WhatsApp driver (whatsapp-rust). Its protocol state is encrypted with `sessions.encryption_key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppSettings {
    pub enabled: bool,
    /// The WhatsApp Web websocket; empty for WhatsApp's own.
    pub ws_url: String,
    /// Pins the WhatsApp Web client version (`2.3000.1020608496`); empty fetches the current one at connect.
    pub version: String,
}

/// The session engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// 32 bytes, base64: encrypts WhatsApp session state at rest. Changing it logs every instance out. Unset:
    /// generated on first run and kept in the data directory.
    pub encryption_key: Secret,
    /// The simulated WhatsApp network and its control API (`/v1/sandbox/…`).
    pub sandbox: bool,
    /// `host:port` of a shared simulated network (`gateway sandbox-network`) that several nodes dial, so they see
    /// one network; empty: this node runs its own, in process.
    pub sandbox_network: String,
    /// First reconnect delay in milliseconds; doubles per failure up to `backoff_max_secs`, with jitter.
    pub backoff_initial_ms: u64,
    pub backoff_max_secs: u64,
    /// How many plugin-reply hops one message may cause (the loop guard).
    pub max_reply_depth: u8,
    /// Sends may name media by URL; the gateway fetches it under the same egress rules as webhooks
    /// (`webhooks.allow_http`, `webhooks.allow_private_cidrs`).
    pub media_by_url: bool,
    /// How long one media download may take, in seconds.
    pub media_fetch_timeout_secs: u64,
    /// How long the answer of a number check ("is this number on WhatsApp?") is reused, in seconds; 0: never.
    pub number_check_cache_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: String,
    pub request_timeout_secs: u64,
    pub max_body_bytes: usize,
    /// Addresses or CIDR ranges of proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` overrides it.
    pub level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// The first operator's email, used only when no operator exists.
    pub email: String,
    /// The first operator's password; generated and printed once when absent.
    pub password: Option<Secret>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeySetting {
    pub kid: String,
    pub secret: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HMAC-SHA256 key for access tokens, at least 32 bytes. Unset: generated on first run and kept in the data
    /// directory.
    pub jwt_secret: Secret,
    pub jwt_key_id: String,
    /// Keys still accepted while being rotated out.
    pub jwt_previous_keys: Vec<JwtKeySetting>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_days: u64,
    pub clock_leeway_secs: u64,
    pub login_max_failures_per_email: usize,
    pub login_max_failures_per_ip: usize,
    pub login_failure_window_secs: u64,
    /// Secret mixed into API key hashes (HMAC-SHA256), at least 32 bytes. Changing it invalidates every key. Unset:
    /// generated on first run and kept in the data directory.
    pub api_key_pepper: Secret,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mode: Mode::Development,
            data_dir: String::new(),
            server: ServerSettings {
                listen: "127.0.0.1:8080".into(),
                request_timeout_secs: 30,
                max_body_bytes: 1024 * 1024,
                trusted_proxies: Vec::new(),
            },
            database: DatabaseSettings { url: "sqlite://./data/gateway.db".into(), max_connections: 16 },
            log: LogSettings { format: LogFormat::Auto, level: "info".into() },
            admin: AdminSettings { email: "admin@gateway.local".into(), password: None },
            auth: AuthSettings {
                jwt_secret: Secret::default(),
                jwt_key_id: "k1".into(),
                jwt_previous_keys: Vec::new(),
                jwt_issuer: "gateway".into(),
                jwt_audience: "gateway-api".into(),
                access_token_ttl_secs: 15 * 60,
                refresh_token_ttl_days: 30,
                clock_leeway_secs: 30,
                login_max_failures_per_email: 5,
                login_max_failures_per_ip: 50,
                login_failure_window_secs: 15 * 60,
                api_key_pepper: Secret::default(),
            },
            sessions: SessionSettings {
                encryption_key: Secret::default(),
                sandbox: true,
                sandbox_network: String::new(),
                backoff_initial_ms: 1000,
                backoff_max_secs: 300,
                max_reply_depth: 1,
                media_by_url: true,
                media_fetch_timeout_secs: 30,
                number_check_cache_secs: 3600,
            },
            whatsapp: WhatsAppSettings { enabled: true, ws_url: String::new(), version: String::new() },
            webhooks: WebhookSettings::default(),
            plugins: PluginSettings {
                enabled: true,
                cache_dir: String::new(),
                timeout_ms: 50,
                chains_per_subscription: 2,
                replies_per_chat_per_minute: 20,
                reply_burst_per_chat: 10,
                ping_pong_exchanges: 10,
                ping_pong_window_ms: 5_000,
            },
            tiers: TierCatalog::default(),
            redis: RedisSettings {
                url: Secret::default(),
                timeout_ms: gw_ratelimit::DEFAULT_REDIS_TIMEOUT.as_millis() as u64,
                key_prefix: "gw:".into(),
                local_first: true,
            },
            metrics: MetricsSettings { listen: String::new() },
            cluster: ClusterSettings {
                lease_ttl_ms: 10_000,
                node_address: String::new(),
                capacity: 10_000,
                poll_interval_ms: 1_000,
            },
        }
    }
}
