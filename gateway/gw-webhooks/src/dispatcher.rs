//! The delivery side: claim due rows, sign, send, record, retry.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gw_core::{EventSink, EventType, GatewayEvent, Timestamp, WebhookConfig, WebhookConfigId, WebhookDeliveryId};
use gw_egress::{CapturedResponse, EgressError, GuardedClient};
use gw_store::{ClaimedDelivery, DeliveryCompletion, DisabledEndpoint, NextStep, RESPONSE_EXCERPT_MAX, Store};
use http::{HeaderMap, HeaderValue, StatusCode};
use rand::Rng as _;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::signing::{SigningSecret, signature_header};
use crate::sink::WebhookSink;

/// How deliveries are paced, retried and bounded.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Delay before each attempt, the first one included (`0` = at once); its length is the number of attempts
    /// before a delivery is dead-lettered.
    pub schedule: Vec<Duration>,
    /// Each delay is moved by up to this fraction either way, so retries of many deliveries do not arrive together.
    pub jitter: f64,
    /// Longest `Retry-After` (on 429 and 503) that is honoured.
    pub max_retry_after: Duration,
    /// An endpoint failing without any success for this long is disabled.
    pub auto_disable_after: Duration,
    /// Deliveries claimed per round trip to the store.
    pub batch_size: u32,
    /// How long a claim is exclusive unless renewed. The dispatcher renews the leases of all the rows it holds in
    /// one statement every [`DispatcherConfig::renew_interval`] (a third of the lease), for as long as their
    /// attempts run, so an attempt may outlive the lease and its timeout; the lease only bounds how long a dead
    /// dispatcher's deliveries wait before another dispatcher takes them over.
    pub lease: Duration,
    pub max_in_flight: usize,
    pub max_in_flight_per_endpoint: usize,
    /// How often an idle dispatcher looks for work another node enqueued (its own node wakes it at once).
    pub poll_interval: Duration,
}

/// Short, so a crashed node's deliveries are late by seconds; long enough that a renewal (one write every 1.7 s)
/// has two more chances before the lease runs out if the store is briefly slow.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);

impl DispatcherConfig {
    /// How often held leases are renewed: a third of the lease, so two renewals may fail or be late before a row
    /// is lost.
    pub fn renew_interval(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(10))
    }
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        let (s, m, h) = (1, 60, 3600);
        Self {
            // Svix's schedule, extended so the last attempt falls about three days after the first.
            schedule: [0, 5 * s, 5 * m, 30 * m, 2 * h, 5 * h, 10 * h, 10 * h, 20 * h, 20 * h]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            jitter: 0.1,
            max_retry_after: Duration::from_secs(24 * 3600),
            auto_disable_after: Duration::from_secs(5 * 24 * 3600),
            batch_size: 256,
            lease: DEFAULT_LEASE,
            max_in_flight: 512,
            max_in_flight_per_endpoint: 32,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// The result of a test fire: one signed `webhook.test` delivery, sent at once and not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFire {
    pub success: bool,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

struct Inner {
    store: Arc<dyn Store>,
    client: GuardedClient,
    config: DispatcherConfig,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// Where `webhook.disabled` events go besides the instance's other endpoints (the live event bus).
    notifier: Option<Arc<dyn EventSink>>,
    endpoints: Mutex<HashMap<WebhookConfigId, Arc<Semaphore>>>,
    /// The rows this dispatcher has claimed and not yet recorded: what it renews.
    leases: Mutex<Leases>,
}

/// The claims a dispatcher holds. Rows enter when claimed and leave when their result has been recorded (or could
/// not be, so that their lease runs out and they are retried) or when a renewal shows another dispatcher took
/// them over.
#[derive(Debug, Default)]
struct Leases {
    held: HashMap<WebhookDeliveryId, Uuid>,
    /// Held rows whose result is being recorded right now: a renewal may miss them because the recording
    /// committed first, which is not a loss.
    recording: HashSet<WebhookDeliveryId>,
}

impl Leases {
    fn hold(&mut self, claimed: &[ClaimedDelivery]) {
        self.held.extend(claimed.iter().map(|c| (c.id, c.claim_token)));
    }

    fn tokens(&self) -> Vec<Uuid> {
        let tokens: HashSet<Uuid> = self.held.values().copied().collect();
        tokens.into_iter().collect()
    }

    fn recording(&mut self, batch: &[DeliveryCompletion]) {
        self.recording.extend(batch.iter().map(|c| c.id));
    }

    fn release(&mut self, batch: &[DeliveryCompletion]) {
        for done in batch {
            self.recording.remove(&done.id);
            self.held.remove(&done.id);
        }
    }

    /// After a renewal of `tokens` that extended `renewed`: the rows under those tokens that were not extended and
    /// are not being recorded were taken over by another dispatcher. They are forgotten (no longer renewed) and
    /// returned.
    fn lost(&mut self, tokens: &[Uuid], renewed: &[WebhookDeliveryId]) -> Vec<WebhookDeliveryId> {
        let tokens: HashSet<&Uuid> = tokens.iter().collect();
        let renewed: HashSet<&WebhookDeliveryId> = renewed.iter().collect();
        let lost: Vec<WebhookDeliveryId> = self
            .held
            .iter()
            .filter(|(id, token)| tokens.contains(token) && !renewed.contains(id) && !self.recording.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in &lost {
            self.held.remove(id);
        }
        lost
    }
}

/// Sends the outbox. Clone it to share; [`Dispatcher::spawn`] starts the worker.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

/// A running dispatcher.
#[derive(Debug)]
pub struct DispatcherHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl DispatcherHandle {
    /// Stops claiming, lets attempts in flight finish and be recorded, then returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "webhook dispatcher ended abnormally");
        }
    }

    /// Ends the worker at once, as a crash would: claimed deliveries are no longer renewed and stay claimed until
    /// their lease runs out.
    pub fn abort(self) {
        self.task.abort();
    }
}

/// The Standard Webhooks payload: `{"type", "timestamp", "data"}`, with the instance's id added to `data`. The body's
/// `timestamp` is the event's instant as every other body prints it (RFC 3339, six fractional digits); the
/// `webhook-timestamp` header is the attempt's time in whole seconds, as Standard Webhooks signs it.
pub fn envelope(event: &GatewayEvent) -> String {
    let mut data = event.data.clone();
    if let Some(object) = data.as_object_mut() {
        object.entry("instance_id").or_insert_with(|| serde_json::json!(event.instance_id));
    }
    serde_json::json!({
        "type": event.event_type.as_str(),
        "timestamp": event.occurred_at,
        "data": data,
    })
    .to_string()
}

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, client: GuardedClient, config: DispatcherConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                client,
                config,
                wake: Arc::new(Notify::new()),
                metrics: Arc::new(Metrics::default()),
                notifier: None,
                endpoints: Mutex::new(HashMap::new()),
                leases: Mutex::new(Leases::default()),
            }),
        }
    }

    /// Also sends `webhook.disabled` events to `notifier` (the live event bus). Call before sharing.
    pub fn with_notifier(self, notifier: Arc<dyn EventSink>) -> Self {
        let inner = match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.notifier = Some(notifier);
                inner
            }
            Err(shared) => return Self { inner: shared },
        };
        Self { inner: Arc::new(inner) }
    }

    /// The event sink that fills this dispatcher's outbox and wakes it.
    pub fn sink(&self) -> WebhookSink {
        WebhookSink::new(self.inner.store.clone(), self.inner.wake.clone())
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    pub fn config(&self) -> &DispatcherConfig {
        &self.inner.config
    }

    /// Wakes the worker (after a replay, say).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    pub fn spawn(&self) -> DispatcherHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(self.inner.clone(), stopped));
        DispatcherHandle { stop, task }
    }

    /// Sends one signed `webhook.test` event to the endpoint now and reports what happened; nothing is stored.
    pub async fn test_fire(&self, config: &WebhookConfig, subscription_id: gw_core::SubscriptionId) -> TestFire {
        let event = GatewayEvent::new(
            EventType::WebhookTest,
            subscription_id,
            config.instance_id,
            Timestamp::now(),
            serde_json::json!({ "webhook_id": config.id, "message": "This is a test event from the gateway." }),
        );
        let body = envelope(&event);
        let secrets: Vec<_> = SigningSecret::parse(config.secret.expose()).into_iter().collect();
        let (result, latency) = self.inner.send(&config.url, &event.id.to_string(), &secrets, body).await;
        let latency_ms = latency.as_millis() as i64;
        match result {
            Ok(response) => TestFire {
                success: response.status.is_success(),
                status_code: Some(response.status.as_u16()),
                latency_ms,
                error: (!response.status.is_success()).then(|| format!("HTTP {}", response.status.as_u16())),
                response_excerpt: Some(excerpt(&response.body)),
            },
            Err(e) => TestFire {
                success: false,
                status_code: None,
                latency_ms,
                error: Some(e.to_string()),
                response_excerpt: None,
            },
        }
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(RESPONSE_EXCERPT_MAX)]).into_owned();
    // Lossy decoding may grow the text (U+FFFD is 3 bytes); cut it back on a character boundary.
    let mut end = text.len().min(RESPONSE_EXCERPT_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn seconds(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn later(at: Timestamp, d: Duration) -> Timestamp {
    at.checked_add(seconds(d)).unwrap_or(at)
}

async fn run(inner: Arc<Inner>, mut stopped: watch::Receiver<bool>) {
    let global = Arc::new(Semaphore::new(inner.config.max_in_flight.max(1)));
    let (done_tx, done_rx) = mpsc::channel::<DeliveryCompletion>(inner.config.max_in_flight.max(1) * 2);
    // Attempts and the completer live in this set, so aborting the worker (a crash) ends them too.
    let mut tasks = JoinSet::new();
    let (completer_alive, completer_gone) = oneshot::channel::<()>();
    tasks.spawn(complete(inner.clone(), done_rx, completer_alive));
    // Renews until the completer has recorded the last result, so draining at shutdown keeps its leases too.
    tasks.spawn(renew(inner.clone(), completer_gone));
    tracing::info!(lease = ?inner.config.lease, renew_every = ?inner.config.renew_interval(), "webhook dispatcher started");
    let freed = Arc::new(Notify::new());
    loop {
        while tasks.try_join_next().is_some() {}
        if *stopped.borrow() {
            break;
        }
        let room = global.available_permits();
        // Claim in batches: a claim per freed slot would cost a write transaction per delivery.
        let worth_claiming = (inner.config.max_in_flight / 4).clamp(1, inner.config.batch_size.max(1) as usize);
        if room < worth_claiming {
            tokio::select! {
                _ = freed.notified() => continue,
                _ = stopped.changed() => break,
            }
        }
        let now = Timestamp::now();
        let limit = inner.config.batch_size.min(u32::try_from(room).unwrap_or(u32::MAX)).max(1);
        let claimed = match inner.store.claim_webhook_deliveries(now, later(now, inner.config.lease), limit).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "claiming webhook deliveries failed");
                tokio::select! {
                    _ = tokio::time::sleep(inner.config.poll_interval) => continue,
                    _ = stopped.changed() => break,
                }
            }
        };
        inner.lock_leases().hold(&claimed);
        let recovered = claimed.iter().filter(|c| c.taken_over).count();
        if recovered > 0 {
            inner.metrics.recovered(recovered);
            // After a crash this is the first thing a restarted (or any other) node says about the dead node's work.
            tracing::warn!(recovered, lease = ?inner.config.lease,
                "took over webhook deliveries whose lease had run out (their dispatcher stopped or stalled); sending them again");
        }
        if claimed.is_empty() {
            let wait = idle_wait(&inner).await;
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stopped.changed() => break,
            }
            continue;
        }
        for delivery in claimed {
            let Ok(permit) = global.clone().acquire_owned().await else { break };
            let endpoint = inner.endpoint_gate(delivery.config_id);
            let (inner, done_tx, freed) = (inner.clone(), done_tx.clone(), freed.clone());
            let span = tracing::info_span!("webhook.attempt", delivery = %delivery.id,
                endpoint = %delivery.config_id, attempt = delivery.attempts + 1);
            tasks.spawn(
                async move {
                    let _endpoint = endpoint.acquire_owned().await;
                    let completion = inner.attempt(delivery).await;
                    let _ = done_tx.send(completion).await;
                    drop(permit);
                    freed.notify_one();
                }
                .instrument(span),
            );
        }
    }
    // Let attempts in flight finish, so their results are recorded rather than retried after the lease.
    let _ = global.acquire_many(inner.config.max_in_flight.max(1) as u32).await;
    drop(done_tx);
    while tasks.join_next().await.is_some() {}
}

/// How long an idle worker sleeps: until the next delivery falls due, at most one poll interval.
async fn idle_wait(inner: &Inner) -> Duration {
    if let Ok(depth) = inner.store.webhook_queue_depth().await {
        inner.metrics.set_queue_depth(depth);
    }
    let poll = inner.config.poll_interval;
    match inner.store.next_webhook_due_at().await {
        Ok(Some(due)) => {
            let until = (due.as_datetime() - Timestamp::now().as_datetime()).to_std().unwrap_or(Duration::ZERO);
            until.min(poll).max(Duration::from_millis(1))
        }
        _ => poll,
    }
}

/// Renews the leases of every row this dispatcher holds, in one store call per interval, until `completer_gone`
/// says nothing more will be recorded. A row another dispatcher took over is not renewed (the store checks the
/// claim token); it is forgotten here, and its attempt's result will be refused as stale when recorded.
async fn renew(inner: Arc<Inner>, mut completer_gone: oneshot::Receiver<()>) {
    let every = inner.config.renew_interval();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut completer_gone => return,
            _ = ticks.tick() => {}
        }
        let tokens = inner.lock_leases().tokens();
        if tokens.is_empty() {
            continue;
        }
        let until = later(Timestamp::now(), inner.config.lease);
        match inner.store.renew_webhook_leases(&tokens, until).await {
            Ok(renewed) => {
                let lost = inner.lock_leases().lost(&tokens, &renewed);
                if !lost.is_empty() {
                    inner.metrics.leases_lost(lost.len());
                    tracing::warn!(lost = lost.len(), first = %lost[0],
                        "webhook deliveries were taken over by another dispatcher (a lease ran out); their results here will be dropped as stale");
                }
            }
            // Two more renewals fit in the lease; after that the rows are sent again elsewhere (at-least-once).
            Err(e) => tracing::warn!(error = %e, claims = tokens.len(), "renewing webhook leases failed"),
        }
    }
}

/// Records results in batches: one transaction for whatever has finished since the last one. Drops
/// `_alive` when done, which ends the renewals.
async fn complete(inner: Arc<Inner>, mut done: mpsc::Receiver<DeliveryCompletion>, _alive: oneshot::Sender<()>) {
    let window = seconds(inner.config.auto_disable_after);
    while let Some(first) = done.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match done.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let dead = batch.iter().filter(|c| matches!(c.next, NextStep::Dead | NextStep::Gone)).count();
        inner.lock_leases().recording(&batch);
        let recorded = inner.store.complete_webhook_deliveries(&batch, window).await;
        // Recorded: nothing left to renew. Not recorded: stop renewing, so the lease runs out and the rows are
        // claimed and sent again (at-least-once) rather than held for as long as this node lives.
        inner.lock_leases().release(&batch);
        match recorded {
            Ok(report) => {
                for _ in 0..dead {
                    inner.metrics.dead();
                }
                if report.stale > 0 {
                    tracing::warn!(stale = report.stale, "webhook results arrived after their lease was taken over");
                }
                for disabled in report.disabled {
                    inner.metrics.disabled();
                    inner.announce_disabled(disabled).await;
                }
            }
            // The rows stay claimed until their lease runs out and are then sent again: at-least-once.
            Err(e) => tracing::warn!(error = %e, count = batch.len(), "recording webhook results failed"),
        }
    }
}

impl Inner {
    fn lock_leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn endpoint_gate(&self, id: WebhookConfigId) -> Arc<Semaphore> {
        let mut gates = self.endpoints.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if gates.len() > 10_000 {
            // Forget idle gates (no attempt holds them) so the map does not grow with every endpoint ever seen.
            gates.retain(|_, gate| Arc::strong_count(gate) > 1);
        }
        gates
            .entry(id)
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.max_in_flight_per_endpoint.max(1))))
            .clone()
    }

    async fn send(
        &self,
        url: &str,
        msg_id: &str,
        secrets: &[SigningSecret],
        body: String,
    ) -> (Result<CapturedResponse, EgressError>, Duration) {
        let timestamp = Timestamp::now().as_datetime().timestamp();
        let signature = signature_header(secrets, msg_id, timestamp, body.as_bytes());
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let started = Instant::now();
        match (HeaderValue::from_str(msg_id), HeaderValue::from_str(&signature)) {
            (Ok(id), Ok(signature)) => {
                headers.insert("webhook-id", id);
                headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
                headers.insert("webhook-signature", signature);
            }
            _ => return (Err(EgressError::Request("unsignable message".into())), started.elapsed()),
        }
        let result = self.client.post(url, headers, body.into_bytes()).await;
        (result, started.elapsed())
    }

    async fn attempt(&self, delivery: ClaimedDelivery) -> DeliveryCompletion {
        let mut secrets = Vec::with_capacity(2);
        for secret in std::iter::once(&delivery.secret).chain(delivery.previous_secret.as_ref()) {
            if let Ok(parsed) = SigningSecret::parse(secret.expose()) {
                secrets.push(parsed);
            }
        }
        let (result, latency) =
            self.send(&delivery.url, &delivery.event_id.to_string(), &secrets, delivery.payload.clone()).await;
        let at = Timestamp::now();
        let attempt_no = usize::try_from(delivery.attempts).unwrap_or(0) + 1;
        let mut completion = DeliveryCompletion {
            id: delivery.id,
            claim_token: delivery.claim_token,
            config_id: delivery.config_id,
            at,
            status_code: None,
            latency_ms: latency.as_millis() as i64,
            error: None,
            response_excerpt: None,
            next: NextStep::Succeeded,
        };
        let mut retry_after = None;
        match result {
            Ok(response) => {
                completion.status_code = Some(response.status.as_u16());
                completion.response_excerpt = Some(excerpt(&response.body)).filter(|e| !e.is_empty());
                if response.status.is_success() {
                    self.metrics.attempt(latency, true);
                    return completion;
                }
                completion.error = Some(format!("HTTP {}", response.status.as_u16()));
                if response.status == StatusCode::GONE {
                    completion.next = NextStep::Gone;
                    self.metrics.attempt(latency, false);
                    return completion;
                }
                if matches!(response.status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
                    retry_after = response
                        .headers
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|secs| Duration::from_secs(secs).min(self.config.max_retry_after));
                }
            }
            Err(e) => completion.error = Some(e.to_string()),
        }
        self.metrics.attempt(latency, false);
        completion.next = match self.config.schedule.get(attempt_no) {
            None => NextStep::Dead,
            Some(delay) => {
                let jitter = self.config.jitter.clamp(0.0, 1.0);
                let factor = if jitter > 0.0 { 1.0 + rand::rng().random_range(-jitter..=jitter) } else { 1.0 };
                let mut delay = delay.mul_f64(factor);
                if let Some(asked) = retry_after {
                    delay = delay.max(asked);
                }
                NextStep::RetryAt(later(at, delay))
            }
        };
        tracing::debug!(error = completion.error.as_deref(), next = ?completion.next, "webhook attempt failed");
        completion
    }

    async fn announce_disabled(&self, disabled: DisabledEndpoint) {
        tracing::warn!(endpoint = %disabled.config_id, instance = %disabled.instance_id, reason = %disabled.reason,
            "webhook endpoint disabled");
        let event = GatewayEvent::new(
            EventType::WebhookDisabled,
            disabled.subscription_id,
            disabled.instance_id,
            Timestamp::now(),
            serde_json::json!({ "webhook_id": disabled.config_id, "url": disabled.url, "reason": disabled.reason }),
        );
        // The instance's other endpoints hear of it through the outbox; the live bus through the notifier.
        let sink = WebhookSink::new(self.store.clone(), self.wake.clone());
        if let Err(e) = sink.publish(&event).await {
            tracing::warn!(error = %e, "webhook.disabled event not queued");
        }
        if let Some(notifier) = &self.notifier
            && let Err(e) = notifier.publish(&event).await
        {
            tracing::warn!(error = %e, "webhook.disabled event not published");
        }
    }
}

#[cfg(test)]
mod tests {
    use gw_core::{InstanceId, SubscriptionId};

    use super::*;

    /// The webhook body, the live stream and the REST API print one instant the same way.
    #[test]
    fn the_envelope_prints_the_instant_as_the_live_stream_and_the_api_do() {
        let at: chrono::DateTime<chrono::Utc> = "2026-01-31T12:00:00.120Z".parse().expect("instant");
        let event = GatewayEvent::new(
            EventType::MessageReceived,
            SubscriptionId::new(),
            InstanceId::new(),
            Timestamp::from(at),
            serde_json::json!({}),
        );
        let body: serde_json::Value = serde_json::from_str(&envelope(&event)).expect("json");
        assert_eq!(body["timestamp"], "2026-01-31T12:00:00.120000Z");
        let live = serde_json::to_value(&event).expect("json");
        assert_eq!(live["occurred_at"], body["timestamp"], "the live stream's envelope");
        let api = serde_json::to_value(gw_core::Rfc3339(event.occurred_at)).expect("json");
        assert_eq!(api, body["timestamp"], "the REST API");
    }
}
