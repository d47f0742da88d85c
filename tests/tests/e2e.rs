//! End-to-end: the real `gateway` binary over HTTP, on SQLite and on PostgreSQL.
//!
//! Over 800 lines: the walkthroughs of the API's areas, one test each, share this file's helpers (`As`, `tenant`,
//! `paired_instance`, `eventually`); the topics with their own set-up (outages, plugins, cluster, ...) are modules.

#[macro_use]
extern crate gw_test_support;

use gw_e2e::{Backend, Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, gateway_command, run_to_exit};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Built by Cargo for this run (this file is a test target of the `gateway` package).
const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway");

on_both_backends!(
    serves_health_readiness_openapi_and_problems,
    first_run_creates_the_operator_once,
    sigterm_shuts_down_cleanly,
    first_tenant_walkthrough,
    other_tenants_get_404_and_members_get_403_on_every_endpoint,
    bad_input_is_refused_with_stable_problem_types_and_writes_nothing,
    refresh_tokens_rotate_and_reuse_is_detected,
    expired_and_foreign_tokens_are_refused_with_their_own_types,
    api_keys_are_shown_once_and_rotate,
    api_keys_call_the_api_with_rate_limits_and_exact_usage,
    sandbox_instances_pair_and_message_each_other_with_receipts,
    sends_are_idempotent_and_bad_sends_write_nothing,
    a_restarted_server_resumes_connected_instances_without_pairing,
    a_whatsapp_instance_that_cannot_connect_backs_off_with_a_clear_error,
    media_by_url_is_fetched_under_the_egress_rules,
    webhooks_deliver_signed_events_retry_replay_and_rotate,
    a_killed_nodes_webhook_deliveries_go_out_within_the_lease,
    quota_usage_and_daily_stats,
);

mod cluster;
mod deploy;
mod failover;
mod hardening;
mod messaging;
mod multi_node;
mod multi_node_forwarding;
mod openapi_fuzz;
mod outages;
mod plugins;
mod secrets;

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

async fn serves_health_readiness_openapi_and_problems(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let health = app.client.get(app.url("/healthz")).header("x-request-id", "e2e-42").send().await.expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.headers()["x-request-id"], "e2e-42", "a sane request id is echoed");
    let ready: Value = app.client.get(app.url("/readyz")).send().await.expect("readyz").json().await.expect("json");
    let expected = if database.url.starts_with("sqlite") { "sqlite" } else { "postgres" };
    assert_eq!(ready, json!({"status": "ready", "database": expected}));

    let missing = app
        .client
        .get(app.url("/no/such/thing"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.headers()["content-type"], "application/problem+json");
    let generated = missing.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    assert_ne!(generated, "bad id with spaces", "an unacceptable request id is replaced");
    let body: Value = missing.json().await.expect("json");
    assert_eq!(
        (problem_type(&body), body["instance"].as_str(), body["request_id"].as_str()),
        ("/problems/route-not-found", Some("/no/such/thing"), Some(generated.as_str()))
    );

    let doc: Value =
        app.client.get(app.url("/openapi.json")).send().await.expect("openapi").json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths: Vec<&str> = doc["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
    for path in [
        "/healthz",
        "/readyz",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/me",
        "/v1/subscriptions",
        "/v1/subscriptions/{id}",
        "/v1/subscriptions/{id}/users",
        "/v1/users/{id}/password",
        "/v1/instances",
        "/v1/instances/{id}",
        "/v1/audit-log",
    ] {
        assert!(paths.contains(&path), "{path} missing from the OpenAPI document: {paths:?}");
    }
    docs_are_served_from_the_binary(&app).await;
    let described = app.client.get(app.url("/problems/instance-limit-reached")).send().await.expect("problem doc");
    assert_eq!(described.status(), StatusCode::OK);
}

/// `/docs` works offline: the page names no other origin, and the UI script it loads is the vendored bundle, served
/// by the gateway itself with a long-lived cache header.
async fn docs_are_served_from_the_binary(app: &TestApp) {
    let docs = app.client.get(app.url("/docs")).send().await.expect("docs");
    assert_eq!(docs.status(), StatusCode::OK);
    assert_eq!(docs.headers()["content-type"], "text/html; charset=utf-8");
    let policy = docs.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    assert!(policy.starts_with("default-src 'self';") && !policy.contains("http"), "{policy}");
    let page = docs.text().await.expect("html");
    assert!(page.contains("url: 'openapi.json'"), "the page loads this server's document: {page}");
    for external in ["http:", "https:", "//"] {
        assert!(!page.contains(external), "the page names another origin ({external}): {page}");
    }
    let scripts: Vec<&str> = page.split("<script src=\"").skip(1).filter_map(|rest| rest.split('"').next()).collect();
    assert_eq!(scripts.len(), 1, "{page}");
    let script = app.client.get(app.url(&format!("/{}", scripts[0]))).send().await.expect("script");
    assert_eq!(script.status(), StatusCode::OK, "{}", scripts[0]);
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(script.headers()["cache-control"], "public, max-age=31536000, immutable");
    let served = script.bytes().await.expect("bundle");
    let vendored_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../gw-http/assets/scalar/standalone.js");
    let vendored = std::fs::read(vendored_path).expect("the vendored bundle");
    assert!(
        served.as_ref() == vendored.as_slice(),
        "the served script is the vendored bundle ({} bytes)",
        served.len()
    );
}

async fn first_run_creates_the_operator_once(database: &Database) {
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command.env_remove("GATEWAY_ADMIN_PASSWORD").env("GATEWAY_ADMIN_EMAIL", "root@gateway.test");
    let app = TestApp::spawn_with(command).await;
    let out = app.stdout.text();
    let password = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .unwrap_or_else(|| panic!("generated password printed once:\n{out}"))
        .trim()
        .to_owned();
    assert_eq!(password.len(), 24);
    assert!(!app.stderr.text().contains(&password), "the password never reaches the logs");
    As::login(&app, "root@gateway.test", &password).await;
    assert_eq!(app.terminate().await.code(), Some(0));

    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command.env_remove("GATEWAY_ADMIN_PASSWORD").env("GATEWAY_ADMIN_EMAIL", "root@gateway.test");
    let again = TestApp::spawn_with(command).await;
    assert!(!again.stdout.text().contains("password:"), "no second operator, no second password");
    As::login(&again, "root@gateway.test", &password).await;
}

async fn sigterm_shuts_down_cleanly(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let status = app.terminate().await;
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
}

/// The README's "first tenant in five commands", over HTTP.
async fn first_tenant_walkthrough(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (status, subscription) =
        operator.call(Method::POST, "/v1/subscriptions", Some(json!({"name": "Acme", "tier": "starter"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{subscription}");
    assert_eq!(
        (subscription["limits"]["max_instances"].as_i64(), subscription["tier"].as_str()),
        (Some(3), Some("starter"))
    );
    let sid = subscription["id"].as_str().expect("id");
    let (status, owner) = operator
        .call(Method::POST, &format!("/v1/subscriptions/{sid}/users"), Some(json!({"email": "owner@acme.test", "password": "a long enough password", "name": "Ann", "role": "owner"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{owner}");
    assert!(owner.get("password").is_none(), "no password or hash in responses");

    let ann = As::login(&app, "owner@acme.test", "a long enough password").await;
    let (status, me) = ann.call(Method::GET, "/v1/me", None).await;
    assert_eq!(
        (status, me["role"].as_str(), me["subscription_id"].as_str()),
        (StatusCode::OK, Some("owner"), Some(sid))
    );
    let (status, instance) = ann
        .call(Method::POST, "/v1/instances", Some(json!({"name": "support", "settings": {"min_interval_ms": 1500}})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{instance}");
    assert_eq!((instance["status"].as_str(), instance["driver"].as_str()), (Some("created"), Some("sandbox")));
    let iid = instance["id"].as_str().expect("id");
    let (status, renamed) =
        ann.call(Method::PATCH, &format!("/v1/instances/{iid}"), Some(json!({"name": "sales"}))).await;
    assert_eq!((status, renamed["name"].as_str()), (StatusCode::OK, Some("sales")));
    let (_, list) = ann.call(Method::GET, "/v1/instances", None).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let (status, read) = ann.call(Method::GET, &format!("/v1/subscriptions/{sid}"), None).await;
    assert_eq!((status, read["current_instances"].as_i64()), (StatusCode::OK, Some(1)));

    let (status, dup) = ann.call(Method::POST, "/v1/instances", Some(json!({"name": "sales"}))).await;
    assert_eq!((status, dup["key"].as_str()), (StatusCode::CONFLICT, Some("instance_name")), "{dup}");
    for name in ["two", "three"] {
        let (status, _) = ann.call(Method::POST, "/v1/instances", Some(json!({"name": name}))).await;
        assert_eq!(status, StatusCode::CREATED, "the refused duplicate gave its slot back");
    }
    let (status, over) = ann.call(Method::POST, "/v1/instances", Some(json!({"name": "four"}))).await;
    assert_eq!((status, problem_type(&over)), (StatusCode::CONFLICT, "/problems/instance-limit-reached"));
    let (status, _) = ann.call(Method::DELETE, &format!("/v1/instances/{iid}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, audit) = ann.call(Method::GET, "/v1/audit-log?resource=instance&limit=2", None).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    assert_eq!(audit["items"][0]["action"], "instance.delete");
    assert_eq!(audit["items"][0]["ip_address"], "127.0.0.1");
    let cursor = audit["next_cursor"].as_str().expect("more pages");
    let (_, rest) =
        ann.call(Method::GET, &format!("/v1/audit-log?resource=instance&limit=2&cursor={cursor}"), None).await;
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(2));

    let (status, _) = operator.call(Method::POST, &format!("/v1/subscriptions/{sid}/deactivate"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = ann.call(Method::GET, "/v1/instances", None).await;
    assert_eq!((status, problem_type(&refused)), (StatusCode::UNAUTHORIZED, "/problems/account-inactive"));
    let (status, _) = operator.call(Method::POST, &format!("/v1/subscriptions/{sid}/activate"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = ann.call(Method::GET, "/v1/instances", None).await;
    assert_eq!(status, StatusCode::OK, "nothing was deleted by deactivation");
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

/// Every session-engine endpoint of one instance that changes something: owners (and operators) only.
fn session_manage_endpoints(iid: &str) -> Vec<(Method, String, Option<Value>)> {
    let contact = "0190b1a2-0000-7000-8000-000000000001";
    let chat = "15550001111@s.whatsapp.net";
    vec![
        (Method::POST, format!("/v1/instances/{iid}/connect"), None),
        (Method::POST, format!("/v1/instances/{iid}/restart"), None),
        (Method::POST, format!("/v1/instances/{iid}/logout"), None),
        (Method::POST, format!("/v1/instances/{iid}/pair-code"), Some(json!({"phone": "+15550001111"}))),
        (Method::POST, format!("/v1/instances/{iid}/messages"), Some(json!({"to": "+15550001111", "text": "x"}))),
        (Method::POST, format!("/v1/instances/{iid}/chats/{chat}/read"), Some(json!({"message_ids": ["X"]}))),
        (Method::POST, format!("/v1/instances/{iid}/chats/{chat}/presence"), Some(json!({"presence": "composing"}))),
        (Method::POST, format!("/v1/instances/{iid}/contacts/{contact}/block"), None),
        (Method::POST, format!("/v1/instances/{iid}/contacts/{contact}/unblock"), None),
        (Method::POST, format!("/v1/sandbox/instances/{iid}/scan"), None),
        (
            Method::POST,
            format!("/v1/sandbox/instances/{iid}/inbound"),
            Some(json!({"from": "+15550001111", "text": "x"})),
        ),
        (Method::POST, format!("/v1/sandbox/instances/{iid}/drop"), None),
        (Method::POST, format!("/v1/sandbox/instances/{iid}/unlink"), None),
        (Method::POST, format!("/v1/sandbox/instances/{iid}/replace"), None),
    ]
}

/// Every session-engine endpoint of one instance that only reads: members may use them too.
fn session_read_endpoints(iid: &str) -> Vec<(Method, String, Option<Value>)> {
    let contact = "0190b1a2-0000-7000-8000-000000000001";
    let message = "0190b1a2-0000-7000-8000-000000000002";
    vec![
        (Method::GET, format!("/v1/instances/{iid}/qr"), None),
        (Method::GET, format!("/v1/instances/{iid}/qr.png"), None),
        (Method::GET, format!("/v1/instances/{iid}/messages"), None),
        (Method::GET, format!("/v1/instances/{iid}/messages/{message}"), None),
        (Method::GET, format!("/v1/instances/{iid}/contacts"), None),
        (Method::GET, format!("/v1/instances/{iid}/contacts/{contact}"), None),
        (Method::GET, format!("/v1/instances/{iid}/groups"), None),
        (Method::POST, format!("/v1/instances/{iid}/contacts/check"), Some(json!({"numbers": ["+15550001111"]}))),
        (Method::GET, format!("/v1/instances/{iid}/events"), None),
    ]
}

/// Every webhook endpoint of one instance that changes something: owners (and operators) only.
fn webhook_manage_endpoints(iid: &str, wid: &str) -> Vec<(Method, String, Option<Value>)> {
    let did = "0190b1a2-0000-7000-8000-000000000003";
    let hooks = format!("/v1/instances/{iid}/webhooks");
    vec![
        (Method::POST, hooks.clone(), Some(json!({"url": "https://hooks.example.com/x"}))),
        (Method::PATCH, format!("{hooks}/{wid}"), Some(json!({"is_active": false}))),
        (Method::POST, format!("{hooks}/{wid}/rotate-secret"), None),
        (Method::POST, format!("{hooks}/{wid}/test"), None),
        (Method::POST, format!("{hooks}/{wid}/deliveries/{did}/replay"), None),
        (
            Method::POST,
            format!("{hooks}/{wid}/replay"),
            Some(json!({"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"})),
        ),
        (Method::DELETE, format!("{hooks}/{wid}"), None),
    ]
}

/// Every webhook endpoint of one instance that only reads: members may use them too.
fn webhook_read_endpoints(iid: &str, wid: &str) -> Vec<(Method, String, Option<Value>)> {
    let did = "0190b1a2-0000-7000-8000-000000000003";
    let hooks = format!("/v1/instances/{iid}/webhooks");
    vec![
        (Method::GET, hooks.clone(), None),
        (Method::GET, format!("{hooks}/{wid}"), None),
        (Method::GET, format!("{hooks}/{wid}/deliveries"), None),
        (Method::GET, format!("{hooks}/{wid}/deliveries/{did}"), None),
    ]
}

/// Every endpoint of one instance's API keys; only owners (and operators) may use any of them.
fn api_key_endpoints(iid: &str, kid: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (
            Method::POST,
            format!("/v1/instances/{iid}/api-keys"),
            Some(json!({"name": "x", "permissions": ["messages:send"]})),
        ),
        (Method::GET, format!("/v1/instances/{iid}/api-keys"), None),
        (Method::GET, format!("/v1/instances/{iid}/api-keys/{kid}"), None),
        (Method::POST, format!("/v1/instances/{iid}/api-keys/{kid}/revoke"), None),
        (Method::POST, format!("/v1/instances/{iid}/api-keys/{kid}/rotate"), None),
        (Method::DELETE, format!("/v1/instances/{iid}/api-keys/{kid}"), None),
    ]
}

async fn other_tenants_get_404_and_members_get_403_on_every_endpoint(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (acme, acme_owner, acme_member) = tenant(&operator, "Acme").await;
    let (_, globex_owner, _) = tenant(&operator, "Globex").await;
    let ann = As::login(&app, &acme_owner, "a long enough password").await;
    let (_, instance) = ann.call(Method::POST, "/v1/instances", Some(json!({"name": "support"}))).await;
    let iid = instance["id"].as_str().expect("id").to_owned();
    let (_, created_key) = ann
        .call(
            Method::POST,
            &format!("/v1/instances/{iid}/api-keys"),
            Some(json!({"name": "ci", "permissions": ["messages:send"]})),
        )
        .await;
    let kid = created_key["api_key"]["id"].as_str().expect("key id").to_owned();
    let (status, created_hook) = ann
        .call(
            Method::POST,
            &format!("/v1/instances/{iid}/webhooks"),
            Some(json!({"url": "https://hooks.example.com/a"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created_hook}");
    let wid = created_hook["webhook"]["id"].as_str().expect("webhook id").to_owned();
    let (_, users) = ann.call(Method::GET, &format!("/v1/subscriptions/{acme}/users"), None).await;
    let member_id =
        users["items"].as_array().expect("users").iter().find(|u| u["role"] == "member").expect("member")["id"]
            .as_str()
            .expect("id")
            .to_owned();

    // Every endpoint of the accounts API that names one of Acme's resources.
    let endpoints: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/subscriptions/{acme}"), None),
        (Method::PATCH, format!("/v1/subscriptions/{acme}"), Some(json!({"name": "pwned"}))),
        (Method::POST, format!("/v1/subscriptions/{acme}/activate"), None),
        (Method::POST, format!("/v1/subscriptions/{acme}/deactivate"), None),
        (Method::GET, format!("/v1/subscriptions/{acme}/users"), None),
        (
            Method::POST,
            format!("/v1/subscriptions/{acme}/users"),
            Some(json!({"email": "x@acme.test", "password": "a long enough password", "name": "x", "role": "owner"})),
        ),
        (Method::POST, format!("/v1/users/{member_id}/deactivate"), None),
        (Method::POST, format!("/v1/users/{member_id}/activate"), None),
        (Method::POST, format!("/v1/users/{member_id}/password"), Some(json!({"password": "another long password"}))),
        (Method::GET, format!("/v1/instances/{iid}"), None),
        (Method::PATCH, format!("/v1/instances/{iid}"), Some(json!({"name": "pwned"}))),
        (Method::DELETE, format!("/v1/instances/{iid}"), None),
        (Method::POST, "/v1/instances".into(), Some(json!({"name": "smuggled", "subscription_id": acme}))),
        (Method::GET, format!("/v1/audit-log?subscription_id={acme}"), None),
        (Method::GET, format!("/v1/subscriptions/{acme}/usage"), None),
        (Method::GET, format!("/v1/instances/{iid}/usage"), None),
        (Method::GET, format!("/v1/instances/{iid}/stats"), None),
    ]
    .into_iter()
    .chain(api_key_endpoints(&iid, &kid))
    .chain(session_manage_endpoints(&iid))
    .chain(session_read_endpoints(&iid))
    .chain(webhook_manage_endpoints(&iid, &wid))
    .chain(webhook_read_endpoints(&iid, &wid))
    .collect();
    let intruder = As::login(&app, &globex_owner, "a long enough password").await;
    for (method, path, body) in &endpoints {
        let (status, problem) = intruder.call(method.clone(), path, body.clone()).await;
        assert_eq!(
            (status, problem_type(&problem)),
            (StatusCode::NOT_FOUND, "/problems/not-found"),
            "{method} {path}: {problem}"
        );
    }
    let (_, still) = ann.call(Method::GET, &format!("/v1/instances/{iid}"), None).await;
    assert_eq!(still["name"], "support", "nothing changed");
    let (_, list) = intruder.call(Method::GET, "/v1/instances", None).await;
    assert_eq!(list["items"], json!([]));

    // A member of Acme may read instances but not act where only an owner (or operator) may.
    let member = As::login(&app, &acme_member, "a long enough password").await;
    let owner_only: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/subscriptions/{acme}"), None),
        (Method::GET, format!("/v1/subscriptions/{acme}/usage"), None),
        (Method::PATCH, format!("/v1/subscriptions/{acme}"), Some(json!({"name": "pwned"}))),
        (Method::POST, format!("/v1/subscriptions/{acme}/deactivate"), None),
        (Method::GET, format!("/v1/subscriptions/{acme}/users"), None),
        (
            Method::POST,
            format!("/v1/subscriptions/{acme}/users"),
            Some(json!({"email": "y@acme.test", "password": "a long enough password", "name": "y", "role": "owner"})),
        ),
        (Method::POST, format!("/v1/users/{member_id}/password"), Some(json!({"password": "another long password"}))),
        (Method::POST, "/v1/instances".into(), Some(json!({"name": "mine"}))),
        (Method::PATCH, format!("/v1/instances/{iid}"), Some(json!({"name": "mine"}))),
        (Method::DELETE, format!("/v1/instances/{iid}"), None),
        (Method::GET, "/v1/audit-log".into(), None),
        (Method::GET, "/v1/subscriptions".into(), None),
        (Method::POST, "/v1/subscriptions".into(), Some(json!({"name": "Mine", "tier": "free"}))),
    ]
    .into_iter()
    .chain(api_key_endpoints(&iid, &kid))
    .chain(session_manage_endpoints(&iid))
    .chain(webhook_manage_endpoints(&iid, &wid))
    .collect();
    for (method, path, body) in &owner_only {
        let (status, problem) = member.call(method.clone(), path, body.clone()).await;
        assert_eq!(
            (status, problem_type(&problem)),
            (StatusCode::FORBIDDEN, "/problems/forbidden"),
            "{method} {path}: {problem}"
        );
    }
    let (status, _) = member.call(Method::GET, &format!("/v1/instances/{iid}"), None).await;
    assert_eq!(status, StatusCode::OK, "members read instances");
    let (status, hook) = member.call(Method::GET, &format!("/v1/instances/{iid}/webhooks/{wid}"), None).await;
    assert_eq!(status, StatusCode::OK, "members read webhooks");
    assert!(hook.get("secret").is_none(), "never the secret after creation: {hook}");

    // Anonymous callers are asked to authenticate, whatever they ask for.
    let anonymous = As::anonymous(&app);
    for (method, path, body) in endpoints.iter().chain(owner_only.iter()) {
        let (status, problem) = anonymous.call(method.clone(), path, body.clone()).await;
        assert_eq!(
            (status, problem_type(&problem)),
            (StatusCode::UNAUTHORIZED, "/problems/unauthenticated"),
            "{method} {path}"
        );
    }
}

async fn bad_input_is_refused_with_stable_problem_types_and_writes_nothing(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (sid, owner_email, _) = tenant(&operator, "Acme").await;
    let users_path = format!("/v1/subscriptions/{sid}/users");
    let (_, before) = operator.call(Method::GET, &users_path, None).await;

    let cases: Vec<(Value, &str)> = vec![
        (json!({"email": "not-an-email", "password": "a long enough password", "name": "x", "role": "owner"}), "email"),
        (json!({"email": "w@acme.test", "password": "short", "name": "x", "role": "owner"}), "password"),
        (
            json!({"email": "w@acme.test", "password": "a long enough password", "name": "x".repeat(201), "role": "owner"}),
            "name",
        ),
        (json!({"email": "w@acme.test", "password": "a long enough password", "name": "x", "role": "admin"}), "role"),
        (
            json!({"email": "w@acme.test", "password": "a long enough password", "name": "x", "role": "owner", "is_admin": true}),
            "body",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = operator.call(Method::POST, &users_path, Some(body)).await;
        assert_eq!(
            (status, problem_type(&problem)),
            (StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation"),
            "{problem}"
        );
        let fields: Vec<&str> =
            problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
        assert!(fields.contains(&field), "{field} named in {problem}");
    }
    let (_, after) = operator.call(Method::GET, &users_path, None).await;
    assert_eq!(before["items"], after["items"], "nothing written");

    let raw = app
        .client
        .post(app.url(&users_path))
        .bearer_auth(operator.token.as_deref().expect("token"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let broken = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .expect("send");
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    let body: Value = broken.json().await.expect("json");
    assert_eq!(problem_type(&body), "/problems/malformed-json");

    let bearer = |token: &str| app.client.get(app.url("/v1/me")).bearer_auth(token.to_owned()).send();
    let malformed: Value = bearer("not-a-jwt").await.expect("send").json().await.expect("json");
    assert_eq!(problem_type(&malformed), "/problems/invalid-token");
    // An unsigned token (`alg: none`) is refused.
    let alg_none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.";
    let none: Value = bearer(alg_none).await.expect("send").json().await.expect("json");
    assert_eq!(problem_type(&none), "/problems/invalid-token");

    let (status, wrong) = As::anonymous(&app)
        .call(Method::POST, "/v1/auth/login", Some(json!({"email": owner_email, "password": "wrong password!"})))
        .await;
    assert_eq!((status, problem_type(&wrong)), (StatusCode::UNAUTHORIZED, "/problems/invalid-credentials"));
    let (status, bad_tier) =
        operator.call(Method::POST, "/v1/subscriptions", Some(json!({"name": "X", "tier": "gold"}))).await;
    assert_eq!((status, problem_type(&bad_tier)), (StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation"));
    let (status, bad_cursor) = operator.call(Method::GET, "/v1/subscriptions?cursor=garbage", None).await;
    assert_eq!((status, problem_type(&bad_cursor)), (StatusCode::BAD_REQUEST, "/problems/invalid-cursor"));
    let (status, bad_id) = operator.call(Method::GET, "/v1/instances/not-an-id", None).await;
    assert_eq!((status, problem_type(&bad_id)), (StatusCode::NOT_FOUND, "/problems/not-found"));

    for _ in 0..5 {
        As::anonymous(&app)
            .call(Method::POST, "/v1/auth/login", Some(json!({"email": owner_email, "password": "wrong password!"})))
            .await;
    }
    let throttled = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": owner_email, "password": "a long enough password"}))
        .send()
        .await
        .expect("send");
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = throttled.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!(retry_after > 0);
}

async fn refresh_tokens_rotate_and_reuse_is_detected(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let anonymous = As::anonymous(&app);
    let (_, first) = anonymous
        .call(Method::POST, "/v1/auth/login", Some(json!({"email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD})))
        .await;
    assert_eq!(
        (first["token_type"].as_str(), first["expires_in"].as_i64().map(|s| s > 800 && s <= 900)),
        (Some("Bearer"), Some(true))
    );
    let refresh = first["refresh_token"].as_str().expect("refresh").to_owned();
    let (status, second) =
        anonymous.call(Method::POST, "/v1/auth/refresh", Some(json!({"refresh_token": refresh}))).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let (status, reused) =
        anonymous.call(Method::POST, "/v1/auth/refresh", Some(json!({"refresh_token": refresh}))).await;
    assert_eq!((status, problem_type(&reused)), (StatusCode::UNAUTHORIZED, "/problems/refresh-token-reused"));
    let (status, revoked) =
        anonymous.call(Method::POST, "/v1/auth/refresh", Some(json!({"refresh_token": second["refresh_token"]}))).await;
    assert_eq!((status, problem_type(&revoked)), (StatusCode::UNAUTHORIZED, "/problems/invalid-refresh-token"));

    let (_, third) = anonymous
        .call(Method::POST, "/v1/auth/login", Some(json!({"email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD})))
        .await;
    let (status, _) =
        anonymous.call(Method::POST, "/v1/auth/logout", Some(json!({"refresh_token": third["refresh_token"]}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) =
        anonymous.call(Method::POST, "/v1/auth/refresh", Some(json!({"refresh_token": third["refresh_token"]}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_configuration_keys_exit_64_naming_the_key() {
    let database = Database::create(Backend::Sqlite).await.expect("sqlite");
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command.env("GATEWAY_SERVER_LISTNE", "127.0.0.1:1").arg("serve");
    let (code, _, stderr) = run_to_exit(command).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("GATEWAY_SERVER_LISTNE") && stderr.contains("listne"), "{stderr}");

    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command.env("GATEWAY_DATABASE_MAX_CONNECTIONS", "lots").arg("serve");
    let (code, _, stderr) = run_to_exit(command).await;
    assert_eq!(code, Some(64));
    assert!(stderr.contains("max_connections"), "{stderr}");
}

#[tokio::test]
async fn an_unreachable_database_is_one_line_and_a_nonzero_exit() {
    let database = Database::create(Backend::Sqlite).await.expect("sqlite");
    let mut command = gateway_command(GATEWAY, "postgres://nobody:s3cret@127.0.0.1:1/gateway", &database.dir);
    command.arg("serve");
    let (code, _, stderr) = run_to_exit(command).await;
    assert_eq!(code, Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('{')).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("error: cannot open database postgres://nobody:***@127.0.0.1:1/gateway"), "{stderr}");
    assert!(!stderr.contains("s3cret") && !stderr.contains("panicked"), "{stderr}");

    // A file that is not a database: refused the same way.
    let corrupt = database.dir.join("corrupt.db");
    std::fs::write(&corrupt, b"this is not a sqlite database, just text that is long enough to have a header")
        .expect("write");
    let mut command = gateway_command(GATEWAY, &format!("sqlite://{}", corrupt.display()), &database.dir);
    command.arg("serve");
    let (code, _, stderr) = run_to_exit(command).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("error: cannot") && !stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn migrate_applies_and_exits() {
    let database = Database::create(Backend::Sqlite).await.expect("sqlite");
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command.arg("migrate");
    let (code, stdout, stderr) = run_to_exit(command).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("migrations applied"), "{stdout}");
}

/// Tokens minted with the server's (configured) key but expired, or for another audience or issuer.
async fn expired_and_foreign_tokens_are_refused_with_their_own_types(database: &Database) {
    use gw_accounts::{JwtSettings, SigningKey, TokenIssuer};
    use gw_core::{Redacted, Timestamp, UserRole};

    // The test knows the server's key because it configures it (the default is a generated one).
    const JWT_SECRET: &str = "the-e2e-test-jwt-secret-of-enough-length";
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command.env("GATEWAY_AUTH_JWT_SECRET", JWT_SECRET);
    let app = TestApp::spawn_with(command).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, me) = operator.call(Method::GET, "/v1/me", None).await;
    let user_id = me["id"].as_str().expect("id").parse().expect("user id");
    let issuer = |audience: &str, issuer: &str| {
        TokenIssuer::new(JwtSettings {
            active: SigningKey { kid: "k1".into(), secret: Redacted::new(JWT_SECRET.into()) },
            previous: vec![],
            issuer: issuer.into(),
            audience: audience.into(),
            access_ttl: chrono::Duration::minutes(15),
            leeway_secs: 0,
        })
    };
    let now = Timestamp::now();
    let (valid, _) = issuer("gateway-api", "gateway").issue(user_id, None, UserRole::Admin, now).expect("mint");
    let an_hour_ago = now.checked_add(chrono::Duration::hours(-1)).expect("in range");
    let (expired, _) =
        issuer("gateway-api", "gateway").issue(user_id, None, UserRole::Admin, an_hour_ago).expect("mint");
    let (foreign_audience, _) =
        issuer("another-api", "gateway").issue(user_id, None, UserRole::Admin, now).expect("mint");
    let (foreign_issuer, _) =
        issuer("gateway-api", "someone-else").issue(user_id, None, UserRole::Admin, now).expect("mint");

    let call = |token: String| As { app: &app, token: Some(token) };
    let (status, _) = call(valid).call(Method::GET, "/v1/me", None).await;
    assert_eq!(status, StatusCode::OK, "the minting matches the server's settings");
    for (token, expected) in [
        (expired, "/problems/token-expired"),
        (foreign_audience, "/problems/invalid-token"),
        (foreign_issuer, "/problems/invalid-token"),
    ] {
        let (status, problem) = call(token).call(Method::GET, "/v1/me", None).await;
        assert_eq!((status, problem_type(&problem)), (StatusCode::UNAUTHORIZED, expected), "{problem}");
    }
}

async fn api_keys_are_shown_once_and_rotate(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Acme").await;
    let ann = As::login(&app, &owner_email, "a long enough password").await;
    let (_, instance) = ann.call(Method::POST, "/v1/instances", Some(json!({"name": "support"}))).await;
    let iid = instance["id"].as_str().expect("id");
    let keys = format!("/v1/instances/{iid}/api-keys");

    let (status, created) = ann
        .call(
            Method::POST,
            &keys,
            Some(json!({"name": "backend", "permissions": ["messages:send", "contacts:read"], "rate_limit": 600})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["key"].as_str().expect("full key shown once");
    assert!(secret.starts_with("gwk_") && secret.len() == 76, "{secret}");
    let kid = created["api_key"]["id"].as_str().expect("id");

    let (_, listed) = ann.call(Method::GET, &keys, None).await;
    let text = listed.to_string();
    assert!(!text.contains(secret) && !text.contains(&secret[27..60]), "never shown again: {text}");
    assert_eq!(listed["items"][0]["permissions"], json!(["messages:send", "contacts:read"]));
    assert!(listed["items"][0].get("key_hash").is_none());

    let (status, bad) =
        ann.call(Method::POST, &keys, Some(json!({"name": "x", "permissions": ["admin:everything"]}))).await;
    assert_eq!((status, problem_type(&bad)), (StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation"));

    let (status, rotated) =
        ann.call(Method::POST, &format!("{keys}/{kid}/rotate"), Some(json!({"grace_period_secs": 60}))).await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    assert_ne!(rotated["key"], created["key"]);
    assert!(rotated["previous"]["expires_at"].is_string() && rotated["previous"]["is_active"] == json!(true));
    let (status, _) = ann.call(Method::POST, &format!("{keys}/{kid}/rotate"), None).await;
    assert_eq!(status, StatusCode::CREATED, "no body takes the default grace");

    let (status, revoked) = ann.call(Method::POST, &format!("{keys}/{kid}/revoke"), None).await;
    assert_eq!((status, revoked["is_active"].as_bool()), (StatusCode::OK, Some(false)));
    let (status, _) = ann.call(Method::DELETE, &format!("{keys}/{kid}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = ann.call(Method::GET, &format!("{keys}/{kid}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, audit) = ann.call(Method::GET, "/v1/audit-log?resource=api_key", None).await;
    let actions: Vec<&str> =
        audit["items"].as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(
        actions.contains(&"api_key.create")
            && actions.contains(&"api_key.revoke")
            && actions.contains(&"api_key.delete"),
        "{actions:?}"
    );
}

/// Readiness follows the database: a PostgreSQL database dropped under the running server makes `/readyz` answer
/// 503 problem+json while `/healthz` (the process) stays 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_the_database_goes_away() {
    let Some(database) = Database::create(Backend::Postgres).await else { return };
    let app = TestApp::spawn(GATEWAY, &database).await;
    drop(database); // drops the database, closing the server's connections
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let response = app.client.get(app.url("/readyz")).send().await.expect("readyz");
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(response.headers()["content-type"], "application/problem+json");
            let body: Value = response.json().await.expect("json");
            assert_eq!(problem_type(&body), "/problems/unavailable");
            assert!(!body.to_string().contains("gw_test_"), "no internal detail leaks: {body}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "readyz never reported the lost database");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let health = app.client.get(app.url("/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
}

/// A node started while its Redis is unreachable still starts and serves: key requests are limited by its local
/// limiter (the key's burst, then 429), and `/metrics` reports the degraded limiter. (That it goes back to Redis
/// when Redis answers is shown against the real Redis in `gw-ratelimit`'s tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_while_redis_is_down_serves_with_local_limits() {
    let database = Database::create(Backend::Sqlite).await.expect("sqlite");
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let (redis_port, metrics_port) = (free_port(), free_port());
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command
        .env("GATEWAY_REDIS_URL", format!("redis://127.0.0.1:{redis_port}"))
        .env("GATEWAY_REDIS_TIMEOUT_MS", "200")
        .env("GATEWAY_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"));
    let app = TestApp::spawn_with(command).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Degraded").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (_, instance) = owner.call(Method::POST, "/v1/instances", Some(json!({"name": "main"}))).await;
    let iid = instance["id"].as_str().expect("id");
    // 6 a minute: a burst of one, then refused.
    let (status, created) = owner
        .call(
            Method::POST,
            &format!("/v1/instances/{iid}/api-keys"),
            Some(json!({"name": "k", "permissions": ["messages:read"], "rate_limit": 6})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().expect("key");
    let first = with_key(&app, key, Method::GET, "/v1/key", None, None).await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    let second = with_key(&app, key, Method::GET, "/v1/key", None, None).await;
    assert_eq!(second.0, StatusCode::TOO_MANY_REQUESTS, "{}", second.1);
    assert_eq!(problem_type(&second.1), "/problems/rate-limited");

    let text = app.client.get(format!("http://127.0.0.1:{metrics_port}/metrics")).send().await.expect("metrics");
    let text = text.text().await.expect("text");
    assert_eq!(metric(&text, "gateway_ratelimit_redis_degraded{backend=\"redis+local\"}"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "gateway_ratelimit_fallback_decisions_total"), Some(2.0), "{text}");
    assert!(app.terminate().await.success());
}

async fn api_keys_call_the_api_with_rate_limits_and_exact_usage(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Acme").await;
    let ann = As::login(&app, &owner_email, "a long enough password").await;
    let mut iids = Vec::new();
    for name in ["support", "sales"] {
        let (_, instance) = ann.call(Method::POST, "/v1/instances", Some(json!({"name": name}))).await;
        iids.push(instance["id"].as_str().expect("id").to_owned());
    }
    let (iid, other) = (&iids[0], &iids[1]);
    let new_key = |rate_limit: u32| {
        let ann = &ann;
        async move {
            let (status, body) = ann
                .call(
                    Method::POST,
                    &format!("/v1/instances/{iid}/api-keys"),
                    Some(json!({"name": "k", "permissions": ["messages:read"], "rate_limit": rate_limit})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            (body["key"].as_str().expect("key").to_owned(), body["api_key"]["id"].as_str().expect("id").to_owned())
        }
    };
    let (key, key_id) = new_key(6000).await;
    let get = |path: String, key: String| app.client.get(app.url(&path)).header("x-api-key", key).send();

    let ok = get(format!("/v1/instances/{iid}/status"), key.clone()).await.expect("status");
    assert_eq!(ok.status(), StatusCode::OK);
    // The key allows 6000 a minute, its pro-tier subscription 2400 for all its keys: the tighter one is reported.
    assert_eq!(ok.headers()["ratelimit-policy"], "\"per-subscription\";q=2400;w=60");
    assert!(ok.headers()["ratelimit"].to_str().expect("ascii").starts_with("\"per-subscription\";r="));
    let body: Value = ok.json().await.expect("json");
    assert_eq!((body["id"].as_str(), body["status"].as_str()), (Some(iid.as_str()), Some("created")));
    let bearer =
        app.client.get(app.url(&format!("/v1/instances/{iid}/status"))).bearer_auth(&key).send().await.expect("bearer");
    assert_eq!(bearer.status(), StatusCode::OK, "keys also work as bearer tokens");

    let elsewhere = get(format!("/v1/instances/{other}/status"), key.clone()).await.expect("other instance");
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND, "a key reaches only its own instance");
    let mut typo = key.clone();
    typo.replace_range(40..41, if &typo[40..41] == "x" { "y" } else { "x" });
    let refused: Value =
        get(format!("/v1/instances/{iid}/status"), typo).await.expect("typo").json().await.expect("json");
    assert_eq!(problem_type(&refused), "/problems/invalid-api-key");

    // A limit of 6 per minute allows a burst of 1: the second request is refused with Retry-After.
    let (slow, _) = new_key(6).await;
    assert_eq!(get(format!("/v1/instances/{iid}/status"), slow.clone()).await.expect("first").status(), StatusCode::OK);
    let limited = get(format!("/v1/instances/{iid}/status"), slow).await.expect("second");
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    assert!(limited.headers().contains_key("ratelimit"));
    let body: Value = limited.json().await.expect("json");
    assert_eq!(problem_type(&body), "/problems/rate-limited");

    // A burst, then a graceful shutdown: every use is counted, none twice.
    for _ in 0..40 {
        assert_eq!(
            get(format!("/v1/instances/{iid}/status"), key.clone()).await.expect("burst").status(),
            StatusCode::OK
        );
    }
    assert_eq!(app.terminate().await.code(), Some(0));
    let again = TestApp::spawn(GATEWAY, database).await;
    let ann = As::login(&again, &owner_email, "a long enough password").await;
    let (_, stored) = ann.call(Method::GET, &format!("/v1/instances/{iid}/api-keys/{key_id}"), None).await;
    assert_eq!(
        stored["usage_count"].as_i64(),
        Some(43),
        "1 + 1 (bearer) + 1 (authenticated, then 404 for another instance) + 40; the typo is no use of it: {stored}"
    );
    assert!(stored["last_used_at"].is_string());

    let (status, _) = ann.call(Method::POST, &format!("/v1/instances/{iid}/api-keys/{key_id}/revoke"), None).await;
    assert_eq!(status, StatusCode::OK);
    let revoked: Value = again
        .client
        .get(again.url(&format!("/v1/instances/{iid}/status")))
        .header("x-api-key", &key)
        .send()
        .await
        .expect("revoked")
        .json()
        .await
        .expect("json");
    assert_eq!(problem_type(&revoked), "/problems/api-key-revoked", "revocation takes effect at once");
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

async fn sandbox_instances_pair_and_message_each_other_with_receipts(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Chat").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (alice, alice_jid) = paired_instance(&owner, "alice").await;
    let (bob, bob_jid) = paired_instance(&owner, "bob").await;
    let alice_key = api_key(&owner, &alice, &["messages:send", "messages:read", "contacts:read"]).await;
    let bob_key = api_key(&owner, &bob, &["messages:send", "messages:read"]).await;

    // Alice -> Bob: five messages, in order.
    let mut ids = Vec::new();
    for n in 0..5 {
        let (status, body) = with_key(
            &app,
            &alice_key,
            Method::POST,
            &format!("/v1/instances/{alice}/messages"),
            Some(json!({"to": bob_jid, "text": format!("hello {n}")})),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["status"], "queued");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    let inbound = eventually("Bob's five messages", || async {
        let (_, page) =
            with_key(&app, &bob_key, Method::GET, &format!("/v1/instances/{bob}/messages"), None, None).await;
        let items: Vec<Value> = page["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m["direction"] == "inbound")
            .collect();
        (items.len() == 5).then_some(items)
    })
    .await;
    let texts: Vec<&str> = inbound.iter().map(|m| m["text"].as_str().expect("text")).collect();
    assert_eq!(texts, ["hello 0", "hello 1", "hello 2", "hello 3", "hello 4"]);
    assert!(inbound.iter().all(|m| m["from"] == alice_jid.as_str() && m["status"] == "received"));

    // Delivered once Bob's gateway stored it; read once Bob marks it read.
    let last = ids.last().expect("ids").clone();
    let sent = eventually("delivered", || async {
        let (_, m) =
            with_key(&app, &alice_key, Method::GET, &format!("/v1/instances/{alice}/messages/{last}"), None, None)
                .await;
        (m["status"] == "delivered").then_some(m)
    })
    .await;
    let wa_id = sent["wa_message_id"].as_str().expect("wa id").to_owned();
    let (status, body) = with_key(
        &app,
        &bob_key,
        Method::POST,
        &format!("/v1/instances/{bob}/chats/{alice_jid}/read"),
        Some(json!({"message_ids": [wa_id]})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    eventually("read", || async {
        let (_, m) =
            with_key(&app, &alice_key, Method::GET, &format!("/v1/instances/{alice}/messages/{last}"), None, None)
                .await;
        (m["status"] == "read").then_some(())
    })
    .await;

    // Bob -> Alice, and a simulated external contact writing to Alice under a LID.
    let (status, _) = with_key(
        &app,
        &bob_key,
        Method::POST,
        &format!("/v1/instances/{bob}/messages"),
        Some(json!({"to": alice_jid, "text": "hi Alice"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, injected) = owner
        .call(
            Method::POST,
            &format!("/v1/sandbox/instances/{alice}/inbound"),
            Some(json!({"from": "+1 555 777 0001", "from_lid": "987654321@lid", "push_name": "Zoe", "text": "hello"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{injected}");
    assert_eq!(injected["acknowledged"], true);
    let (_, contacts) =
        with_key(&app, &alice_key, Method::GET, &format!("/v1/instances/{alice}/contacts?search=zoe"), None, None)
            .await;
    let zoe = &contacts["items"][0];
    assert_eq!(
        (zoe["jid"].as_str(), zoe["lid"].as_str(), zoe["phone"].as_str()),
        (Some("15557770001@s.whatsapp.net"), Some("987654321@lid"), Some("+15557770001"))
    );
    eventually("Bob's message at Alice", || async {
        let (_, page) = with_key(
            &app,
            &alice_key,
            Method::GET,
            &format!("/v1/instances/{alice}/messages?chat={bob_jid}"),
            None,
            None,
        )
        .await;
        page["items"].as_array().is_some_and(|i| i.iter().any(|m| m["text"] == "hi Alice")).then_some(())
    })
    .await;

    // The live stream: an event published after subscribing arrives as SSE with its type and stable id.
    let mut stream = app
        .client
        .get(app.url(&format!("/v1/instances/{alice}/events")))
        .header("x-api-key", &alice_key)
        .send()
        .await
        .expect("events");
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(stream.headers()["content-type"].to_str().expect("ct").starts_with("text/event-stream"));
    let (status, _) = owner
        .call(
            Method::POST,
            &format!("/v1/sandbox/instances/{alice}/inbound"),
            Some(json!({"from": "+1 555 777 0002", "text": "live"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mut seen = String::new();
    let wait = async {
        while !(seen.contains("event: message.received") && seen.contains("\"live\"")) {
            let chunk = stream.chunk().await.expect("chunk").expect("stream open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), wait).await.expect("the event in time");
    assert!(seen.contains("\nid: "), "{seen}");
    drop(stream);

    // A group: Alice writes to a sandbox group with Bob; Bob receives it in the group chat.
    let (status, group) = owner
        .call(
            Method::POST,
            "/v1/sandbox/groups",
            Some(json!({"subject": "Team", "participants": [alice_jid, bob_jid]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let group_jid = group["jid"].as_str().expect("jid").to_owned();
    let (_, groups) =
        with_key(&app, &alice_key, Method::GET, &format!("/v1/instances/{alice}/groups"), None, None).await;
    assert_eq!(groups[0]["jid"], group_jid.as_str(), "{groups}");
    let (status, _) = with_key(
        &app,
        &alice_key,
        Method::POST,
        &format!("/v1/instances/{alice}/messages"),
        Some(json!({"to": group_jid, "text": "hello team"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually("the group message at Bob", || async {
        let (_, page) = with_key(
            &app,
            &bob_key,
            Method::GET,
            &format!("/v1/instances/{bob}/messages?chat={group_jid}"),
            None,
            None,
        )
        .await;
        page["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|m| m["text"] == "hello team" && m["from"] == alice_jid.as_str()))
            .then_some(())
    })
    .await;

    // A key of another instance does not reach this one; a key without the scope is refused.
    let (status, _) =
        with_key(&app, &bob_key, Method::GET, &format!("/v1/instances/{alice}/messages"), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) =
        with_key(&app, &bob_key, Method::GET, &format!("/v1/instances/{bob}/contacts"), None, None).await;
    assert_eq!((status, problem_type(&body)), (StatusCode::FORBIDDEN, "/problems/insufficient-scope"));
    app.terminate().await;
}

async fn sends_are_idempotent_and_bad_sends_write_nothing(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Idem").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (iid, _) = paired_instance(&owner, "shop").await;
    let key = api_key(&owner, &iid, &["messages:send", "messages:read"]).await;
    let path = format!("/v1/instances/{iid}/messages");
    let order = json!({"to": "+1 555 000 4242", "text": "Your order shipped"});

    let (status, first) = with_key(&app, &key, Method::POST, &path, Some(order.clone()), Some("order-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, retry) = with_key(&app, &key, Method::POST, &path, Some(order.clone()), Some("order-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(retry["id"], first["id"], "a retry returns the first result");
    let (status, body) = with_key(
        &app,
        &key,
        Method::POST,
        &path,
        Some(json!({"to": "+1 555 000 4242", "text": "something else"})),
        Some("order-1"),
    )
    .await;
    assert_eq!((status, problem_type(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "/problems/idempotency-key-reused"));

    let png = base64_of(&vec![0u8; 6 * 1024 * 1024]);
    let refused = [
        (json!({"to": "not a number", "text": "x"}), StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation"),
        (
            json!({"to": "+15550004242", "type": "image", "media": {"data": png, "mime_type": "image/png"}}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "/problems/media-too-large",
        ),
        (
            json!({"to": "+15550004242", "type": "image", "media": {"data": "AAAA", "mime_type": "application/x-msdownload"}}),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "/problems/unsupported-media",
        ),
        (
            json!({"to": "+15550004242", "type": "location", "location": {"latitude": 123.0, "longitude": 0.0}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation",
        ),
    ];
    for (body, want_status, want_type) in refused {
        let (status, problem) = with_key(&app, &key, Method::POST, &path, Some(body.clone()), None).await;
        assert_eq!((status, problem_type(&problem)), (want_status, want_type), "{body}: {problem}");
    }
    let (status, problem) =
        with_key(&app, &key, Method::POST, &path, Some(json!({"to": "abc", "text": "x"})), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "to", "{problem}");

    // An instance that is not connected: 409 naming its status.
    let (_, fresh) = owner.call(Method::POST, "/v1/instances", Some(json!({"name": "fresh"}))).await;
    let fresh_id = fresh["id"].as_str().expect("id");
    let (status, problem) = owner
        .call(
            Method::POST,
            &format!("/v1/instances/{fresh_id}/messages"),
            Some(json!({"to": "+15550004242", "text": "x"})),
        )
        .await;
    assert_eq!((status, problem_type(&problem)), (StatusCode::CONFLICT, "/problems/instance-not-connected"));
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("created")), "{problem}");
    let (status, _) = owner
        .call(
            Method::POST,
            &format!("/v1/instances/{}/messages", gw_core_like_id()),
            Some(json!({"to": "+15550004242", "text": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Only the one accepted message exists.
    let (_, page) = with_key(&app, &key, Method::GET, &path, None, None).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    let (_, page) = owner.call(Method::GET, &format!("/v1/instances/{fresh_id}/messages"), None).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(0));
    app.terminate().await;
}

fn gw_core_like_id() -> &'static str {
    "0190b1a2-0000-7000-8000-000000000000"
}

fn base64_of(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn a_restarted_server_resumes_connected_instances_without_pairing(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Resume").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (iid, jid) = paired_instance(&owner, "resumed").await;
    // A network blip is not a logout: the instance reconnects by itself.
    let (status, _) = owner.call(Method::POST, &format!("/v1/sandbox/instances/{iid}/drop"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    eventually("reconnected after the blip", || async {
        let (_, body) = owner.call(Method::GET, &format!("/v1/instances/{iid}/status"), None).await;
        (body["status"] == "connected" && body["last_disconnected_at"].is_string()).then_some(())
    })
    .await;
    let (_, before) = owner.call(Method::GET, &format!("/v1/instances/{iid}"), None).await;
    assert!(app.terminate().await.success());

    let app = TestApp::spawn(GATEWAY, database).await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let after = eventually("resumed", || async {
        let (_, body) = owner.call(Method::GET, &format!("/v1/instances/{iid}"), None).await;
        (body["status"] == "connected" && body["last_connected_at"] != before["last_connected_at"]).then_some(body)
    })
    .await;
    assert_eq!(after["phone"], before["phone"], "same account, no new pairing");
    let key = api_key(&owner, &iid, &["messages:send"]).await;
    let (status, body) = with_key(
        &app,
        &key,
        Method::POST,
        &format!("/v1/instances/{iid}/messages"),
        Some(json!({"to": "+15550001111", "text": "back online"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(jid.ends_with("@s.whatsapp.net"));
    app.terminate().await;
}

async fn a_whatsapp_instance_that_cannot_connect_backs_off_with_a_clear_error(database: &Database) {
    // WhatsApp cannot be reached from here: point the real driver at a closed loopback port, with a pinned
    // client version so nothing leaves the machine.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command
        .env("GATEWAY_WHATSAPP_WS_URL", format!("ws://127.0.0.1:{port}/ws/chat"))
        .env("GATEWAY_WHATSAPP_VERSION", "2.3000.1020608496")
        .env("GATEWAY_SESSIONS_BACKOFF_INITIAL_MS", "50")
        .env("GATEWAY_SESSIONS_BACKOFF_MAX_SECS", "1");
    let app = TestApp::spawn_with(command).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Real").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (status, instance) =
        owner.call(Method::POST, "/v1/instances", Some(json!({"name": "real", "driver": "whatsapp"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{instance}");
    let iid = instance["id"].as_str().expect("id").to_owned();
    let (status, _) = owner.call(Method::POST, &format!("/v1/instances/{iid}/connect"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let failing = eventually("repeated failed attempts", || async {
        let (_, body) = owner.call(Method::GET, &format!("/v1/instances/{iid}/status"), None).await;
        (body["connection_attempts"].as_i64().unwrap_or(0) >= 2 && body["last_error"].is_string()).then_some(body)
    })
    .await;
    assert!(["disconnected", "connecting"].contains(&failing["status"].as_str().unwrap_or("")), "{failing}");
    assert!(failing["last_error_at"].is_string());
    // The node keeps serving, and the instance can be logged out like any other.
    let (status, _) = owner.call(Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = owner.call(Method::POST, &format!("/v1/instances/{iid}/logout"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "logged_out");
    assert!(app.terminate().await.success());
}

/// A loopback file server for media-by-URL tests: `/cat.png` (a small PNG), `/big.png` (declares 6 MiB),
/// `/moved` (a redirect), anything else 404. One request per connection.
async fn media_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request).lines().next().unwrap_or_default().to_owned();
                let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
                let png: &[u8] = b"\x89PNG\r\n\x1a\nnot really a picture";
                let response: Vec<u8> = match path.as_str() {
                    "/cat.png" => [
                        format!("HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", png.len()).as_bytes(),
                        png,
                    ]
                    .concat(),
                    "/big.png" => b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: 6291456\r\nconnection: close\r\n\r\n".to_vec(),
                    "/moved" => format!("HTTP/1.1 302 Found\r\nlocation: http://{addr}/cat.png\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").into_bytes(),
                    _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
                };
                let _ = socket.write_all(&response).await;
            });
        }
    });
    format!("http://{addr}")
}

async fn media_by_url_is_fetched_under_the_egress_rules(database: &Database) {
    let media = media_server().await;
    // Loopback is private: allowed here only because the operator allow-lists it, as the README documents.
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command.env("GATEWAY_WEBHOOKS_ALLOW_HTTP", "true").env("GATEWAY_WEBHOOKS_ALLOW_PRIVATE_CIDRS", "[\"127.0.0.0/8\"]");
    let app = TestApp::spawn_with(command).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Media").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (iid, _) = paired_instance(&owner, "pictures").await;
    let key = api_key(&owner, &iid, &["messages:send", "messages:read"]).await;
    let path = format!("/v1/instances/{iid}/messages");
    let image = |url: String| json!({"to": "+15550004242", "type": "image", "text": "a cat", "media": {"url": url}});

    let (status, accepted) =
        with_key(&app, &key, Method::POST, &path, Some(image(format!("{media}/cat.png"))), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["content"]["media"]["mime_type"], "image/png", "{accepted}");
    assert_eq!(accepted["content"]["media"]["size_bytes"], 28, "{accepted}");
    let mid = accepted["id"].as_str().expect("id");
    eventually("the fetched image sent", || async {
        let (_, message) = with_key(&app, &key, Method::GET, &format!("{path}/{mid}"), None, None).await;
        (message["status"] != "queued").then_some(())
    })
    .await;

    let refused = [
        (image(format!("{media}/big.png")), StatusCode::PAYLOAD_TOO_LARGE, "/problems/media-too-large"),
        (image(format!("{media}/moved")), StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation"),
        (image(format!("{media}/missing.png")), StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation"),
        // Not on the allow-list: the metadata address and other private ranges stay refused.
        (
            image("http://169.254.169.254/latest/meta-data".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation",
        ),
        (image("http://10.0.0.1/cat.png".into()), StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation"),
        (
            json!({"to": "+15550004242", "type": "image", "media": {"url": format!("{media}/cat.png"), "data": "AAAA"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation",
        ),
    ];
    for (body, want_status, want_type) in refused {
        let (status, problem) = with_key(&app, &key, Method::POST, &path, Some(body.clone()), None).await;
        assert_eq!((status, problem_type(&problem)), (want_status, want_type), "{body}: {problem}");
    }
    let (_, page) = with_key(&app, &key, Method::GET, &path, None, None).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "refused sends leave no row: {page}");
    app.terminate().await;
}

// ---- webhooks ----------------------------------------------------------------------------------------------------

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

/// The value of one sample in a Prometheus text exposition.
fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A send over the monthly quota is refused (429 quota-exceeded, with the reset time) and writes nothing; usage,
/// quota and daily statistics are reported per subscription and instance, to keys of that instance only.
async fn quota_usage_and_daily_stats(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (sid, owner_email, _) = tenant(&operator, "Acme").await;
    let (status, body) = operator
        .call(
            Method::PATCH,
            &format!("/v1/subscriptions/{sid}"),
            Some(json!({"limit_overrides": {"monthly_messages": 2}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (iid, _) = paired_instance(&owner, "shop").await;
    let key = api_key(&owner, &iid, &["messages:send", "messages:read"]).await;

    let messages_path = format!("/v1/instances/{iid}/messages");
    for text in ["one", "two"] {
        let body = json!({"to": "+1 555 010 0200", "text": text});
        let (status, body) = with_key(&app, &key, Method::POST, &messages_path, Some(body), None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let response = app
        .client
        .post(app.url(&format!("/v1/instances/{iid}/messages")))
        .header("x-api-key", &key)
        .json(&json!({"to": "+1 555 010 0200", "text": "three"}))
        .send()
        .await
        .expect("over quota");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let retry_after: u64 = response.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=31 * 24 * 3600).contains(&retry_after), "{retry_after}");
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem_type(&problem), "/problems/quota-exceeded", "{problem}");
    let (_, messages) = with_key(&app, &key, Method::GET, &format!("/v1/instances/{iid}/messages"), None, None).await;
    let texts: Vec<&str> =
        messages["items"].as_array().expect("items").iter().filter_map(|m| m["text"].as_str()).collect();
    assert!(!texts.contains(&"three"), "a refused send writes no outbox row: {texts:?}");

    let (status, usage) = owner.call(Method::GET, &format!("/v1/subscriptions/{sid}/usage"), None).await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(
        (usage["quota"]["messages_used"].as_i64(), usage["quota"]["monthly_messages"].as_i64()),
        (Some(2), Some(2))
    );
    let resets_at = usage["quota"]["resets_at"].as_str().expect("resets_at");
    assert!(resets_at.contains("-01T00:00:00"), "the first instant of next month (UTC): {resets_at}");
    let (status, bad) = owner.call(Method::GET, &format!("/v1/subscriptions/{sid}/usage?period=2026-13"), None).await;
    assert_eq!((status, problem_type(&bad)), (StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation"));

    // Counts are flushed every ~2 s: wait for the sends and the key's calls to show up.
    let stats = eventually("daily statistics", || async {
        let (status, stats) =
            with_key(&app, &key, Method::GET, &format!("/v1/instances/{iid}/stats"), None, None).await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        let today = &stats["days"][0];
        (today["messages_sent"].as_i64() == Some(2) && today["api_calls"].as_i64() >= Some(4)).then_some(stats)
    })
    .await;
    assert_eq!(stats["days"].as_array().map(Vec::len), Some(1), "{stats}");
    let usage = eventually("instance usage", || async {
        let (_, usage) = owner.call(Method::GET, &format!("/v1/instances/{iid}/usage"), None).await;
        let records = usage["records"].as_array().cloned().unwrap_or_default();
        records.iter().any(|r| r["record_type"] == "messages_sent" && r["count"] == 2).then_some(records)
    })
    .await;
    assert!(usage.iter().any(|r| r["record_type"] == "api_calls"), "{usage:?}");
    let (status, bad) = with_key(
        &app,
        &key,
        Method::GET,
        &format!("/v1/instances/{iid}/stats?from=2026-02-01&to=2026-01-01"),
        None,
        None,
    )
    .await;
    assert_eq!((status, problem_type(&bad)), (StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation"));

    // The key describes itself without a database look-up; another instance's key sees nothing of this one.
    let (status, me) = with_key(&app, &key, Method::GET, "/v1/key", None, None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["instance_id"].as_str(), Some(iid.as_str()));
    assert!(me.to_string().find("gwk_").is_none(), "never echo a secret: {me}");
    let (_, other) = owner.call(Method::POST, "/v1/instances", Some(json!({"name": "other"}))).await;
    let other_key = api_key(&owner, other["id"].as_str().expect("id"), &["messages:read"]).await;
    for path in [format!("/v1/instances/{iid}/stats"), format!("/v1/instances/{iid}/usage")] {
        let (status, problem) = with_key(&app, &other_key, Method::GET, &path, None, None).await;
        assert_eq!((status, problem_type(&problem)), (StatusCode::NOT_FOUND, "/problems/not-found"), "{path}");
    }
}
