//! End-to-end: tenants: the first walkthrough, isolation (another tenant's ids answer 404, members 403, on every
//! endpoint) and bad input refused with stable problem types, writing nothing.

use gw_e2e::{Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{As, GATEWAY, problem_type, tenant};

on_both_backends!(
    first_tenant_walkthrough,
    other_tenants_get_404_and_members_get_403_on_every_endpoint,
    bad_input_is_refused_with_stable_problem_types_and_writes_nothing,
);

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
