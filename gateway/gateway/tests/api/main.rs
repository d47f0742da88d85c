//! Router tests against the application built in-process (`gateway::Application`), on both store backends.

#[macro_use]
extern crate gw_test_support;

mod helpers;

use helpers::{As, Database, InProcessApp, PASSWORD, problem_snapshot, problem_type, tenant};
use reqwest::{Method, StatusCode};
use serde_json::json;

on_both_backends!(builds_serves_and_stops_in_process, domain_services_check_visible_then_allowed);

async fn builds_serves_and_stops_in_process(database: &Database) {
    let app = InProcessApp::spawn(database).await;
    let (status, ready) = As::anonymous(&app).call(Method::GET, "/readyz", None).await;
    let backend = if database.url.starts_with("sqlite") { "sqlite" } else { "postgres" };
    assert_eq!((status, ready), (StatusCode::OK, json!({"status": "ready", "database": backend})));
    let (status, missing) = As::anonymous(&app).call(Method::GET, "/no/such/thing", None).await;
    assert_eq!((status, problem_type(&missing)), (StatusCode::NOT_FOUND, "/problems/route-not-found"));
    let operator = As::operator(&app).await;
    let (status, me) = operator.call(Method::GET, "/v1/me", None).await;
    assert_eq!((status, me["email"].as_str()), (StatusCode::OK, Some(helpers::OPERATOR_EMAIL)));
    app.stop().await;
}

/// Every domain service checks its caller the same way: another tenant's resource is not found (404, the same body
/// as a missing one), a member's role may read but not change (403), and a key without the scope is refused (403).
async fn domain_services_check_visible_then_allowed(database: &Database) {
    let app = InProcessApp::spawn(database).await;
    let operator = As::operator(&app).await;
    let (_, acme_owner, acme_member) = tenant(&operator, "Acme").await;
    let (_, globex_owner, _) = tenant(&operator, "Globex").await;
    let owner = As::login(&app, &acme_owner, PASSWORD).await;
    let member = As::login(&app, &acme_member, PASSWORD).await;
    let stranger = As::login(&app, &globex_owner, PASSWORD).await;
    let (status, instance) = owner.call(Method::POST, "/v1/instances", Some(json!({"name": "support"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{instance}");
    let iid = instance["id"].as_str().expect("id").to_owned();
    let (status, other) = owner.call(Method::POST, "/v1/instances", Some(json!({"name": "sales"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    let other_iid = other["id"].as_str().expect("id").to_owned();
    let (status, created) = owner
        .call(
            Method::POST,
            &format!("/v1/instances/{iid}/api-keys"),
            Some(json!({"name": "reader", "permissions": ["messages:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let reader = As::key(&app, created["key"].as_str().expect("key"));
    let (status, plugin) = owner.call(Method::POST, "/v1/plugins", Some(json!({"name": "filter"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let pid = plugin["id"].as_str().expect("id").to_owned();

    // Messaging, Webhooks, Usage and Plugins, read and change, as another tenant: not found, exactly as missing.
    let hooks = format!("/v1/instances/{iid}/webhooks");
    for (method, path, body) in [
        (Method::GET, format!("/v1/instances/{iid}/messages"), None),
        (Method::POST, format!("/v1/instances/{iid}/messages"), Some(json!({"to": "+15550001111", "text": "x"}))),
        (Method::GET, format!("/v1/instances/{iid}/contacts"), None),
        (Method::POST, format!("/v1/instances/{iid}/connect"), None),
        (Method::GET, hooks.clone(), None),
        (Method::POST, hooks.clone(), Some(json!({"url": "https://hooks.example.com/a"}))),
        (Method::GET, format!("/v1/instances/{iid}/usage"), None),
        (Method::GET, format!("/v1/instances/{iid}/stats"), None),
        (Method::GET, format!("/v1/instances/{iid}/plugins"), None),
    ] {
        let (status, problem) = stranger.call(method.clone(), &path, body).await;
        assert_eq!(
            problem_snapshot(problem),
            json!({
                "type": "/problems/not-found",
                "title": "Not found",
                "status": 404,
                "detail": "instance not found",
                "instance": path.split('?').next().expect("path"),
            }),
            "{method} {path}"
        );
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, problem) = stranger.call(Method::GET, &format!("/v1/plugins/{pid}"), None).await;
    assert_eq!((status, problem_type(&problem)), (StatusCode::NOT_FOUND, "/problems/not-found"));
    assert_eq!(problem["detail"], "plugin not found");

    // A member reads, and may change nothing.
    let (status, _) = member.call(Method::GET, &hooks, None).await;
    assert_eq!(status, StatusCode::OK);
    for (method, path, body) in [
        (Method::POST, hooks.clone(), Some(json!({"url": "https://hooks.example.com/a"}))),
        (Method::POST, format!("/v1/instances/{iid}/messages"), Some(json!({"to": "+15550001111", "text": "x"}))),
        (Method::POST, format!("/v1/instances/{iid}/connect"), None),
        (Method::POST, "/v1/plugins".to_owned(), Some(json!({"name": "mine"}))),
        (Method::DELETE, format!("/v1/plugins/{pid}"), None),
    ] {
        let (status, problem) = member.call(method.clone(), &path, body).await;
        assert_eq!(
            problem_snapshot(problem),
            json!({
                "type": "/problems/forbidden",
                "title": "Forbidden",
                "status": 403,
                "detail": "your role does not allow this action",
                "instance": path,
            }),
            "{method} {path}"
        );
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    // A key reads what its scope allows on its own instance, is refused the rest, and sees no other instance.
    let (status, _) = reader.call(Method::GET, &format!("/v1/instances/{iid}/messages"), None).await;
    assert_eq!(status, StatusCode::OK);
    for (path, scope) in [
        (hooks.clone(), "webhooks:write"),
        (format!("/v1/instances/{iid}/contacts"), "contacts:read"),
        ("/v1/plugins".to_owned(), "plugins:write"),
    ] {
        let (status, problem) = reader.call(Method::GET, &path, None).await;
        assert_eq!(
            problem_snapshot(problem),
            json!({
                "type": "/problems/insufficient-scope",
                "title": "Insufficient scope",
                "status": 403,
                "detail": format!("this endpoint needs the `{scope}` scope"),
                "instance": path,
            }),
            "{path}"
        );
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, problem) = reader.call(Method::GET, &format!("/v1/instances/{other_iid}/messages"), None).await;
    assert_eq!((status, problem["detail"].as_str()), (StatusCode::NOT_FOUND, Some("instance not found")));
    app.stop().await;
}
