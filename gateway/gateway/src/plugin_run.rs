//! `gateway plugin run <file.wasm> --event event.json [--config config.json]`: runs one plugin on one event with
//! the same host, limits and checks as the server, and prints the verdict, logs and fuel used as JSON. Needs no
//! configuration, database or network.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use gw_plugins::{HostSettings, PluginHost, runner};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plugin component (`.wasm`, built for wasm32-wasip2).
    pub file: PathBuf,
    /// The event as JSON (see plugin-sdk/examples/event.json); every field has a default.
    #[arg(long)]
    pub event: PathBuf,
    /// The binding's config as JSON (default `{}`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Fuel for the call.
    #[arg(long, default_value_t = runner::default_limits().fuel)]
    pub fuel: u64,
    /// Linear memory limit in bytes.
    #[arg(long, default_value_t = runner::default_limits().memory_bytes)]
    pub memory_bytes: u64,
    /// Wall-clock deadline in milliseconds.
    #[arg(long, default_value_t = runner::default_limits().timeout_ms)]
    pub timeout_ms: u32,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the {what} {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing the {what} {}", path.display()))
}

/// Runs the plugin and returns the report as pretty JSON.
pub fn run(args: &RunArgs) -> anyhow::Result<String> {
    let component = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let event: runner::SampleEvent = read_json(&args.event, "event")?;
    let config = match &args.config {
        Some(path) => read_json(path, "config")?,
        None => serde_json::json!({}),
    };
    let limits = gw_core::PluginLimits {
        fuel: args.fuel,
        memory_bytes: args.memory_bytes,
        timeout_ms: args.timeout_ms,
        max_module_bytes: u64::MAX,
    };
    let host = PluginHost::standalone(HostSettings { instance_slots: 1, ..HostSettings::default() })
        .context("starting the plugin host")?;
    // A plugin call is async (it may await its key-value store); one thread is all a single run needs.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a runtime")?;
    let report = runtime
        .block_on(runner::run(&host, &component, &event, &config, limits, Default::default()))
        .with_context(|| format!("running {}", args.file.display()))?;
    serde_json::to_string_pretty(&report).context("printing the report")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn examples() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugin-sdk/examples")
    }

    #[test]
    fn runs_the_keyword_responder_on_the_example_event() {
        let args = RunArgs {
            file: gw_plugins::guests::KEYWORD_RESPONDER.into(),
            event: examples().join("event.json"),
            config: Some(examples().join("keyword-config.json")),
            fuel: runner::default_limits().fuel,
            memory_bytes: runner::default_limits().memory_bytes,
            timeout_ms: runner::default_limits().timeout_ms,
        };
        let report: serde_json::Value = serde_json::from_str(&run(&args).unwrap()).unwrap();
        assert_eq!(report["verdict"]["action"], "continue");
        assert_eq!(report["verdict"]["replies"][0], "Our prices: https://example.com/prices");
        assert_eq!(report["logs"][0]["message"], "matched 1 rule(s)");
        assert!(report["fuel_used"].as_u64().unwrap() > 0);
        assert!(report["error"].is_null());
    }

    #[test]
    fn reports_a_plugin_failure_with_its_kind() {
        let args = RunArgs {
            file: gw_plugins::guests::HOSTILE_INFINITE_LOOP.into(),
            event: examples().join("event.json"),
            config: None,
            fuel: 100_000,
            memory_bytes: runner::default_limits().memory_bytes,
            timeout_ms: runner::default_limits().timeout_ms,
        };
        let report: serde_json::Value = serde_json::from_str(&run(&args).unwrap()).unwrap();
        assert!(report["verdict"].is_null());
        assert_eq!(report["error"]["kind"], "fuel_exhausted");
        assert_eq!(report["fuel_used"], 100_000);
    }
}
