//! The local runner: one plugin, one event, no gateway. It prints what the host would do with the verdict, the
//! plugin's logs and the fuel it used. Used by `gateway plugin run` and usable as a library harness in a plugin's
//! own tests.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use gw_core::PluginLimits;
use serde::{Deserialize, Serialize};

use crate::{
    CallInput, KvBackend, LogLine, PluginError, PluginHost, WitAction, WitDirection, WitEvent, WitMedia, WitOrigin,
    chain::validate,
};

/// An event as the runner reads it from JSON; every field has a default, so `{"text": "hi"}` is enough.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SampleEvent {
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `whatsapp`, `api` or `plugin_reply`.
    pub origin: String,
    pub instance_id: String,
    pub chat_jid: String,
    pub sender: String,
    pub message_id: String,
    pub kind: String,
    pub text: Option<String>,
    pub media: Option<SampleMedia>,
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SampleMedia {
    pub mime_type: String,
    pub size_bytes: u64,
    pub file_name: Option<String>,
}

impl Default for SampleEvent {
    fn default() -> Self {
        Self {
            direction: "inbound".into(),
            origin: "whatsapp".into(),
            instance_id: "00000000-0000-0000-0000-000000000001".into(),
            chat_jid: "15551234567@s.whatsapp.net".into(),
            sender: "15551234567@s.whatsapp.net".into(),
            message_id: "local-run".into(),
            kind: "text".into(),
            text: None,
            media: None,
            timestamp_ms: 0,
        }
    }
}

/// Why the runner could not run the plugin at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid event: {0}")]
    Event(String),
    #[error("the component was refused: {0}")]
    Load(#[from] crate::LoadError),
}

impl SampleEvent {
    fn to_wit(&self, config: &str) -> Result<WitEvent, RunError> {
        let direction = match self.direction.as_str() {
            "inbound" => WitDirection::Inbound,
            "outbound" => WitDirection::Outbound,
            other => return Err(RunError::Event(format!("direction `{other}`: expected inbound or outbound"))),
        };
        let origin = match self.origin.as_str() {
            "whatsapp" => WitOrigin::Whatsapp,
            "api" => WitOrigin::Api,
            "plugin_reply" => WitOrigin::PluginReply,
            other => return Err(RunError::Event(format!("origin `{other}`: expected whatsapp, api or plugin_reply"))),
        };
        Ok(WitEvent {
            direction,
            origin,
            instance_id: self.instance_id.clone(),
            chat_jid: self.chat_jid.clone(),
            sender: self.sender.clone(),
            message_id: self.message_id.clone(),
            kind: self.kind.clone(),
            text: self.text.clone(),
            media: self.media.as_ref().map(|m| WitMedia {
                mime_type: m.mime_type.clone(),
                size_bytes: m.size_bytes,
                file_name: m.file_name.clone(),
            }),
            timestamp_ms: self.timestamp_ms,
            config: config.to_owned(),
        })
    }
}

/// The verdict as JSON shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum VerdictReport {
    Continue { replies: Vec<String> },
    Drop { reason: String, replies: Vec<String> },
    Modify { text: String, replies: Vec<String> },
}

/// What one local run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The verdict, or `null` when the plugin failed.
    pub verdict: Option<VerdictReport>,
    /// The failure: `{kind, message}`.
    pub error: Option<RunFailure>,
    pub logs: Vec<LogLine>,
    pub logs_dropped: u32,
    pub fuel_used: u64,
    /// Wall time of the call, including instantiation (not compilation).
    pub elapsed_us: u64,
    /// What the plugin wrote to stderr (panic messages).
    pub stderr: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunFailure {
    pub kind: String,
    pub message: String,
}

/// Limits the runner uses unless told otherwise: those of a generous tier.
pub fn default_limits() -> PluginLimits {
    PluginLimits { fuel: 10_000_000, memory_bytes: 64 << 20, timeout_ms: 100, max_module_bytes: 10 << 20 }
}

/// Runs `component` once on `event` with `config`, with an in-memory key-value store (`kv`, which a harness may
/// seed and inspect between runs).
pub async fn run(
    host: &PluginHost,
    component: &[u8],
    event: &SampleEvent,
    config: &serde_json::Value,
    limits: PluginLimits,
    kv: Arc<std::sync::Mutex<BTreeMap<String, Vec<u8>>>>,
) -> Result<RunReport, RunError> {
    let compiled = host.load(component)?;
    let config = serde_json::to_string(config).map_err(|e| RunError::Event(e.to_string()))?;
    let input = CallInput::new(event.to_wit(&config)?, limits, KvBackend::Memory(kv));
    let started = Instant::now();
    let output = host.call(&compiled, &input).await;
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let result = output.result.and_then(|verdict| validate(&input.event, &verdict).map(|()| verdict));
    let (verdict, error) = match result {
        Ok(verdict) => {
            let replies = verdict.replies.into_iter().map(|r| r.text).collect();
            let report = match verdict.action {
                WitAction::Continue => VerdictReport::Continue { replies },
                WitAction::Drop(reason) => VerdictReport::Drop { reason, replies },
                WitAction::Modify(text) => VerdictReport::Modify { text, replies },
            };
            (Some(report), None)
        }
        Err(error) => (None, Some(failure(&error))),
    };
    Ok(RunReport {
        verdict,
        error,
        logs: output.logs,
        logs_dropped: output.logs_dropped,
        fuel_used: output.fuel_used,
        elapsed_us,
        stderr: output.stderr,
    })
}

fn failure(error: &PluginError) -> RunFailure {
    RunFailure { kind: error.kind().into(), message: error.to_string() }
}
