//! End-to-end: hostile input through the real binary. Extreme numbers and dates get a 422 naming the field (never
//! a panic or a dropped connection), an oversized declared body a 413 at once, and every request body of the API
//! document survives extreme values in every field without a server error.

use gw_e2e::{Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{As, GATEWAY, api_key, problem_type, tenant, with_key};

on_both_backends!(
    extreme_numbers_and_dates_are_refused_naming_the_field,
    every_documented_request_body_survives_extreme_values,
);

/// A tenant "Acme" with its owner signed in, an instance and an API key of it.
struct Tenant<'a> {
    owner: As<'a>,
    sid: String,
    iid: String,
    kid: String,
}

impl<'a> Tenant<'a> {
    async fn create(app: &'a TestApp, operator: &As<'_>) -> Self {
        let (sid, owner_email, _) = tenant(operator, "Acme").await;
        let owner = As::login(app, &owner_email, "a long enough password").await;
        let (_, instance) = owner.call(Method::POST, "/v1/instances", Some(json!({"name": "support"}))).await;
        let iid = instance["id"].as_str().expect("id").to_owned();
        let (_, key) = owner
            .call(
                Method::POST,
                &format!("/v1/instances/{iid}/api-keys"),
                Some(json!({"name": "k", "permissions": ["messages:read"]})),
            )
            .await;
        let kid = key["api_key"]["id"].as_str().expect("key id").to_owned();
        Self { owner, sid, iid, kid }
    }
}

/// The field a 422 names (`errors[0].field`).
fn invalid_field(body: &Value) -> &str {
    body["errors"][0]["field"].as_str().unwrap_or("<no field>")
}

async fn extreme_numbers_and_dates_are_refused_naming_the_field(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let Tenant { owner, iid, kid, .. } = Tenant::create(&app, &operator).await;
    let kid = kid.as_str();

    // Key rotation: `TimeDelta::seconds` used to panic past ±9,223,372,036,854,775 s and drop the connection.
    for grace in [i64::MAX, i64::MIN, 9_223_372_036_854_776, -1, 604_801] {
        let (status, body) = owner
            .call(
                Method::POST,
                &format!("/v1/instances/{iid}/api-keys/{kid}/rotate"),
                Some(json!({"grace_period_secs": grace})),
            )
            .await;
        assert_eq!((status, invalid_field(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "grace_period_secs"), "{grace}");
    }

    // Statistics: a far year used to overflow the date arithmetic, before the visibility check.
    for (query, field) in
        [("to=-262143-01-05", "to"), ("from=-262143-01-05&to=2026-01-01", "from"), ("to=+262142-12-31", "to")]
    {
        let (status, body) = owner.call(Method::GET, &format!("/v1/instances/{iid}/stats?{query}"), None).await;
        assert_eq!((status, invalid_field(&body)), (StatusCode::UNPROCESSABLE_ENTITY, field), "{query}: {body}");
    }
    let (_, other_email, _) = tenant(&operator, "Other").await;
    let other = As::login(&app, &other_email, "a long enough password").await;
    let (status, body) = other.call(Method::GET, &format!("/v1/instances/{iid}/stats?to=-262143-01-05"), None).await;
    assert_eq!((status, problem_type(&body)), (StatusCode::NOT_FOUND, "/problems/not-found"), "visibility first");
    let (status, _) = owner.call(Method::GET, &format!("/v1/instances/{iid}/stats?to=2026-03-01"), None).await;
    assert_eq!(status, StatusCode::OK);

    // Plugin positions: a binding at i32::MAX used to break every later default-position bind with a 500.
    let pid = super::plugins::plugin_with(&owner, "kw", "keyword_responder").await;
    let bindings = format!("/v1/instances/{iid}/plugins");
    for position in [i64::from(i32::MAX), -1, 1_000_001] {
        let (status, body) =
            owner.call(Method::POST, &bindings, Some(json!({"plugin_id": pid, "position": position}))).await;
        assert_eq!((status, invalid_field(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "position"), "{position}");
    }
    let (status, last) =
        owner.call(Method::POST, &bindings, Some(json!({"plugin_id": pid, "position": 1_000_000}))).await;
    assert_eq!(status, StatusCode::CREATED, "{last}");
    // A plugin is bound once per instance: the appended binding is another plugin's.
    let second = super::plugins::plugin_with(&owner, "kw2", "keyword_responder").await;
    let (status, appended) = owner.call(Method::POST, &bindings, Some(json!({"plugin_id": second}))).await;
    assert_eq!((status, appended["position"].as_i64()), (StatusCode::CREATED, Some(1_000_001)), "{appended}");
    let binding = last["id"].as_str().expect("binding id");
    let (status, body) =
        owner.call(Method::PATCH, &format!("{bindings}/{binding}"), Some(json!({"position": i32::MAX}))).await;
    assert_eq!((status, invalid_field(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "position"));

    // A body declared far over the limit is refused at once, not after waiting for its bytes (408); a head too
    // large for the edge gets the edge's problem, not hyper's bodiless 414 or 431.
    let declared = b"POST /v1/auth/login HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n\
                     content-length: 1000000000000\r\n\r\n{"
        .to_vec();
    let long_uri = format!("GET /healthz?q={} HTTP/1.1\r\nhost: gateway\r\n\r\n", "x".repeat(20_000)).into_bytes();
    let big_headers = format!(
        "GET /healthz HTTP/1.1\r\nhost: gateway\r\n{}\r\n",
        format!("x-big: {}\r\n", "y".repeat(8_000)).repeat(10)
    )
    .into_bytes();
    for (request, status, kind) in [
        (declared, "413", "payload-too-large"),
        (long_uri, "414", "uri-too-long"),
        (big_headers, "431", "headers-too-large"),
    ] {
        let answer = raw_exchange(&app, &request).await;
        assert!(answer.starts_with(&format!("http/1.1 {status}")), "{answer}");
        assert!(answer.contains("content-type: application/problem+json"), "{answer}");
        assert!(answer.contains(&format!("/problems/{kind}")), "{answer}");
    }

    // Responses that carry a secret may not be kept by any cache.
    let login = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.headers()["cache-control"], "no-store");
    let refresh_token = login.json::<Value>().await.expect("json")["refresh_token"].as_str().expect("token").to_owned();
    let refreshed = app
        .client
        .post(app.url("/v1/auth/refresh"))
        .json(&json!({"refresh_token": refresh_token}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(
        (refreshed.status(), &refreshed.headers()["cache-control"]),
        (StatusCode::OK, &"no-store".parse().expect("value"))
    );
    let secret_routes = [
        (format!("/v1/instances/{iid}/api-keys"), json!({"name": "k2", "permissions": ["messages:read"]})),
        (format!("/v1/instances/{iid}/api-keys/{kid}/rotate"), json!({"grace_period_secs": 0})),
        (format!("/v1/instances/{iid}/webhooks"), json!({"url": "https://hooks.example.com/a"})),
    ];
    for (path, body) in secret_routes {
        let response = app
            .client
            .post(app.url(&path))
            .bearer_auth(owner.token.as_deref().expect("token"))
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(
            (response.status(), response.headers().get("cache-control").map(|v| v.to_str().expect("ascii"))),
            (StatusCode::CREATED, Some("no-store")),
            "{path}"
        );
    }
    let key = api_key(&owner, &iid, &["messages:read"]).await;
    let (status, _) = with_key(&app, &key, Method::GET, "/v1/key", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

/// Writes `request` on a new connection and reads the answer's head and body (lower-cased) until the server closes
/// the connection or the problem body is complete.
async fn raw_exchange(app: &TestApp, request: &[u8]) -> String {
    let addr = app.url("").trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .expect("read");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).to_lowercase();
        if n == 0 || text.split_once("\r\n\r\n").is_some_and(|(_, body)| body.ends_with('}')) {
            assert!(!text.is_empty(), "the connection closed without an answer");
            return text;
        }
    }
}

/// Values that break naive arithmetic, parsing or storage.
fn extreme_values() -> Vec<Value> {
    vec![
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(i64::from(i32::MAX) + 1),
        json!(-1),
        json!(0),
        json!(1.0e308),
        json!(-0.5),
        json!(""),
        json!("x".repeat(70_000)),
        json!("\u{0}\u{202e}😀"),
        json!("-262143-01-05T00:00:00Z"),
        json!([]),
        json!([i64::MAX]),
        json!({}),
        json!(null),
        json!(true),
    ]
}

/// Resolves a `$ref` into the document's components.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &document["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Every request body the API document describes, with each of its properties set to each extreme value in turn
/// (the others left out): no 5xx, every error a problem+json body, and never a dropped connection.
async fn every_documented_request_body_survives_extreme_values(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let Tenant { owner, sid, iid, kid } = Tenant::create(&app, &operator).await;
    let (_, hook) = owner
        .call(
            Method::POST,
            &format!("/v1/instances/{iid}/webhooks"),
            Some(json!({"url": "https://hooks.example.com/a"})),
        )
        .await;
    let wid = hook["webhook"]["id"].as_str().expect("webhook id").to_owned();
    let pid = super::plugins::plugin_with(&owner, "kw", "keyword_responder").await;
    let (_, binding) =
        owner.call(Method::POST, &format!("/v1/instances/{iid}/plugins"), Some(json!({"plugin_id": pid}))).await;
    let bid = binding["id"].as_str().expect("binding id").to_owned();
    let (_, users) = owner.call(Method::GET, &format!("/v1/subscriptions/{sid}/users"), None).await;
    let member = users["items"].as_array().expect("users").iter().find(|u| u["role"] == "member").expect("member");
    let uid = member["id"].as_str().expect("user id").to_owned();

    let document: Value =
        app.client.get(app.url("/openapi.json")).send().await.expect("document").json().await.expect("json");
    let mut tried = 0_usize;
    let mut failures = Vec::new();
    for (template, item) in document["paths"].as_object().expect("paths") {
        // Logging out or deactivating the caller would end the run's session, not find a bug.
        if template.ends_with("/auth/logout") || template.ends_with("/deactivate") {
            continue;
        }
        let id = if template.starts_with("/v1/subscriptions/") {
            &sid
        } else if template.starts_with("/v1/users/") {
            &uid
        } else if template.starts_with("/v1/plugins/") {
            &pid
        } else {
            &iid
        };
        let path = template
            .replace("{id}", id)
            .replace("{key_id}", &kid)
            .replace("{webhook_id}", &wid)
            .replace("{binding_id}", &bid)
            .replace("{version}", "1")
            .replace("{delivery_id}", "0190b1a2-0000-7000-8000-000000000001")
            .replace("{message_id}", "0190b1a2-0000-7000-8000-000000000001")
            .replace("{contact_id}", "0190b1a2-0000-7000-8000-000000000001")
            .replace("{chat}", "15550001111@s.whatsapp.net");
        for (method, operation) in item.as_object().expect("operations") {
            let Some(schema) = operation["requestBody"]["content"]["application/json"]["schema"].as_object() else {
                continue;
            };
            let schema = resolve(&document, &Value::Object(schema.clone())).clone();
            let Some(properties) = schema["properties"].as_object() else { continue };
            let method: Method = method.to_uppercase().parse().expect("method");
            for field in properties.keys() {
                for value in extreme_values() {
                    let mut body = Map::new();
                    body.insert(field.clone(), value.clone());
                    let response = app
                        .client
                        .request(method.clone(), app.url(&path))
                        .bearer_auth(operator.token.as_deref().expect("token"))
                        .json(&body)
                        .send()
                        .await;
                    tried += 1;
                    let shown = value.to_string().chars().take(40).collect::<String>();
                    let response = match response {
                        Ok(response) => response,
                        Err(err) => {
                            failures.push(format!("{method} {template} {field}={shown}: no answer ({err})"));
                            continue;
                        }
                    };
                    let status = response.status();
                    let content_type =
                        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    if status.is_server_error()
                        || (status.is_client_error() && content_type != "application/problem+json")
                    {
                        let text = response.text().await.unwrap_or_default();
                        failures.push(format!("{method} {template} {field}={shown}: {status} {content_type} {text}"));
                    }
                }
            }
        }
    }
    assert!(tried > 500, "the document describes request bodies ({tried} requests tried)");
    assert!(failures.is_empty(), "{} of {tried} requests failed:\n{}", failures.len(), failures.join("\n"));
}
