//! End-to-end: secure by default. With nothing configured the gateway generates its secrets (JWT key, API key
//! pepper, session encryption key) on first run and keeps them with the data; public development secrets are
//! neither used nor accepted where others can reach the gateway.

use std::path::{Path, PathBuf};

use gw_e2e::{Backend, Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, gateway_command, run_to_exit};
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{As, GATEWAY, api_key, problem_type, tenant, with_key};

on_both_backends!(
    a_token_signed_with_the_public_development_secret_is_refused,
    secrets_are_generated_private_on_first_run_and_kept_across_restarts,
);

/// The JWT key earlier versions used when none was configured; it is public (it was in the repository).
const PUBLIC_DEVELOPMENT_JWT_SECRET: &str = "development-only-jwt-secret-do-not-use-in-production";
const SECRET_FILES: [&str; 3] = ["auth.jwt_secret", "auth.api_key_pepper", "sessions.encryption_key"];

/// Where the harness's gateway keeps generated secrets: beside the SQLite file, else `./data` of its working
/// directory (the harness runs it in the test's directory).
fn secrets_dir(database: &Database) -> PathBuf {
    if database.url.starts_with("sqlite") { database.dir.join("secrets") } else { database.dir.join("data/secrets") }
}

fn read_secret(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())).trim().to_owned()
}

/// An access token for `user_id` as an attacker (or the test) would mint it with `secret`, with the server's
/// default key id, issuer and audience.
fn mint(secret: &str, user_id: &str) -> String {
    use gw_accounts::{JwtSettings, SigningKey, TokenIssuer};
    use gw_core::{Redacted, Timestamp, UserRole};
    let issuer = TokenIssuer::new(JwtSettings {
        active: SigningKey { kid: "k1".into(), secret: Redacted::new(secret.into()) },
        previous: vec![],
        issuer: "gateway".into(),
        audience: "gateway-api".into(),
        access_ttl: chrono::Duration::minutes(15),
        leeway_secs: 0,
    });
    let user_id = user_id.parse().expect("user id");
    issuer.issue(user_id, None, UserRole::Admin, Timestamp::now()).expect("mint").0
}

async fn a_token_signed_with_the_public_development_secret_is_refused(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, me) = operator.call(Method::GET, "/v1/me", None).await;
    let user_id = me["id"].as_str().expect("id");

    let forged = As { app: &app, token: Some(mint(PUBLIC_DEVELOPMENT_JWT_SECRET, user_id)) };
    let (status, problem) = forged.call(Method::GET, "/v1/subscriptions", None).await;
    assert_eq!((status, problem_type(&problem)), (StatusCode::UNAUTHORIZED, "/problems/invalid-token"), "{problem}");

    // The same minting with the secret the gateway generated is accepted: the refusal above is the secret's doing.
    let generated = read_secret(&secrets_dir(database), "auth.jwt_secret");
    assert_ne!(generated, PUBLIC_DEVELOPMENT_JWT_SECRET);
    let genuine = As { app: &app, token: Some(mint(&generated, user_id)) };
    let (status, body) = genuine.call(Method::GET, "/v1/subscriptions", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn secrets_are_generated_private_on_first_run_and_kept_across_restarts(database: &Database) {
    let dir = secrets_dir(database);
    assert!(!dir.exists(), "a fresh test directory has no secrets yet");
    let app = TestApp::spawn(GATEWAY, database).await;
    let mut generated = Vec::new();
    for name in SECRET_FILES {
        let path = dir.join(name);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("secret file").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is readable by its owner only", path.display());
        }
        let value = read_secret(&dir, name);
        assert!(value.len() >= 32, "{name}: {} bytes", value.len());
        generated.push(value);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777, 0o700);
    }

    // A session, an API key (hashed with the pepper) and a token issued before the restart...
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Kept").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (status, instance) = owner.call(Method::POST, "/v1/instances", Some(json!({"name": "kept"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{instance}");
    let iid = instance["id"].as_str().expect("id").to_owned();
    let key = api_key(&owner, &iid, &["messages:read"]).await;
    let (_, tokens) = As::anonymous(&app)
        .call(Method::POST, "/v1/auth/login", Some(json!({"email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD})))
        .await;
    let refresh = tokens["refresh_token"].as_str().expect("refresh token").to_owned();
    let token = operator.token.clone().expect("token");
    drop((operator, owner));
    assert_eq!(app.terminate().await.code(), Some(0));

    // ...still work after it: the second start read the same secrets instead of drawing new ones.
    let again = TestApp::spawn(GATEWAY, database).await;
    let reread: Vec<String> = SECRET_FILES.iter().map(|name| read_secret(&dir, name)).collect();
    assert_eq!(generated, reread, "the secrets are kept, not regenerated");
    let operator = As { app: &again, token: Some(token) };
    let (status, body) = operator.call(Method::GET, "/v1/subscriptions", None).await;
    assert_eq!(status, StatusCode::OK, "a token issued before the restart: {body}");
    let (status, body) = with_key(&again, &key, Method::GET, "/v1/key", None, None).await;
    assert_eq!(status, StatusCode::OK, "an API key created before the restart: {body}");
    let (status, body) =
        As::anonymous(&again).call(Method::POST, "/v1/auth/refresh", Some(json!({"refresh_token": refresh}))).await;
    assert_eq!(status, StatusCode::OK, "a refresh token issued before the restart: {body}");
}

#[tokio::test]
async fn public_development_secrets_off_loopback_and_unset_secrets_in_production_exit_64() {
    let database = Database::create(Backend::Sqlite).await.expect("sqlite");
    // Refused before anything listens: no socket is ever opened on 0.0.0.0.
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command
        .env("GATEWAY_SERVER_LISTEN", "0.0.0.0:0")
        .env("GATEWAY_AUTH_JWT_SECRET", PUBLIC_DEVELOPMENT_JWT_SECRET)
        .arg("serve");
    let (code, stdout, stderr) = run_to_exit(command).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("auth.jwt_secret: is the public development default")
            && stderr.contains("non-loopback address 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(!stdout.contains("listening"), "{stdout}");

    // Production mode takes no generated secret: nodes sharing a database must share their secrets.
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command.env("GATEWAY_MODE", "production").arg("serve");
    let (code, _, stderr) = run_to_exit(command).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("auth.jwt_secret: must be set in production mode"), "{stderr}");
    assert!(!secrets_dir(&database).exists(), "a refused start writes nothing");
}
