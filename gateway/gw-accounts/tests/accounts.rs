//! The account services against real stores: every check runs on SQLite and on PostgreSQL.

#[macro_use]
extern crate gw_test_support;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use gw_accounts::{
    AccountError, Accounts, AccountsConfig, CreateApiKey, CreateInstance, CreateSubscription, CreateUser, JwtSettings,
    PasswordHasherService, Principal, SigningKey, ThrottlePolicy, TierCatalog, TokenError, UpdateInstance,
    UpdateSubscription,
};
use gw_core::{DriverKind, Email, LimitOverrides, Redacted, Tier, UserRole};
use gw_store::{Actor, AuditFilter, NewUser, PageRequest, Store, StoreError, Visibility};
use serde_json::json;

const OPERATOR_PASSWORD: &str = "operator password 1";

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

struct Fixture {
    accounts: Accounts,
    store: Arc<dyn Store>,
    operator: Principal,
}

async fn fixture(store: Arc<dyn Store>) -> Fixture {
    let hasher = PasswordHasherService::for_tests();
    let admin = store
        .create_user(
            NewUser {
                email: Email::parse("ops@example.com").expect("email"),
                password: hasher.hash(OPERATOR_PASSWORD).expect("hash"),
                name: "Ops".into(),
                role: UserRole::Admin,
                subscription_id: None,
            },
            &Actor::system(),
        )
        .await
        .expect("operator");
    let accounts = Accounts::new(store.clone(), hasher, config());
    let operator = Principal { user_id: admin.id, role: UserRole::Admin, subscription_id: None, ip_address: None };
    Fixture { accounts, store, operator }
}

impl Fixture {
    async fn tenant(&self, name: &str) -> (gw_core::Subscription, Principal, Principal) {
        let subscription = self
            .accounts
            .create_subscription(
                &self.operator,
                CreateSubscription { name: name.into(), tier: Tier::Starter, overrides: LimitOverrides::default() },
            )
            .await
            .expect("subscription");
        let mut principals = Vec::new();
        for role in [UserRole::Owner, UserRole::Member] {
            let email = format!("{role}@{}.example.com", name.to_lowercase());
            let user = self
                .accounts
                .create_user(
                    &self.operator,
                    subscription.id,
                    CreateUser { email, password: "a long enough password".into(), name: role.to_string(), role },
                )
                .await
                .expect("user");
            principals.push(Principal {
                user_id: user.id,
                role,
                subscription_id: Some(subscription.id),
                ip_address: None,
            });
        }
        let member = principals.pop().expect("member");
        let owner = principals.pop().expect("owner");
        (subscription, owner, member)
    }
}

/// A fixture on a fresh database of the test's backend.
async fn on(database: &gw_test_support::TestDatabase) -> Fixture {
    fixture(database.store().await).await
}

on_both_backends!(on =>
    login_issues_tokens_that_authenticate,
    wrong_credentials_are_refused_alike_and_throttled,
    passwords_hashed_with_old_parameters_are_rehashed_on_login,
    refresh_tokens_rotate_and_reuse_revokes_the_family,
    logout_revokes_the_session,
    deactivation_takes_effect_at_once,
    tiers_give_defaults_and_overrides_win,
    user_creation_validates_and_writes_nothing_on_bad_input,
    instances_follow_roles_and_scopes,
    audit_reads_are_scoped,
    api_keys_are_shown_once_stored_hashed_and_rotate_with_grace,
    api_keys_authenticate_and_changes_take_effect_at_once,
);

async fn login_issues_tokens_that_authenticate(f: Fixture) {
    let (subscription, owner, _) = f.tenant("Acme").await;
    let session = f
        .accounts
        .login("Owner@Acme.example.com", "a long enough password", Some("198.51.100.4".into()))
        .await
        .expect("login");
    assert_eq!(session.user.id, owner.user_id);
    assert!(session.user.last_login_at.is_some());
    assert!(session.refresh_token.starts_with("gwr_"));
    let principal = f.accounts.authenticate(&session.access_token, None).await.expect("authenticate");
    assert_eq!(
        (principal.user_id, principal.role, principal.subscription_id),
        (owner.user_id, UserRole::Owner, Some(subscription.id))
    );
    let stored = f.store.get_user(Visibility::All, owner.user_id).await.expect("user");
    assert_eq!(stored.last_login_at, session.user.last_login_at);
    let audit = f
        .store
        .list_audit(AuditFilter { user_id: Some(owner.user_id), ..Default::default() }, PageRequest::default())
        .await
        .expect("audit");
    assert_eq!(audit.items[0].action, gw_core::AuditAction::AuthLogin);
    assert_eq!(audit.items[0].ip_address.as_deref(), Some("198.51.100.4"));
}

async fn wrong_credentials_are_refused_alike_and_throttled(f: Fixture) {
    f.tenant("Acme").await;
    let wrong = f.accounts.login("owner@acme.example.com", "not the password", None).await.expect_err("wrong");
    let unknown = f.accounts.login("nobody@acme.example.com", "not the password", None).await.expect_err("unknown");
    assert!(matches!(wrong, AccountError::InvalidCredentials) && matches!(unknown, AccountError::InvalidCredentials));
    for _ in 0..4 {
        f.accounts.login("owner@acme.example.com", "not the password", None).await.expect_err("wrong");
    }
    let throttled =
        f.accounts.login("owner@acme.example.com", "a long enough password", None).await.expect_err("throttled");
    match throttled {
        AccountError::Throttled { retry_after } => {
            assert!(retry_after > StdDuration::from_secs(800), "{retry_after:?}")
        }
        other => panic!("expected throttling, got {other:?}"),
    }
    // Another email is not throttled by this one's failures.
    f.accounts.login("member@acme.example.com", "a long enough password", None).await.expect("other email");

    let ip = Some("203.0.113.9".to_owned());
    for n in 0..20 {
        let email = format!("guess{n}@acme.example.com");
        f.accounts.login(&email, "not the password", ip.clone()).await.expect_err("guess");
    }
    let by_ip =
        f.accounts.login("member@acme.example.com", "a long enough password", ip).await.expect_err("ip throttled");
    assert!(matches!(by_ip, AccountError::Throttled { .. }), "{by_ip:?}");
}

async fn passwords_hashed_with_old_parameters_are_rehashed_on_login(f: Fixture) {
    let owasp = PasswordHasherService::owasp().hash(OPERATOR_PASSWORD).expect("hash");
    f.store
        .update_user(
            Visibility::All,
            f.operator.user_id,
            gw_store::UserPatch { password: Some(owasp.clone()), ..Default::default() },
            &Actor::system(),
        )
        .await
        .expect("store old-parameter hash");
    f.accounts.login("ops@example.com", OPERATOR_PASSWORD, None).await.expect("login");
    let rehashed = f.store.get_user(Visibility::All, f.operator.user_id).await.expect("user").password;
    assert_ne!(rehashed, owasp, "re-hashed with the current parameters");
    assert!(rehashed.as_phc().contains("m=64,t=1,p=1"), "{}", rehashed.as_phc());
    f.accounts.login("ops@example.com", OPERATOR_PASSWORD, None).await.expect("the new hash verifies");
}

async fn refresh_tokens_rotate_and_reuse_revokes_the_family(f: Fixture) {
    f.tenant("Acme").await;
    let first = f.accounts.login("owner@acme.example.com", "a long enough password", None).await.expect("login");
    let second = f.accounts.refresh(&first.refresh_token, None).await.expect("rotate");
    assert_ne!(second.refresh_token, first.refresh_token);
    f.accounts.authenticate(&second.access_token, None).await.expect("new access token works");

    let reused = f.accounts.refresh(&first.refresh_token, None).await.expect_err("reuse");
    assert!(matches!(reused, AccountError::RefreshTokenReused), "{reused:?}");
    let revoked = f.accounts.refresh(&second.refresh_token, None).await.expect_err("family revoked");
    assert!(matches!(revoked, AccountError::InvalidRefreshToken), "{revoked:?}");

    let other_session =
        f.accounts.login("owner@acme.example.com", "a long enough password", None).await.expect("login");
    f.accounts.refresh(&other_session.refresh_token, None).await.expect("another sign-in is its own family");
    let garbage = f.accounts.refresh("gwr_not-a-token", None).await.expect_err("garbage");
    assert!(matches!(garbage, AccountError::InvalidRefreshToken));
}

async fn logout_revokes_the_session(f: Fixture) {
    f.tenant("Acme").await;
    let session = f.accounts.login("owner@acme.example.com", "a long enough password", None).await.expect("login");
    f.accounts.logout(&session.refresh_token, None).await.expect("logout");
    f.accounts.logout(&session.refresh_token, None).await.expect("twice is fine");
    let err = f.accounts.refresh(&session.refresh_token, None).await.expect_err("revoked");
    assert!(matches!(err, AccountError::InvalidRefreshToken | AccountError::RefreshTokenReused), "{err:?}");
}

async fn deactivation_takes_effect_at_once(f: Fixture) {
    let (subscription, owner, member) = f.tenant("Acme").await;
    let owner_session =
        f.accounts.login("owner@acme.example.com", "a long enough password", None).await.expect("login");
    let member_session =
        f.accounts.login("member@acme.example.com", "a long enough password", None).await.expect("login");

    f.accounts.set_user_active(&f.operator, member.user_id, false).await.expect("deactivate user");
    let err = f.accounts.authenticate(&member_session.access_token, None).await.expect_err("inactive user");
    assert!(matches!(err, AccountError::AccountInactive), "{err:?}");
    let err = f.accounts.refresh(&member_session.refresh_token, None).await.expect_err("sessions ended");
    assert!(matches!(err, AccountError::InvalidRefreshToken), "{err:?}");
    let err =
        f.accounts.login("member@acme.example.com", "a long enough password", None).await.expect_err("no sign-in");
    assert!(matches!(err, AccountError::AccountInactive), "{err:?}");

    f.accounts
        .update_subscription(
            &f.operator,
            subscription.id,
            UpdateSubscription { is_active: Some(false), ..Default::default() },
        )
        .await
        .expect("deactivate subscription");
    let err = f.accounts.authenticate(&owner_session.access_token, None).await.expect_err("inactive subscription");
    assert!(matches!(err, AccountError::AccountInactive), "{err:?}");
    assert_eq!(f.store.get_user(Visibility::All, owner.user_id).await.expect("nothing deleted").id, owner.user_id);

    f.accounts
        .update_subscription(
            &f.operator,
            subscription.id,
            UpdateSubscription { is_active: Some(true), ..Default::default() },
        )
        .await
        .expect("reactivate");
    f.accounts.authenticate(&owner_session.access_token, None).await.expect("works again");

    let bad = f.accounts.authenticate("eyJhbGciOiJub25lIn0.e30.", None).await.expect_err("alg none");
    assert!(matches!(bad, AccountError::InvalidToken(TokenError::WrongAlgorithm | TokenError::Malformed)), "{bad:?}");
}

async fn tiers_give_defaults_and_overrides_win(f: Fixture) {
    let catalog = TierCatalog::default();
    let pro = f
        .accounts
        .create_subscription(
            &f.operator,
            CreateSubscription {
                name: "Pro".into(),
                tier: Tier::Pro,
                overrides: LimitOverrides { monthly_messages: Some(42), ..Default::default() },
            },
        )
        .await
        .expect("create");
    assert_eq!((pro.max_instances, pro.monthly_messages), (catalog.pro.max_instances, 42));

    let moved = f
        .accounts
        .update_subscription(&f.operator, pro.id, UpdateSubscription { tier: Some(Tier::Free), ..Default::default() })
        .await
        .expect("change tier");
    assert_eq!((moved.tier, moved.max_instances, moved.monthly_messages), (Tier::Free, catalog.free.max_instances, 42));

    let cleared = f
        .accounts
        .update_subscription(
            &f.operator,
            pro.id,
            UpdateSubscription { overrides: Some(LimitOverrides::default()), ..Default::default() },
        )
        .await
        .expect("clear overrides");
    assert_eq!(cleared.monthly_messages, catalog.free.monthly_messages);
    assert_eq!(f.accounts.effective_limits(&cleared), catalog.free);

    let bad = f
        .accounts
        .create_subscription(
            &f.operator,
            CreateSubscription {
                name: "Bad".into(),
                tier: Tier::Pro,
                overrides: LimitOverrides { max_instances: Some(-1), ..Default::default() },
            },
        )
        .await
        .expect_err("negative limit");
    assert!(matches!(bad, AccountError::Validation(_)), "{bad:?}");
}

async fn user_creation_validates_and_writes_nothing_on_bad_input(f: Fixture) {
    let (subscription, owner, _) = f.tenant("Acme").await;
    let before = f.store.list_users(Visibility::All, PageRequest::default()).await.expect("users").items.len();
    let err = f
        .accounts
        .create_user(
            &f.operator,
            subscription.id,
            CreateUser {
                email: "not-an-email".into(),
                password: "short".into(),
                name: "x".repeat(201),
                role: UserRole::Admin,
            },
        )
        .await
        .expect_err("invalid");
    match err {
        AccountError::Validation(fields) => {
            let names: Vec<&str> = fields.iter().map(|f| f.field).collect();
            assert_eq!(names, ["email", "name", "role", "password"]);
        }
        other => panic!("expected validation, got {other:?}"),
    }
    let err = f
        .accounts
        .create_user(
            &owner,
            subscription.id,
            CreateUser {
                email: "x@acme.example.com".into(),
                password: "a long enough password".into(),
                name: "X".into(),
                role: UserRole::Member,
            },
        )
        .await
        .expect_err("tenants do not create users");
    assert!(matches!(err, AccountError::Forbidden));
    let dup = f
        .accounts
        .create_user(
            &f.operator,
            subscription.id,
            CreateUser {
                email: "OWNER@acme.example.com".into(),
                password: "a long enough password".into(),
                name: "Dup".into(),
                role: UserRole::Member,
            },
        )
        .await
        .expect_err("duplicate email");
    assert!(matches!(dup, AccountError::Store(StoreError::Conflict { .. })), "{dup:?}");
    assert_eq!(f.store.list_users(Visibility::All, PageRequest::default()).await.expect("users").items.len(), before);
}

async fn instances_follow_roles_and_scopes(f: Fixture) {
    let (acme, owner, member) = f.tenant("Acme").await;
    let (_, intruder, _) = f.tenant("Globex").await;
    let new = |name: &str| CreateInstance {
        name: name.into(),
        driver: DriverKind::Sandbox,
        settings: json!({}),
        subscription_id: None,
    };

    let inst = f.accounts.create_instance(&owner, new("support")).await.expect("owner creates");
    assert_eq!((inst.subscription_id, inst.created_by_id), (acme.id, Some(owner.user_id)));
    assert!(matches!(f.accounts.create_instance(&member, new("x")).await, Err(AccountError::Forbidden)));
    assert_eq!(f.accounts.list_instances(&member, PageRequest::default()).await.expect("member reads").items.len(), 1);
    f.accounts.get_instance(&member, inst.id).await.expect("member reads one");

    let not_found = |r: Result<_, AccountError>| matches!(r, Err(AccountError::Store(StoreError::NotFound { .. })));
    assert!(not_found(f.accounts.get_instance(&intruder, inst.id).await.map(|_| ())));
    assert!(not_found(
        f.accounts
            .update_instance(&intruder, inst.id, UpdateInstance { name: Some("pwned".into()), ..Default::default() })
            .await
            .map(|_| ())
    ));
    assert!(not_found(f.accounts.delete_instance(&intruder, inst.id).await));
    let smuggled = CreateInstance { subscription_id: Some(acme.id), ..new("smuggled") };
    assert!(not_found(f.accounts.create_instance(&intruder, smuggled).await.map(|_| ())));
    assert!(f.accounts.list_instances(&intruder, PageRequest::default()).await.expect("list").items.is_empty());

    assert!(matches!(
        f.accounts
            .update_instance(&member, inst.id, UpdateInstance { name: Some("y".into()), ..Default::default() })
            .await,
        Err(AccountError::Forbidden)
    ));
    assert!(matches!(f.accounts.delete_instance(&member, inst.id).await, Err(AccountError::Forbidden)));

    let bad = f
        .accounts
        .update_instance(&owner, inst.id, UpdateInstance { settings: Some(json!([1, 2])), ..Default::default() })
        .await
        .expect_err("array");
    assert!(matches!(bad, AccountError::Validation(_)));
    let renamed = f
        .accounts
        .update_instance(&owner, inst.id, UpdateInstance { name: Some(" sales ".into()), ..Default::default() })
        .await
        .expect("rename");
    assert_eq!(renamed.name, "sales");

    // Starter allows 3 instances; the 4th is refused with the limit.
    f.accounts.create_instance(&owner, new("two")).await.expect("2");
    f.accounts.create_instance(&owner, new("three")).await.expect("3");
    let over = f.accounts.create_instance(&owner, new("four")).await.expect_err("limit");
    assert!(matches!(over, AccountError::Store(StoreError::LimitReached(_))), "{over:?}");
    f.accounts.delete_instance(&owner, inst.id).await.expect("delete");
    f.accounts.create_instance(&owner, new("four")).await.expect("slot released");

    let operator_needs_subscription =
        f.accounts.create_instance(&f.operator, new("op")).await.expect_err("which subscription?");
    assert!(matches!(operator_needs_subscription, AccountError::Validation(_)));
    f.accounts
        .create_instance(&f.operator, CreateInstance { subscription_id: Some(acme.id), ..new("op") })
        .await
        .expect_err("limit again");
}

async fn audit_reads_are_scoped(f: Fixture) {
    let (acme, owner, member) = f.tenant("Acme").await;
    let (globex, _, _) = f.tenant("Globex").await;
    f.accounts
        .create_instance(
            &owner,
            CreateInstance {
                name: "i".into(),
                driver: DriverKind::Sandbox,
                settings: json!({}),
                subscription_id: None,
            },
        )
        .await
        .expect("instance");

    let own = f.accounts.list_audit(&owner, AuditFilter::default(), PageRequest::default()).await.expect("own");
    assert!(!own.items.is_empty());
    assert!(own.items.iter().all(|e| e.subscription_id == Some(acme.id)));
    assert!(
        own.items.iter().any(|e| e.action == gw_core::AuditAction::InstanceCreate && e.user_id == Some(owner.user_id))
    );

    let other = f
        .accounts
        .list_audit(
            &owner,
            AuditFilter { subscription_id: Some(globex.id), ..Default::default() },
            PageRequest::default(),
        )
        .await;
    assert!(matches!(other, Err(AccountError::Store(StoreError::NotFound { .. }))));
    assert!(matches!(
        f.accounts.list_audit(&member, AuditFilter::default(), PageRequest::default()).await,
        Err(AccountError::Forbidden)
    ));

    let everything =
        f.accounts.list_audit(&f.operator, AuditFilter::default(), PageRequest::first(200)).await.expect("operator");
    assert!(everything.items.iter().any(|e| e.subscription_id == Some(globex.id)));
    assert!(everything.items.iter().any(|e| e.subscription_id == Some(acme.id)));
}

async fn api_keys_are_shown_once_stored_hashed_and_rotate_with_grace(f: Fixture) {
    let (_, owner, member) = f.tenant("Acme").await;
    let (_, intruder, _) = f.tenant("Globex").await;
    let instance = f
        .accounts
        .create_instance(
            &owner,
            CreateInstance {
                name: "main".into(),
                driver: DriverKind::Sandbox,
                settings: json!({}),
                subscription_id: None,
            },
        )
        .await
        .expect("instance");
    let request = || CreateApiKey {
        name: "backend".into(),
        permissions: vec!["messages:send".into(), "messages:read".into(), "messages:send".into()],
        expires_at: None,
        rate_limit: Some(120),
    };
    let (key, secret) = f.accounts.create_api_key(&owner, instance.id, request()).await.expect("create");
    assert_eq!(key.permissions, ["messages:send", "messages:read"], "duplicates folded");
    assert_eq!(gw_accounts::api_keys::parse(secret.expose()), Ok(key.id), "the key names its id");
    let found = f.store.find_api_key_by_hash(&f.accounts.api_key_hasher().hash(secret.expose())).await.expect("lookup");
    assert_eq!(found.map(|r| r.key.id), Some(key.id), "stored as the keyed hash of the full key");
    assert_ne!(key.key_hash.as_bytes(), secret.expose().as_bytes());

    let not_found = |r: Result<(), AccountError>| matches!(r, Err(AccountError::Store(StoreError::NotFound { .. })));
    assert!(not_found(f.accounts.list_api_keys(&intruder, instance.id, PageRequest::default()).await.map(|_| ())));
    assert!(not_found(f.accounts.revoke_api_key(&intruder, instance.id, key.id).await.map(|_| ())));
    assert!(matches!(f.accounts.create_api_key(&member, instance.id, request()).await, Err(AccountError::Forbidden)));

    let bad = f
        .accounts
        .create_api_key(
            &owner,
            instance.id,
            CreateApiKey { permissions: vec!["root".into()], rate_limit: Some(0), ..request() },
        )
        .await
        .expect_err("bad scope and rate");
    match bad {
        AccountError::Validation(fields) => {
            assert_eq!(fields.iter().map(|f| f.field).collect::<Vec<_>>(), ["permissions", "rate_limit"])
        }
        other => panic!("{other:?}"),
    }

    let rotated = f.accounts.rotate_api_key(&owner, instance.id, key.id, Duration::hours(1)).await.expect("rotate");
    assert_ne!(rotated.key.id, key.id);
    assert_eq!(
        (rotated.key.name.as_str(), &rotated.key.permissions, rotated.key.rate_limit),
        ("backend", &key.permissions, Some(120))
    );
    let grace_end = rotated.previous.expires_at.expect("old key now expires");
    assert!(
        grace_end > gw_core::Timestamp::now()
            && grace_end <= gw_core::Timestamp::now().checked_add(Duration::hours(1)).expect("range")
    );
    assert!(rotated.previous.is_active, "the old key keeps working during the grace period");
    assert!(matches!(
        f.accounts.rotate_api_key(&owner, instance.id, key.id, Duration::days(8)).await,
        Err(AccountError::Validation(_))
    ));

    let revoked = f.accounts.revoke_api_key(&owner, instance.id, key.id).await.expect("revoke");
    assert!(!revoked.is_active);
    f.accounts.delete_api_key(&owner, instance.id, rotated.key.id).await.expect("delete");
    let listed = f.accounts.list_api_keys(&owner, instance.id, PageRequest::default()).await.expect("list");
    assert_eq!(listed.items.iter().map(|k| k.id).collect::<Vec<_>>(), [key.id]);
}

async fn api_keys_authenticate_and_changes_take_effect_at_once(f: Fixture) {
    let (subscription, owner, _) = f.tenant("Acme").await;
    let instance = f
        .accounts
        .create_instance(
            &owner,
            CreateInstance {
                name: "main".into(),
                driver: DriverKind::Sandbox,
                settings: json!({}),
                subscription_id: None,
            },
        )
        .await
        .expect("instance");
    let request = |rate_limit| CreateApiKey {
        name: "k".into(),
        permissions: vec!["messages:send".into()],
        expires_at: None,
        rate_limit,
    };
    let (key, secret) = f.accounts.create_api_key(&owner, instance.id, request(Some(120))).await.expect("key");
    let (_, default_secret) = f.accounts.create_api_key(&owner, instance.id, request(None)).await.expect("key");

    let principal = f.accounts.authenticate_key(secret.expose(), Some([192, 0, 2, 1].into())).await.expect("valid");
    assert_eq!(
        (principal.key_id, principal.instance_id, principal.subscription_id),
        (key.id, instance.id, subscription.id)
    );
    assert_eq!(principal.rate_limit_per_minute, 120);
    assert!(
        principal.has_scope(gw_core::KeyScope::MessagesSend) && !principal.has_scope(gw_core::KeyScope::ContactsRead)
    );
    let (key_limit, subscription_limit) = principal.limiter_keys();
    assert_eq!((key_limit, subscription_limit), (&*format!("key:{}", key.id), &*format!("sub:{}", subscription.id)));
    let defaulted = f.accounts.authenticate_key(default_secret.expose(), None).await.expect("valid");
    assert_eq!(defaulted.rate_limit_per_minute, TierCatalog::default().starter.api_rate_limit_per_minute as u32);

    let mut typo = secret.expose().clone();
    typo.replace_range(30..31, if &typo[30..31] == "a" { "b" } else { "a" });
    assert!(matches!(f.accounts.authenticate_key(&typo, None).await, Err(AccountError::InvalidApiKey)));
    let stranger = gw_accounts::api_keys::generate(gw_core::ApiKeyId::new());
    assert!(matches!(f.accounts.authenticate_key(stranger.expose(), None).await, Err(AccountError::InvalidApiKey)));

    // Usage is counted in memory and written in one batch.
    for _ in 0..24 {
        f.accounts.authenticate_key(secret.expose(), None).await.expect("valid");
    }
    assert_eq!(f.accounts.flush_key_usage().await.expect("flush"), 2, "two keys used");
    assert_eq!(f.store.get_api_key(instance.id, key.id).await.expect("key").usage_count, 25);
    assert_eq!(f.accounts.flush_key_usage().await.expect("flush"), 0, "nothing twice");

    // Deactivating the subscription reaches a cached key at once.
    f.accounts
        .update_subscription(
            &f.operator,
            subscription.id,
            UpdateSubscription { is_active: Some(false), ..Default::default() },
        )
        .await
        .expect("deactivate");
    assert!(matches!(f.accounts.authenticate_key(secret.expose(), None).await, Err(AccountError::ApiKeyInactive)));
    f.accounts
        .update_subscription(
            &f.operator,
            subscription.id,
            UpdateSubscription { is_active: Some(true), ..Default::default() },
        )
        .await
        .expect("reactivate");
    f.accounts.authenticate_key(secret.expose(), None).await.expect("valid again");

    // Rotation with no grace expires the old key at once; revocation too.
    let rotated = f.accounts.rotate_api_key(&owner, instance.id, key.id, Duration::zero()).await.expect("rotate");
    assert!(matches!(f.accounts.authenticate_key(secret.expose(), None).await, Err(AccountError::ApiKeyExpired)));
    f.accounts.authenticate_key(rotated.secret.expose(), None).await.expect("successor works");
    f.accounts.revoke_api_key(&owner, instance.id, rotated.key.id).await.expect("revoke");
    assert!(matches!(
        f.accounts.authenticate_key(rotated.secret.expose(), None).await,
        Err(AccountError::ApiKeyRevoked)
    ));
}
