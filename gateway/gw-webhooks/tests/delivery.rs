//! The dispatcher against a real HTTP receiver on 127.0.0.1, on SQLite and on PostgreSQL.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use gw_core::{DriverKind, EventSink, EventSinkError, EventType, GatewayEvent, Instance, Tier, Timestamp};
use gw_egress::{EgressPolicy, GuardedClient};
use gw_store::{
    Actor, AuditFilter, DeliveryStatus, NewInstance, NewSubscription, NewWebhookConfig, PageRequest, Store,
    WebhookDelivery,
};
use gw_test_support::{TestDatabase, eventually_within, until_within};
use gw_webhooks::{Dispatcher, DispatcherConfig, SigningSecret, verify};
use serde_json::json;
use tokio::sync::mpsc;

// ---- a receiver that records what it gets and answers as scripted -------------------------------------------------

#[derive(Debug, Clone)]
enum Answer {
    Status(u16),
    /// Answer 200 after this long (longer than the dispatcher's timeout: the attempt times out).
    Slow(Duration),
}

#[derive(Debug)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    seen: mpsc::UnboundedSender<Received>,
}

struct Receiver {
    addr: SocketAddr,
    script: Arc<Mutex<VecDeque<Answer>>>,
    seen: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    async fn start() -> Self {
        let (tx, seen) = mpsc::unbounded_channel();
        let script = Script { answers: Arc::new(Mutex::new(VecDeque::new())), seen: tx };
        let answers = script.answers.clone();
        let app = Router::new().route("/hook", post(receive)).with_state(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, script: answers, seen }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn then(&self, answer: Answer) {
        self.script.lock().expect("script").push_back(answer);
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("the receiver got nothing within 10 s")
            .expect("receiver open")
    }

    fn nothing_yet(&mut self) -> bool {
        self.seen.try_recv().is_err()
    }
}

async fn receive(State(script): State<Script>, headers: HeaderMap, body: Bytes) -> (StatusCode, &'static str) {
    let _ = script.seen.send(Received { headers, body });
    let answer = script.answers.lock().map(|mut a| a.pop_front()).ok().flatten();
    match answer {
        Some(Answer::Status(code)) => (StatusCode::from_u16(code).unwrap_or(StatusCode::OK), "scripted"),
        Some(Answer::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            (StatusCode::OK, "late")
        }
        None => (StatusCode::OK, "thanks"),
    }
}

// ---- set-up ------------------------------------------------------------------------------------------------------

fn fast() -> DispatcherConfig {
    DispatcherConfig {
        schedule: vec![Duration::ZERO, Duration::from_millis(50), Duration::from_millis(50), Duration::from_millis(50)],
        jitter: 0.0,
        poll_interval: Duration::from_millis(100),
        lease: Duration::from_secs(5),
        ..DispatcherConfig::default()
    }
}

fn loopback_policy() -> EgressPolicy {
    EgressPolicy {
        allow_http: true,
        allow_cidrs: vec!["127.0.0.0/8".parse().expect("cidr")],
        total_timeout: Duration::from_millis(300),
        ..EgressPolicy::default()
    }
}

fn dispatcher(store: &Arc<dyn Store>, config: DispatcherConfig, policy: EgressPolicy) -> Dispatcher {
    Dispatcher::new(store.clone(), GuardedClient::new(policy).expect("client"), config)
}

async fn tenant(store: &Arc<dyn Store>) -> Instance {
    let sub = store
        .create_subscription(
            NewSubscription {
                name: "Acme".into(),
                tier: Tier::Starter,
                max_instances: 2,
                monthly_messages: 1000,
                limit_overrides: Default::default(),
            },
            &Actor::system(),
        )
        .await
        .expect("subscription");
    store
        .create_instance(
            NewInstance {
                name: "main".into(),
                subscription_id: sub.id,
                created_by_id: None,
                driver: DriverKind::Sandbox,
                settings: json!({}),
            },
            &Actor::system(),
        )
        .await
        .expect("instance")
}

async fn endpoint(store: &Arc<dyn Store>, instance: &Instance, url: &str) -> (gw_core::WebhookConfig, String) {
    let secret = SigningSecret::generate();
    let config = store
        .create_webhook_config(
            NewWebhookConfig {
                instance_id: instance.id,
                url: url.into(),
                events: vec![gw_core::EventSelector::All],
                secret: secret.clone(),
            },
            &Actor::system(),
        )
        .await
        .expect("webhook config");
    (config, secret)
}

fn message(instance: &Instance, text: &str) -> GatewayEvent {
    GatewayEvent::new(
        EventType::MessageReceived,
        instance.subscription_id,
        instance.id,
        Timestamp::now(),
        json!({ "text": text }),
    )
}

/// Polls the store until the endpoint's only delivery satisfies `done`, or fails after 10 s.
async fn wait_for_delivery(
    store: &Arc<dyn Store>,
    config: &gw_core::WebhookConfig,
    what: &str,
    done: impl Fn(&WebhookDelivery) -> bool,
) -> WebhookDelivery {
    eventually_within(Duration::from_secs(10), what, async || {
        let page =
            store.list_webhook_deliveries(config.instance_id, config.id, PageRequest::first(10)).await.expect("list");
        page.items.into_iter().find(|d| done(d))
    })
    .await
}

fn now_secs() -> i64 {
    Timestamp::now().as_datetime().timestamp()
}

fn header<'a>(received: &'a Received, name: &str) -> &'a str {
    received.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header"))
}

/// A sink that records what it is given (stands in for the live event bus).
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<GatewayEvent>>);

#[async_trait::async_trait]
impl EventSink for Recorder {
    async fn publish(&self, event: &GatewayEvent) -> Result<(), EventSinkError> {
        self.0.lock().expect("recorder").push(event.clone());
        Ok(())
    }
}

// ---- scenarios ---------------------------------------------------------------------------------------------------

async fn signed_delivery_succeeds(store: Arc<dyn Store>) {
    let mut receiver = Receiver::start().await;
    let instance = tenant(&store).await;
    let (config, secret) = endpoint(&store, &instance, &receiver.url()).await;
    let dispatcher = dispatcher(&store, fast(), loopback_policy());
    let handle = dispatcher.spawn();
    let event = message(&instance, "hello");
    dispatcher.sink().publish(&event).await.expect("durable");

    let got = receiver.next().await;
    let (id, ts, sig) =
        (header(&got, "webhook-id"), header(&got, "webhook-timestamp"), header(&got, "webhook-signature"));
    assert_eq!(id, event.id.to_string(), "webhook-id is the event id");
    verify(&secret, id, ts, sig, &got.body, now_secs(), 300).expect("our verifier accepts it");

    // Independently of the crate's signing code: HMAC-SHA256 keyed with the base64 after whsec_.
    use base64::Engine as _;
    use hmac::Mac as _;
    let key = base64::engine::general_purpose::STANDARD.decode(&secret["whsec_".len()..]).expect("b64");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&got.body);
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(sig, expected);

    let body: serde_json::Value = serde_json::from_slice(&got.body).expect("json");
    assert_eq!(body["type"], "message.received");
    assert_eq!(body["data"]["text"], "hello");
    assert_eq!(body["data"]["instance_id"], json!(instance.id));
    assert!(body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));

    let delivery =
        wait_for_delivery(&store, &config, "success recorded", |d| d.status == DeliveryStatus::Succeeded).await;
    assert_eq!(delivery.attempt_log.len(), 1);
    assert_eq!(delivery.attempt_log[0].status_code, Some(200));
    assert_eq!(delivery.attempt_log[0].response_excerpt.as_deref(), Some("thanks"));
    let counted = store.get_webhook_config(instance.id, config.id).await.expect("config");
    assert_eq!((counted.total_sent, counted.total_failed), (1, 0));
    assert!(counted.last_sent_at.is_some());
    assert_eq!(dispatcher.metrics().snapshot().succeeded, 1);
    handle.stop().await;
}

async fn retries_after_500_and_after_a_timeout(store: Arc<dyn Store>) {
    let mut receiver = Receiver::start().await;
    receiver.then(Answer::Status(500));
    receiver.then(Answer::Slow(Duration::from_secs(3)));
    let instance = tenant(&store).await;
    let (config, _) = endpoint(&store, &instance, &receiver.url()).await;
    let dispatcher = dispatcher(&store, fast(), loopback_policy());
    let handle = dispatcher.spawn();
    let event = message(&instance, "again");
    dispatcher.sink().publish(&event).await.expect("durable");

    let ids: Vec<String> = [receiver.next().await, receiver.next().await, receiver.next().await]
        .iter()
        .map(|r| header(r, "webhook-id").to_owned())
        .collect();
    assert_eq!(ids, vec![event.id.to_string(); 3], "the same webhook-id on every retry");
    let delivery =
        wait_for_delivery(&store, &config, "third attempt succeeds", |d| d.status == DeliveryStatus::Succeeded).await;
    let log: Vec<_> = delivery.attempt_log.iter().map(|a| (a.attempt, a.status_code)).collect();
    assert_eq!(log, vec![(1, Some(500)), (2, None), (3, Some(200))]);
    assert_eq!(delivery.attempt_log[1].error.as_deref(), Some("timed out"));
    let counted = store.get_webhook_config(instance.id, config.id).await.expect("config");
    assert_eq!((counted.total_sent, counted.total_failed, counted.failing_since), (1, 2, None));
    assert_eq!(counted.last_error.as_deref(), Some("timed out"));
    handle.stop().await;
}

async fn gone_disables_and_retries_run_out(store: Arc<dyn Store>) {
    let mut receiver = Receiver::start().await;
    let instance = tenant(&store).await;
    let (gone, _) = endpoint(&store, &instance, &receiver.url()).await;
    let recorder = Arc::new(Recorder::default());
    let dispatcher = dispatcher(&store, fast(), loopback_policy()).with_notifier(recorder.clone());
    let handle = dispatcher.spawn();
    receiver.then(Answer::Status(410));
    dispatcher.sink().publish(&message(&instance, "gone")).await.expect("durable");
    receiver.next().await;
    let dead = wait_for_delivery(&store, &gone, "410 dead-letters", |d| d.status == DeliveryStatus::Dead).await;
    assert_eq!(dead.attempts, 1, "410 is not retried");
    let config = store.get_webhook_config(instance.id, gone.id).await.expect("config");
    assert!(!config.is_active);
    assert_eq!(config.disabled_reason.as_deref(), Some("the endpoint answered 410 Gone"));
    let events = recorder.0.lock().expect("recorder").clone();
    assert!(
        events.iter().any(|e| e.event_type == EventType::WebhookDisabled && e.data["webhook_id"] == json!(gone.id))
    );
    dispatcher.sink().publish(&message(&instance, "after")).await.expect("durable");
    let page = store.list_webhook_deliveries(instance.id, gone.id, PageRequest::first(10)).await.expect("list");
    assert_eq!(page.items.len(), 1, "a disabled endpoint gets no new deliveries");

    // Another endpoint that always fails is dead-lettered after the schedule's four attempts.
    let (failing, _) = endpoint(&store, &instance, &receiver.url()).await;
    for _ in 0..4 {
        receiver.then(Answer::Status(502));
    }
    dispatcher.sink().publish(&message(&instance, "doomed")).await.expect("durable");
    let dead = wait_for_delivery(&store, &failing, "dead-lettered", |d| d.status == DeliveryStatus::Dead).await;
    assert_eq!(dead.attempts, 4);
    assert!(store.get_webhook_config(instance.id, failing.id).await.expect("config").is_active, "not failing for long");
    handle.stop().await;
}

async fn failing_too_long_disables_with_audit_and_event(store: Arc<dyn Store>) {
    let mut receiver = Receiver::start().await;
    let instance = tenant(&store).await;
    let (config, _) = endpoint(&store, &instance, &receiver.url()).await;
    let recorder = Arc::new(Recorder::default());
    let quick = DispatcherConfig { auto_disable_after: Duration::from_millis(40), ..fast() };
    let dispatcher = dispatcher(&store, quick, loopback_policy()).with_notifier(recorder.clone());
    let handle = dispatcher.spawn();
    for _ in 0..4 {
        receiver.then(Answer::Status(500));
    }
    dispatcher.sink().publish(&message(&instance, "x")).await.expect("durable");
    receiver.next().await;
    receiver.next().await;
    let disabled = eventually_within(Duration::from_secs(10), "the endpoint disabled", async || {
        let config = store.get_webhook_config(instance.id, config.id).await.expect("config");
        (!config.is_active).then_some(config)
    })
    .await;
    assert!(disabled.disabled_reason.as_deref().is_some_and(|r| r.contains("every delivery failed since")));
    let audit = store
        .list_audit(
            AuditFilter { subscription_id: Some(instance.subscription_id), ..Default::default() },
            PageRequest::default(),
        )
        .await
        .expect("audit");
    assert!(
        audit
            .items
            .iter()
            .any(|e| e.action == gw_core::AuditAction::WebhookDisable && e.resource_id == Some(config.id.to_string()))
    );
    until_within(Duration::from_secs(10), "a webhook.disabled event", async || {
        recorder.0.lock().expect("recorder").iter().any(|e| e.event_type == EventType::WebhookDisabled)
    })
    .await;
    handle.stop().await;
}

async fn replay_one_and_a_range(store: Arc<dyn Store>) {
    let mut receiver = Receiver::start().await;
    let instance = tenant(&store).await;
    let (config, _) = endpoint(&store, &instance, &receiver.url()).await;
    let dispatcher = dispatcher(&store, fast(), loopback_policy());
    let handle = dispatcher.spawn();
    let first = message(&instance, "one");
    dispatcher.sink().publish(&first).await.expect("durable");
    dispatcher.sink().publish(&message(&instance, "two")).await.expect("durable");
    receiver.next().await;
    receiver.next().await;
    let delivered = |d: &WebhookDelivery| d.status == DeliveryStatus::Succeeded && d.event_id == first.id;
    let one = wait_for_delivery(&store, &config, "first delivered", delivered).await;
    wait_for_delivery(&store, &config, "second delivered", |d| {
        d.status == DeliveryStatus::Succeeded && d.event_id != first.id
    })
    .await;

    store
        .replay_webhook_delivery(instance.id, config.id, one.id, Timestamp::now(), &Actor::system())
        .await
        .expect("replay");
    dispatcher.wake();
    let again = receiver.next().await;
    assert_eq!(header(&again, "webhook-id"), first.id.to_string(), "a replay carries the original id");
    wait_for_delivery(&store, &config, "replay recorded", |d| {
        d.id == one.id && d.attempts == 2 && d.status == DeliveryStatus::Succeeded
    })
    .await;

    let now = Timestamp::now();
    let from = now.checked_add(chrono::Duration::hours(-1)).expect("time");
    let count = store
        .replay_webhook_deliveries(instance.id, config.id, from, now, now, &Actor::system())
        .await
        .expect("replay range");
    assert_eq!(count, 2);
    dispatcher.wake();
    let ids: std::collections::HashSet<String> = [
        header(&receiver.next().await, "webhook-id").to_owned(),
        header(&receiver.next().await, "webhook-id").to_owned(),
    ]
    .into_iter()
    .collect();
    assert_eq!(ids.len(), 2, "both deliveries of the range were sent again");
    assert!(ids.contains(&first.id.to_string()));
    handle.stop().await;
}

async fn ssrf_refusals_send_nothing(store: Arc<dyn Store>) {
    let mut receiver = Receiver::start().await;
    let instance = tenant(&store).await;
    let port = receiver.addr.port();
    let urls = [
        receiver.url(),
        format!("http://localhost:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
    ];
    let mut configs = Vec::new();
    for url in &urls {
        configs.push(endpoint(&store, &instance, url).await.0);
    }
    let strict = EgressPolicy { allow_http: true, ..loopback_policy() };
    let strict = EgressPolicy { allow_cidrs: Vec::new(), ..strict };
    let one_try = DispatcherConfig { schedule: vec![Duration::ZERO], ..fast() };
    let dispatcher = dispatcher(&store, one_try, strict);
    let handle = dispatcher.spawn();
    dispatcher.sink().publish(&message(&instance, "ssrf")).await.expect("durable");
    for config in &configs {
        let dead = wait_for_delivery(&store, config, "refused", |d| d.status == DeliveryStatus::Dead).await;
        let error = dead.attempt_log[0].error.clone().unwrap_or_default();
        assert!(error.contains("refused"), "{}: {error}", config.url);
        assert_eq!(dead.attempt_log[0].status_code, None);
    }
    assert!(receiver.nothing_yet(), "no request reached the receiver");
    handle.stop().await;
}

async fn a_restart_mid_schedule_loses_nothing(store: Arc<dyn Store>) {
    let mut receiver = Receiver::start().await;
    receiver.then(Answer::Status(500));
    let instance = tenant(&store).await;
    let (config, _) = endpoint(&store, &instance, &receiver.url()).await;
    let slow_retry = DispatcherConfig { schedule: vec![Duration::ZERO, Duration::from_millis(300)], ..fast() };
    let first = dispatcher(&store, slow_retry.clone(), loopback_policy());
    let handle = first.spawn();
    let event = message(&instance, "survive");
    first.sink().publish(&event).await.expect("durable");
    receiver.next().await;
    wait_for_delivery(&store, &config, "first attempt recorded", |d| {
        d.attempts == 1 && d.status == DeliveryStatus::Pending
    })
    .await;
    handle.abort();

    // A new dispatcher (a restarted node) on the same database picks the retry up.
    let second = dispatcher(&store, slow_retry, loopback_policy());
    let handle = second.spawn();
    let got = receiver.next().await;
    assert_eq!(header(&got, "webhook-id"), event.id.to_string());
    let done =
        wait_for_delivery(&store, &config, "delivered after restart", |d| d.status == DeliveryStatus::Succeeded).await;
    assert_eq!(done.attempts, 2);
    handle.stop().await;

    // A dispatcher that dies while a request is in flight: the lease runs out and the next one delivers it.
    receiver.then(Answer::Slow(Duration::from_millis(200)));
    let short_lease = DispatcherConfig { lease: Duration::from_millis(500), ..fast() };
    let crashing = dispatcher(
        &store,
        short_lease.clone(),
        EgressPolicy { total_timeout: Duration::from_secs(5), ..loopback_policy() },
    );
    let handle = crashing.spawn();
    let event = message(&instance, "in flight");
    crashing.sink().publish(&event).await.expect("durable");
    receiver.next().await;
    handle.abort();
    let next = dispatcher(&store, short_lease, loopback_policy());
    let handle = next.spawn();
    let got = receiver.next().await;
    assert_eq!(header(&got, "webhook-id"), event.id.to_string(), "redelivered with the same id after the lease");
    wait_for_delivery(&store, &config, "redelivered", |d| {
        d.event_id == event.id && d.status == DeliveryStatus::Succeeded
    })
    .await;
    handle.stop().await;
}

/// The owner renews its lease while an attempt runs, so an attempt four leases long is neither taken over by
/// another dispatcher on the same database nor sent twice. Without renewal the other dispatcher (or the owner's own
/// next claim) takes the row once the lease runs out and the receiver gets a second request.
async fn a_slow_attempt_keeps_its_lease_while_the_node_lives(store: Arc<dyn Store>) {
    let mut receiver = Receiver::start().await;
    let lease = Duration::from_millis(600);
    receiver.then(Answer::Slow(lease * 4));
    let instance = tenant(&store).await;
    let (config, _) = endpoint(&store, &instance, &receiver.url()).await;
    let short = DispatcherConfig { lease, ..fast() };
    let patient = EgressPolicy { total_timeout: Duration::from_secs(10), ..loopback_policy() };
    let owner = dispatcher(&store, short.clone(), patient.clone());
    let owner_handle = owner.spawn();
    let event = message(&instance, "slow");
    owner.sink().publish(&event).await.expect("durable");
    receiver.next().await;
    // Another node, polling every 100 ms, ready to take over anything whose lease runs out.
    let other = dispatcher(&store, short, patient);
    let other_handle = other.spawn();

    let done =
        wait_for_delivery(&store, &config, "the slow attempt recorded", |d| d.status == DeliveryStatus::Succeeded)
            .await;
    assert_eq!((done.event_id, done.attempts), (event.id, 1), "one attempt, recorded by its owner");
    assert_eq!(done.attempt_log[0].response_excerpt.as_deref(), Some("late"), "the slow answer was the one recorded");
    assert!(receiver.nothing_yet(), "nobody took the row over and sent it again");
    assert_eq!((owner.metrics().snapshot().leases_lost, other.metrics().snapshot().recovered), (0, 0));
    other_handle.stop().await;
    owner_handle.stop().await;
}

/// A dispatcher crashes (its task aborted) with deliveries in flight; a second one sends them all again once
/// their lease runs out: not before, and within about a lease (the deadline is derived from the configured lease),
/// and it counts them as recovered.
async fn a_crashed_dispatchers_deliveries_are_taken_over_within_the_lease(store: Arc<dyn Store>) {
    const EVENTS: usize = 5;
    let mut receiver = Receiver::start().await;
    for _ in 0..EVENTS {
        receiver.then(Answer::Slow(Duration::from_secs(120)));
    }
    let instance = tenant(&store).await;
    let (config, _) = endpoint(&store, &instance, &receiver.url()).await;
    let leased = DispatcherConfig { lease: Duration::from_secs(1), ..fast() };
    let crashing = dispatcher(
        &store,
        leased.clone(),
        EgressPolicy { total_timeout: Duration::from_secs(300), ..loopback_policy() },
    );
    let handle = crashing.spawn();
    let mut sent = std::collections::BTreeSet::new();
    for n in 0..EVENTS {
        let event = message(&instance, &format!("in flight {n}"));
        crashing.sink().publish(&event).await.expect("durable");
        sent.insert(event.id.to_string());
    }
    for _ in 0..EVENTS {
        receiver.next().await;
    }
    handle.abort();
    let crashed_at = tokio::time::Instant::now();

    let survivor = dispatcher(&store, leased.clone(), loopback_policy());
    let survivor_handle = survivor.spawn();
    // The leases run out at most one lease after the crash (they were renewed up to a third of a lease before it);
    // the survivor looks again within its poll interval; one more lease covers a slow machine. The old hold was
    // 40 s.
    let deadline = crashed_at + leased.lease * 2 + leased.poll_interval + Duration::from_secs(1);
    let mut redelivered = std::collections::BTreeSet::new();
    while redelivered.len() < EVENTS {
        let got = tokio::time::timeout_at(deadline, receiver.seen.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("only {} of {EVENTS} redelivered within {:?}", redelivered.len(), deadline - crashed_at)
            })
            .expect("receiver open");
        redelivered.insert(header(&got, "webhook-id").to_owned());
    }
    let took = crashed_at.elapsed();
    assert!(took >= leased.lease / 2, "taken over after {took:?}, before the lease could have run out");
    assert_eq!(redelivered, sent, "every delivery the crashed dispatcher held, with its own webhook-id");
    let recorded = eventually_within(Duration::from_secs(10), "every redelivery recorded", async || {
        let page =
            store.list_webhook_deliveries(config.instance_id, config.id, PageRequest::first(10)).await.expect("list");
        let done = page.items.iter().filter(|d| d.status == DeliveryStatus::Succeeded).count();
        (done == EVENTS).then_some(page.items)
    })
    .await;
    assert!(recorded.iter().all(|d| d.attempts == 1), "one recorded attempt each: {recorded:?}");
    assert_eq!(survivor.metrics().snapshot().recovered, EVENTS as u64, "counted as recovered");
    survivor_handle.stop().await;
}

// ---- backends ----------------------------------------------------------------------------------------------------

/// Each test gets a fresh, migrated store on each backend (the database is dropped even if the test panics).
async fn store(database: &TestDatabase) -> Arc<dyn Store> {
    database.store().await
}

gw_test_support::on_both_backends!(store =>
    signed_delivery_succeeds,
    retries_after_500_and_after_a_timeout,
    gone_disables_and_retries_run_out,
    failing_too_long_disables_with_audit_and_event,
    replay_one_and_a_range,
    ssrf_refusals_send_nothing,
    a_restart_mid_schedule_loses_nothing,
    a_slow_attempt_keeps_its_lease_while_the_node_lives,
    a_crashed_dispatchers_deliveries_are_taken_over_within_the_lease,
);
