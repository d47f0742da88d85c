//! Loading: defaults, then the optional TOML file, then `GATEWAY_*` environment variables.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use super::{ConfigError, Settings, invalid};

const SECTIONS: &[&str] = &[
    "server", "database", "log", "admin", "auth", "sessions", "whatsapp", "webhooks", "plugins", "tiers", "redis",
    "metrics", "cluster", "console",
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

/// Whether `key` (after the `GATEWAY_` prefix) is one of the variables Kubernetes injects into every pod for a
/// Service named `gateway` (service links): `GATEWAY_PORT`, `GATEWAY_PORT_<port>_<proto>[_ADDR|_PORT|_PROTO]`,
/// `GATEWAY_SERVICE_HOST` and `GATEWAY_SERVICE_PORT[_<port name>]`. None of them can be a configuration key (no
/// section is named `port` or `service`), so ignoring them hides no typo; every other unknown key is still refused.
fn is_service_link(key: &str) -> bool {
    let key = key.to_ascii_uppercase();
    if key == "PORT" || key == "SERVICE_HOST" || key == "SERVICE_PORT" || key.starts_with("SERVICE_PORT_") {
        return true;
    }
    let Some(rest) = key.strip_prefix("PORT_") else { return false };
    let mut parts = rest.splitn(3, '_');
    let port = parts.next().unwrap_or_default();
    let protocol = parts.next().unwrap_or_default();
    let field = parts.next();
    !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && matches!(protocol, "TCP" | "UDP" | "SCTP")
        && field.is_none_or(|field| matches!(field, "ADDR" | "PORT" | "PROTO"))
}

/// The `GATEWAY_*` variables of the environment that [`Settings::load`] ignored as Kubernetes service links, for the
/// one log line that says so once logging is up.
pub fn ignored_service_links() -> Vec<String> {
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.strip_prefix("GATEWAY_").is_some_and(is_service_link))
        .collect();
    names.sort();
    names
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
        let env = Env::prefixed("GATEWAY_").ignore(&["CONFIG"]).filter(|key| !is_service_link(key.as_str()));
        figment = figment.merge(env.map(|k| env_key(k.as_str()).into()));
        let settings: Settings = figment.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        settings.validate()?;
        Ok(settings)
    }
}
