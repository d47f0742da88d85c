//! Cross-node key-cache invalidation against the real Redis (`GW_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`): two independent `Accounts` stacks (own caches, own Redis connections) over one store,
//! wired as the binary wires them. A change on node A reaches node B's cache at once, not after the 30 s TTL.
//! Skips loudly without Redis unless `CI` is set.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use gw_accounts::{
    AccountError, Accounts, AccountsConfig, CreateApiKey, CreateInstance, CreateSubscription, InvalidationPublisher,
    JwtSettings, KeyInvalidation, PasswordHasherService, Principal, SigningKey, ThrottlePolicy, TierCatalog,
    UpdateInstance,
};
use gw_core::{DriverKind, Email, LimitOverrides, Redacted, Tier, UserRole};
use gw_redis::pubsub::{Delivery, Publisher, spawn_subscriber};
use gw_store::{Actor, NewUser, Store};
use gw_store_sql::{OpenOptions, SqliteStore};

fn redis_url() -> String {
    std::env::var("GW_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn config() -> AccountsConfig {
    AccountsConfig {
        jwt: JwtSettings {
            active: SigningKey { kid: "test".into(), secret: Redacted::new("k".repeat(32)) },
            previous: vec![],
            issuer: "gateway".into(),
            audience: "gateway-api".into(),
            access_ttl: Duration::minutes(15),
            leeway_secs: 30,
        },
        refresh_ttl: Duration::days(30),
        tiers: TierCatalog::default(),
        email_throttle: ThrottlePolicy { max_failures: 5, window: StdDuration::from_secs(900) },
        ip_throttle: ThrottlePolicy { max_failures: 20, window: StdDuration::from_secs(900) },
        api_key_pepper: Redacted::new("test pepper".into()),
    }
}

#[derive(Debug)]
struct Published(Publisher);

impl InvalidationPublisher for Published {
    fn publish(&self, invalidation: &KeyInvalidation) {
        self.0.publish_detached(invalidation.encode());
    }
}

/// One node: its own `Accounts` (and so its own key cache), publishing and subscribing on `channel`. Resolves once
/// the subscription is live.
async fn node(
    store: Arc<dyn Store>,
    channel: &str,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<(Arc<Accounts>, tokio::task::JoinHandle<()>)> {
    let publisher = match Publisher::connect(&redis_url(), channel).await {
        Ok(publisher) => publisher,
        Err(err) if !required() => {
            eprintln!("\n*** SKIPPED: Redis at {} is unreachable ({err}) ***\n", redis_url());
            return None;
        }
        Err(err) => panic!("Redis at {} is unreachable and required in CI: {err}", redis_url()),
    };
    let accounts = Arc::new(
        Accounts::new(store, PasswordHasherService::for_tests(), config())
            .with_invalidation_publisher(Arc::new(Published(publisher))),
    );
    let (subscribed, mut is_subscribed) = tokio::sync::watch::channel(false);
    let target = accounts.clone();
    let handler = Arc::new(move |delivery: Delivery| {
        let invalidation = match delivery {
            Delivery::Message(raw) => KeyInvalidation::decode(&raw).expect("well-formed invalidation"),
            Delivery::Resubscribed => {
                let _ = subscribed.send(true);
                KeyInvalidation::All
            }
        };
        let target = target.clone();
        tokio::spawn(async move { target.apply_invalidation(&invalidation).await });
    });
    let task = spawn_subscriber(redis_url(), channel.to_owned(), handler, stop);
    tokio::time::timeout(StdDuration::from_secs(10), is_subscribed.wait_for(|s| *s))
        .await
        .expect("subscribed within 10 s")
        .expect("subscriber alive");
    Some((accounts, task))
}

/// Polls `check` until it returns true, failing with `what` after 5 s (far below the cache's 30 s TTL, so passing
/// proves the invalidation, not the expiry).
async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    gw_test_support::until_within(StdDuration::from_secs(5), what, check).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_node_is_refused_on_another_at_once() {
    let dir = std::env::temp_dir().join(format!("gw-invalidation-{}", uuid::Uuid::now_v7().simple()));
    let url = format!("sqlite://{}/gateway.db", dir.display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url, &OpenOptions::default()).await.expect("sqlite"));
    let channel = format!("gw-test:{}:key-invalidations", uuid::Uuid::now_v7().simple());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let Some((a, task_a)) = node(store.clone(), &channel, stopped.clone()).await else { return };
    let Some((b, task_b)) = node(store.clone(), &channel, stopped).await else { return };

    let admin = store
        .create_user(
            NewUser {
                email: Email::parse("ops@example.com").expect("email"),
                password: PasswordHasherService::for_tests().hash("operator password 1").expect("hash"),
                name: "Ops".into(),
                role: UserRole::Admin,
                subscription_id: None,
            },
            &Actor::system(),
        )
        .await
        .expect("operator");
    let operator = Principal { user_id: admin.id, role: UserRole::Admin, subscription_id: None, ip_address: None };
    let subscription = a
        .create_subscription(
            &operator,
            CreateSubscription { name: "Acme".into(), tier: Tier::Starter, overrides: LimitOverrides::default() },
        )
        .await
        .expect("subscription");
    let instance = a
        .create_instance(
            &operator,
            CreateInstance {
                name: "support".into(),
                driver: DriverKind::Sandbox,
                settings: serde_json::json!({}),
                subscription_id: Some(subscription.id),
            },
        )
        .await
        .expect("instance");
    let new_key = || CreateApiKey {
        name: "backend".into(),
        permissions: vec!["messages:read".into()],
        expires_at: None,
        rate_limit: None,
    };
    let (first, first_secret) = a.create_api_key(&operator, instance.id, new_key()).await.expect("key");
    let (_, second_secret) = a.create_api_key(&operator, instance.id, new_key()).await.expect("key");

    // Node B verifies both keys: they are now in B's cache.
    for secret in [&first_secret, &second_secret] {
        let principal = b.authenticate_key(secret.expose(), None).await.expect("valid on B");
        assert_eq!(principal.instance_id, instance.id);
    }

    // Revoked on A: B refuses the key, without waiting for its cache's TTL.
    a.revoke_api_key(&operator, instance.id, first.id).await.expect("revoke");
    eventually("the revocation", async || {
        matches!(b.authenticate_key(first_secret.expose(), None).await, Err(AccountError::ApiKeyRevoked))
    })
    .await;
    b.authenticate_key(second_secret.expose(), None).await.expect("the other key is untouched");

    // The instance deactivated on A: B refuses its remaining key as inactive.
    a.update_instance(&operator, instance.id, UpdateInstance { is_active: Some(false), ..Default::default() })
        .await
        .expect("deactivate");
    eventually("the instance deactivation", async || {
        matches!(b.authenticate_key(second_secret.expose(), None).await, Err(AccountError::ApiKeyInactive))
    })
    .await;

    stop.send(true).expect("stop");
    for task in [task_a, task_b] {
        task.await.expect("subscriber");
    }
    let _ = std::fs::remove_dir_all(dir);
}
