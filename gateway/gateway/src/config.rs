//! One typed `Settings`, loaded from defaults, then an optional TOML file, then `GATEWAY_*` environment variables,
//! and validated before anything starts. Loading writes nothing and never changes the environment.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use gw_accounts::{AccountsConfig, JwtSettings, SigningKey, ThrottlePolicy, TierCatalog};
use gw_core::{Email, Redacted};
use serde::{Deserialize, Serialize};

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
const PUBLIC_DEVELOPMENT_SECRETS: [(&str, &str); 3] = [
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
    /// Wall-clock deadline of one plugin call, in milliseconds.
    pub timeout_ms: u32,
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
                backoff_initial_ms: 1000,
                backoff_max_secs: 300,
                max_reply_depth: 1,
                media_by_url: true,
                media_fetch_timeout_secs: 30,
            },
            whatsapp: WhatsAppSettings { enabled: true, ws_url: String::new(), version: String::new() },
            webhooks: WebhookSettings::default(),
            plugins: PluginSettings { enabled: true, cache_dir: String::new(), timeout_ms: 50 },
            tiers: TierCatalog::default(),
            redis: RedisSettings {
                url: Secret::default(),
                timeout_ms: gw_ratelimit::DEFAULT_REDIS_TIMEOUT.as_millis() as u64,
                key_prefix: "gw:".into(),
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

/// A configuration that cannot be used, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", describe(.0))]
    Load(Box<figment::Error>),
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// `key: problem (from source)`, naming the exact environment variable when that is where the value came from.
fn describe(err: &figment::Error) -> String {
    let mut path: Vec<String> = err.path.iter().map(|p| p.to_lowercase()).collect();
    if let figment::error::Kind::UnknownField(field, _) = &err.kind
        && path.last() != Some(&field.to_lowercase())
    {
        path.push(field.to_lowercase());
    }
    let source = match &err.metadata {
        Some(metadata) if metadata.name.contains("environment") => {
            format!("environment variable GATEWAY_{}", path.join("_").to_uppercase())
        }
        Some(metadata) => match &metadata.source {
            Some(source) => source.to_string(),
            None => metadata.name.to_string(),
        },
        None => "configuration".to_owned(),
    };
    format!("{}: {} (from {source})", path.join("."), err.kind)
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

const SECTIONS: &[&str] = &[
    "server", "database", "log", "admin", "auth", "sessions", "whatsapp", "webhooks", "plugins", "tiers", "redis",
    "metrics", "cluster",
];

/// `GATEWAY_DATABASE_MAX_CONNECTIONS` -> `database.max_connections`; `GATEWAY_TIERS_FREE_MAX_INSTANCES` ->
/// `tiers.free.max_instances`. The first word names the section, the rest the key, so keys keep their underscores.
fn env_key(raw: &str) -> String {
    let key = raw.to_ascii_lowercase();
    for section in SECTIONS {
        if let Some(rest) = key.strip_prefix(section).and_then(|r| r.strip_prefix('_')) {
            if *section == "tiers"
                && let Some((tier, field)) = rest.split_once('_')
            {
                return format!("tiers.{tier}.{field}");
            }
            return format!("{section}.{rest}");
        }
    }
    key
}

impl Settings {
    /// Loads from defaults, the file (when given) and the environment, then validates.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(invalid("config", format!("file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("GATEWAY_").ignore(&["CONFIG"]).map(|k| env_key(k.as_str()).into()));
        let settings: Settings = figment.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if gw_store_sql::Backend::from_url(&self.database.url).is_none() {
            return Err(invalid(
                "database.url",
                format!("{} is not a sqlite:// or postgres:// URL", gw_store_sql::redact_url(&self.database.url)),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        if !(300..=600_000).contains(&self.cluster.lease_ttl_ms) {
            return Err(invalid("cluster.lease_ttl_ms", "must be between 300 and 600000"));
        }
        if self.cluster.capacity == 0 {
            return Err(invalid("cluster.capacity", "must be at least 1"));
        }
        if self.cluster.poll_interval_ms == 0 {
            return Err(invalid("cluster.poll_interval_ms", "must be at least 1"));
        }
        if self.server.request_timeout_secs == 0 {
            return Err(invalid("server.request_timeout_secs", "must be at least 1"));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        self.trusted_proxies()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", format!("not a valid filter: {e}")))?;
        Email::parse(&self.admin.email).map_err(|e| invalid("admin.email", e.to_string()))?;
        self.validate_secrets()?;
        self.whatsapp()?;
        self.egress()?;
        let hooks = &self.webhooks;
        if hooks.schedule_ms.is_empty() || hooks.schedule_ms.len() > 50 {
            return Err(invalid("webhooks.schedule_ms", "list 1 to 50 delays"));
        }
        if hooks.timeout_ms == 0 || hooks.connect_timeout_ms == 0 || hooks.poll_interval_ms == 0 {
            return Err(invalid("webhooks.timeout_ms", "timeouts and the poll interval must be positive"));
        }
        if hooks.max_in_flight == 0 || hooks.max_in_flight_per_endpoint == 0 {
            return Err(invalid("webhooks.max_in_flight", "must be at least 1"));
        }
        if !(1_000..=600_000).contains(&hooks.lease_ms) {
            return Err(invalid("webhooks.lease_ms", "must be between 1000 and 600000"));
        }
        if hooks.response_capture_bytes > 1024 {
            return Err(invalid("webhooks.response_capture_bytes", "at most 1024"));
        }
        if self.sessions.backoff_initial_ms == 0 || self.sessions.backoff_max_secs == 0 {
            return Err(invalid("sessions.backoff_initial_ms", "backoff delays must be positive"));
        }
        if self.auth.jwt_previous_keys.iter().any(|k| k.secret.expose().len() < gw_accounts::jwt::MIN_KEY_BYTES) {
            return Err(invalid("auth.jwt_previous_keys", "every secret must be at least 32 bytes"));
        }
        if self.auth.access_token_ttl_secs == 0 || self.auth.access_token_ttl_secs > 24 * 3600 {
            return Err(invalid("auth.access_token_ttl_secs", "must be between 1 and 86400"));
        }
        if self.auth.refresh_token_ttl_days == 0 || self.auth.refresh_token_ttl_days > 365 {
            return Err(invalid("auth.refresh_token_ttl_days", "must be between 1 and 365"));
        }
        if self.auth.clock_leeway_secs > 300 {
            return Err(invalid("auth.clock_leeway_secs", "must be at most 300"));
        }
        if self.auth.login_max_failures_per_email == 0 || self.auth.login_max_failures_per_ip == 0 {
            return Err(invalid("auth.login_max_failures_per_email", "login failure limits must be at least 1"));
        }
        let redis = self.redis.url.expose();
        if !(redis.is_empty() || redis.starts_with("redis://") || redis.starts_with("rediss://")) {
            return Err(invalid("redis.url", "must be a redis:// or rediss:// URL"));
        }
        if self.redis.timeout_ms == 0 || self.redis.timeout_ms > 10_000 {
            return Err(invalid("redis.timeout_ms", "must be between 1 and 10000"));
        }
        self.metrics_addr()?;
        if self.plugins.timeout_ms == 0 || self.plugins.timeout_ms > 10_000 {
            return Err(invalid("plugins.timeout_ms", "must be between 1 and 10000"));
        }
        if let Some(field) = self.tiers.invalid_field() {
            return Err(ConfigError::Invalid { key: "tiers", message: format!("{field} is out of range") });
        }
        Ok(())
    }

    /// The three secrets: each, when set, must be long enough, and must not be a public development value where
    /// others can reach the gateway. Unset is allowed in development only: the secret is then generated on first
    /// run (`bootstrap::ensure_secrets`). Production refuses unset secrets because a generated one belongs to one
    /// node, and nodes sharing a database must share their secrets.
    fn validate_secrets(&self) -> Result<(), ConfigError> {
        let min = gw_accounts::jwt::MIN_KEY_BYTES;
        let jwt = self.auth.jwt_secret.expose();
        if !jwt.is_empty() && jwt.len() < min {
            return Err(invalid("auth.jwt_secret", format!("must be at least {min} bytes")));
        }
        let pepper = self.auth.api_key_pepper.expose();
        if !pepper.is_empty() && pepper.len() < 32 {
            return Err(invalid("auth.api_key_pepper", "must be at least 32 bytes"));
        }
        if !self.sessions.encryption_key.is_unset() {
            self.session_key()?;
        }
        for (key, secret) in self.secrets() {
            if self.mode == Mode::Production && secret.is_unset() {
                return Err(invalid(
                    key,
                    "must be set in production mode (nodes sharing a database must share it; generate one with \
                     `openssl rand -base64 32`)",
                ));
            }
        }
        let exposed = !self.listen_addr()?.ip().is_loopback();
        if let Some(key) = self.public_development_secrets().first()
            && (exposed || self.mode == Mode::Production)
        {
            let reason = if exposed {
                format!("refused on the non-loopback address {}", self.server.listen)
            } else {
                "refused in production mode".to_owned()
            };
            return Err(invalid(
                key,
                format!(
                    "is the public development default of earlier versions (anyone can use it), {reason}; unset it \
                     to have a secret generated, or set your own"
                ),
            ));
        }
        Ok(())
    }

    /// The configured secrets that are public development values (allowed on loopback only, with a warning).
    pub fn public_development_secrets(&self) -> Vec<&'static str> {
        self.secrets()
            .into_iter()
            .filter(|(key, secret)| {
                PUBLIC_DEVELOPMENT_SECRETS
                    .iter()
                    .any(|(public_key, value)| public_key == key && secret.expose() == *value)
            })
            .map(|(key, _)| key)
            .collect()
    }

    /// The secrets the gateway generates when they are not configured, by configuration key.
    pub fn secrets(&self) -> [(&'static str, &Secret); 3] {
        [
            ("auth.jwt_secret", &self.auth.jwt_secret),
            ("auth.api_key_pepper", &self.auth.api_key_pepper),
            ("sessions.encryption_key", &self.sessions.encryption_key),
        ]
    }

    /// Mutable access to the secret configured under `key` (one of [`Settings::secrets`]' keys).
    pub fn secret_mut(&mut self, key: &str) -> Option<&mut Secret> {
        match key {
            "auth.jwt_secret" => Some(&mut self.auth.jwt_secret),
            "auth.api_key_pepper" => Some(&mut self.auth.api_key_pepper),
            "sessions.encryption_key" => Some(&mut self.sessions.encryption_key),
            _ => None,
        }
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server
            .listen
            .parse()
            .map_err(|_| invalid("server.listen", format!("{:?} is not an address:port", self.server.listen)))
    }

    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.metrics.listen.is_empty() {
            return Ok(None);
        }
        self.metrics
            .listen
            .parse()
            .map(Some)
            .map_err(|_| invalid("metrics.listen", format!("{:?} is not an address:port", self.metrics.listen)))
    }

    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.server
            .trusted_proxies
            .iter()
            .map(|raw| {
                raw.parse::<ipnet::IpNet>()
                    .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| invalid("server.trusted_proxies", format!("{raw:?} is not an address or CIDR range")))
            })
            .collect()
    }

    pub fn http(&self) -> Result<gw_http::HttpSettings, ConfigError> {
        Ok(gw_http::HttpSettings {
            trusted_proxies: self.trusted_proxies()?,
            request_timeout: Duration::from_secs(self.server.request_timeout_secs),
            max_body_bytes: self.server.max_body_bytes,
            plugin_timeout_ms: self.plugins.timeout_ms,
        })
    }

    pub fn accounts(&self) -> AccountsConfig {
        let auth = &self.auth;
        let window = Duration::from_secs(auth.login_failure_window_secs.max(1));
        AccountsConfig {
            jwt: JwtSettings {
                active: SigningKey {
                    kid: auth.jwt_key_id.clone(),
                    secret: Redacted::new(auth.jwt_secret.expose().to_owned()),
                },
                previous: auth
                    .jwt_previous_keys
                    .iter()
                    .map(|k| SigningKey { kid: k.kid.clone(), secret: Redacted::new(k.secret.expose().to_owned()) })
                    .collect(),
                issuer: auth.jwt_issuer.clone(),
                audience: auth.jwt_audience.clone(),
                access_ttl: chrono::Duration::seconds(auth.access_token_ttl_secs as i64),
                leeway_secs: auth.clock_leeway_secs,
            },
            refresh_ttl: chrono::Duration::days(auth.refresh_token_ttl_days as i64),
            tiers: self.tiers.clone(),
            email_throttle: ThrottlePolicy { max_failures: auth.login_max_failures_per_email, window },
            ip_throttle: ThrottlePolicy { max_failures: auth.login_max_failures_per_ip, window },
            api_key_pepper: Redacted::new(auth.api_key_pepper.expose().to_owned()),
        }
    }
}

impl Settings {
    /// Where the plugin host caches compiled components.
    pub fn plugin_cache_dir(&self) -> std::path::PathBuf {
        if !self.plugins.cache_dir.is_empty() {
            return self.plugins.cache_dir.clone().into();
        }
        self.data_dir().join("plugin-cache")
    }

    /// The gateway's own files: `data_dir`, else the SQLite file's directory, else `./data`.
    pub fn data_dir(&self) -> std::path::PathBuf {
        if !self.data_dir.is_empty() {
            return self.data_dir.clone().into();
        }
        let sqlite_dir = self
            .database
            .url
            .strip_prefix("sqlite://")
            .map(|path| path.split('?').next().unwrap_or(path))
            .filter(|path| !path.contains(":memory:"))
            .and_then(|path| Path::new(path).parent().map(Path::to_path_buf))
            .filter(|dir| !dir.as_os_str().is_empty());
        sqlite_dir.unwrap_or_else(|| "./data".into())
    }

    /// The 32-byte session encryption key.
    pub fn session_key(&self) -> Result<[u8; 32], ConfigError> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.sessions.encryption_key.expose().trim())
            .map_err(|_| invalid("sessions.encryption_key", "must be base64 (openssl rand -base64 32)"))?;
        bytes.try_into().map_err(|_| invalid("sessions.encryption_key", "must decode to exactly 32 bytes"))
    }

    pub fn whatsapp(&self) -> Result<gw_driver_whatsapp::WhatsAppDriverConfig, ConfigError> {
        let mut config = gw_driver_whatsapp::WhatsAppDriverConfig::new(self.sessions.encryption_key.expose());
        if !self.whatsapp.ws_url.is_empty() {
            config.ws_url = Some(self.whatsapp.ws_url.clone());
        }
        if !self.whatsapp.version.is_empty() {
            let parts: Vec<u32> = self.whatsapp.version.split('.').filter_map(|p| p.parse().ok()).collect();
            let [a, b, c] = parts[..] else {
                return Err(invalid("whatsapp.version", "three numbers separated by dots, like 2.3000.1020608496"));
            };
            config.version = Some((a, b, c));
        }
        Ok(config)
    }

    /// What webhook (and other tenant-chosen) URLs may reach.
    pub fn egress(&self) -> Result<gw_egress::EgressPolicy, ConfigError> {
        let hooks = &self.webhooks;
        let allow_cidrs = hooks
            .allow_private_cidrs
            .iter()
            .map(|c| {
                c.parse::<ipnet::IpNet>()
                    .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| invalid("webhooks.allow_private_cidrs", format!("`{c}` is not a CIDR range")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(gw_egress::EgressPolicy {
            allow_http: hooks.allow_http,
            allow_cidrs,
            connect_timeout: Duration::from_millis(hooks.connect_timeout_ms),
            total_timeout: Duration::from_millis(hooks.timeout_ms),
            max_response_bytes: hooks.response_capture_bytes,
            ..gw_egress::EgressPolicy::default()
        })
    }

    /// What media-by-URL downloads may reach: the egress rules, with the media timeout.
    pub fn media_egress(&self) -> Result<gw_egress::EgressPolicy, ConfigError> {
        let timeout = Duration::from_secs(self.sessions.media_fetch_timeout_secs.max(1));
        Ok(gw_egress::EgressPolicy { total_timeout: timeout, ..self.egress()? })
    }

    pub fn dispatcher(&self) -> gw_webhooks::DispatcherConfig {
        let hooks = &self.webhooks;
        gw_webhooks::DispatcherConfig {
            schedule: hooks.schedule_ms.iter().map(|ms| Duration::from_millis(*ms)).collect(),
            auto_disable_after: Duration::from_secs(hooks.auto_disable_after_secs),
            max_in_flight: hooks.max_in_flight,
            max_in_flight_per_endpoint: hooks.max_in_flight_per_endpoint,
            poll_interval: Duration::from_millis(hooks.poll_interval_ms),
            // Renewed while attempts run, so it need not outlast the attempt timeout.
            lease: Duration::from_millis(hooks.lease_ms),
            ..gw_webhooks::DispatcherConfig::default()
        }
    }

    pub fn engine(&self) -> gw_sessions::EngineConfig {
        gw_sessions::EngineConfig {
            backoff_initial: Duration::from_millis(self.sessions.backoff_initial_ms),
            backoff_max: Duration::from_secs(self.sessions.backoff_max_secs),
            max_reply_depth: self.sessions.max_reply_depth,
            cluster: gw_sessions::ClusterConfig {
                lease_ttl: Duration::from_millis(self.cluster.lease_ttl_ms),
                node_address: if self.cluster.node_address.is_empty() {
                    self.server.listen.clone()
                } else {
                    self.cluster.node_address.clone()
                },
                capacity: self.cluster.capacity,
                poll_interval: Duration::from_millis(self.cluster.poll_interval_ms),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

#[cfg(test)]
// figment's Jail closures return its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use super::*;

    fn load_err(jail: &Jail, file: Option<&str>) -> String {
        let _ = jail;
        Settings::load(file.map(Path::new)).expect_err("must be refused").to_string()
    }

    #[test]
    fn defaults_need_nothing() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let settings = Settings::load(None).expect("defaults");
            assert_eq!(settings.server.listen, "127.0.0.1:8080");
            assert_eq!(settings.database.url, "sqlite://./data/gateway.db");
            assert_eq!(settings.mode, Mode::Development);
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_the_file_and_keeps_underscored_keys() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "gateway.toml",
                "[server]\nlisten = \"127.0.0.1:9000\"\n[database]\nmax_connections = 4\n",
            )?;
            jail.set_env("GATEWAY_DATABASE_MAX_CONNECTIONS", "7");
            jail.set_env("GATEWAY_TIERS_FREE_MAX_INSTANCES", "2");
            jail.set_env("GATEWAY_CONFIG", "ignored-by-the-provider");
            let settings = Settings::load(Some(Path::new("gateway.toml"))).expect("load");
            assert_eq!(settings.server.listen, "127.0.0.1:9000");
            assert_eq!(settings.database.max_connections, 7);
            assert_eq!(settings.tiers.free.max_instances, 2);
            assert_eq!(settings.tiers.free.monthly_messages, TierCatalog::default().free.monthly_messages);
            Ok(())
        });
    }

    #[test]
    fn plugin_settings_load_validate_and_place_the_cache_beside_the_database() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let settings = Settings::load(None).expect("defaults");
            assert!(settings.plugins.enabled);
            assert_eq!(settings.plugins.timeout_ms, 50);
            assert_eq!(settings.plugin_cache_dir(), Path::new("./data/plugin-cache"));
            jail.set_env("GATEWAY_DATABASE_URL", "sqlite:///var/lib/gw/db.sqlite?mode=rwc");
            jail.set_env("GATEWAY_PLUGINS_TIMEOUT_MS", "75");
            let settings = Settings::load(None).expect("load");
            assert_eq!(settings.plugins.timeout_ms, 75);
            assert_eq!(settings.http().expect("http").plugin_timeout_ms, 75);
            assert_eq!(settings.plugin_cache_dir(), Path::new("/var/lib/gw/plugin-cache"));
            jail.set_env("GATEWAY_PLUGINS_CACHE_DIR", "/tmp/cache");
            assert_eq!(Settings::load(None).expect("load").plugin_cache_dir(), Path::new("/tmp/cache"));
            jail.set_env("GATEWAY_PLUGINS_TIMEOUT_MS", "0");
            let err = load_err(jail, None);
            assert!(err.contains("plugins.timeout_ms"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_named() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("GATEWAY_SERVER_LISTNE", "127.0.0.1:1");
            let err = load_err(jail, None);
            assert!(err.contains("listne"), "{err}");
            assert!(err.contains("GATEWAY_SERVER_LISTNE"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("gateway.toml", "[databse]\nurl = \"sqlite://x.db\"\n")?;
            let err = load_err(jail, Some("gateway.toml"));
            assert!(err.contains("databse"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn malformed_values_are_named() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("GATEWAY_DATABASE_MAX_CONNECTIONS", "many");
            let err = load_err(jail, None);
            assert!(err.contains("max_connections"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("GATEWAY_SERVER_LISTEN", "localhost");
            assert!(load_err(jail, None).starts_with("server.listen:"));
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("GATEWAY_DATABASE_URL", "mysql://u:hunter2@db/x");
            let err = load_err(jail, None);
            assert!(err.starts_with("database.url:") && !err.contains("hunter2"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("GATEWAY_SERVER_TRUSTED_PROXIES", "[\"10.0.0.0/8\", \"nonsense\"]");
            assert!(load_err(jail, None).starts_with("server.trusted_proxies:"));
            Ok(())
        });
    }

    #[test]
    fn production_requires_every_secret() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("GATEWAY_MODE", "production");
            let err = load_err(jail, None);
            assert!(err.starts_with("auth.jwt_secret: must be set in production mode"), "{err}");
            jail.set_env("GATEWAY_AUTH_JWT_SECRET", "x".repeat(16));
            assert!(load_err(jail, None).contains("at least 32 bytes"));
            jail.set_env("GATEWAY_AUTH_JWT_SECRET", "a-real-production-secret-of-enough-length");
            assert!(load_err(jail, None).starts_with("auth.api_key_pepper: must be set"));
            jail.set_env("GATEWAY_AUTH_API_KEY_PEPPER", "a-real-production-pepper-of-enough-length");
            assert!(load_err(jail, None).starts_with("sessions.encryption_key: must be set"));
            jail.set_env("GATEWAY_SESSIONS_ENCRYPTION_KEY", "dG9vIHNob3J0");
            assert!(load_err(jail, None).contains("exactly 32 bytes"));
            jail.set_env("GATEWAY_SESSIONS_ENCRYPTION_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
            assert_eq!(Settings::load(None).expect("load").mode, Mode::Production);
            Ok(())
        });
    }

    #[test]
    fn development_leaves_unset_secrets_to_be_generated_even_off_loopback() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("GATEWAY_SERVER_LISTEN", "0.0.0.0:8080");
            let settings = Settings::load(None).expect("unset secrets are generated, so any address is safe");
            assert!(settings.secrets().iter().all(|(_, secret)| secret.is_unset()));
            assert!(settings.public_development_secrets().is_empty());
            Ok(())
        });
    }

    #[test]
    fn public_development_values_are_refused_off_loopback_and_in_production() {
        for (key, value) in PUBLIC_DEVELOPMENT_SECRETS {
            let variable = format!("GATEWAY_{}", key.replace('.', "_").to_uppercase());
            Jail::expect_with(|jail| {
                jail.clear_env();
                jail.set_env(&variable, value);
                let settings = Settings::load(None).expect("allowed on loopback");
                assert_eq!(settings.public_development_secrets(), vec![key]);
                jail.set_env("GATEWAY_SERVER_LISTEN", "0.0.0.0:8080");
                let err = load_err(jail, None);
                assert!(err.starts_with(&format!("{key}: is the public development default")), "{err}");
                assert!(err.contains("non-loopback address 0.0.0.0:8080"), "{err}");
                jail.set_env("GATEWAY_SERVER_LISTEN", "[::1]:8080");
                Settings::load(None).expect("IPv6 loopback is loopback");
                jail.set_env("GATEWAY_SERVER_LISTEN", "127.0.0.1:8080");
                jail.set_env("GATEWAY_MODE", "production");
                jail.set_env("GATEWAY_AUTH_JWT_SECRET", "a-real-production-secret-of-enough-length");
                jail.set_env("GATEWAY_AUTH_API_KEY_PEPPER", "a-real-production-pepper-of-enough-length");
                jail.set_env("GATEWAY_SESSIONS_ENCRYPTION_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
                jail.set_env(&variable, value);
                let err = load_err(jail, None);
                assert!(err.starts_with(key) && err.contains("refused in production mode"), "{err}");
                Ok(())
            });
        }
    }

    #[test]
    fn the_data_dir_is_configured_or_beside_the_sqlite_file() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            assert_eq!(Settings::load(None).expect("defaults").data_dir(), Path::new("./data"));
            jail.set_env("GATEWAY_DATABASE_URL", "postgres://gateway@db/gateway");
            assert_eq!(Settings::load(None).expect("load").data_dir(), Path::new("./data"));
            jail.set_env("GATEWAY_DATABASE_URL", "sqlite:///var/lib/gw/db.sqlite");
            assert_eq!(Settings::load(None).expect("load").data_dir(), Path::new("/var/lib/gw"));
            jail.set_env("GATEWAY_DATA_DIR", "/srv/gateway");
            let settings = Settings::load(None).expect("load");
            assert_eq!(settings.data_dir(), Path::new("/srv/gateway"));
            assert_eq!(settings.plugin_cache_dir(), Path::new("/srv/gateway/plugin-cache"));
            Ok(())
        });
    }

    #[test]
    fn redis_and_metrics_come_from_the_environment() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let settings = Settings::load(None).expect("defaults");
            assert!(settings.redis.url.expose().is_empty() && settings.metrics_addr().expect("none").is_none());
            jail.set_env("GATEWAY_REDIS_URL", "redis://127.0.0.1:6379");
            jail.set_env("GATEWAY_REDIS_TIMEOUT_MS", "15");
            jail.set_env("GATEWAY_METRICS_LISTEN", "127.0.0.1:9100");
            let settings = Settings::load(None).expect("load");
            assert_eq!((settings.redis.url.expose(), settings.redis.timeout_ms), ("redis://127.0.0.1:6379", 15));
            assert_eq!(settings.metrics_addr().expect("addr"), Some("127.0.0.1:9100".parse().expect("addr")));
            jail.set_env("GATEWAY_REDIS_URL", "http://127.0.0.1:6379");
            assert!(load_err(jail, None).starts_with("redis.url:"));
            Ok(())
        });
    }

    #[test]
    fn cluster_keys_are_configurable_validated_and_strict() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let engine = Settings::load(None).expect("defaults").engine();
            assert_eq!(engine.cluster.lease_ttl, Duration::from_secs(10), "failover well within 15 s");
            assert_eq!(engine.cluster.node_address, "127.0.0.1:8080", "the listen address by default");
            jail.set_env("GATEWAY_CLUSTER_LEASE_TTL_MS", "3000");
            jail.set_env("GATEWAY_CLUSTER_NODE_ADDRESS", "10.0.0.7:8080");
            jail.set_env("GATEWAY_CLUSTER_CAPACITY", "250");
            let engine = Settings::load(None).expect("load").engine();
            assert_eq!(engine.cluster.lease_ttl, Duration::from_secs(3));
            assert_eq!((engine.cluster.node_address.as_str(), engine.cluster.capacity), ("10.0.0.7:8080", 250));
            jail.set_env("GATEWAY_CLUSTER_LEASE_TTL_MS", "10");
            assert!(load_err(jail, None).starts_with("cluster.lease_ttl_ms:"));
            jail.set_env("GATEWAY_CLUSTER_LEASE_TTL_MS", "3000");
            jail.set_env("GATEWAY_CLUSTER_LEASE_TTL", "3000");
            assert!(load_err(jail, None).contains("GATEWAY_CLUSTER_LEASE_TTL"), "unknown keys are refused");
            Ok(())
        });
    }

    #[test]
    fn the_webhook_lease_is_short_configurable_and_validated() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let settings = Settings::load(None).expect("defaults");
            assert_eq!(settings.webhooks.lease_ms, 5_000);
            assert_eq!(settings.dispatcher().lease, Duration::from_secs(5), "not tied to the attempt timeouts");
            jail.set_env("GATEWAY_WEBHOOKS_LEASE_MS", "2500");
            assert_eq!(Settings::load(None).expect("load").dispatcher().lease, Duration::from_millis(2500));
            for bad in ["999", "600001", "0"] {
                jail.set_env("GATEWAY_WEBHOOKS_LEASE_MS", bad);
                assert!(load_err(jail, None).starts_with("webhooks.lease_ms:"), "{bad}");
            }
            jail.set_env("GATEWAY_WEBHOOKS_LEASE_MS", "soon");
            let err = load_err(jail, None);
            assert!(err.contains("webhooks.lease_ms") && err.contains("GATEWAY_WEBHOOKS_LEASE_MS"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn secrets_do_not_print() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("GATEWAY_ADMIN_PASSWORD", "correct horse battery staple");
            jail.set_env("GATEWAY_AUTH_JWT_SECRET", "a-jwt-secret-that-must-never-be-printed");
            let settings = Settings::load(None).expect("load");
            let printed = format!("{settings:?}");
            assert!(!printed.contains("correct horse") && !printed.contains("never-be-printed"), "{printed}");
            Ok(())
        });
    }
}
