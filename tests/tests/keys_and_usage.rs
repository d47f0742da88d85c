//! End-to-end: API keys (shown once, rotated, rate limited) and what they are counted as: usage, quota, daily
//! statistics.

use gw_e2e::{Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{As, GATEWAY, api_key, eventually, paired_instance, problem_type, tenant, with_key};

on_both_backends!(
    api_keys_are_shown_once_and_rotate,
    api_keys_call_the_api_with_rate_limits_and_exact_usage,
    quota_usage_and_daily_stats,
);

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
