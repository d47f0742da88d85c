//! End-to-end: webhooks: signed deliveries, retries, replay and secret rotation; a killed node's deliveries go out
//! within the lease.

use gw_e2e::{Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, gateway_command};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{As, GATEWAY, eventually, metric, paired_instance, problem_type, tenant};

on_both_backends!(
    webhooks_deliver_signed_events_retry_replay_and_rotate,
    a_killed_nodes_webhook_deliveries_go_out_within_the_lease,
);

/// A tenant's receiver on 127.0.0.1: records each request, answers the scripted statuses, then 200.
struct HookReceiver {
    url: String,
    seen: tokio::sync::mpsc::UnboundedReceiver<(reqwest::header::HeaderMap, Vec<u8>)>,
}

type HookScript = std::sync::Arc<std::sync::Mutex<Vec<u16>>>;

impl HookReceiver {
    async fn start(mut statuses: Vec<u16>) -> Self {
        statuses.reverse();
        let (tx, seen) = tokio::sync::mpsc::unbounded_channel();
        let script: HookScript = std::sync::Arc::new(std::sync::Mutex::new(statuses));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (tx, script) = (tx.clone(), script.clone());
                async move {
                    let mut copied = reqwest::header::HeaderMap::new();
                    for (name, value) in &headers {
                        if let (Ok(n), Ok(v)) = (
                            reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
                            reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
                        ) {
                            copied.insert(n, v);
                        }
                    }
                    let _ = tx.send((copied, body.to_vec()));
                    let status = script.lock().map(|mut s| s.pop()).ok().flatten().unwrap_or(200);
                    axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, seen }
    }

    async fn next(&mut self) -> (reqwest::header::HeaderMap, Vec<u8>) {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.seen.recv())
            .await
            .expect("no webhook within 10 s")
            .expect("receiver open")
    }
}

fn hook_header(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header")).to_owned()
}

fn verified(secret: &str, headers: &reqwest::header::HeaderMap, body: &[u8]) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    gw_webhooks::verify(
        secret,
        &hook_header(headers, "webhook-id"),
        &hook_header(headers, "webhook-timestamp"),
        &hook_header(headers, "webhook-signature"),
        body,
        now,
        300,
    )
    .is_ok()
}

async fn webhooks_deliver_signed_events_retry_replay_and_rotate(database: &Database) {
    let mut receiver = HookReceiver::start(vec![500]).await;
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command
        .env("GATEWAY_WEBHOOKS_ALLOW_HTTP", "true")
        .env("GATEWAY_WEBHOOKS_ALLOW_PRIVATE_CIDRS", "[\"127.0.0.0/8\"]")
        .env("GATEWAY_WEBHOOKS_SCHEDULE_MS", "[0, 100, 100]")
        .env("GATEWAY_WEBHOOKS_POLL_INTERVAL_MS", "100");
    let metrics_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        probe.local_addr().expect("addr").port()
    };
    command.env("GATEWAY_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"));
    let app = TestApp::spawn_with(command).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Hooks").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (iid, _) = paired_instance(&owner, "hooked").await;
    let hooks = format!("/v1/instances/{iid}/webhooks");

    for (url, why) in [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://10.0.0.1/hook", "private"),
        ("http://[::1]/hook", "loopback"),
        ("ftp://hooks.example.com/", "scheme"),
        ("https://user:pw@hooks.example.com/", "user name"),
    ] {
        let (status, problem) = owner.call(Method::POST, &hooks, Some(json!({"url": url}))).await;
        assert_eq!(
            (status, problem_type(&problem)),
            (StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-webhook-url")
        );
        assert!(problem["detail"].as_str().is_some_and(|d| d.contains(why)), "{url}: {problem}");
    }
    let (status, problem) =
        owner.call(Method::POST, &hooks, Some(json!({"url": receiver.url, "events": ["message.nope"]}))).await;
    assert_eq!((status, problem_type(&problem)), (StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation"));

    let (status, created) =
        owner.call(Method::POST, &hooks, Some(json!({"url": receiver.url, "events": ["message.received"]}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().expect("secret shown once").to_owned();
    assert!(secret.starts_with("whsec_"));
    let wid = created["webhook"]["id"].as_str().expect("id").to_owned();
    let (_, listed) = owner.call(Method::GET, &hooks, None).await;
    assert!(!listed.to_string().contains(&secret), "the secret is never listed");

    // An inbound message is delivered, signed; the first attempt gets a 500, the retry carries the same id.
    let (status, injected) = owner
        .call(
            Method::POST,
            &format!("/v1/sandbox/instances/{iid}/inbound"),
            Some(json!({"from": "+15550002222", "text": "hello hooks"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{injected}");
    let (first_headers, first_body) = receiver.next().await;
    let (retry_headers, retry_body) = receiver.next().await;
    let event_id = hook_header(&first_headers, "webhook-id");
    assert_eq!(hook_header(&retry_headers, "webhook-id"), event_id, "the same webhook-id on retry");
    assert_eq!(first_body, retry_body, "the same bytes on retry");
    assert!(verified(&secret, &retry_headers, &retry_body), "signature verifies");
    let body: Value = serde_json::from_slice(&retry_body).expect("json");
    assert_eq!((body["type"].as_str(), body["data"]["text"].as_str()), (Some("message.received"), Some("hello hooks")));

    let delivery = eventually("the delivery log shows success", || async {
        let (_, page) = owner.call(Method::GET, &format!("{hooks}/{wid}/deliveries"), None).await;
        let first = page["items"][0].clone();
        (first["status"] == "succeeded").then_some(first)
    })
    .await;
    assert_eq!(delivery["event_id"], event_id.as_str());
    let codes: Vec<_> =
        delivery["attempt_log"].as_array().expect("attempts").iter().map(|a| a["status_code"].clone()).collect();
    assert_eq!(codes, vec![json!(500), json!(200)]);
    let (_, config) = owner.call(Method::GET, &format!("{hooks}/{wid}"), None).await;
    assert_eq!((config["total_sent"].as_i64(), config["total_failed"].as_i64()), (Some(1), Some(1)), "{config}");
    assert!(config.get("secret").is_none());

    // A manual replay sends the same event again.
    let did = delivery["id"].as_str().expect("delivery id");
    let (status, _) = owner.call(Method::POST, &format!("{hooks}/{wid}/deliveries/{did}/replay"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (replayed, _) = receiver.next().await;
    assert_eq!(hook_header(&replayed, "webhook-id"), event_id);

    // Test fire, then rotate: during the grace period both secrets sign.
    let (status, fired) = owner.call(Method::POST, &format!("{hooks}/{wid}/test"), None).await;
    assert_eq!(
        (status, fired["success"].as_bool(), fired["status_code"].as_u64()),
        (StatusCode::OK, Some(true), Some(200)),
        "{fired}"
    );
    let (test_headers, test_body) = receiver.next().await;
    assert_eq!(serde_json::from_slice::<Value>(&test_body).expect("json")["type"], "webhook.test");
    assert!(verified(&secret, &test_headers, &test_body));
    let (status, rotated) = owner.call(Method::POST, &format!("{hooks}/{wid}/rotate-secret"), None).await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("new secret").to_owned();
    assert_ne!(new_secret, secret);
    owner
        .call(
            Method::POST,
            &format!("/v1/sandbox/instances/{iid}/inbound"),
            Some(json!({"from": "+15550002222", "text": "after rotation"})),
        )
        .await;
    let (headers, body) = receiver.next().await;
    assert_eq!(hook_header(&headers, "webhook-signature").split(' ').count(), 2, "old and new signatures");
    assert!(verified(&new_secret, &headers, &body) && verified(&secret, &headers, &body));

    // The private metrics listener shows the dispatcher's work (the 500 and the successes) beside the edge's.
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let text = eventually("webhook counters in /metrics", || async {
        let text = app.client.get(&metrics_url).send().await.ok()?.text().await.ok()?;
        let success = metric(&text, "gateway_webhook_attempts_total{outcome=\"success\"}")?;
        (success >= 2.0).then_some(text)
    })
    .await;
    assert!(metric(&text, "gateway_webhook_attempts_total{outcome=\"failure\"}").is_some_and(|v| v >= 1.0), "{text}");
    assert!(metric(&text, "gateway_webhook_latency_seconds_count").is_some_and(|v| v >= 3.0), "{text}");
    assert_eq!(metric(&text, "gateway_ratelimit_redis_degraded{backend=\"local\"}"), Some(0.0), "{text}");
    app.terminate().await;
}

/// A receiver that holds the first request open (so the delivery is in flight when its node dies) and answers
/// every later one 200 at once, recording each request's `webhook-id`.
async fn stalling_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (tx, seen) = tokio::sync::mpsc::unbounded_channel();
    let first = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let (tx, first) = (tx.clone(), first.clone());
            async move {
                let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let _ = tx.send(id);
                if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// A node killed with SIGKILL while a webhook delivery is in flight: the next node sends it again (same
/// `webhook-id`) once the short lease runs out, within a deadline derived from the configured lease (the hold
/// used to be 40 s), and logs and counts what it recovered.
async fn a_killed_nodes_webhook_deliveries_go_out_within_the_lease(database: &Database) {
    const LEASE_MS: u64 = 2_000;
    let lease = std::time::Duration::from_millis(LEASE_MS);
    let (url, mut seen) = stalling_receiver().await;
    let metrics_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        probe.local_addr().expect("addr").port()
    };
    let command = || {
        let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
        command
            .env("GATEWAY_WEBHOOKS_ALLOW_HTTP", "true")
            .env("GATEWAY_WEBHOOKS_ALLOW_PRIVATE_CIDRS", "[\"127.0.0.0/8\"]")
            .env("GATEWAY_WEBHOOKS_POLL_INTERVAL_MS", "100")
            .env("GATEWAY_WEBHOOKS_LEASE_MS", LEASE_MS.to_string())
            .env("GATEWAY_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"));
        command
    };
    let app = TestApp::spawn_with(command()).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Leases").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (iid, _) = paired_instance(&owner, "leased").await;
    let (status, created) = owner
        .call(
            Method::POST,
            &format!("/v1/instances/{iid}/webhooks"),
            Some(json!({"url": url, "events": ["message.received"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, injected) = owner
        .call(
            Method::POST,
            &format!("/v1/sandbox/instances/{iid}/inbound"),
            Some(json!({"from": "+15550003333", "text": "in flight when the node dies"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{injected}");
    let in_flight = tokio::time::timeout(std::time::Duration::from_secs(10), seen.recv())
        .await
        .expect("the first attempt within 10 s")
        .expect("receiver open");
    app.kill().await;
    let killed_at = tokio::time::Instant::now();

    let app = TestApp::spawn_with(command()).await;
    // The lease runs out at most one lease after the kill; the new node claims within its poll interval of that
    // (or of being ready, if it started later); two seconds cover a slow machine. The old hold was 40 s.
    let deadline = std::cmp::max(killed_at + lease, tokio::time::Instant::now())
        + std::time::Duration::from_millis(100)
        + std::time::Duration::from_secs(2);
    let again = tokio::time::timeout_at(deadline, seen.recv())
        .await
        .unwrap_or_else(|_| {
            panic!("not sent again within {:?} of the kill\n{}", deadline - killed_at, app.stderr.text())
        })
        .expect("receiver open");
    assert_eq!(again, in_flight, "the same delivery, with its webhook-id");
    let log = eventually("the take-over logged", || async {
        let text = app.stderr.text();
        text.contains("took over webhook deliveries whose lease had run out").then_some(text)
    })
    .await;
    assert!(log.contains("\"recovered\":1"), "{log}");
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    eventually("the recovery counted in /metrics", || async {
        let text = app.client.get(&metrics_url).send().await.ok()?.text().await.ok()?;
        (metric(&text, "gateway_webhook_deliveries_recovered_total") == Some(1.0)).then_some(())
    })
    .await;
    app.terminate().await;
}
