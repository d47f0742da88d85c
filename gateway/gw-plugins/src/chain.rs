//! [`PluginChain`]: runs an instance's bindings over each message event, in order, each on a fresh instance.
//!
//! The chain of an instance (its bindings, resolved to compiled components) is cached per instance. An event
//! holds an `Arc` to the chain it started with, so [`gw_core::PluginRuntime::invalidate`] (a version activated or
//! rolled back, a binding changed) affects only later events: in-flight events finish on their version, and none
//! is dropped.
//!
//! The chain runs on the task that processes the event: each call is wasmtime's async call (a fiber), so there
//! is no hop to a blocking thread. A call yields to the runtime every few hundred microseconds of guest code
//! (fuel), so a plugin that computes until its deadline holds a worker only in short slices; the key-value
//! capability awaits the catalog, bounded by the call's deadline. Failures and logs are written to the catalog
//! from a spawned task, off the request path.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use gw_core::{
    BindingFailure, BoundPlugin, Disposition, FailurePolicy, InstanceId, MessageEvent, MessagePipeline, Origin,
    PipelineOutcome, PluginBindingId, PluginCatalog, PluginLogRecord, Reply, SubscriptionId, Timestamp,
};
use tokio::sync::Semaphore;

use crate::{
    cache::{Compiled, sha256_hex},
    call::{Budget, CallInput, KvBackend, WitAction, WitEvent, WitMedia, WitOrigin, WitVerdict},
    engine::HostSettings,
    error::{PluginError, truncate},
    host::{PluginHost, wit_direction},
    reply_guard::{Admission, ReplyGuard},
};

// The verdict's limits are the contract's (gw-core), the same the send path applies to a reply.
pub use gw_core::{PLUGIN_MAX_REPLIES as MAX_REPLIES, PLUGIN_MAX_REPLY_CHARS as MAX_REPLY_CHARS};

/// A binding ready to run.
struct LoadedBinding {
    bound: BoundPlugin,
    config: String,
    compiled: Result<Arc<Compiled>, PluginError>,
}

/// An instance's chain as one event sees it.
pub(crate) struct LoadedChain {
    bindings: Vec<LoadedBinding>,
}

/// Per-host chain state: the catalog, the chain cache, per-binding log budgets.
pub(crate) struct ChainState {
    catalog: Arc<dyn PluginCatalog>,
    chains: moka::sync::Cache<InstanceId, Arc<LoadedChain>>,
    log_budgets: moka::sync::Cache<PluginBindingId, Arc<Mutex<LogBudget>>>,
    /// Per subscription: permits for chains running at once (`HostSettings::chains_per_subscription`).
    admission: moka::sync::Cache<SubscriptionId, Arc<Semaphore>>,
    chains_per_subscription: usize,
    /// Automated replies per chat, across instances and tenants.
    replies: ReplyGuard,
    /// Bumped by every invalidation: a chain read from the catalog before an invalidation serves the event that
    /// read it but does not stay cached, so it cannot outlive the change it raced with.
    generation: std::sync::atomic::AtomicU64,
}

impl ChainState {
    pub(crate) fn new(catalog: Arc<dyn PluginCatalog>, settings: &HostSettings) -> Self {
        Self {
            catalog,
            chains: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(settings.chain_ttl).build(),
            log_budgets: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(std::time::Duration::from_secs(600))
                .build(),
            // Idle eviction only: a semaphore with a waiter or a holder is in use, so not idle.
            admission: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(std::time::Duration::from_secs(600))
                .build(),
            replies: ReplyGuard::new(settings.reply_guard),
            chains_per_subscription: usize::try_from(settings.chains_per_subscription.max(1)).unwrap_or(1),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(crate) fn invalidate(&self, instance: InstanceId) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.chains.invalidate(&instance);
    }

    pub(crate) fn invalidate_all(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.chains.invalidate_all();
    }
}

/// A token bucket of log lines per binding.
struct LogBudget {
    tokens: f64,
    last: Instant,
}

/// The [`MessagePipeline`] over a [`PluginHost`].
#[derive(Clone)]
pub struct PluginChain {
    host: PluginHost,
}

impl std::fmt::Debug for PluginChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginChain").finish_non_exhaustive()
    }
}

/// What running a chain produced besides the outcome: side effects to write to the catalog.
struct ChainRun {
    outcome: PipelineOutcome,
    failures: Vec<(PluginBindingId, BindingFailure)>,
    logs: Vec<PluginLogRecord>,
}

impl PluginChain {
    pub(crate) fn new(host: PluginHost) -> Self {
        Self { host }
    }

    fn state(&self) -> &ChainState {
        &self.host.inner.chains
    }

    async fn chain(&self, instance: InstanceId) -> Result<Arc<LoadedChain>, gw_core::CatalogError> {
        let state = self.state();
        if let Some(chain) = state.chains.get(&instance) {
            return Ok(chain);
        }
        let generation = state.generation.load(std::sync::atomic::Ordering::SeqCst);
        let bound = state.catalog.chain(instance).await?;
        let mut bindings = Vec::with_capacity(bound.len());
        for bound in bound {
            let compiled = self.compiled(&bound).await;
            let config = serde_json::to_string(&bound.config).unwrap_or_else(|_| "{}".into());
            bindings.push(LoadedBinding { bound, config, compiled });
        }
        let chain = Arc::new(LoadedChain { bindings });
        state.chains.insert(instance, chain.clone());
        // Checked after inserting: an invalidation either bumped the generation before this load (seen here) or
        // removes the entry itself afterwards. At worst a fresh entry is dropped and loaded again.
        if state.generation.load(std::sync::atomic::Ordering::SeqCst) != generation {
            state.chains.invalidate(&instance);
        }
        Ok(chain)
    }

    async fn compiled(&self, bound: &BoundPlugin) -> Result<Arc<Compiled>, PluginError> {
        if let Some(hit) = self.host.inner.cache.cached(&bound.sha256) {
            return Ok(hit);
        }
        let bytes = self
            .state()
            .catalog
            .component(&bound.sha256)
            .await
            .map_err(|e| PluginError::Load(e.to_string()))?
            .ok_or_else(|| PluginError::Load(format!("component {} is not stored", bound.sha256)))?;
        if sha256_hex(&bytes) != bound.sha256 {
            return Err(PluginError::Load(format!("stored component does not match its hash {}", bound.sha256)));
        }
        let host = self.host.clone();
        tokio::task::spawn_blocking(move || host.load(&bytes))
            .await
            .map_err(|e| PluginError::Load(e.to_string()))?
            .map_err(|e| PluginError::Load(e.to_string()))
    }
}

#[async_trait::async_trait]
impl MessagePipeline for PluginChain {
    async fn process(&self, event: MessageEvent) -> PipelineOutcome {
        let chain = match self.chain(event.instance_id).await {
            Ok(chain) => chain,
            Err(error) => {
                // Without the chain nothing can be judged; the message goes on rather than being lost.
                tracing::warn!(instance = %event.instance_id, error = %error, "plugin chain unavailable; message passes");
                return PipelineOutcome::deliver(event);
            }
        };
        if !chain.bindings.iter().any(|b| b.bound.direction.covers(event.direction)) {
            return PipelineOutcome::deliver(event);
        }
        // Fair admission: this subscription's events wait for their own permits (FIFO), never for another's.
        let permits = self
            .state()
            .admission
            .get_with(event.subscription_id, || Arc::new(Semaphore::new(self.state().chains_per_subscription)));
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => permits.acquire_owned().await.ok(),
        };
        let run = run_chain(&self.host, &chain, event).await;
        drop(permit);
        if !run.failures.is_empty() || !run.logs.is_empty() {
            let catalog = self.state().catalog.clone();
            tokio::spawn(async move {
                for (binding, failure) in run.failures {
                    if let Err(error) = catalog.record_failure(binding, failure).await {
                        tracing::warn!(%binding, error = %error, "could not record a plugin failure");
                    }
                }
                if !run.logs.is_empty()
                    && let Err(error) = catalog.append_logs(run.logs).await
                {
                    tracing::warn!(error = %error, "could not keep plugin logs");
                }
            });
        }
        run.outcome
    }
}

fn to_wit(event: &MessageEvent, config: &str) -> WitEvent {
    WitEvent {
        direction: wit_direction(event.direction),
        origin: match event.origin {
            Origin::WhatsApp => WitOrigin::Whatsapp,
            Origin::Api => WitOrigin::Api,
            Origin::PluginReply { .. } => WitOrigin::PluginReply,
        },
        instance_id: event.instance_id.to_string(),
        chat_jid: event.chat_jid.clone(),
        sender: event.sender.clone(),
        message_id: event.message_id.to_string(),
        kind: event.kind.as_str().to_owned(),
        text: event.text.clone(),
        media: event.media.as_ref().map(|m| WitMedia {
            mime_type: m.mime_type.clone(),
            size_bytes: m.size_bytes,
            file_name: m.file_name.clone(),
        }),
        timestamp_ms: event.timestamp.as_datetime().timestamp_millis(),
        config: config.to_owned(),
    }
}

/// Checks a verdict against the contract's limits (gw-core), the same the send path applies: a plugin cannot make
/// the gateway send a flood, and a reply accepted here is not refused later for its text.
pub(crate) fn validate(event: &WitEvent, verdict: &WitVerdict) -> Result<(), PluginError> {
    if verdict.replies.len() > MAX_REPLIES {
        return Err(PluginError::InvalidVerdict(format!(
            "{} replies; at most {MAX_REPLIES} are allowed",
            verdict.replies.len()
        )));
    }
    for (i, reply) in verdict.replies.iter().enumerate() {
        gw_core::check_text_body(&reply.text)
            .map_err(|refused| PluginError::InvalidVerdict(format!("reply {}: {refused}", i + 1)))?;
    }
    if let WitAction::Modify(text) = &verdict.action {
        // An unknown kind is held to the stricter (caption) limit.
        let kind = event.kind.parse().unwrap_or(gw_core::MessageKind::Image);
        gw_core::check_modified_text(kind, text)
            .map_err(|refused| PluginError::InvalidVerdict(format!("modified text: {refused}")))?;
    }
    Ok(())
}

async fn run_chain(host: &PluginHost, chain: &LoadedChain, mut event: MessageEvent) -> ChainRun {
    let settings = &host.inner.settings;
    let mut replies = Vec::new();
    let mut failures = Vec::new();
    let mut logs = Vec::new();
    // The loop guard (see ARCHITECTURE.md): a message that is itself a plugin reply at the configured depth passes
    // the chain like any other, but replies to it are discarded here (the engine refuses them too).
    let replies_allowed = match event.origin {
        Origin::PluginReply { depth } => depth < settings.max_reply_depth,
        Origin::Api | Origin::WhatsApp => settings.max_reply_depth > 0,
    };
    let guard = &host.inner.chains.replies;
    if event.direction == gw_core::Direction::Inbound {
        guard.inbound(event.instance_id, &event.chat_jid);
    }
    // One budget per event for the whole chain, started with its first call (every binding of an instance has its
    // subscription's limits): ten bindings of a spinning plugin get one deadline between them, not ten.
    let mut budget: Option<Budget> = None;
    for binding in chain.bindings.iter().filter(|b| b.bound.direction.covers(event.direction)) {
        let bound = &binding.bound;
        let budget = budget.get_or_insert_with(|| Budget::of(&bound.limits));
        let result = match &binding.compiled {
            Err(error) => Err(error.clone()),
            Ok(_) if budget.spent() => {
                // Not this binding's fault: it is not charged with a failure, but its policy still applies.
                logs.push(PluginLogRecord {
                    binding_id: bound.binding_id,
                    level: "warn".into(),
                    message: format!(
                        "not run: earlier plugins in the chain used the event's whole budget ({} ms, {} fuel)",
                        bound.limits.timeout_ms, bound.limits.fuel
                    ),
                    at: Timestamp::now(),
                });
                match bound.failure_policy {
                    FailurePolicy::FailOpen => continue,
                    FailurePolicy::FailClosed => {
                        return ChainRun {
                            outcome: PipelineOutcome {
                                disposition: Disposition::Drop {
                                    reason: "the event's plugin budget was spent before this fail-closed binding ran"
                                        .into(),
                                    by: Some(bound.plugin_name.clone()),
                                },
                                replies,
                            },
                            failures,
                            logs,
                        };
                    }
                }
            }
            Ok(compiled) => {
                let mut input = CallInput::new(
                    to_wit(&event, &binding.config),
                    bound.limits,
                    KvBackend::Catalog {
                        catalog: host.inner.chains.catalog.clone(),
                        plugin: bound.plugin_id,
                        instance: event.instance_id,
                    },
                );
                input.budget = Some(*budget);
                let output = host.inner.call(compiled, &input).await;
                budget.fuel = budget.fuel.saturating_sub(output.fuel_used);
                keep_logs(host, bound, output.logs, output.logs_dropped, &mut logs);
                output.result.and_then(|verdict| validate(&input.event, &verdict).map(|()| verdict))
            }
        };
        let verdict = match result {
            Ok(verdict) => verdict,
            Err(error) => {
                tracing::info!(binding = %bound.binding_id, plugin = %bound.plugin_name, kind = error.kind(), %error, "plugin failed");
                failures.push((
                    bound.binding_id,
                    BindingFailure { kind: error.kind().into(), message: error.to_string(), at: Timestamp::now() },
                ));
                match bound.failure_policy {
                    FailurePolicy::FailOpen => continue,
                    FailurePolicy::FailClosed => {
                        return ChainRun {
                            outcome: PipelineOutcome {
                                disposition: Disposition::Drop {
                                    reason: format!(
                                        "the plugin failed ({}) and its binding is fail-closed",
                                        error.kind()
                                    ),
                                    by: Some(bound.plugin_name.clone()),
                                },
                                replies,
                            },
                            failures,
                            logs,
                        };
                    }
                }
            }
        };
        if !verdict.replies.is_empty() {
            if replies_allowed {
                let wanted = verdict.replies.len();
                let allowed = match guard.admit(event.instance_id, &event.chat_jid, wanted) {
                    Admission::Allowed(allowed) => {
                        if allowed < wanted {
                            logs.push(warn_line(
                                bound.binding_id,
                                format!(
                                    "{} reply(ies) to {} discarded: automated replies to one chat are limited to \
                                     {} per minute (burst {})",
                                    wanted - allowed,
                                    event.chat_jid,
                                    settings.reply_guard.replies_per_chat_per_minute,
                                    settings.reply_guard.reply_burst_per_chat
                                ),
                            ));
                        }
                        allowed
                    }
                    Admission::PingPong { exchanges } => {
                        tracing::warn!(instance = %event.instance_id, chat = %event.chat_jid, binding = %bound.binding_id, exchanges, "plugin replies discarded: ping-pong between automated parties");
                        logs.push(warn_line(
                            bound.binding_id,
                            format!(
                                "{wanted} reply(ies) discarded: {} answered this instance's automated replies \
                                 promptly {exchanges} times in a row (a ping-pong between automated parties); \
                                 replies to it resume once it has been quiet for {} s",
                                event.chat_jid,
                                settings.reply_guard.ping_pong_window.as_secs()
                            ),
                        ));
                        0
                    }
                };
                replies.extend(verdict.replies.into_iter().take(allowed).map(|reply| Reply {
                    chat_jid: event.chat_jid.clone(),
                    text: reply.text,
                    quoted_message_id: None,
                    binding_id: Some(bound.binding_id),
                }));
            } else {
                logs.push(PluginLogRecord {
                    binding_id: bound.binding_id,
                    level: "warn".into(),
                    message: format!(
                        "{} reply(ies) discarded: the message is itself a plugin reply (loop guard)",
                        verdict.replies.len()
                    ),
                    at: Timestamp::now(),
                });
            }
        }
        match verdict.action {
            WitAction::Continue => {}
            WitAction::Modify(text) => event.text = Some(text),
            WitAction::Drop(reason) => {
                return ChainRun {
                    outcome: PipelineOutcome {
                        disposition: Disposition::Drop {
                            reason: truncate(reason, gw_core::PLUGIN_MAX_DROP_REASON_BYTES),
                            by: Some(bound.plugin_name.clone()),
                        },
                        replies,
                    },
                    failures,
                    logs,
                };
            }
        }
    }
    ChainRun { outcome: PipelineOutcome { disposition: Disposition::Deliver(event), replies }, failures, logs }
}

/// A `warn` line the host writes in a binding's log.
fn warn_line(binding_id: PluginBindingId, message: String) -> PluginLogRecord {
    PluginLogRecord { binding_id, level: "warn".into(), message, at: Timestamp::now() }
}

/// Keeps a call's log lines within the binding's budget (a token bucket of lines per minute).
fn keep_logs(
    host: &PluginHost,
    bound: &BoundPlugin,
    lines: Vec<crate::call::LogLine>,
    dropped_in_call: u32,
    out: &mut Vec<PluginLogRecord>,
) {
    if lines.is_empty() && dropped_in_call == 0 {
        return;
    }
    let per_minute = f64::from(host.inner.settings.log_lines_per_minute);
    let budget =
        host.inner.chains.log_budgets.get_with(bound.binding_id, || {
            Arc::new(Mutex::new(LogBudget { tokens: per_minute, last: Instant::now() }))
        });
    let Ok(mut budget) = budget.lock() else { return };
    let now = Instant::now();
    budget.tokens = (budget.tokens + now.duration_since(budget.last).as_secs_f64() * per_minute / 60.0).min(per_minute);
    budget.last = now;
    let mut dropped = dropped_in_call;
    let at = Timestamp::now();
    for line in lines {
        if budget.tokens >= 1.0 {
            budget.tokens -= 1.0;
            out.push(PluginLogRecord {
                binding_id: bound.binding_id,
                level: line.level.into(),
                message: line.message,
                at,
            });
        } else {
            dropped += 1;
        }
    }
    if dropped > 0 && budget.tokens >= 1.0 {
        budget.tokens -= 1.0;
        out.push(PluginLogRecord {
            binding_id: bound.binding_id,
            level: "warn".into(),
            message: format!("{dropped} log line(s) dropped (limit per call or per minute)"),
            at,
        });
    }
}
