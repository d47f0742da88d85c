//! End-to-end: the real `gateway` binary over HTTP, on SQLite and on PostgreSQL.
//!
//! One test binary (one link on CI), a module per area. This file holds what the areas share: the signed-in client
//! [`As`], a tenant with its owner, a paired instance, an API key, `eventually`, and metric scraping.

#[macro_use]
extern crate gw_test_support;

use gw_e2e::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Built by Cargo for this run (this file is a test target of the `gateway` package).
const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway");

mod auth;
mod basics;
mod cluster;
mod deploy;
mod failover;
mod hardening;
mod keys_and_usage;
mod messaging;
mod multi_node;
mod multi_node_forwarding;
mod number_check;
mod openapi_fuzz;
mod outages;
mod plugins;
mod polyglot;
mod secrets;
mod tenancy;
mod webhooks;

/// A small client for one signed-in user.
struct As<'a> {
    app: &'a TestApp,
    token: Option<String>,
}

impl<'a> As<'a> {
    fn anonymous(app: &'a TestApp) -> Self {
        Self { app, token: None }
    }

    async fn login(app: &'a TestApp, email: &str, password: &str) -> Self {
        let (status, body) = Self::anonymous(app)
            .call(Method::POST, "/v1/auth/login", Some(json!({"email": email, "password": password})))
            .await;
        assert_eq!(status, StatusCode::OK, "login {email}: {body}");
        Self { app, token: Some(body["access_token"].as_str().expect("access token").to_owned()) }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.app.client.request(method, self.app.url(path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

fn problem_type(body: &Value) -> &str {
    body["type"].as_str().unwrap_or("<no problem type>")
}

async fn tenant(operator: &As<'_>, name: &str) -> (String, String, String) {
    let (_, subscription) =
        operator.call(Method::POST, "/v1/subscriptions", Some(json!({"name": name, "tier": "pro"}))).await;
    let sid = subscription["id"].as_str().expect("id").to_owned();
    let mut emails = Vec::new();
    for role in ["owner", "member"] {
        let email = format!("{role}@{}.test", name.to_lowercase());
        let (status, body) = operator
            .call(
                Method::POST,
                &format!("/v1/subscriptions/{sid}/users"),
                Some(json!({"email": email, "password": "a long enough password", "name": role, "role": role})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        emails.push(email);
    }
    let member = emails.pop().expect("member");
    (sid, emails.pop().expect("owner"), member)
}

/// Polls `probe` until it returns `Some`, for at most ten seconds: waiting on an observable condition (the server's
/// state), never a fixed sleep.
async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Option<T>) -> T {
    gw_test_support::eventually_within(std::time::Duration::from_secs(10), what, probe).await
}

/// Creates, connects and pairs a sandbox instance; returns its id and JID.
async fn paired_instance(owner: &As<'_>, name: &str) -> (String, String) {
    let (status, instance) = owner.call(Method::POST, "/v1/instances", Some(json!({"name": name}))).await;
    assert_eq!(status, StatusCode::CREATED, "{instance}");
    let iid = instance["id"].as_str().expect("id").to_owned();
    let (status, body) = owner.call(Method::POST, &format!("/v1/instances/{iid}/connect"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let qr = eventually("a QR code", || async {
        let (status, body) = owner.call(Method::GET, &format!("/v1/instances/{iid}/qr"), None).await;
        (status == StatusCode::OK).then(|| body["qr"].as_str().expect("qr").to_owned())
    })
    .await;
    assert!(qr.starts_with("2@sandbox,"), "{qr}");
    let png = owner
        .app
        .client
        .get(owner.app.url(&format!("/v1/instances/{iid}/qr.png")))
        .bearer_auth(owner.token.as_deref().expect("token"))
        .send()
        .await
        .expect("png");
    assert_eq!(png.headers()["content-type"], "image/png");
    assert!(png.bytes().await.expect("bytes").starts_with(b"\x89PNG"));
    let (status, scanned) = owner
        .call(Method::POST, &format!("/v1/sandbox/instances/{iid}/scan"), Some(json!({"display_name": name})))
        .await;
    assert_eq!(status, StatusCode::OK, "{scanned}");
    let jid = scanned["jid"].as_str().expect("jid").to_owned();
    eventually("connected", || async {
        let (_, body) = owner.call(Method::GET, &format!("/v1/instances/{iid}/status"), None).await;
        (body["status"] == "connected").then_some(())
    })
    .await;
    (iid, jid)
}

async fn api_key(owner: &As<'_>, iid: &str, scopes: &[&str]) -> String {
    let (status, body) = owner
        .call(Method::POST, &format!("/v1/instances/{iid}/api-keys"), Some(json!({"name": "k", "permissions": scopes})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["key"].as_str().expect("key").to_owned()
}

async fn with_key(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    idempotency_key: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = app.client.request(method, app.url(path)).header("x-api-key", key);
    if let Some(k) = idempotency_key {
        request = request.header("idempotency-key", k);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The value of one sample in a Prometheus text exposition.
fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
}
