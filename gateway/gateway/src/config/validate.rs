//! Validation: everything that can be checked before the gateway starts, naming the key at fault.

use gw_core::Email;

use super::schema::PUBLIC_DEVELOPMENT_SECRETS;
use super::{ConfigError, Mode, Secret, Settings, invalid};

impl Settings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
        self.sandbox_network()?;
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
        if self.sessions.number_check_cache_secs > 7 * 24 * 3600 {
            return Err(invalid("sessions.number_check_cache_secs", "at most 604800 (7 days)"));
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
        if self.plugins.chains_per_subscription == 0 || self.plugins.chains_per_subscription > 1_000 {
            return Err(invalid("plugins.chains_per_subscription", "must be between 1 and 1000"));
        }
        if self.plugins.reply_burst_per_chat == 0 {
            return Err(invalid("plugins.reply_burst_per_chat", "must be at least 1"));
        }
        if self.plugins.ping_pong_window_ms == 0 || self.plugins.ping_pong_window_ms > 3_600_000 {
            return Err(invalid("plugins.ping_pong_window_ms", "must be between 1 and 3600000"));
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
}
