//! What the settings become: each subsystem's own configuration type, built from the validated settings.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use gw_accounts::{AccountsConfig, JwtSettings, SigningKey, ThrottlePolicy};
use gw_core::Redacted;

use super::{ConfigError, Settings, invalid};

impl Settings {
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server
            .listen
            .parse()
            .map_err(|_| invalid("server.listen", format!("{:?} is not an address:port", self.server.listen)))
    }

    /// The shared sandbox network to dial, if one is configured (`host:port`).
    pub fn sandbox_network(&self) -> Result<Option<&str>, ConfigError> {
        let addr = self.sessions.sandbox_network.trim();
        if addr.is_empty() {
            return Ok(None);
        }
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => Ok(Some(addr)),
            _ => Err(invalid("sessions.sandbox_network", format!("{addr:?} is not host:port"))),
        }
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
