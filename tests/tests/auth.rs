//! End-to-end: access and refresh tokens: rotation, reuse detection, expired and foreign tokens.

use gw_e2e::{Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, gateway_command};
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{As, GATEWAY, problem_type};

on_both_backends!(
    refresh_tokens_rotate_and_reuse_is_detected,
    expired_and_foreign_tokens_are_refused_with_their_own_types,
);

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
