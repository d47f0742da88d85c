//! The loader, the validation and the conversions, each against a jailed environment.
// figment's Jail closures return its own (large) error type.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::time::Duration;

use figment::Jail;
use gw_accounts::TierCatalog;

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
        jail.create_file("gateway.toml", "[server]\nlisten = \"127.0.0.1:9000\"\n[database]\nmax_connections = 4\n")?;
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

#[test]
fn kubernetes_service_links_of_a_service_named_gateway_are_ignored() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("GATEWAY_PORT", "tcp://10.96.0.10:80");
        jail.set_env("GATEWAY_PORT_80_TCP", "tcp://10.96.0.10:80");
        jail.set_env("GATEWAY_PORT_80_TCP_ADDR", "10.96.0.10");
        jail.set_env("GATEWAY_PORT_80_TCP_PORT", "80");
        jail.set_env("GATEWAY_PORT_80_TCP_PROTO", "tcp");
        jail.set_env("GATEWAY_SERVICE_HOST", "10.96.0.10");
        jail.set_env("GATEWAY_SERVICE_PORT", "80");
        jail.set_env("GATEWAY_SERVICE_PORT_HTTP", "80");
        jail.set_env("GATEWAY_SERVER_LISTEN", "127.0.0.1:9000");
        let settings = Settings::load(None).expect("service links are not configuration");
        assert_eq!(settings.server.listen, "127.0.0.1:9000", "the real keys still apply");
        assert_eq!(
            ignored_service_links(),
            [
                "GATEWAY_PORT",
                "GATEWAY_PORT_80_TCP",
                "GATEWAY_PORT_80_TCP_ADDR",
                "GATEWAY_PORT_80_TCP_PORT",
                "GATEWAY_PORT_80_TCP_PROTO",
                "GATEWAY_SERVICE_HOST",
                "GATEWAY_SERVICE_PORT",
                "GATEWAY_SERVICE_PORT_HTTP",
            ]
        );
        Ok(())
    });
}

#[test]
fn unknown_keys_that_only_look_like_service_links_are_still_refused() {
    for name in
        ["GATEWAY_PORTS", "GATEWAY_PORT_HTTP", "GATEWAY_PORT_80_TCPX", "GATEWAY_PORT_80_TCP_HOST", "GATEWAY_SERVICE"]
    {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env(name, "x");
            let err = load_err(jail, None);
            assert!(err.contains("unknown field"), "{name}: {err}");
            Ok(())
        });
    }
}

#[test]
fn the_shared_sandbox_network_is_host_and_port() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        assert_eq!(Settings::load(None).expect("defaults").sandbox_network().expect("valid"), None, "embedded");
        jail.set_env("GATEWAY_SESSIONS_SANDBOX_NETWORK", "sandbox.internal:7811");
        let settings = Settings::load(None).expect("load");
        assert_eq!(settings.sandbox_network().expect("valid"), Some("sandbox.internal:7811"));
        for bad in ["127.0.0.1", "127.0.0.1:0", ":7811", "host:port"] {
            jail.set_env("GATEWAY_SESSIONS_SANDBOX_NETWORK", bad);
            let err = load_err(jail, None);
            assert!(err.contains("sessions.sandbox_network"), "{bad}: {err}");
        }
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
