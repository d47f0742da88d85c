//! End-to-end: plugins written in JavaScript and Python, built from source by the SDKs' scripts, uploaded through
//! the API under their tier's default limits, bound, and answering a message that arrives on the sandbox.

use gw_e2e::{Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, gateway_command};
use gw_test_support::polyglot::{self, Language};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

use super::plugins::{bind, create_plugin, inbound, outbound_texts, upload};
use super::{As, GATEWAY, eventually, paired_instance, tenant};

on_both_backends!(js_and_python_plugins_upload_bind_and_answer_on_the_sandbox);

/// Uploads the component at `path` as a raw body, waiting as long as a debug build's compile takes.
async fn upload_slowly(owner: &As<'_>, pid: &str, path: &std::path::Path) -> (StatusCode, Value) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let response = owner
        .app
        .client
        .post(owner.app.url(&format!("/v1/plugins/{pid}/versions")))
        .bearer_auth(owner.token.as_deref().expect("token"))
        .header("content-type", "application/wasm")
        .timeout(Duration::from_secs(900))
        .body(bytes)
        .send()
        .await
        .expect("upload");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Uploads the component at `path` as a new plugin, binds it inbound with one keyword rule answering `reply`.
async fn responder(owner: &As<'_>, iid: &str, name: &str, path: &std::path::Path, reply: &str) {
    let pid = create_plugin(owner, name).await;
    let (status, version) = upload_slowly(owner, &pid, path).await;
    assert_eq!(status, StatusCode::CREATED, "{name}: {version}");
    bind(
        owner,
        iid,
        json!({"plugin_id": pid, "direction": "inbound",
               "config": {"rules": [{"keywords": [name], "reply": reply}]}}),
    )
    .await;
}

async fn js_and_python_plugins_upload_bind_and_answer_on_the_sandbox(database: &Database) {
    let Some(js) = polyglot::guest(Language::JavaScript, "keyword-responder") else { return };
    let python = polyglot::guest(Language::Python, "keyword-responder");
    // This server is a debug build on a machine shared with other builds. Its wasmtime compiles a 12-18 MB
    // component in minutes (seconds in release; see BENCHMARKS.md), inside the upload request, and a call may be
    // slower than the deployment's 50 ms deadline: both are given room so the test fails only for a wrong answer.
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command.env("GATEWAY_PLUGINS_TIMEOUT_MS", "2000").env("GATEWAY_SERVER_REQUEST_TIMEOUT_SECS", "900");
    // gw-plugins' tests keep their compiled components here; where the engine's configuration is the same (the
    // file name carries its hash), a component compiled by one test is loaded from disk by the next.
    command.env("GATEWAY_PLUGINS_CACHE_DIR", concat!(env!("CARGO_TARGET_TMPDIR"), "/gw-plugins-cwasm"));
    let app = TestApp::spawn_with(command).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    // `tenant` makes a Pro subscription: its default limits admit a JavaScript plugin.
    let (sid, owner_email, _) = tenant(&operator, "Polyglot").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (iid, _) = paired_instance(&owner, "polyglot").await;

    responder(&owner, &iid, "javascript", &js, "Answered by JavaScript").await;
    let asked = inbound(&owner, &iid, "+1 555 019 0101", "Is this javascript?").await;
    assert_eq!(asked["status"], "received", "{asked}");
    let reply = eventually("the JavaScript plugin's reply", || async {
        outbound_texts(&owner, &iid).await.into_iter().find(|(_, text, _)| text == "Answered by JavaScript")
    })
    .await;
    assert_eq!(reply.0, "15550190101@s.whatsapp.net");
    assert!(reply.2.starts_with("plugin_reply"), "{reply:?}");

    // A Python component is larger than Pro allows; Enterprise's defaults admit it.
    let Some(python) = python else { return };
    let pid = create_plugin(&owner, "python-on-pro").await;
    let (status, problem) =
        upload(&owner, &pid, std::fs::read(&python).unwrap_or_else(|e| panic!("read python: {e}")), false).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    let (status, body) =
        operator.call(Method::PATCH, &format!("/v1/subscriptions/{sid}"), Some(json!({"tier": "enterprise"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    responder(&owner, &iid, "python", &python, "Answered by Python").await;
    inbound(&owner, &iid, "+1 555 019 0102", "Any python here?").await;
    eventually("the Python plugin's reply", || async {
        outbound_texts(&owner, &iid)
            .await
            .into_iter()
            .find(|(chat, text, _)| chat == "15550190102@s.whatsapp.net" && text == "Answered by Python")
    })
    .await;
}
