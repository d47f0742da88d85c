//! End-to-end: the OpenAPI document against the real binary. Every documented operation is served, and
//! `schemathesis` (PyPI) fuzzes every operation of the embedded server (SQLite, sandbox), with path parameters
//! that name real rows, checking that nothing answers 5xx and that every status, content type and response body
//! is the one the document states.
//!
//! Without schemathesis the fuzzing part prints a loud `SKIPPED: schemathesis` and passes; with `CI` (or
//! `GW_TEST_REQUIRE_SCHEMATHESIS`) set it fails instead, and `.ci/run` installs it and refuses any skip.

use std::fmt::Write as _;
use std::time::Duration;

use gw_e2e::{Backend, Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, gateway_command};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{As, GATEWAY, eventually, paired_instance, problem_type};

/// Every scope, so that an API key reaches every operation that takes one.
const SCOPES: &[&str] = gw_accounts::api_keys::SCOPES;
/// The schemathesis run stays well under the three minutes the suite allows it.
const FUZZ_SECONDS: u32 = 100;
const EXAMPLES_PER_OPERATION: u32 = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served() {
    let database = Database::create(Backend::Sqlite).await.expect("sqlite");
    let app = TestApp::spawn(GATEWAY, &database).await;
    let document = document(&app).await;
    let placeholder = "0190b1a2-0000-7000-8000-000000000001";
    let mut served = 0;
    for (method, path) in operations(&document) {
        let concrete = path_with(&path, |_| placeholder.to_owned());
        let response = app.client.request(method.clone(), app.url(&concrete)).send().await.expect("request");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // Without credentials an operation answers 401, a public one its own answer: never "no such endpoint".
        assert!(
            !matches!(problem_type(&body), "/problems/route-not-found" | "/problems/method-not-allowed"),
            "{method} {path} is documented but not served: {status} {body}"
        );
        served += 1;
    }
    assert!(served >= 80, "the document lists {served} operations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_response() {
    let Some(st) = schemathesis() else { return };
    let database = Database::create(Backend::Sqlite).await.expect("sqlite");
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    // Webhooks may target a loopback port where nothing listens, so deliveries and test fires fail fast.
    command.env("GATEWAY_WEBHOOKS_ALLOW_HTTP", "true").env("GATEWAY_WEBHOOKS_ALLOW_PRIVATE_CIDRS", "[\"127.0.0.0/8\"]");
    let app = TestApp::spawn_with(command).await;
    let rows = Rows::create(&app).await;
    let document = document(&app).await;
    let config = database.dir.join("schemathesis.toml");
    std::fs::write(&config, rows.config(&document)).expect("write the schemathesis config");

    let output = tokio::time::timeout(
        Duration::from_secs(u64::from(FUZZ_SECONDS) + 60),
        tokio::process::Command::new(&st)
            .current_dir(&database.dir)
            .args(["--no-color", "--config-file"])
            .arg(&config)
            .arg("run")
            .arg(app.url("/openapi.json"))
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", &EXAMPLES_PER_OPERATION.to_string()])
            .args(["--max-time", &FUZZ_SECONDS.to_string()])
            .args(["--workers", "2", "--request-timeout", "10", "--seed", "13"])
            .args(["--header", &format!("Authorization: Bearer {}", rows.token)])
            .args(["--header", &format!("X-API-Key: {}", rows.key)])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("schemathesis ends within its time budget")
    .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let server_log = app.stderr.text();
    assert!(
        output.status.success(),
        "schemathesis found violations of the document (exit {:?}):\n{stdout}\n{stderr}\n--- server log ---\n{server_log}",
        output.status.code()
    );
    // The closing line counts failures and errors ("N failures, M errors, K warnings in …"); warnings (operations
    // that mostly answered 4xx to generated data) are expected of a strict server.
    let closing = stdout.lines().rev().find(|l| l.starts_with('=') && l.contains(" in ")).unwrap_or_default();
    assert!(
        !closing.contains("failure") && !closing.contains("error"),
        "schemathesis did not report a clean run:\n{stdout}\n{stderr}"
    );
    let operations = operations(&document).len();
    assert!(
        stdout.contains(&format!("Tested: {operations}\n")),
        "schemathesis did not test all {operations} operations:\n{stdout}"
    );
    eprintln!("schemathesis: {closing}");
}

/// The `st` command, or `None` (after a loud notice) where it is missing and may be skipped.
fn schemathesis() -> Option<String> {
    let st = std::env::var("GW_SCHEMATHESIS").unwrap_or_else(|_| "st".to_owned());
    let found = std::process::Command::new(&st).arg("--version").output().is_ok_and(|o| o.status.success());
    let required = std::env::var_os("CI").is_some() || std::env::var_os("GW_TEST_REQUIRE_SCHEMATHESIS").is_some();
    match (found, required) {
        (true, _) => Some(st),
        (false, false) => {
            eprintln!(
                "\n*** SKIPPED: schemathesis (`{st}`) is not installed; `pip install schemathesis==4.32.5`, or set \
                 CI=1 to make this a failure ***\n"
            );
            None
        }
        (false, true) => panic!("schemathesis (`{st}`) is not installed and the OpenAPI fuzzer is required here"),
    }
}

async fn document(app: &TestApp) -> Value {
    app.client.get(app.url("/openapi.json")).send().await.expect("openapi").json().await.expect("json")
}

fn operations(document: &Value) -> Vec<(Method, String)> {
    let mut all = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            all.push((method.to_uppercase().parse().expect("method"), path.clone()));
        }
    }
    all
}

/// `path` with each `{name}` replaced by `value(name)`.
fn path_with(path: &str, value: impl Fn(&str) -> String) -> String {
    path.split('/')
        .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => value(name),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Real rows for the fuzzer's path parameters. Operations that destroy or disable what the others need get rows of
/// their own, so the run keeps its credentials and its connected instance whatever order operations run in.
struct Rows {
    token: String,
    key: String,
    subscription: String,
    member: String,
    instance: String,
    /// Logged out, restarted, unlinked by the fuzzer.
    spare_instance: String,
    /// Renamed and deactivated by the fuzzer.
    patched_instance: String,
    /// Deleted by the fuzzer.
    doomed_instance: String,
    key_id: String,
    revoked_key_id: String,
    rotated_key_id: String,
    deleted_key_id: String,
    webhook: String,
    deleted_webhook: String,
    delivery: String,
    message: String,
    contact: String,
    chat: String,
    plugin: String,
    deleted_plugin: String,
}

impl Rows {
    async fn create(app: &TestApp) -> Self {
        let operator = As::login(app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
        let unlimited = json!({"requests_per_minute": 1_000_000, "api_rate_limit_per_minute": 1_000_000});
        let subscription = id(operator
            .call(
                Method::POST,
                "/v1/subscriptions",
                Some(json!({"name": "Fuzz", "tier": "enterprise", "limit_overrides": unlimited})),
            )
            .await);
        let users = format!("/v1/subscriptions/{subscription}/users");
        let password = "fuzzing passphrase 9876";
        for (email, role) in [("owner@fuzz.test", "owner"), ("member@fuzz.test", "member")] {
            let body = json!({"email": email, "password": password, "name": role, "role": role});
            let (status, user) = operator.call(Method::POST, &users, Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{user}");
        }
        let (_, listed) = operator.call(Method::GET, &users, None).await;
        let member = listed["items"]
            .as_array()
            .expect("users")
            .iter()
            .find(|u| u["role"] == "member")
            .and_then(|u| u["id"].as_str())
            .expect("member")
            .to_owned();
        let owner = As::login(app, "owner@fuzz.test", password).await;
        let token = owner.token.clone().expect("token");

        let (instance, _) = paired_instance(&owner, "main").await;
        let (spare_instance, _) = paired_instance(&owner, "spare").await;
        let doomed_instance = id(owner.call(Method::POST, "/v1/instances", Some(json!({"name": "doomed"}))).await);
        let patched_instance = id(owner.call(Method::POST, "/v1/instances", Some(json!({"name": "patched"}))).await);

        let keys = format!("/v1/instances/{instance}/api-keys");
        let new_key = async |name: &str| {
            let body = json!({"name": name, "permissions": SCOPES, "rate_limit": 1_000_000});
            let (status, created) = owner.call(Method::POST, &keys, Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{created}");
            (
                created["key"].as_str().expect("key").to_owned(),
                created["api_key"]["id"].as_str().expect("id").to_owned(),
            )
        };
        let (key, key_id) = new_key("fuzz").await;
        let (_, revoked_key_id) = new_key("revoked").await;
        let (_, rotated_key_id) = new_key("rotated").await;
        let (_, deleted_key_id) = new_key("deleted").await;

        // Nothing listens on the discard port: deliveries fail at once and stay in the log.
        let hooks = format!("/v1/instances/{instance}/webhooks");
        let hook = json!({"url": "http://127.0.0.1:9/hook"});
        let webhook = id_in(owner.call(Method::POST, &hooks, Some(hook.clone())).await, "webhook");
        let deleted_webhook = id_in(owner.call(Method::POST, &hooks, Some(hook)).await, "webhook");

        let inbound = json!({"from": "+15550001111", "push_name": "Fuzzy", "text": "hello"});
        let (status, body) =
            owner.call(Method::POST, &format!("/v1/sandbox/instances/{instance}/inbound"), Some(inbound)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let message = eventually("the inbound message", || async {
            let (_, page) = owner.call(Method::GET, &format!("/v1/instances/{instance}/messages"), None).await;
            page["items"][0]["id"].as_str().map(str::to_owned)
        })
        .await;
        let (contact, chat) = eventually("the contact", || async {
            let (_, page) = owner.call(Method::GET, &format!("/v1/instances/{instance}/contacts"), None).await;
            let first = &page["items"][0];
            Some((first["id"].as_str()?.to_owned(), first["jid"].as_str()?.to_owned()))
        })
        .await;
        let delivery = eventually("a webhook delivery", || async {
            let (_, page) =
                owner.call(Method::GET, &format!("/v1/instances/{instance}/webhooks/{webhook}/deliveries"), None).await;
            page["items"][0]["id"].as_str().map(str::to_owned)
        })
        .await;

        let plugin = id(owner.call(Method::POST, "/v1/plugins", Some(json!({"name": "fuzzed"}))).await);
        let deleted_plugin = id(owner.call(Method::POST, "/v1/plugins", Some(json!({"name": "deleted"}))).await);

        Self {
            token,
            key,
            subscription,
            member,
            instance,
            spare_instance,
            patched_instance,
            doomed_instance,
            key_id,
            revoked_key_id,
            rotated_key_id,
            deleted_key_id,
            webhook,
            deleted_webhook,
            delivery,
            message,
            contact,
            chat,
            plugin,
            deleted_plugin,
        }
    }

    /// The row `name` stands for in `method path`.
    fn value(&self, method: &Method, path: &str, name: &str) -> Option<String> {
        let destroys_instance =
            (*method == Method::DELETE && path == "/v1/instances/{id}").then_some(&self.doomed_instance);
        let patches_instance = *method == Method::PATCH && path == "/v1/instances/{id}";
        let disables_instance = path.ends_with("/logout")
            || path.ends_with("/restart")
            || path.ends_with("/pair-code")
            || path.starts_with("/v1/sandbox/instances/{id}/") && !path.ends_with("/inbound");
        let value = match name {
            "id" if path.starts_with("/v1/users/") => &self.member,
            "id" if path.starts_with("/v1/subscriptions/") => &self.subscription,
            "id" if path.starts_with("/v1/plugins/") && *method == Method::DELETE && path == "/v1/plugins/{id}" => {
                &self.deleted_plugin
            }
            "id" if path.starts_with("/v1/plugins/") => &self.plugin,
            "id" => match destroys_instance {
                Some(doomed) => doomed,
                None if patches_instance => &self.patched_instance,
                None if disables_instance => &self.spare_instance,
                None => &self.instance,
            },
            "key_id" if path.ends_with("/revoke") => &self.revoked_key_id,
            "key_id" if path.ends_with("/rotate") => &self.rotated_key_id,
            "key_id" if *method == Method::DELETE => &self.deleted_key_id,
            "key_id" => &self.key_id,
            "webhook_id" if *method == Method::DELETE => &self.deleted_webhook,
            "webhook_id" => &self.webhook,
            "delivery_id" => &self.delivery,
            "message_id" => &self.message,
            "contact_id" => &self.contact,
            "chat" => &self.chat,
            // No binding exists (it needs an uploaded component), and a version number is any number.
            _ => return None,
        };
        Some(value.clone())
    }

    /// A schemathesis configuration naming a real row for every path parameter of every operation. (An
    /// operation's entry is selected by its name: schemathesis ORs `include-path` with `include-method`.)
    fn config(&self, document: &Value) -> String {
        // SSE never ends: a second of stream is enough to check the status and the content type.
        let mut config = String::from("max-stream-events = 1\n");
        for (method, path) in operations(document) {
            let names: Vec<&str> =
                path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
            let parameters: Vec<String> = names
                .iter()
                .filter_map(|name| self.value(&method, &path, name).map(|v| format!("\"path.{name}\" = \"{v}\"")))
                .collect();
            let timeout = if path.ends_with("/events") { "request-timeout = 1\n" } else { "" };
            if parameters.is_empty() && timeout.is_empty() {
                continue;
            }
            let _ = write!(
                config,
                "\n[[operations]]\ninclude-name = \"{method} {path}\"\n{timeout}parameters = {{ {} }}\n",
                parameters.join(", ")
            );
        }
        config
    }
}

fn id((status, body): (StatusCode, Value)) -> String {
    assert!(status.is_success(), "{status} {body}");
    body["id"].as_str().unwrap_or_else(|| panic!("no id in {body}")).to_owned()
}

fn id_in((status, body): (StatusCode, Value), member: &str) -> String {
    assert!(status.is_success(), "{status} {body}");
    body[member]["id"].as_str().unwrap_or_else(|| panic!("no {member} id in {body}")).to_owned()
}
