//! End-to-end: the server as an operator meets it: health, readiness, the API document and problem pages, first run,
//! shutdown, configuration errors, migrations, and the database or Redis going away.

use gw_e2e::{Backend, Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, gateway_command, run_to_exit};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{As, GATEWAY, metric, problem_type, tenant, with_key};

on_both_backends!(
    serves_health_readiness_openapi_and_problems,
    first_run_creates_the_operator_once,
    sigterm_shuts_down_cleanly,
);

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
