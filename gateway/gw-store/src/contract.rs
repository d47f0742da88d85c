//! The contract every backend must keep, written once. A backend's test file instantiates it with
//! [`store_contract_tests!`], handing a function that makes a fresh, empty, migrated store per test.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use gw_core::{
    ApiKeyHash, ApiKeyId, DriverKind, Email, InstanceId, InstanceStatus, LimitOverrides, PasswordHash, SubscriptionId,
    Tier, Timestamp, TokenFamilyId, UsagePeriod, UsageRecordType, UserId, UserRole,
};
use serde_json::json;

use crate::*;

pub use crate::cluster_contract::*;

/// A fresh store for one test, and what to run once the test is done with it (drop a database, say).
pub struct TestStore {
    pub store: Arc<dyn Store>,
    cleanup: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl std::fmt::Debug for TestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestStore").field("store", &self.store).finish_non_exhaustive()
    }
}

impl TestStore {
    pub fn new(store: Arc<dyn Store>, cleanup: impl Future<Output = ()> + Send + 'static) -> Self {
        Self { store, cleanup: Box::pin(cleanup) }
    }

    pub async fn finish(self) {
        drop(self.store);
        self.cleanup.await;
    }
}

/// Generates one `#[tokio::test]` per contract check, each on a store from `$make`: an async fn returning
/// `Option<TestStore>`, `None` when the backend is unavailable and the harness decided the run may skip it.
#[macro_export]
macro_rules! store_contract_tests {
    ($make:path) => {
        $crate::store_contract_tests!(@each $make;
            subscription_crud,
            subscription_delete_is_restricted_while_referenced,
            user_crud_and_email_uniqueness,
            user_scope_hides_other_tenants,
            instance_crud_and_scoped_name_uniqueness,
            instance_connection_updates,
            instance_delete_cascades_and_keeps_usage,
            api_key_crud_and_lookup_by_hash,
            message_stats_accumulate_per_day,
            contacts_upsert_merge_and_search,
            webhook_config_crud_and_counters,
            session_data_round_trip,
            usage_records_accumulate_per_period,
            audit_log_filters_and_order,
            pagination_is_stable_under_inserts,
            concurrent_slot_reservations_never_overshoot,
            concurrent_instance_creates_never_overshoot,
            concurrent_message_reservations_never_overshoot,
            message_quota_rolls_over_monthly,
            inactive_subscription_refuses_reservations,
            missing_rows_are_not_found,
            limit_overrides_round_trip,
            refresh_tokens_rotate_once_and_reuse_revokes_the_family,
            concurrent_refresh_rotations_have_one_winner,
            outbox_is_idempotent_and_ordered,
            concurrent_enqueues_charge_exactly_what_is_stored,
            dropped_messages_are_charged_and_inactive_subscriptions_store_nothing,
            receipts_only_move_messages_forward,
            inbound_redelivery_is_recognised,
            contacts_merge_lid_and_phone_number,
            plugin_versions_activation_and_rollback,
            concurrent_plugin_creates_never_overshoot,
            concurrent_uploads_take_consecutive_versions,
            plugin_bindings_resolve_the_chain,
            plugin_failures_and_logs_are_recorded_and_bounded,
            plugin_kv_round_trip_and_limits,
            plugin_delete_cascades_and_reports_bound_instances,
            store_catalog_adds_the_subscriptions_limits,
            webhook_outbox_enqueue_claim_complete,
            webhook_endpoints_are_disabled_by_410_and_by_failing_too_long,
            webhook_replay_and_secret_rotation,
            concurrent_webhook_claims_never_share_a_row,
            webhook_leases_renew_only_their_own_rows,
            two_nodes_never_both_win_a_lease,
            leases_expire_by_the_database_clock,
            a_stale_epoch_is_refused_on_every_session_write,
            nodes_renew_and_release_only_their_own_leases,
            orphaned_instances_and_the_node_list,
            wake_ups_reach_subscribers,
            commands_are_taken_once_and_answered,
            a_stale_epoch_is_refused_on_driver_state_and_inbound_writes,
            dead_nodes_and_old_commands_are_pruned_in_batches,
        );
    };
    (@each $make:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(test_store) = $make().await {
                    $crate::contract::$name(test_store.store.clone()).await;
                    test_store.finish().await;
                }
            }
        )+
    };
}

// ---- fixtures ------------------------------------------------------------------------------------------------

fn phc() -> PasswordHash {
    PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into())
}

fn email(local: &str) -> Email {
    Email::parse(&format!("{local}@example.com")).expect("valid email")
}

/// A subscription for up to `max_instances` instances (also for backend-specific tests).
pub async fn subscription(store: &Arc<dyn Store>, max_instances: i32) -> gw_core::Subscription {
    store
        .create_subscription(
            NewSubscription {
                name: "Acme".into(),
                tier: Tier::Starter,
                max_instances,
                monthly_messages: 1000,
                limit_overrides: Default::default(),
            },
            &Actor::system(),
        )
        .await
        .expect("create subscription")
}

async fn owner(store: &Arc<dyn Store>, subscription_id: SubscriptionId, local: &str) -> gw_core::User {
    store
        .create_user(
            NewUser {
                email: email(local),
                password: phc(),
                name: local.into(),
                role: UserRole::Owner,
                subscription_id: Some(subscription_id),
            },
            &Actor::system(),
        )
        .await
        .expect("create user")
}

/// A sandbox instance (also for backend-specific tests).
pub async fn instance(store: &Arc<dyn Store>, subscription_id: SubscriptionId, name: &str) -> gw_core::Instance {
    store
        .create_instance(
            NewInstance {
                name: name.into(),
                subscription_id,
                created_by_id: None,
                driver: DriverKind::Sandbox,
                settings: json!({}),
            },
            &Actor::system(),
        )
        .await
        .expect("create instance")
}

fn new_key(instance_id: InstanceId, hash: &[u8]) -> NewApiKey {
    NewApiKey {
        id: ApiKeyId::new(),
        instance_id,
        name: "ci".into(),
        key_hash: ApiKeyHash::from_bytes(hash.to_vec()),
        permissions: vec!["messages:send".into()],
        expires_at: None,
        rate_limit: None,
    }
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).expect("valid date")
}

fn at(year: i32, month: u32, d: u32) -> Timestamp {
    Timestamp::from(Utc.with_ymd_and_hms(year, month, d, 12, 0, 0).single().expect("valid time"))
}

fn actor() -> Actor {
    Actor::user(UserId::new(), Some("203.0.113.7".into()))
}

// ---- the contract ----------------------------------------------------------------------------------------------

pub async fn subscription_crud(store: Arc<dyn Store>) {
    let created = store
        .create_subscription(
            NewSubscription {
                name: "Acme".into(),
                tier: Tier::Pro,
                max_instances: 5,
                monthly_messages: 10_000,
                limit_overrides: Default::default(),
            },
            &actor(),
        )
        .await
        .expect("create");
    assert_eq!((created.current_instances, created.messages_used, created.is_active), (0, 0, true));
    assert_eq!(created.last_usage_reset, created.created_at.period().start());
    assert_eq!(store.get_subscription(created.id).await.expect("read"), created);

    let updated = store
        .update_subscription(
            created.id,
            SubscriptionPatch { tier: Some(Tier::Enterprise), max_instances: Some(50), ..Default::default() },
            &actor(),
        )
        .await
        .expect("update");
    assert_eq!((updated.tier, updated.max_instances, updated.name.as_str()), (Tier::Enterprise, 50, "Acme"));
    assert!(updated.updated_at >= created.updated_at);

    let deactivated = store
        .update_subscription(created.id, SubscriptionPatch { is_active: Some(false), ..Default::default() }, &actor())
        .await
        .expect("deactivate");
    assert!(!deactivated.is_active);

    let listed = store.list_subscriptions(PageRequest::default()).await.expect("list");
    assert_eq!(listed.items, vec![deactivated]);
    assert_eq!(listed.next, None);

    store.delete_subscription(created.id, &actor()).await.expect("delete");
    assert!(store.get_subscription(created.id).await.expect_err("gone").is_not_found());

    let audit = store
        .list_audit(AuditFilter { subscription_id: Some(created.id), ..Default::default() }, PageRequest::default())
        .await
        .expect("audit");
    let actions: Vec<&str> = audit.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["subscription.delete", "subscription.update", "subscription.update", "subscription.create"]);
    assert!(audit.items.iter().all(|e| e.ip_address.as_deref() == Some("203.0.113.7")));
}

pub async fn subscription_delete_is_restricted_while_referenced(store: Arc<dyn Store>) {
    let sub = subscription(&store, 3).await;
    let user = owner(&store, sub.id, "ann").await;
    let err = store.delete_subscription(sub.id, &actor()).await.expect_err("restricted");
    assert!(matches!(err, StoreError::InUse { entity: "subscription", .. }), "{err:?}");
    assert!(store.get_subscription(sub.id).await.is_ok(), "nothing deleted");

    store.delete_user(Scope::All, user.id, &actor()).await.expect("delete user");
    let inst = instance(&store, sub.id, "main").await;
    let err = store.delete_subscription(sub.id, &actor()).await.expect_err("restricted by instance");
    assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
    store.delete_instance(Scope::All, inst.id, &actor()).await.expect("delete instance");
    store.delete_subscription(sub.id, &actor()).await.expect("now deletable");
}

pub async fn user_crud_and_email_uniqueness(store: Arc<dyn Store>) {
    let sub = subscription(&store, 3).await;
    assert_eq!(store.count_active_admins().await.expect("count"), 0);
    let admin = store
        .create_user(
            NewUser {
                email: email("ops"),
                password: phc(),
                name: "Ops".into(),
                role: UserRole::Admin,
                subscription_id: None,
            },
            &Actor::system(),
        )
        .await
        .expect("create admin");
    assert_eq!(admin.subscription_id, None);
    assert_eq!(store.count_active_admins().await.expect("count"), 1);

    let ann = owner(&store, sub.id, "ann").await;
    assert_eq!(store.get_user(Scope::All, ann.id).await.expect("read"), ann);
    assert_eq!(store.find_user_by_email(&email("ANN")).await.expect("find"), Some(ann.clone()));
    assert_eq!(store.find_user_by_email(&email("nobody")).await.expect("find"), None);

    let dup = store
        .create_user(
            NewUser {
                email: Email::parse("Ann@Example.com").expect("valid"),
                password: phc(),
                name: "Other Ann".into(),
                role: UserRole::Member,
                subscription_id: Some(sub.id),
            },
            &Actor::system(),
        )
        .await
        .expect_err("email taken");
    assert_eq!(dup.conflict_key(), Some(UniqueKey::UserEmail));

    let orphan = store
        .create_user(
            NewUser {
                email: email("orphan"),
                password: phc(),
                name: "Orphan".into(),
                role: UserRole::Member,
                subscription_id: Some(SubscriptionId::new()),
            },
            &Actor::system(),
        )
        .await
        .expect_err("no such subscription");
    assert!(matches!(orphan, StoreError::NotFound { entity: "subscription" }), "{orphan:?}");

    let new_hash = PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA".into());
    let updated = store
        .update_user(
            Scope::Subscription(sub.id),
            ann.id,
            UserPatch { role: Some(UserRole::Member), password: Some(new_hash.clone()), ..Default::default() },
            &actor(),
        )
        .await
        .expect("update");
    assert_eq!((updated.role, &updated.password, updated.name.as_str()), (UserRole::Member, &new_hash, "ann"));

    let login_at = Timestamp::now();
    store.record_login(ann.id, login_at).await.expect("login");
    assert_eq!(store.get_user(Scope::All, ann.id).await.expect("read").last_login_at, Some(login_at));

    let deactivated = store
        .update_user(Scope::All, admin.id, UserPatch { is_active: Some(false), ..Default::default() }, &actor())
        .await
        .expect("deactivate");
    assert!(!deactivated.is_active);
    assert_eq!(store.count_active_admins().await.expect("count"), 0);

    let page = store.list_users(Scope::All, PageRequest::default()).await.expect("list");
    assert_eq!(page.items.iter().map(|u| u.id).collect::<Vec<_>>(), vec![admin.id, ann.id]);

    store.delete_user(Scope::All, ann.id, &actor()).await.expect("delete");
    assert!(store.get_user(Scope::All, ann.id).await.expect_err("gone").is_not_found());
    let audit = store
        .list_audit(AuditFilter { resource: Some("user".into()), ..Default::default() }, PageRequest::default())
        .await
        .expect("audit");
    assert!(audit.items.iter().any(|e| e.action == "user.password_reset"));
    assert!(audit.items.iter().any(|e| e.action == "user.delete" && e.subscription_id == Some(sub.id)));
}

pub async fn user_scope_hides_other_tenants(store: Arc<dyn Store>) {
    let acme = subscription(&store, 3).await;
    let globex = subscription(&store, 3).await;
    let ann = owner(&store, acme.id, "ann").await;
    let bob = owner(&store, globex.id, "bob").await;
    let as_globex = Scope::Subscription(globex.id);

    assert!(store.get_user(as_globex, ann.id).await.expect_err("hidden").is_not_found());
    let err = store
        .update_user(as_globex, ann.id, UserPatch { name: Some("pwned".into()), ..Default::default() }, &actor())
        .await
        .expect_err("hidden");
    assert!(err.is_not_found());
    assert!(store.delete_user(as_globex, ann.id, &actor()).await.expect_err("hidden").is_not_found());
    assert_eq!(store.get_user(Scope::All, ann.id).await.expect("untouched").name, "ann");

    let listed = store.list_users(as_globex, PageRequest::default()).await.expect("list");
    assert_eq!(listed.items, vec![bob]);

    let inst = instance(&store, acme.id, "main").await;
    assert!(store.get_instance(as_globex, inst.id).await.expect_err("hidden").is_not_found());
    assert!(store.delete_instance(as_globex, inst.id, &actor()).await.expect_err("hidden").is_not_found());
    assert!(store.list_instances(as_globex, PageRequest::default()).await.expect("list").items.is_empty());
}

pub async fn instance_crud_and_scoped_name_uniqueness(store: Arc<dyn Store>) {
    let acme = subscription(&store, 5).await;
    let globex = subscription(&store, 5).await;
    let ann = owner(&store, acme.id, "ann").await;
    let created = store
        .create_instance(
            NewInstance {
                name: "support".into(),
                subscription_id: acme.id,
                created_by_id: Some(ann.id),
                driver: DriverKind::Whatsapp,
                settings: json!({"min_interval_ms": 1500}),
            },
            &Actor::user(ann.id, None),
        )
        .await
        .expect("create");
    assert_eq!(
        (created.status, created.driver, created.created_by_id),
        (InstanceStatus::Created, DriverKind::Whatsapp, Some(ann.id))
    );
    assert_eq!(created.settings, json!({"min_interval_ms": 1500}));
    assert_eq!(store.get_subscription(acme.id).await.expect("read").current_instances, 1);
    assert_eq!(store.get_instance(Scope::Subscription(acme.id), created.id).await.expect("read"), created);

    let dup = store
        .create_instance(
            NewInstance {
                name: "support".into(),
                subscription_id: acme.id,
                created_by_id: None,
                driver: DriverKind::Sandbox,
                settings: json!({}),
            },
            &actor(),
        )
        .await
        .expect_err("name taken in this subscription");
    assert_eq!(dup.conflict_key(), Some(UniqueKey::InstanceName));
    assert_eq!(
        store.get_subscription(acme.id).await.expect("read").current_instances,
        1,
        "a refused create must give its slot back"
    );
    instance(&store, globex.id, "support").await; // same name, other subscription: fine

    let renamed = store
        .update_instance(
            Scope::Subscription(acme.id),
            created.id,
            InstancePatch { name: Some("sales".into()), settings: Some(json!({"typing": true})), ..Default::default() },
            &actor(),
        )
        .await
        .expect("update");
    assert_eq!((renamed.name.as_str(), &renamed.settings), ("sales", &json!({"typing": true})));

    let second = instance(&store, acme.id, "support").await;
    let clash = store
        .update_instance(
            Scope::All,
            second.id,
            InstancePatch { name: Some("sales".into()), ..Default::default() },
            &actor(),
        )
        .await
        .expect_err("rename onto a taken name");
    assert_eq!(clash.conflict_key(), Some(UniqueKey::InstanceName));

    let listed = store.list_instances(Scope::Subscription(acme.id), PageRequest::default()).await.expect("list");
    assert_eq!(listed.items.iter().map(|i| i.id).collect::<Vec<_>>(), vec![created.id, second.id]);

    store
        .update_instance(
            Scope::All,
            second.id,
            InstancePatch { is_active: Some(false), ..Default::default() },
            &actor(),
        )
        .await
        .expect("deactivate");
    let resumable: Vec<InstanceId> =
        store.list_resumable_instances().await.expect("resumable").into_iter().map(|i| i.id).collect();
    assert!(resumable.contains(&created.id) && !resumable.contains(&second.id));
    store
        .update_subscription(globex.id, SubscriptionPatch { is_active: Some(false), ..Default::default() }, &actor())
        .await
        .expect("deactivate globex");
    assert_eq!(store.list_resumable_instances().await.expect("resumable").len(), 1, "only acme's active instance");

    store.delete_instance(Scope::Subscription(acme.id), created.id, &actor()).await.expect("delete");
    assert!(store.get_instance(Scope::All, created.id).await.expect_err("gone").is_not_found());
    assert_eq!(store.get_subscription(acme.id).await.expect("read").current_instances, 1, "slot released");

    store.delete_user(Scope::All, ann.id, &actor()).await.expect("delete creator");
    let audit = store
        .list_audit(AuditFilter { resource: Some("instance".into()), ..Default::default() }, PageRequest::default())
        .await
        .expect("audit");
    assert!(audit.items.iter().any(|e| e.action == "instance.create" && e.user_id == Some(ann.id)));
}

pub async fn instance_connection_updates(store: Arc<dyn Store>) {
    let sub = subscription(&store, 1).await;
    let inst = instance(&store, sub.id, "main").await;
    let expiry = at(2026, 11, 25);
    let qr = store
        .update_connection(
            inst.id,
            ConnectionUpdate {
                status: Some(InstanceStatus::Qr),
                qr_code: Some("2@abc".into()),
                qr_code_expiry: Some(expiry),
                connection_attempts: Some(1),
                last_error: Some("timeout".into()),
                ..Default::default()
            },
        )
        .await
        .expect("qr");
    assert_eq!(
        (qr.status, qr.qr_code.as_deref(), qr.qr_code_expiry),
        (InstanceStatus::Qr, Some("2@abc"), Some(expiry))
    );
    assert_eq!((qr.connection_attempts, qr.last_error.as_deref()), (1, Some("timeout")));
    assert!(qr.last_error_at.is_some());

    let connected_at = Timestamp::now();
    let connected = store
        .update_connection(
            inst.id,
            ConnectionUpdate {
                status: Some(InstanceStatus::Connected),
                phone: Some("+15550001".into()),
                display_name: Some("Acme Support".into()),
                last_connected_at: Some(connected_at),
                clear_qr_code: true,
                clear_last_error: true,
                connection_attempts: Some(0),
                ..Default::default()
            },
        )
        .await
        .expect("connected");
    assert_eq!(connected.status, InstanceStatus::Connected);
    assert_eq!((connected.qr_code, connected.qr_code_expiry, connected.last_error), (None, None, None));
    assert_eq!((connected.phone.as_deref(), connected.last_connected_at), (Some("+15550001"), Some(connected_at)));
    assert_eq!(connected.last_error_at, qr.last_error_at, "when the last error happened is history");

    let err = store.update_connection(InstanceId::new(), ConnectionUpdate::default()).await.expect_err("missing");
    assert!(err.is_not_found());
}

pub async fn instance_delete_cascades_and_keeps_usage(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let ann = owner(&store, sub.id, "ann").await;
    let inst = store
        .create_instance(
            NewInstance {
                name: "main".into(),
                subscription_id: sub.id,
                created_by_id: Some(ann.id),
                driver: DriverKind::Sandbox,
                settings: json!({}),
            },
            &actor(),
        )
        .await
        .expect("create");
    let key = store.create_api_key(new_key(inst.id, b"hash-1"), &actor()).await.expect("key");
    store
        .add_message_stats(&[MessageStatDelta {
            instance_id: inst.id,
            date: day(1),
            messages_sent: 1,
            messages_received: 0,
            messages_failed: 0,
            api_calls: 1,
        }])
        .await
        .expect("stats");
    let contact = store
        .upsert_contact(ContactUpsert { instance_id: inst.id, jid: "1555@s.whatsapp.net".into(), ..Default::default() })
        .await
        .expect("contact");
    let hook = store
        .create_webhook_config(
            NewWebhookConfig {
                instance_id: inst.id,
                url: "https://example.com/h".into(),
                events: vec!["*".into()],
                secret: "whsec_x".into(),
            },
            &actor(),
        )
        .await
        .expect("webhook");
    store.save_session(inst.id, vec![1, 2, 3], Timestamp::now(), None).await.expect("session");
    let period = UsagePeriod::new(2026, 11).expect("valid");
    let usage = |instance_id, count| UsageDelta {
        subscription_id: sub.id,
        instance_id,
        record_type: UsageRecordType::MessagesSent,
        period,
        count,
        at: at(2026, 11, 2),
    };
    store.add_usage(&[usage(Some(inst.id), 7), usage(None, 3)]).await.expect("usage");

    // The creator leaving does not take the instance along.
    store.delete_user(Scope::All, ann.id, &actor()).await.expect("delete creator");
    assert_eq!(store.get_instance(Scope::All, inst.id).await.expect("still there").created_by_id, None);

    store.delete_instance(Scope::All, inst.id, &actor()).await.expect("delete");
    assert!(store.get_api_key(inst.id, key.id).await.expect_err("cascaded").is_not_found());
    assert_eq!(store.find_api_key_by_hash(&key.key_hash).await.expect("lookup"), None);
    assert!(store.list_message_stats(inst.id, day(1), day(30)).await.expect("stats").is_empty());
    assert!(store.get_contact(inst.id, contact.id).await.expect_err("cascaded").is_not_found());
    assert!(store.get_webhook_config(inst.id, hook.id).await.expect_err("cascaded").is_not_found());
    assert_eq!(store.load_session(inst.id).await.expect("session"), None);

    let records = store
        .list_usage(UsageFilter { subscription_id: sub.id, instance_id: None, period: Some(period) })
        .await
        .expect("usage");
    assert_eq!(records.len(), 1, "the instance's usage is folded into the subscription's: {records:?}");
    assert_eq!((records[0].instance_id, records[0].count), (None, 10));
    assert_eq!(store.get_subscription(sub.id).await.expect("read").current_instances, 0);
}

pub async fn api_key_crud_and_lookup_by_hash(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    let other = instance(&store, sub.id, "other").await;
    let expires = at(2027, 1, 1);
    let created = store
        .create_api_key(
            NewApiKey { expires_at: Some(expires), rate_limit: Some(120), ..new_key(inst.id, b"hash-a") },
            &actor(),
        )
        .await
        .expect("create");
    assert_eq!((created.usage_count, created.last_used_at, created.rate_limit), (0, None, Some(120)));
    assert_eq!(created.permissions, vec!["messages:send".to_owned()]);
    assert_eq!(store.get_api_key(inst.id, created.id).await.expect("read"), created);
    assert!(store.get_api_key(other.id, created.id).await.expect_err("other instance").is_not_found());

    let found = store.find_api_key_by_hash(&created.key_hash).await.expect("find").expect("present");
    assert_eq!(
        (found.key.id, found.subscription_id, found.instance_active, found.subscription_active),
        (created.id, sub.id, true, true)
    );
    assert_eq!(store.find_api_key_by_hash(&ApiKeyHash::from_bytes(b"nope".to_vec())).await.expect("find"), None);

    let dup = store.create_api_key(new_key(other.id, b"hash-a"), &actor()).await.expect_err("hash taken");
    assert_eq!(dup.conflict_key(), Some(UniqueKey::ApiKeyHash));
    let orphan = store.create_api_key(new_key(InstanceId::new(), b"hash-z"), &actor()).await.expect_err("no instance");
    assert!(matches!(orphan, StoreError::NotFound { entity: "instance" }), "{orphan:?}");

    let updated = store
        .update_api_key(
            inst.id,
            created.id,
            ApiKeyPatch {
                permissions: Some(vec!["messages:read".into(), "contacts:read".into()]),
                expires_at: Some(None),
                rate_limit: Some(None),
                ..Default::default()
            },
            &actor(),
        )
        .await
        .expect("update");
    assert_eq!((updated.expires_at, updated.rate_limit, updated.name.as_str()), (None, None, "ci"));
    assert_eq!(updated.permissions, vec!["messages:read".to_owned(), "contacts:read".to_owned()]);

    let t1 = at(2026, 11, 3);
    let t2 = at(2026, 11, 4);
    store
        .record_api_key_usage(&[
            ApiKeyUsage { key_id: created.id, uses: 40, last_used_at: t2 },
            ApiKeyUsage { key_id: created.id, uses: 2, last_used_at: t1 },
            ApiKeyUsage { key_id: ApiKeyId::new(), uses: 5, last_used_at: t1 },
        ])
        .await
        .expect("usage");
    let used = store.get_api_key(inst.id, created.id).await.expect("read");
    assert_eq!((used.usage_count, used.last_used_at), (42, Some(t2)), "counts add up, last use only moves forward");

    store
        .update_instance(Scope::All, inst.id, InstancePatch { is_active: Some(false), ..Default::default() }, &actor())
        .await
        .expect("deactivate instance");
    store
        .update_subscription(sub.id, SubscriptionPatch { is_active: Some(false), ..Default::default() }, &actor())
        .await
        .expect("deactivate subscription");
    let found = store.find_api_key_by_hash(&created.key_hash).await.expect("find").expect("present");
    assert_eq!((found.instance_active, found.subscription_active), (false, false));

    let revoked = store
        .update_api_key(inst.id, created.id, ApiKeyPatch { is_active: Some(false), ..Default::default() }, &actor())
        .await
        .expect("revoke");
    assert!(!revoked.is_active);

    let second = store.create_api_key(new_key(inst.id, b"hash-b"), &actor()).await.expect("second");
    let page = store.list_api_keys(inst.id, PageRequest::first(1)).await.expect("page 1");
    assert_eq!(page.items.iter().map(|k| k.id).collect::<Vec<_>>(), vec![created.id]);
    let page2 = store.list_api_keys(inst.id, PageRequest::new(page.next, 1)).await.expect("page 2");
    assert_eq!((page2.items.iter().map(|k| k.id).collect::<Vec<_>>(), page2.next), (vec![second.id], None));

    store.delete_api_key(inst.id, created.id, &actor()).await.expect("delete");
    assert!(store.delete_api_key(inst.id, created.id, &actor()).await.expect_err("twice").is_not_found());
    let audit = store
        .list_audit(AuditFilter { resource: Some("api_key".into()), ..Default::default() }, PageRequest::default())
        .await
        .expect("audit");
    let actions: Vec<&str> = audit.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["api_key.delete", "api_key.create", "api_key.revoke", "api_key.update", "api_key.create"]);
}

pub async fn message_stats_accumulate_per_day(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    let other = instance(&store, sub.id, "other").await;
    let delta = |instance_id, date, sent, received| MessageStatDelta {
        instance_id,
        date,
        messages_sent: sent,
        messages_received: received,
        messages_failed: 1,
        api_calls: 2,
    };
    store.add_message_stats(&[delta(inst.id, day(1), 3, 1), delta(inst.id, day(2), 1, 0)]).await.expect("batch 1");
    store.add_message_stats(&[delta(inst.id, day(1), 2, 4), delta(other.id, day(1), 9, 9)]).await.expect("batch 2");
    store.add_message_stats(&[]).await.expect("empty batch");

    let stats = store.list_message_stats(inst.id, day(1), day(30)).await.expect("list");
    let summary: Vec<_> =
        stats.iter().map(|s| (s.date, s.messages_sent, s.messages_received, s.messages_failed, s.api_calls)).collect();
    assert_eq!(summary, vec![(day(1), 5, 5, 2, 4), (day(2), 1, 0, 1, 2)]);
    assert_eq!(store.list_message_stats(inst.id, day(2), day(2)).await.expect("one day").len(), 1);

    let err = store.add_message_stats(&[delta(InstanceId::new(), day(1), 1, 1)]).await.expect_err("no instance");
    assert!(matches!(err, StoreError::NotFound { entity: "instance" }), "{err:?}");
}

pub async fn contacts_upsert_merge_and_search(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    let other = instance(&store, sub.id, "other").await;
    let jid = "15550001@s.whatsapp.net";
    let first = store
        .upsert_contact(ContactUpsert {
            instance_id: inst.id,
            jid: jid.into(),
            name: Some("Ann Lee".into()),
            last_message_at: Some(at(2026, 11, 2)),
            ..Default::default()
        })
        .await
        .expect("create");
    assert_eq!((first.is_group, first.is_blocked, first.notify.as_deref()), (false, false, None));

    let merged = store
        .upsert_contact(ContactUpsert {
            instance_id: inst.id,
            jid: jid.into(),
            notify: Some("annie".into()),
            last_message_at: Some(at(2026, 11, 1)),
            status: Some("Hey there".into()),
            ..Default::default()
        })
        .await
        .expect("merge");
    assert_eq!(merged.id, first.id, "one row per (instance, jid)");
    assert_eq!((merged.name.as_deref(), merged.notify.as_deref()), (Some("Ann Lee"), Some("annie")));
    assert_eq!(merged.last_message_at, Some(at(2026, 11, 2)), "an older message does not move it back");
    assert_eq!(merged.status.as_deref(), Some("Hey there"));
    assert_eq!(store.find_contact_by_jid(inst.id, jid).await.expect("find"), Some(merged.clone()));

    let elsewhere = store
        .upsert_contact(ContactUpsert { instance_id: other.id, jid: jid.into(), ..Default::default() })
        .await
        .expect("same jid, other instance");
    assert_ne!(elsewhere.id, first.id);

    let group = store
        .upsert_contact(ContactUpsert {
            instance_id: inst.id,
            jid: "1203630@g.us".into(),
            name: Some("100% Team_A".into()),
            is_group: Some(true),
            group_admin: Some(true),
            ..Default::default()
        })
        .await
        .expect("group");
    assert!(group.is_group && group.group_admin);

    let search = |term: &'static str| {
        let store = store.clone();
        async move {
            store
                .list_contacts(inst.id, Some(term), PageRequest::default())
                .await
                .expect("search")
                .items
                .into_iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("ANN").await, vec![first.id]);
    assert_eq!(search("1555").await, vec![first.id]);
    assert_eq!(search("100%").await, vec![group.id]);
    assert_eq!(search("m_a").await, vec![group.id], "`_` matches only itself");
    assert_eq!(search("0% t").await, vec![group.id]);
    assert!(search("%").await.len() == 1, "`%` is literal");
    assert_eq!(store.list_contacts(inst.id, None, PageRequest::default()).await.expect("all").items.len(), 2);

    let blocked = store.set_contact_blocked(inst.id, first.id, true, &actor()).await.expect("block");
    assert!(blocked.is_blocked);
    assert!(store.set_contact_blocked(other.id, first.id, true, &actor()).await.expect_err("scoped").is_not_found());
    let unblocked = store.set_contact_blocked(inst.id, first.id, false, &actor()).await.expect("unblock");
    assert!(!unblocked.is_blocked);

    store.delete_contact(inst.id, first.id, &actor()).await.expect("delete");
    assert!(store.get_contact(inst.id, first.id).await.expect_err("gone").is_not_found());
    let err = store
        .upsert_contact(ContactUpsert { instance_id: InstanceId::new(), jid: jid.into(), ..Default::default() })
        .await
        .expect_err("no instance");
    assert!(matches!(err, StoreError::NotFound { entity: "instance" }), "{err:?}");
}

pub async fn webhook_config_crud_and_counters(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    let other = instance(&store, sub.id, "other").await;
    let created = store
        .create_webhook_config(
            NewWebhookConfig {
                instance_id: inst.id,
                url: "https://hooks.example.com/wa".into(),
                events: vec!["message.received".into(), "message.status".into()],
                secret: "whsec_c2VjcmV0".into(),
            },
            &actor(),
        )
        .await
        .expect("create");
    assert_eq!(created.secret.expose(), "whsec_c2VjcmV0");
    assert_eq!(store.get_webhook_config(inst.id, created.id).await.expect("read"), created);
    assert!(store.get_webhook_config(other.id, created.id).await.expect_err("scoped").is_not_found());

    let updated = store
        .update_webhook_config(
            inst.id,
            created.id,
            WebhookConfigPatch {
                events: Some(vec!["*".into()]),
                secret: Some("whsec_bmV3".into()),
                ..Default::default()
            },
            &actor(),
        )
        .await
        .expect("update");
    assert_eq!(
        (updated.events.clone(), updated.secret.expose().as_str(), updated.url.as_str()),
        (vec!["*".to_owned()], "whsec_bmV3", "https://hooks.example.com/wa")
    );

    let t1 = at(2026, 11, 5);
    store.record_webhook_outcome(created.id, DeliveryOutcome::Sent { at: t1 }).await.expect("sent");
    store.record_webhook_outcome(created.id, DeliveryOutcome::Sent { at: t1 }).await.expect("sent");
    store
        .record_webhook_outcome(created.id, DeliveryOutcome::Failed { at: t1, error: "HTTP 500".into() })
        .await
        .expect("failed");
    let counted = store.get_webhook_config(inst.id, created.id).await.expect("read");
    assert_eq!((counted.total_sent, counted.total_failed, counted.last_error.as_deref()), (2, 1, Some("HTTP 500")));
    assert_eq!((counted.last_sent_at, counted.last_failed_at), (Some(t1), Some(t1)));

    assert_eq!(store.list_webhook_configs(inst.id).await.expect("list").len(), 1);
    store.delete_webhook_config(inst.id, created.id, &actor()).await.expect("delete");
    assert!(store.list_webhook_configs(inst.id).await.expect("list").is_empty());
    let err = store.record_webhook_outcome(created.id, DeliveryOutcome::Sent { at: t1 }).await.expect_err("gone");
    assert!(err.is_not_found());
}

pub async fn session_data_round_trip(store: Arc<dyn Store>) {
    let sub = subscription(&store, 1).await;
    let inst = instance(&store, sub.id, "main").await;
    assert_eq!(store.load_session(inst.id).await.expect("load"), None);
    let t1 = at(2026, 11, 6);
    let saved = store.save_session(inst.id, vec![0, 159, 255, 7], t1, None).await.expect("save");
    assert_eq!(
        (saved.auth_state.expose().as_slice(), saved.session_valid, saved.last_backup),
        (&[0u8, 159, 255, 7][..], true, Some(t1))
    );

    store.invalidate_session(inst.id, at(2026, 11, 7), None).await.expect("invalidate");
    assert!(!store.load_session(inst.id).await.expect("load").expect("present").session_valid);

    let t3 = at(2026, 11, 8);
    let replaced = store.save_session(inst.id, vec![42; 4096], t3, None).await.expect("replace");
    assert_eq!(replaced.id, saved.id, "one session per instance");
    assert_eq!((replaced.created_at, replaced.updated_at, replaced.session_valid), (saved.created_at, t3, true));
    assert_eq!(store.load_session(inst.id).await.expect("load"), Some(replaced));

    store.delete_session(inst.id).await.expect("delete");
    assert_eq!(store.load_session(inst.id).await.expect("load"), None);
    store.invalidate_session(inst.id, t3, None).await.expect("no session: nothing to invalidate, not an error");
    assert_eq!(store.load_session(inst.id).await.expect("load"), None, "invalidating creates nothing");
    let err = store.save_session(InstanceId::new(), vec![1], t3, None).await.expect_err("no instance");
    assert!(matches!(err, StoreError::NotFound { entity: "instance" }), "{err:?}");
}

pub async fn usage_records_accumulate_per_period(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    let nov = UsagePeriod::new(2026, 11).expect("valid");
    let dec = UsagePeriod::new(2026, 12).expect("valid");
    let delta = |instance_id, record_type, period, count| UsageDelta {
        subscription_id: sub.id,
        instance_id,
        record_type,
        period,
        count,
        at: at(2026, 11, 9),
    };
    for _ in 0..2 {
        store
            .add_usage(&[
                delta(Some(inst.id), UsageRecordType::MessagesSent, nov, 5),
                delta(Some(inst.id), UsageRecordType::ApiCalls, nov, 1),
                delta(None, UsageRecordType::MessagesSent, nov, 2),
                delta(Some(inst.id), UsageRecordType::MessagesSent, dec, 1),
            ])
            .await
            .expect("add");
    }
    let all =
        store.list_usage(UsageFilter { subscription_id: sub.id, instance_id: None, period: None }).await.expect("all");
    assert_eq!(all.len(), 4, "one row per (subscription, instance, type, period): {all:?}");
    let nov_inst = store
        .list_usage(UsageFilter { subscription_id: sub.id, instance_id: Some(inst.id), period: Some(nov) })
        .await
        .expect("filtered");
    let counts: Vec<_> = nov_inst.iter().map(|r| (r.record_type, r.count)).collect();
    assert_eq!(counts, vec![(UsageRecordType::ApiCalls, 2), (UsageRecordType::MessagesSent, 10)]);
    let unattributed: Vec<_> = all.iter().filter(|r| r.instance_id.is_none()).map(|r| r.count).collect();
    assert_eq!(unattributed, vec![4]);
}

pub async fn audit_log_filters_and_order(store: Arc<dyn Store>) {
    let acme = subscription(&store, 1).await;
    let globex = subscription(&store, 1).await;
    let ann = UserId::new();
    let before = Timestamp::now();
    for action in ["auth.login", "auth.logout", "auth.login"] {
        store
            .append_audit(NewAuditEntry {
                subscription_id: Some(acme.id),
                action: action.into(),
                resource: "session".into(),
                resource_id: None,
                actor: Actor::user(ann, Some("198.51.100.1".into())),
            })
            .await
            .expect("append");
    }
    let key = ApiKeyId::new();
    store
        .append_audit(NewAuditEntry {
            subscription_id: Some(globex.id),
            action: "message.send".into(),
            resource: "message".into(),
            resource_id: Some("m1".into()),
            actor: Actor::api_key(key, None),
        })
        .await
        .expect("append");

    let by_ann = store
        .list_audit(AuditFilter { user_id: Some(ann), ..Default::default() }, PageRequest::default())
        .await
        .expect("by user");
    assert_eq!(
        by_ann.items.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["auth.login", "auth.logout", "auth.login"]
    );
    assert!(by_ann.items.windows(2).all(|w| w[0].id > w[1].id), "newest first");

    let by_key = store
        .list_audit(AuditFilter { api_key_id: Some(key), ..Default::default() }, PageRequest::default())
        .await
        .expect("by key");
    assert_eq!((by_key.items.len(), by_key.items[0].subscription_id), (1, Some(globex.id)));

    let acme_sessions = store
        .list_audit(
            AuditFilter {
                subscription_id: Some(acme.id),
                resource: Some("session".into()),
                since: Some(before),
                ..Default::default()
            },
            PageRequest::first(2),
        )
        .await
        .expect("page 1");
    assert_eq!(acme_sessions.items.len(), 2);
    let rest = store
        .list_audit(
            AuditFilter {
                subscription_id: Some(acme.id),
                resource: Some("session".into()),
                since: Some(before),
                ..Default::default()
            },
            PageRequest::new(acme_sessions.next, 2),
        )
        .await
        .expect("page 2");
    assert_eq!((rest.items.len(), rest.next), (1, None));

    let none_yet = store
        .list_audit(
            AuditFilter { until: Some(before), resource: Some("session".into()), ..Default::default() },
            PageRequest::default(),
        )
        .await
        .expect("until");
    assert!(none_yet.items.is_empty());
}

pub async fn pagination_is_stable_under_inserts(store: Arc<dyn Store>) {
    let sub = subscription(&store, 100).await;
    let mut expected = Vec::new();
    for n in 0..7 {
        expected.push(instance(&store, sub.id, &format!("i{n}")).await.id);
    }
    let scope = Scope::Subscription(sub.id);
    let first = store.list_instances(scope, PageRequest::first(3)).await.expect("page 1");
    assert_eq!(first.items.iter().map(|i| i.id).collect::<Vec<_>>(), expected[..3]);

    // Rows arriving and leaving between page requests neither repeat nor skip what was already there.
    let late = instance(&store, sub.id, "late").await.id;
    store.delete_instance(scope, expected[0], &actor()).await.expect("delete seen row");
    let mut seen: Vec<InstanceId> = first.items.iter().map(|i| i.id).collect();
    let mut next = first.next;
    while let Some(cursor) = next {
        let page = store.list_instances(scope, PageRequest::new(Some(cursor), 3)).await.expect("page");
        seen.extend(page.items.iter().map(|i| i.id));
        next = page.next;
    }
    expected.push(late);
    assert_eq!(seen, expected);
}

pub async fn concurrent_slot_reservations_never_overshoot(store: Arc<dyn Store>) {
    let sub = subscription(&store, 10).await;
    let attempts = (0..64).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.reserve_instance_slot(sub.id).await })
    });
    let results = futures::future::join_all(attempts).await;
    let mut granted = 0;
    for result in results {
        match result.expect("task") {
            Ok(reserved) => {
                assert!(reserved.used <= 10, "{reserved:?}");
                granted += 1;
            }
            Err(StoreError::LimitReached(Limit::Instances { max: 10 })) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(granted, 10);
    assert_eq!(store.get_subscription(sub.id).await.expect("read").current_instances, 10);

    store.release_instance_slot(sub.id).await.expect("release");
    store.reserve_instance_slot(sub.id).await.expect("a released slot can be taken again");
    let err = store.release_instance_slot(SubscriptionId::new()).await.expect_err("no such subscription");
    assert!(err.is_not_found());
}

pub async fn concurrent_instance_creates_never_overshoot(store: Arc<dyn Store>) {
    let sub = subscription(&store, 10).await;
    let attempts = (0..64).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .create_instance(
                    NewInstance {
                        name: format!("i{n}"),
                        subscription_id: sub.id,
                        created_by_id: None,
                        driver: DriverKind::Sandbox,
                        settings: json!({}),
                    },
                    &Actor::system(),
                )
                .await
        })
    });
    let mut created = 0;
    for result in futures::future::join_all(attempts).await {
        match result.expect("task") {
            Ok(_) => created += 1,
            Err(StoreError::LimitReached(_)) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(created, 10);
    let listed = store.list_instances(Scope::Subscription(sub.id), PageRequest::first(100)).await.expect("list");
    assert_eq!(listed.items.len(), 10);
    assert_eq!(store.get_subscription(sub.id).await.expect("read").current_instances, 10);
}

pub async fn concurrent_message_reservations_never_overshoot(store: Arc<dyn Store>) {
    let sub = store
        .create_subscription(
            NewSubscription {
                name: "Quota".into(),
                tier: Tier::Free,
                max_instances: 1,
                monthly_messages: 100,
                limit_overrides: Default::default(),
            },
            &Actor::system(),
        )
        .await
        .expect("create");
    let now = Timestamp::now();
    let attempts = (0..64).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.reserve_messages(sub.id, 3, now).await })
    });
    let mut granted = 0;
    for result in futures::future::join_all(attempts).await {
        match result.expect("task") {
            Ok(reserved) => {
                assert!(reserved.used <= 100);
                granted += 1;
            }
            Err(StoreError::LimitReached(Limit::MonthlyMessages { max: 100 })) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(granted, 33);
    assert_eq!(store.get_subscription(sub.id).await.expect("read").messages_used, 99);
    store.reserve_messages(sub.id, 1, now).await.expect("the last one fits");
    assert!(matches!(store.reserve_messages(sub.id, 1, now).await, Err(StoreError::LimitReached(_))));
}

pub async fn message_quota_rolls_over_monthly(store: Arc<dyn Store>) {
    let sub = store
        .create_subscription(
            NewSubscription {
                name: "Quota".into(),
                tier: Tier::Free,
                max_instances: 1,
                monthly_messages: 10,
                limit_overrides: Default::default(),
            },
            &Actor::system(),
        )
        .await
        .expect("create");
    let this_month = Timestamp::now();
    let next_month = this_month.period().next().start().checked_add(chrono::Duration::hours(1)).expect("in range");
    let reserved = store.reserve_messages(sub.id, 10, this_month).await.expect("fill");
    assert_eq!((reserved.used, reserved.limit, reserved.period), (10, 10, this_month.period()));
    assert!(matches!(store.reserve_messages(sub.id, 1, this_month).await, Err(StoreError::LimitReached(_))));

    let rolled = store.reserve_messages(sub.id, 4, next_month).await.expect("new month, new allowance");
    assert_eq!((rolled.used, rolled.period), (4, next_month.period()));
    let read = store.get_subscription(sub.id).await.expect("read");
    assert_eq!((read.messages_used, read.last_usage_reset), (4, next_month.period().start()));

    // A node whose clock still says last month does not undo the rollover.
    let late = store.reserve_messages(sub.id, 1, this_month).await.expect("late node");
    assert_eq!(late.used, 5);
    assert_eq!(store.get_subscription(sub.id).await.expect("read").last_usage_reset, next_month.period().start());
    assert!(store.reserve_messages(sub.id, 0, this_month).await.is_err(), "non-positive counts are refused");
}

pub async fn inactive_subscription_refuses_reservations(store: Arc<dyn Store>) {
    let sub = subscription(&store, 5).await;
    store
        .update_subscription(sub.id, SubscriptionPatch { is_active: Some(false), ..Default::default() }, &actor())
        .await
        .expect("deactivate");
    let slot = store.reserve_instance_slot(sub.id).await.expect_err("inactive");
    assert!(matches!(slot, StoreError::Inactive { entity: "subscription" }), "{slot:?}");
    let msgs = store.reserve_messages(sub.id, 1, Timestamp::now()).await.expect_err("inactive");
    assert!(matches!(msgs, StoreError::Inactive { .. }), "{msgs:?}");
    let create = store
        .create_instance(
            NewInstance {
                name: "x".into(),
                subscription_id: sub.id,
                created_by_id: None,
                driver: DriverKind::Sandbox,
                settings: json!({}),
            },
            &Actor::system(),
        )
        .await
        .expect_err("inactive");
    assert!(matches!(create, StoreError::Inactive { .. }), "{create:?}");
    let missing = store.reserve_instance_slot(SubscriptionId::new()).await.expect_err("missing");
    assert!(missing.is_not_found());
}

pub async fn missing_rows_are_not_found(store: Arc<dyn Store>) {
    let sub = subscription(&store, 1).await;
    let inst = instance(&store, sub.id, "main").await;
    assert!(store.get_subscription(SubscriptionId::new()).await.expect_err("x").is_not_found());
    assert!(store.get_user(Scope::All, UserId::new()).await.expect_err("x").is_not_found());
    assert!(store.get_instance(Scope::All, InstanceId::new()).await.expect_err("x").is_not_found());
    assert!(store.get_api_key(inst.id, ApiKeyId::new()).await.expect_err("x").is_not_found());
    assert!(store.get_contact(inst.id, gw_core::ContactId::new()).await.expect_err("x").is_not_found());
    assert!(store.get_webhook_config(inst.id, gw_core::WebhookConfigId::new()).await.expect_err("x").is_not_found());
    let patch = SubscriptionPatch { name: Some("x".into()), ..Default::default() };
    assert!(store.update_subscription(SubscriptionId::new(), patch, &actor()).await.expect_err("x").is_not_found());
    assert!(store.delete_subscription(SubscriptionId::new(), &actor()).await.expect_err("x").is_not_found());
    assert!(store.record_login(UserId::new(), Timestamp::now()).await.expect_err("x").is_not_found());
    assert!(store.ping().await.is_ok());
}

pub async fn limit_overrides_round_trip(store: Arc<dyn Store>) {
    let overrides = LimitOverrides { api_rate_limit_per_minute: Some(600), plugin_fuel: Some(1), ..Default::default() };
    let created = store
        .create_subscription(
            NewSubscription {
                name: "Acme".into(),
                tier: Tier::Pro,
                max_instances: 5,
                monthly_messages: 10,
                limit_overrides: overrides.clone(),
            },
            &actor(),
        )
        .await
        .expect("create");
    assert_eq!(created.limit_overrides, overrides);
    let renamed = store
        .update_subscription(
            created.id,
            SubscriptionPatch { name: Some("Acme 2".into()), ..Default::default() },
            &actor(),
        )
        .await
        .expect("rename");
    assert_eq!(renamed.limit_overrides, overrides, "a patch without overrides keeps them");
    let cleared = store
        .update_subscription(
            created.id,
            SubscriptionPatch { limit_overrides: Some(LimitOverrides::default()), ..Default::default() },
            &actor(),
        )
        .await
        .expect("clear");
    assert_eq!(store.get_subscription(created.id).await.expect("read").limit_overrides, LimitOverrides::default());
    assert_eq!(cleared.limit_overrides, LimitOverrides::default());
}

fn refresh_token(user_id: UserId, family_id: TokenFamilyId, hash: &[u8], expires_at: Timestamp) -> NewRefreshToken {
    NewRefreshToken { user_id, family_id, token_hash: hash.to_vec(), issued_at: Timestamp::now(), expires_at }
}

pub async fn refresh_tokens_rotate_once_and_reuse_revokes_the_family(store: Arc<dyn Store>) {
    let sub = subscription(&store, 1).await;
    let ann = owner(&store, sub.id, "ann").await;
    let later = at(2099, 1, 1);
    let family = TokenFamilyId::new();
    let first = store.create_refresh_token(refresh_token(ann.id, family, b"t1", later)).await.expect("create");
    assert_eq!(store.find_refresh_token(b"t1").await.expect("find"), Some(first.clone()));
    assert_eq!(store.find_refresh_token(b"nope").await.expect("find"), None);

    // The successor's user and family come from the consumed token, whatever the caller put there.
    let now = Timestamp::now();
    let outcome = store
        .rotate_refresh_token(b"t1", refresh_token(UserId::new(), TokenFamilyId::new(), b"t2", later), now)
        .await
        .expect("rotate");
    let RefreshOutcome::Rotated { previous, successor } = outcome else { panic!("expected rotation: {outcome:?}") };
    assert_eq!((previous.id, previous.used_at), (first.id, Some(now)));
    assert_eq!((successor.user_id, successor.family_id, successor.token_hash.as_slice()), (ann.id, family, &b"t2"[..]));

    let reuse =
        store.rotate_refresh_token(b"t1", refresh_token(ann.id, family, b"t3", later), now).await.expect("reuse");
    assert_eq!(reuse, RefreshOutcome::Reused { user_id: ann.id, family_id: family });
    assert!(store.find_refresh_token(b"t2").await.expect("find").expect("kept").revoked_at.is_some());
    let revoked =
        store.rotate_refresh_token(b"t2", refresh_token(ann.id, family, b"t4", later), now).await.expect("revoked");
    assert_eq!(revoked, RefreshOutcome::Invalid);
    assert_eq!(store.find_refresh_token(b"t3").await.expect("find"), None, "nothing stored on reuse");

    let expired_family = TokenFamilyId::new();
    store.create_refresh_token(refresh_token(ann.id, expired_family, b"old", at(2020, 1, 1))).await.expect("create");
    let expired = store
        .rotate_refresh_token(b"old", refresh_token(ann.id, expired_family, b"x", later), now)
        .await
        .expect("expired");
    assert_eq!(expired, RefreshOutcome::Invalid);
    let unknown =
        store.rotate_refresh_token(b"??", refresh_token(ann.id, family, b"y", later), now).await.expect("unknown");
    assert_eq!(unknown, RefreshOutcome::Invalid);

    let other_family = TokenFamilyId::new();
    store.create_refresh_token(refresh_token(ann.id, other_family, b"u1", later)).await.expect("create");
    store.revoke_refresh_family(other_family, now).await.expect("revoke family");
    assert!(store.find_refresh_token(b"u1").await.expect("find").expect("kept").revoked_at.is_some());

    store.create_refresh_token(refresh_token(ann.id, TokenFamilyId::new(), b"v1", later)).await.expect("create");
    store.revoke_user_refresh_tokens(ann.id, now).await.expect("revoke user");
    let v1 = store.rotate_refresh_token(b"v1", refresh_token(ann.id, family, b"v2", later), now).await.expect("rotate");
    assert_eq!(v1, RefreshOutcome::Invalid);

    store.delete_user(Scope::All, ann.id, &actor()).await.expect("delete user");
    assert_eq!(store.find_refresh_token(b"t2").await.expect("find"), None, "tokens go with their user");
    let orphan =
        store.create_refresh_token(refresh_token(UserId::new(), family, b"z", later)).await.expect_err("no user");
    assert!(matches!(orphan, StoreError::NotFound { entity: "user" }), "{orphan:?}");
}

pub async fn concurrent_refresh_rotations_have_one_winner(store: Arc<dyn Store>) {
    let sub = subscription(&store, 1).await;
    let ann = owner(&store, sub.id, "ann").await;
    let family = TokenFamilyId::new();
    store.create_refresh_token(refresh_token(ann.id, family, b"live", at(2099, 1, 1))).await.expect("create");
    let attempts = (0..16u8).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .rotate_refresh_token(
                    b"live",
                    refresh_token(ann.id, family, &[b'n', n], at(2099, 1, 1)),
                    Timestamp::now(),
                )
                .await
        })
    });
    let mut rotated = 0;
    for result in futures::future::join_all(attempts).await {
        match result.expect("task").expect("rotate") {
            RefreshOutcome::Rotated { .. } => rotated += 1,
            RefreshOutcome::Reused { .. } | RefreshOutcome::Invalid => {}
        }
    }
    assert_eq!(rotated, 1);
}

/// A fresh WhatsApp-style id for an outbound message.
fn wa_id() -> String {
    format!("3EB0{}", &uuid::Uuid::now_v7().simple().to_string().to_uppercase()[14..32])
}

/// An outbound text message to enqueue (also for backend-specific tests).
pub fn outbound(
    inst: &gw_core::Instance,
    chat: &str,
    text: &str,
    key: Option<&str>,
    hash: &[u8],
) -> NewOutboundMessage {
    NewOutboundMessage {
        id: gw_core::MessageId::new(),
        instance_id: inst.id,
        charge_to: inst.subscription_id,
        wa_message_id: wa_id(),
        chat_jid: chat.into(),
        kind: gw_core::MessageKind::Text,
        content: json!({}),
        text: Some(text.into()),
        quoted_message_id: None,
        media: None,
        idempotency_key: key.map(Into::into),
        request_hash: key.map(|_| hash.to_vec()),
        origin: "api".into(),
        dropped_reason: None,
        at: Timestamp::now(),
    }
}

pub async fn outbox_is_idempotent_and_ordered(store: Arc<dyn Store>) {
    let sub = subscription(&store, 5).await;
    let inst = instance(&store, sub.id, "outbox").await;
    let chat = "15550001@s.whatsapp.net";
    let first = match store.enqueue_message(outbound(&inst, chat, "one", Some("k1"), b"h1")).await.expect("enqueue") {
        Enqueued::Created(m) => m,
        other => panic!("expected a new message, got {other:?}"),
    };
    assert_eq!(first.status, gw_core::MessageStatus::Queued);
    match store.enqueue_message(outbound(&inst, chat, "one", Some("k1"), b"h1")).await.expect("replay") {
        Enqueued::Replayed(m) => assert_eq!(m.id, first.id),
        other => panic!("expected the first result, got {other:?}"),
    }
    let (found, hash) = store.find_idempotent_message(inst.id, "k1").await.expect("find").expect("found");
    assert_eq!((found.id, hash.as_deref()), (first.id, Some(&b"h1"[..])));
    assert_eq!(store.find_idempotent_message(inst.id, "k2").await.expect("find"), None);
    assert_eq!(
        store.enqueue_message(outbound(&inst, chat, "other", Some("k1"), b"h2")).await.expect("reuse"),
        Enqueued::KeyReused
    );
    for text in ["two", "three"] {
        store.enqueue_message(outbound(&inst, chat, text, None, b"")).await.expect("enqueue");
    }
    let queued = store.queued_messages(inst.id, 10).await.expect("queued");
    let texts: Vec<_> = queued.iter().map(|q| q.message.text.clone().unwrap_or_default()).collect();
    assert_eq!(texts, ["one", "two", "three"]);

    assert!(first.wa_message_id.as_deref().is_some_and(|id| id.starts_with("3EB0")), "the id is set when queued");
    let sent = store.mark_message_sent(first.id, Timestamp::now(), None).await.expect("sent");
    assert_eq!(sent.status, gw_core::MessageStatus::Sent);
    assert_eq!(sent.wa_message_id, first.wa_message_id, "sending keeps the id given at acceptance");
    assert!(matches!(
        store.mark_message_sent(first.id, Timestamp::now(), None).await,
        Err(StoreError::NotFound { .. })
    ));
    let failed =
        store.mark_message_failed(queued[1].message.id, "no such user", Timestamp::now(), None).await.expect("failed");
    assert_eq!(failed.failure_reason.as_deref(), Some("no such user"));
    assert_eq!(store.queued_messages(inst.id, 10).await.expect("queued").len(), 1);
    let page = store.list_messages(inst.id, Some(chat), PageRequest::first(2)).await.expect("list");
    assert_eq!(page.items.len(), 2);
    assert!(page.next.is_some());
}

async fn subscription_with_quota(store: &Arc<dyn Store>, monthly_messages: i64) -> gw_core::Subscription {
    store
        .create_subscription(
            NewSubscription {
                name: "Quota".into(),
                tier: Tier::Starter,
                max_instances: 5,
                monthly_messages,
                limit_overrides: Default::default(),
            },
            &Actor::system(),
        )
        .await
        .expect("create subscription")
}

/// The quota counts exactly the stored outbound rows: the charge is taken in the insert's transaction, so of many
/// concurrent sends against a small quota exactly `quota` are stored and `messages_used` equals them, and a replay
/// (or a reused key) charges nothing, even when the quota is used up.
pub async fn concurrent_enqueues_charge_exactly_what_is_stored(store: Arc<dyn Store>) {
    const QUOTA: i64 = 7;
    let sub = subscription_with_quota(&store, QUOTA).await;
    let inst = instance(&store, sub.id, "quota").await;
    let chat = "15550009@s.whatsapp.net";
    let attempts = (0..40).map(|n| {
        let store = store.clone();
        let new = outbound(&inst, chat, &format!("m{n}"), Some(&format!("key-{n}")), b"h");
        tokio::spawn(async move { store.enqueue_message(new).await })
    });
    let mut created = Vec::new();
    for result in futures::future::join_all(attempts).await {
        match result.expect("task") {
            Ok(Enqueued::Created(message)) => created.push(message),
            Err(StoreError::LimitReached(Limit::MonthlyMessages { max: QUOTA })) => {}
            other => panic!("unexpected outcome: {other:?}"),
        }
    }
    assert_eq!(created.len(), QUOTA as usize);
    let stored = store.list_messages(inst.id, None, PageRequest::first(100)).await.expect("list");
    assert_eq!(stored.items.len(), QUOTA as usize, "a refused send stores nothing");
    assert_eq!(store.get_subscription(sub.id).await.expect("read").messages_used, QUOTA);

    // The quota is used up, yet a replay is answered (it was paid for) and charges nothing; a reused key neither.
    let first = &created[0];
    let key = first.idempotency_key.clone().expect("keyed");
    let replay = NewOutboundMessage { text: first.text.clone(), ..outbound(&inst, chat, "", Some(&key), b"h") };
    match store.enqueue_message(replay).await.expect("replay") {
        Enqueued::Replayed(message) => {
            assert_eq!((message.id, &message.wa_message_id), (first.id, &first.wa_message_id), "the first result")
        }
        other => panic!("expected the first result, got {other:?}"),
    }
    let reused = store.enqueue_message(outbound(&inst, chat, "other", Some(&key), b"other")).await.expect("reused");
    assert_eq!(reused, Enqueued::KeyReused);
    assert_eq!(store.get_subscription(sub.id).await.expect("read").messages_used, QUOTA);
}

/// A message the pipeline dropped is stored as `dropped` and charged like any accepted message (its row and its
/// charge are one transaction); an inactive subscription stores and charges nothing.
pub async fn dropped_messages_are_charged_and_inactive_subscriptions_store_nothing(store: Arc<dyn Store>) {
    let sub = subscription_with_quota(&store, 10).await;
    let inst = instance(&store, sub.id, "dropped").await;
    let dropped = NewOutboundMessage {
        dropped_reason: Some("opt-out: the recipient opted out".into()),
        ..outbound(&inst, "15550010@s.whatsapp.net", "hi", None, b"")
    };
    let Enqueued::Created(message) = store.enqueue_message(dropped).await.expect("enqueue") else {
        panic!("expected a new message")
    };
    assert_eq!(message.status, gw_core::MessageStatus::Dropped);
    assert_eq!(store.get_subscription(sub.id).await.expect("read").messages_used, 1);
    assert!(store.queued_messages(inst.id, 10).await.expect("queued").is_empty(), "a dropped message is never sent");

    store
        .update_subscription(sub.id, SubscriptionPatch { is_active: Some(false), ..Default::default() }, &actor())
        .await
        .expect("deactivate");
    let refused = store.enqueue_message(outbound(&inst, "15550010@s.whatsapp.net", "again", None, b"")).await;
    assert!(matches!(refused, Err(StoreError::Inactive { entity: "subscription" })), "{refused:?}");
    let stored = store.list_messages(inst.id, None, PageRequest::first(10)).await.expect("list");
    assert_eq!(stored.items.len(), 1);
    assert_eq!(store.get_subscription(sub.id).await.expect("read").messages_used, 1);
}

pub async fn receipts_only_move_messages_forward(store: Arc<dyn Store>) {
    let sub = subscription(&store, 5).await;
    let inst = instance(&store, sub.id, "receipts").await;
    let Enqueued::Created(m) =
        store.enqueue_message(outbound(&inst, "15550002@s.whatsapp.net", "hi", None, b"")).await.expect("enqueue")
    else {
        panic!("expected a new message")
    };
    let queued_receipt = store
        .apply_receipt(
            inst.id,
            &[m.wa_message_id.clone().expect("id")],
            gw_core::MessageStatus::Read,
            Timestamp::now(),
            None,
        )
        .await
        .expect("early receipt");
    assert!(queued_receipt.is_empty(), "a receipt does not move a message that has not been sent yet");
    store.mark_message_sent(m.id, Timestamp::now(), None).await.expect("sent");
    let ids = vec![m.wa_message_id.clone().expect("id")];
    let read =
        store.apply_receipt(inst.id, &ids, gw_core::MessageStatus::Read, Timestamp::now(), None).await.expect("read");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].status, gw_core::MessageStatus::Read);
    assert!(read[0].delivered_at.is_some() && read[0].read_at.is_some());
    let late = store.apply_receipt(inst.id, &ids, gw_core::MessageStatus::Delivered, Timestamp::now(), None).await;
    assert!(late.expect("late receipt").is_empty(), "a late delivered receipt must not undo read");
    assert_eq!(store.get_message(inst.id, m.id).await.expect("get").status, gw_core::MessageStatus::Read);
    let other = instance(&store, sub.id, "receipts-other").await;
    assert!(matches!(store.get_message(other.id, m.id).await, Err(StoreError::NotFound { .. })));
}

pub async fn inbound_redelivery_is_recognised(store: Arc<dyn Store>) {
    let sub = subscription(&store, 5).await;
    let inst = instance(&store, sub.id, "inbound").await;
    let new = NewInboundMessage {
        id: gw_core::MessageId::new(),
        instance_id: inst.id,
        chat_jid: "15550003@s.whatsapp.net".into(),
        sender_jid: "15550003@s.whatsapp.net".into(),
        wa_message_id: "WAIN1".into(),
        kind: gw_core::MessageKind::Text,
        content: json!({}),
        text: Some("hello".into()),
        quoted_message_id: None,
        at: Timestamp::now(),
        fence: None,
    };
    let first = store.record_inbound(new.clone()).await.expect("record");
    assert!(first.created && !first.processed);
    let again = store.record_inbound(NewInboundMessage { id: gw_core::MessageId::new(), ..new.clone() }).await;
    let again = again.expect("redelivery");
    assert!(!again.created && !again.processed);
    assert_eq!(again.message.id, first.message.id);
    store
        .finish_inbound(
            first.message.id,
            gw_core::MessageStatus::Received,
            Some("HELLO".into()),
            None,
            Timestamp::now(),
            None,
        )
        .await
        .expect("finish");
    let third = store.record_inbound(NewInboundMessage { id: gw_core::MessageId::new(), ..new }).await.expect("third");
    assert!(third.processed);
    assert_eq!(third.message.text.as_deref(), Some("HELLO"));
}

pub async fn contacts_merge_lid_and_phone_number(store: Arc<dyn Store>) {
    let sub = subscription(&store, 5).await;
    let inst = instance(&store, sub.id, "lids").await;
    let lid = "123456789@lid";
    let pn = "15550004@s.whatsapp.net";
    let by_lid = store
        .upsert_contact(ContactUpsert {
            instance_id: inst.id,
            jid: lid.into(),
            notify: Some("Ann".into()),
            ..Default::default()
        })
        .await
        .expect("lid contact");
    let merged = store
        .upsert_contact(ContactUpsert {
            instance_id: inst.id,
            jid: pn.into(),
            lid: Some(lid.into()),
            ..Default::default()
        })
        .await
        .expect("mapping");
    assert_eq!(merged.id, by_lid.id, "the LID row becomes the phone-number row");
    assert_eq!((merged.jid.as_str(), merged.lid.as_deref(), merged.notify.as_deref()), (pn, Some(lid), Some("Ann")));
    let found = store.find_contact_by_jid(inst.id, lid).await.expect("find").expect("found by lid");
    assert_eq!(found.id, merged.id);
    let all = store.list_contacts(inst.id, None, PageRequest::first(10)).await.expect("list");
    assert_eq!(all.items.len(), 1);
}

// ---- webhook outbox --------------------------------------------------------------------------------------------

fn plus(t: Timestamp, seconds: i64) -> Timestamp {
    t.checked_add(chrono::Duration::seconds(seconds)).expect("in range")
}

async fn endpoint(store: &Arc<dyn Store>, instance_id: InstanceId, events: &[&str]) -> gw_core::WebhookConfig {
    store
        .create_webhook_config(
            NewWebhookConfig {
                instance_id,
                url: "https://hooks.example.com/wa".into(),
                events: events.iter().map(|e| (*e).to_owned()).collect(),
                secret: "whsec_c2VjcmV0".into(),
            },
            &actor(),
        )
        .await
        .expect("create webhook config")
}

fn event(instance_id: InstanceId, event_type: &str, at: Timestamp) -> NewWebhookEvent {
    NewWebhookEvent {
        instance_id,
        event_id: gw_core::EventId::new(),
        event_type: event_type.into(),
        payload: format!(r#"{{"type":"{event_type}"}}"#),
        at,
    }
}

fn completion(claimed: &ClaimedDelivery, at: Timestamp, code: u16, next: NextStep) -> DeliveryCompletion {
    DeliveryCompletion {
        id: claimed.id,
        claim_token: claimed.claim_token,
        config_id: claimed.config_id,
        at,
        status_code: Some(code),
        latency_ms: 12,
        error: (code >= 300).then(|| format!("HTTP {code}")),
        response_excerpt: Some("ok".into()),
        next,
    }
}

const WINDOW: chrono::Duration = chrono::Duration::days(5);

pub async fn webhook_outbox_enqueue_claim_complete(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    let only_messages = endpoint(&store, inst.id, &["message.received"]).await;
    let everything = endpoint(&store, inst.id, &["*"]).await;
    let inactive = endpoint(&store, inst.id, &["*"]).await;
    store
        .update_webhook_config(
            inst.id,
            inactive.id,
            WebhookConfigPatch { is_active: Some(false), ..Default::default() },
            &actor(),
        )
        .await
        .expect("deactivate");
    let t0 = at(2026, 11, 5);

    let received = event(inst.id, "message.received", t0);
    assert_eq!(store.enqueue_webhook_event(&received).await.expect("enqueue").len(), 2);
    assert!(store.enqueue_webhook_event(&received).await.expect("again").is_empty(), "idempotent per event");
    assert_eq!(store.enqueue_webhook_event(&event(inst.id, "contact.updated", t0)).await.expect("enqueue").len(), 1);
    assert!(store.enqueue_webhook_event(&event(inst.id, "webhook.test", t0)).await.expect("enqueue").is_empty());
    assert_eq!(store.webhook_queue_depth().await.expect("depth"), 3);
    assert_eq!(store.next_webhook_due_at().await.expect("due"), Some(t0));

    let claimed = store.claim_webhook_deliveries(t0, plus(t0, 60), 10).await.expect("claim");
    assert_eq!(claimed.len(), 3);
    assert!(claimed.iter().all(|c| c.url == "https://hooks.example.com/wa" && c.previous_secret.is_none()));
    assert!(store.claim_webhook_deliveries(t0, plus(t0, 60), 10).await.expect("claim").is_empty(), "leased");

    let failed = claimed.iter().find(|c| c.config_id == only_messages.id).expect("one for the first endpoint");
    let retry_at = plus(t0, 3600);
    let mut batch: Vec<_> = claimed
        .iter()
        .filter(|c| c.config_id == everything.id)
        .map(|c| completion(c, plus(t0, 1), 200, NextStep::Succeeded))
        .collect();
    batch.push(completion(failed, plus(t0, 1), 500, NextStep::RetryAt(retry_at)));
    let mut stale = completion(failed, plus(t0, 1), 200, NextStep::Succeeded);
    stale.claim_token = uuid::Uuid::now_v7();
    batch.push(stale);
    let report = store.complete_webhook_deliveries(&batch, WINDOW).await.expect("complete");
    assert_eq!((report.stale, report.disabled.len()), (1, 0));

    let sent = store.get_webhook_config(inst.id, everything.id).await.expect("read");
    assert_eq!((sent.total_sent, sent.total_failed, sent.failing_since), (2, 0, None));
    let failing = store.get_webhook_config(inst.id, only_messages.id).await.expect("read");
    assert_eq!((failing.total_sent, failing.total_failed), (0, 1));
    assert_eq!((failing.failing_since, failing.last_error.as_deref()), (Some(plus(t0, 1)), Some("HTTP 500")));
    assert_eq!(store.webhook_queue_depth().await.expect("depth"), 1);
    assert_eq!(store.next_webhook_due_at().await.expect("due"), Some(retry_at));

    assert!(store.claim_webhook_deliveries(plus(t0, 10), plus(t0, 70), 10).await.expect("claim").is_empty());
    let again = store.claim_webhook_deliveries(retry_at, plus(retry_at, 60), 10).await.expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (failed.id, 1));

    // A dispatcher that dies holding a claim loses it when the lease runs out; its late completion is refused.
    let taken_over = store.claim_webhook_deliveries(plus(retry_at, 61), plus(retry_at, 120), 10).await.expect("claim");
    assert_eq!(taken_over.len(), 1);
    assert!(taken_over[0].taken_over && !again[0].taken_over, "a take-over is reported as one");
    let late = completion(&again[0], plus(retry_at, 62), 200, NextStep::Succeeded);
    assert_eq!(store.complete_webhook_deliveries(&[late], WINDOW).await.expect("late").stale, 1);
    let done = completion(&taken_over[0], plus(retry_at, 63), 204, NextStep::Succeeded);
    assert_eq!(store.complete_webhook_deliveries(&[done], WINDOW).await.expect("done").stale, 0);

    let log = store.list_webhook_deliveries(inst.id, only_messages.id, PageRequest::first(10)).await.expect("log");
    assert_eq!(log.items.len(), 1);
    let delivery = &log.items[0];
    assert_eq!(
        (delivery.status, delivery.attempts, delivery.event_id),
        (DeliveryStatus::Succeeded, 2, received.event_id)
    );
    let codes: Vec<_> = delivery.attempt_log.iter().map(|a| (a.attempt, a.status_code)).collect();
    assert_eq!(codes, vec![(1, Some(500)), (2, Some(204))]);
    assert_eq!(store.get_webhook_delivery(inst.id, only_messages.id, delivery.id).await.expect("get"), *delivery);
    let other = instance(&store, sub.id, "other").await;
    let hidden = store.get_webhook_delivery(other.id, only_messages.id, delivery.id).await.expect_err("scoped");
    assert!(hidden.is_not_found());
    assert!(
        store
            .list_webhook_deliveries(other.id, only_messages.id, PageRequest::first(10))
            .await
            .expect("l")
            .items
            .is_empty()
    );
    assert_eq!(store.webhook_queue_depth().await.expect("depth"), 0);
}

pub async fn webhook_endpoints_are_disabled_by_410_and_by_failing_too_long(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    let gone = endpoint(&store, inst.id, &["*"]).await;
    let flaky = endpoint(&store, inst.id, &["*"]).await;
    let t0 = at(2026, 11, 5);
    store.enqueue_webhook_event(&event(inst.id, "message.received", t0)).await.expect("enqueue");
    store.enqueue_webhook_event(&event(inst.id, "message.sent", t0)).await.expect("enqueue");
    let claimed = store.claim_webhook_deliveries(t0, plus(t0, 60), 10).await.expect("claim");
    assert_eq!(claimed.len(), 4);

    let mut flaky_claims = claimed.iter().filter(|c| c.config_id == flaky.id);
    let first = flaky_claims.next().expect("first");
    let second = flaky_claims.next().expect("second");
    let gone_claim = claimed.iter().find(|c| c.config_id == gone.id).expect("gone");
    let report = store
        .complete_webhook_deliveries(
            &[
                completion(gone_claim, t0, 410, NextStep::Gone),
                completion(first, t0, 500, NextStep::RetryAt(plus(t0, 5))),
            ],
            WINDOW,
        )
        .await
        .expect("complete");
    assert_eq!(report.disabled.len(), 1);
    assert_eq!((report.disabled[0].config_id, report.disabled[0].subscription_id), (gone.id, sub.id));
    let disabled = store.get_webhook_config(inst.id, gone.id).await.expect("read");
    assert!(!disabled.is_active);
    assert_eq!(disabled.disabled_reason.as_deref(), Some("the endpoint answered 410 Gone"));

    // Still failing, but not for long enough.
    let almost = plus(t0, WINDOW.num_seconds() - 1);
    let report = store
        .complete_webhook_deliveries(&[completion(second, almost, 503, NextStep::RetryAt(plus(almost, 5)))], WINDOW)
        .await
        .expect("complete");
    assert!(report.disabled.is_empty());
    let later = plus(t0, WINDOW.num_seconds() + 10);
    let retry = store.claim_webhook_deliveries(later, plus(later, 60), 10).await.expect("claim");
    assert_eq!(retry.len(), 2, "the disabled endpoint's other delivery is not claimed");
    assert!(retry.iter().all(|c| c.config_id == flaky.id));
    let report = store
        .complete_webhook_deliveries(&[completion(&retry[0], later, 500, NextStep::RetryAt(plus(later, 5)))], WINDOW)
        .await
        .expect("complete");
    assert_eq!(report.disabled.len(), 1);
    assert!(report.disabled[0].reason.contains("every delivery failed since"), "{}", report.disabled[0].reason);
    let audit = store
        .list_audit(AuditFilter { subscription_id: Some(sub.id), ..Default::default() }, PageRequest::default())
        .await
        .expect("audit");
    let disables: Vec<_> = audit.items.iter().filter(|e| e.action == "webhook.disable").collect();
    assert_eq!(disables.len(), 2);

    // Re-enabling clears the verdict and the failure run.
    let enabled = store
        .update_webhook_config(
            inst.id,
            flaky.id,
            WebhookConfigPatch { is_active: Some(true), ..Default::default() },
            &actor(),
        )
        .await
        .expect("enable");
    assert_eq!((enabled.is_active, enabled.disabled_reason, enabled.failing_since), (true, None, None));
}

pub async fn webhook_replay_and_secret_rotation(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    let config = endpoint(&store, inst.id, &["*"]).await;
    let t0 = at(2026, 11, 5);
    for minute in 0..3 {
        store.enqueue_webhook_event(&event(inst.id, "message.received", plus(t0, minute * 60))).await.expect("enqueue");
    }
    let claimed = store.claim_webhook_deliveries(plus(t0, 600), plus(t0, 660), 10).await.expect("claim");
    let batch: Vec<_> = claimed.iter().map(|c| completion(c, plus(t0, 600), 200, NextStep::Succeeded)).collect();
    store.complete_webhook_deliveries(&batch, WINDOW).await.expect("complete");
    let first = claimed.iter().min_by_key(|c| c.id).expect("three");

    let t1 = plus(t0, 700);
    let replayed = store.replay_webhook_delivery(inst.id, config.id, first.id, t1, &actor()).await.expect("replay");
    assert_eq!((replayed.status, replayed.next_attempt_at), (DeliveryStatus::Pending, t1));
    let other = instance(&store, sub.id, "other").await;
    let err = store.replay_webhook_delivery(other.id, config.id, first.id, t1, &actor()).await.expect_err("scoped");
    assert!(err.is_not_found());
    let again = store.claim_webhook_deliveries(t1, plus(t1, 60), 10).await.expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].event_id), (first.id, first.event_id), "same delivery, same event id");

    // The range covers the two later events only; the first one is delivering and left alone.
    let count = store
        .replay_webhook_deliveries(inst.id, config.id, plus(t0, 30), plus(t0, 3600), t1, &actor())
        .await
        .expect("replay range");
    assert_eq!(count, 2);
    assert_eq!(store.webhook_queue_depth().await.expect("depth"), 3);

    let grace = plus(t1, 3600);
    let rotated =
        store.rotate_webhook_secret(inst.id, config.id, "whsec_bmV3".into(), grace, &actor()).await.expect("rotate");
    assert_eq!((rotated.secret.expose().as_str(), rotated.previous_secret_expires_at), ("whsec_bmV3", Some(grace)));
    let signed = store.claim_webhook_deliveries(t1, plus(t1, 60), 1).await.expect("claim");
    assert_eq!(signed[0].previous_secret.as_ref().map(|s| s.expose().as_str()), Some("whsec_c2VjcmV0"));
    let after_grace = store.claim_webhook_deliveries(plus(grace, 1), plus(grace, 60), 1).await.expect("claim");
    assert!(after_grace[0].previous_secret.is_none(), "the old secret stops signing after its grace period");
    assert!(
        store.rotate_webhook_secret(other.id, config.id, "whsec_eA".into(), grace, &actor()).await.is_err(),
        "scoped to the instance"
    );
}

pub async fn concurrent_webhook_claims_never_share_a_row(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    endpoint(&store, inst.id, &["*"]).await;
    let t0 = at(2026, 11, 5);
    for _ in 0..200 {
        store.enqueue_webhook_event(&event(inst.id, "message.received", t0)).await.expect("enqueue");
    }
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_webhook_deliveries(t0, plus(t0, 600), 7).await.expect("claim");
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|c| c.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.expect("claimer"));
    }
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (200, 200), "every row claimed exactly once");
}

/// Short leases renewed by their owner: a renewal extends only rows still claimed under the caller's tokens, an
/// expired lease is claimable (and the claim says it took the row over), a renewed one is not, and a renewal with an
/// old token never takes a row back or extends the new owner's lease.
pub async fn webhook_leases_renew_only_their_own_rows(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    endpoint(&store, inst.id, &["*"]).await;
    let t0 = at(2026, 11, 5);
    for _ in 0..3 {
        store.enqueue_webhook_event(&event(inst.id, "message.received", t0)).await.expect("enqueue");
    }
    let ids = |claims: &[ClaimedDelivery]| -> std::collections::BTreeSet<_> { claims.iter().map(|c| c.id).collect() };
    let first = store.claim_webhook_deliveries(t0, plus(t0, 5), 2).await.expect("claim");
    let second = store.claim_webhook_deliveries(t0, plus(t0, 5), 10).await.expect("claim");
    assert_eq!((first.len(), second.len()), (2, 1));
    assert!(first.iter().chain(&second).all(|c| !c.taken_over), "pending rows are fresh claims, not take-overs");
    assert_ne!(first[0].claim_token, second[0].claim_token);
    assert!(store.renew_webhook_leases(&[], plus(t0, 10)).await.expect("renew").is_empty());

    let renewed = store.renew_webhook_leases(&[first[0].claim_token], plus(t0, 10)).await.expect("renew");
    assert_eq!(renewed.into_iter().collect::<std::collections::BTreeSet<_>>(), ids(&first), "exactly the own rows");

    // At t0 + 6 the second claim's lease has run out and the first's was renewed to t0 + 10.
    let t6 = plus(t0, 6);
    let taken = store.claim_webhook_deliveries(t6, plus(t6, 5), 10).await.expect("claim");
    assert_eq!(ids(&taken), ids(&second), "the expired lease is claimable, the renewed ones are not");
    assert!(taken[0].taken_over, "the claim reports the take-over");
    assert_ne!(taken[0].claim_token, second[0].claim_token);

    // The old owner renews too late: nothing changes hands and the new owner's lease (to t0 + 11) is not extended.
    let stale = store.renew_webhook_leases(&[second[0].claim_token], plus(t0, 600)).await.expect("renew");
    assert!(stale.is_empty(), "a taken-over row is not renewed: {stale:?}");
    let late = completion(&second[0], plus(t0, 7), 200, NextStep::Succeeded);
    assert_eq!(store.complete_webhook_deliveries(&[late], WINDOW).await.expect("complete").stale, 1);

    // At t0 + 12 both remaining leases have run out (t0 + 10 and t0 + 11): all three rows are taken over.
    let t12 = plus(t0, 12);
    let all = store.claim_webhook_deliveries(t12, plus(t12, 5), 10).await.expect("claim");
    assert_eq!(all.len(), 3, "the stale renewal did not extend the new owner's lease");
    assert!(all.iter().all(|c| c.taken_over));

    // A completed row is no longer the claimer's to renew.
    let done = completion(&all[0], t12, 200, NextStep::Succeeded);
    assert_eq!(store.complete_webhook_deliveries(&[done], WINDOW).await.expect("complete").stale, 0);
    let renewed = store.renew_webhook_leases(&[all[0].claim_token], plus(t12, 10)).await.expect("renew");
    assert_eq!(renewed.into_iter().collect::<std::collections::BTreeSet<_>>(), ids(&all[1..]));
    assert!(store.claim_webhook_deliveries(plus(t12, 9), plus(t12, 20), 10).await.expect("claim").is_empty());
}

// ---- plugins ---------------------------------------------------------------------------------------------------

fn sha(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}

async fn plugin(store: &Arc<dyn Store>, subscription_id: SubscriptionId, name: &str) -> Plugin {
    store
        .create_plugin(
            NewPlugin { subscription_id, name: name.into(), description: Some("test".into()), max_count: 10 },
            &actor(),
        )
        .await
        .expect("create plugin")
}

async fn upload(store: &Arc<dyn Store>, plugin_id: gw_core::PluginId, byte: u8) -> PluginVersion {
    store
        .add_plugin_version(
            Scope::All,
            NewPluginVersion { plugin_id, sha256: sha(byte), bytes: vec![byte; 100], uploaded_by: None },
            &actor(),
        )
        .await
        .expect("upload")
}

fn binding(instance_id: InstanceId, plugin_id: gw_core::PluginId) -> NewPluginBinding {
    NewPluginBinding {
        instance_id,
        plugin_id,
        version_id: None,
        position: None,
        direction: gw_core::BindingDirection::Both,
        config: json!({"keyword": "hi"}),
        enabled: true,
        failure_policy: gw_core::FailurePolicy::FailOpen,
    }
}

pub async fn plugin_versions_activation_and_rollback(store: Arc<dyn Store>) {
    let sub = subscription(&store, 5).await;
    let other = subscription(&store, 5).await;
    let created = plugin(&store, sub.id, "responder").await;
    assert_eq!((created.active_version, created.latest_version), (None, 0));
    assert_eq!(
        store
            .create_plugin(
                NewPlugin { subscription_id: sub.id, name: "responder".into(), description: None, max_count: 10 },
                &actor(),
            )
            .await
            .expect_err("duplicate name")
            .conflict_key(),
        Some(UniqueKey::PluginName)
    );
    // The same name in another subscription is fine.
    plugin(&store, other.id, "responder").await;

    let v1 = upload(&store, created.id, 1).await;
    let v2 = upload(&store, created.id, 2).await;
    // Identical bytes again: a third version sharing the first one's component.
    let v3 = upload(&store, created.id, 1).await;
    assert_eq!((v1.version, v2.version, v3.version), (1, 2, 3));
    assert_eq!(v3.sha256, v1.sha256);
    assert_eq!(v1.size_bytes, 100);
    let after = store.get_plugin(Scope::Subscription(sub.id), created.id).await.expect("get");
    assert_eq!((after.active_version, after.active_version_id, after.latest_version), (Some(1), Some(v1.id), 3));
    let versions = store.list_plugin_versions(Scope::Subscription(sub.id), created.id).await.expect("versions");
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [3, 2, 1]);
    assert_eq!(store.plugin_component(&sha(2)).await.expect("component"), Some(vec![2; 100]));
    assert_eq!(store.plugin_component(&sha(9)).await.expect("component"), None);

    let activated = store.activate_plugin_version(Scope::All, created.id, 2, &actor()).await.expect("activate");
    assert_eq!((activated.active_version, activated.active_version_id), (Some(2), Some(v2.id)));
    let rolled_back = store.activate_plugin_version(Scope::All, created.id, 1, &actor()).await.expect("rollback");
    assert_eq!(rolled_back.active_version, Some(1));
    assert!(matches!(
        store.activate_plugin_version(Scope::All, created.id, 9, &actor()).await,
        Err(StoreError::NotFound { entity: "plugin version" })
    ));

    // Another tenant sees none of it.
    let foreign = Scope::Subscription(other.id);
    assert!(store.get_plugin(foreign, created.id).await.expect_err("hidden").is_not_found());
    assert!(store.list_plugin_versions(foreign, created.id).await.expect_err("hidden").is_not_found());
    assert!(store.activate_plugin_version(foreign, created.id, 2, &actor()).await.expect_err("hidden").is_not_found());
    let upload_elsewhere = store
        .add_plugin_version(
            foreign,
            NewPluginVersion { plugin_id: created.id, sha256: sha(3), bytes: vec![3], uploaded_by: None },
            &actor(),
        )
        .await;
    assert!(upload_elsewhere.expect_err("hidden").is_not_found());
    let listed = store.list_plugins(Scope::Subscription(sub.id), PageRequest::first(10)).await.expect("list");
    assert_eq!(listed.items.iter().map(|p| p.id).collect::<Vec<_>>(), [created.id]);

    let audit = store
        .list_audit(AuditFilter { subscription_id: Some(sub.id), ..Default::default() }, PageRequest::first(50))
        .await
        .expect("audit");
    let actions: Vec<_> = audit.items.iter().map(|e| e.action.as_str()).collect();
    for action in ["plugin.create", "plugin.upload", "plugin.activate"] {
        assert!(actions.contains(&action), "{action} audited: {actions:?}");
    }
}

pub async fn concurrent_plugin_creates_never_overshoot(store: Arc<dyn Store>) {
    let sub = subscription(&store, 5).await;
    let attempts = (0..24).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .create_plugin(
                    NewPlugin { subscription_id: sub.id, name: format!("p{n}"), description: None, max_count: 3 },
                    &Actor::system(),
                )
                .await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let mut created = 0;
    for result in results {
        match result.expect("task") {
            Ok(_) => created += 1,
            Err(StoreError::LimitReached(Limit::Plugins { max: 3 })) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(created, 3);
    let listed = store.list_plugins(Scope::Subscription(sub.id), PageRequest::first(50)).await.expect("list");
    assert_eq!(listed.items.len(), 3);
}

pub async fn concurrent_uploads_take_consecutive_versions(store: Arc<dyn Store>) {
    let sub = subscription(&store, 5).await;
    let created = plugin(&store, sub.id, "busy").await;
    let uploads = (0..8u8).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .add_plugin_version(
                    Scope::Subscription(sub.id),
                    NewPluginVersion { plugin_id: created.id, sha256: sha(n), bytes: vec![n; 10], uploaded_by: None },
                    &Actor::system(),
                )
                .await
        })
    });
    let mut numbers: Vec<i32> = futures::future::join_all(uploads)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("upload").version)
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=8).collect::<Vec<_>>());
}

pub async fn plugin_bindings_resolve_the_chain(store: Arc<dyn Store>) {
    let sub = subscription(&store, 5).await;
    let other = subscription(&store, 5).await;
    let inst = instance(&store, sub.id, "chain").await;
    let a = plugin(&store, sub.id, "a").await;
    let b = plugin(&store, sub.id, "b").await;
    let c = plugin(&store, sub.id, "c").await;
    let no_version = plugin(&store, sub.id, "empty").await;
    let foreign = plugin(&store, other.id, "foreign").await;
    let a1 = upload(&store, a.id, 1).await;
    let a2 = upload(&store, a.id, 2).await;
    let b1 = upload(&store, b.id, 3).await;
    upload(&store, c.id, 4).await;

    // Another tenant's plugin cannot be bound, nor can another plugin's version be pinned.
    assert!(matches!(
        store.create_plugin_binding(binding(inst.id, foreign.id), &actor()).await,
        Err(StoreError::NotFound { entity: "plugin" })
    ));
    assert!(matches!(
        store
            .create_plugin_binding(NewPluginBinding { version_id: Some(b1.id), ..binding(inst.id, a.id) }, &actor())
            .await,
        Err(StoreError::NotFound { entity: "plugin version" })
    ));

    let bound_a = store.create_plugin_binding(binding(inst.id, a.id), &actor()).await.expect("bind a");
    let bound_b = store
        .create_plugin_binding(
            NewPluginBinding {
                position: Some(-5),
                failure_policy: gw_core::FailurePolicy::FailClosed,
                direction: gw_core::BindingDirection::Inbound,
                ..binding(inst.id, b.id)
            },
            &actor(),
        )
        .await
        .expect("bind b");
    let bound_c = store
        .create_plugin_binding(NewPluginBinding { enabled: false, ..binding(inst.id, c.id) }, &actor())
        .await
        .expect("bind c");
    store.create_plugin_binding(binding(inst.id, no_version.id), &actor()).await.expect("bind empty");
    assert_eq!((bound_a.position, bound_c.position), (0, 1));
    assert_eq!(
        store.create_plugin_binding(binding(inst.id, a.id), &actor()).await.expect_err("twice").conflict_key(),
        Some(UniqueKey::PluginBinding)
    );
    let listed = store.list_plugin_bindings(inst.id).await.expect("list");
    assert_eq!(listed.iter().map(|x| x.plugin_id).collect::<Vec<_>>(), [b.id, a.id, c.id, no_version.id]);

    // Enabled bindings with a version to run, in position order; `a` follows its active version.
    let chain = store.plugin_chain(inst.id).await.expect("chain");
    let links: Vec<_> = chain.iter().map(|l| (l.plugin_name.as_str(), l.version, l.sha256.clone())).collect();
    assert_eq!(links, [("b", 1, sha(3)), ("a", 1, sha(1))]);
    assert_eq!(chain[0].failure_policy, gw_core::FailurePolicy::FailClosed);
    assert_eq!(chain[0].direction, gw_core::BindingDirection::Inbound);
    assert_eq!(chain[1].config, json!({"keyword": "hi"}));
    assert_eq!(chain[1].subscription_id, sub.id);
    assert_eq!(chain[1].version_id, a1.id);

    store.activate_plugin_version(Scope::All, a.id, 2, &actor()).await.expect("activate");
    assert_eq!(store.plugin_chain(inst.id).await.expect("chain")[1].version_id, a2.id);

    // Pin `a` to v1, move it first, enable `c`; then unpin.
    let patched = store
        .update_plugin_binding(
            inst.id,
            bound_a.id,
            PluginBindingPatch { version_id: Some(Some(a1.id)), position: Some(-10), ..Default::default() },
            &actor(),
        )
        .await
        .expect("patch");
    assert_eq!((patched.version_id, patched.position), (Some(a1.id), -10));
    assert_eq!(patched.config, json!({"keyword": "hi"}));
    store
        .update_plugin_binding(
            inst.id,
            bound_c.id,
            PluginBindingPatch { enabled: Some(true), ..Default::default() },
            &actor(),
        )
        .await
        .expect("enable");
    let chain = store.plugin_chain(inst.id).await.expect("chain");
    let links: Vec<_> = chain.iter().map(|l| (l.plugin_name.as_str(), l.version)).collect();
    assert_eq!(links, [("a", 1), ("b", 1), ("c", 1)]);
    let unpinned = store
        .update_plugin_binding(
            inst.id,
            bound_a.id,
            PluginBindingPatch { version_id: Some(None), ..Default::default() },
            &actor(),
        )
        .await
        .expect("unpin");
    assert_eq!(unpinned.version_id, None);
    assert_eq!(store.plugin_chain(inst.id).await.expect("chain")[0].version, 2);
    assert!(matches!(
        store
            .update_plugin_binding(
                inst.id,
                bound_a.id,
                PluginBindingPatch { version_id: Some(Some(b1.id)), ..Default::default() },
                &actor()
            )
            .await,
        Err(StoreError::NotFound { entity: "plugin version" })
    ));

    // Bindings are addressed through their instance.
    let elsewhere = instance(&store, sub.id, "elsewhere").await;
    assert!(store.get_plugin_binding(elsewhere.id, bound_a.id).await.expect_err("other instance").is_not_found());
    assert!(store.delete_plugin_binding(elsewhere.id, bound_a.id, &actor()).await.expect_err("other").is_not_found());
    assert_eq!(store.plugin_instances(a.id).await.expect("instances"), [inst.id]);
    store.delete_plugin_binding(inst.id, bound_a.id, &actor()).await.expect("unbind");
    assert!(store.get_plugin_binding(inst.id, bound_a.id).await.expect_err("gone").is_not_found());
    assert!(store.plugin_instances(a.id).await.expect("instances").is_empty());
    assert_eq!(store.plugin_chain(inst.id).await.expect("chain").len(), 2);
    let _ = bound_b;
}

pub async fn plugin_failures_and_logs_are_recorded_and_bounded(store: Arc<dyn Store>) {
    let sub = subscription(&store, 5).await;
    let inst = instance(&store, sub.id, "logs").await;
    let p = plugin(&store, sub.id, "noisy").await;
    upload(&store, p.id, 1).await;
    let bound = store.create_plugin_binding(binding(inst.id, p.id), &actor()).await.expect("bind");
    let at = Timestamp::now();
    for kind in ["trap", "timeout"] {
        store
            .record_plugin_failure(
                bound.id,
                &gw_core::BindingFailure { kind: kind.into(), message: format!("{kind} happened"), at },
            )
            .await
            .expect("record");
    }
    let failed = store.get_plugin_binding(inst.id, bound.id).await.expect("get");
    assert_eq!(failed.error_count, 2);
    assert_eq!(
        (failed.last_error_kind.as_deref(), failed.last_error.as_deref()),
        (Some("timeout"), Some("timeout happened"))
    );
    assert_eq!(failed.last_error_at, Some(at));
    let reset = store
        .update_plugin_binding(
            inst.id,
            bound.id,
            PluginBindingPatch { reset_errors: true, ..Default::default() },
            &actor(),
        )
        .await
        .expect("reset");
    assert_eq!((reset.error_count, reset.last_error), (0, None));

    let line = |n: usize| gw_core::PluginLogRecord {
        binding_id: bound.id,
        level: if n.is_multiple_of(2) { "info".into() } else { "shout".into() },
        message: format!("line {n}"),
        at: Timestamp::now(),
    };
    store.append_plugin_logs(&(0..8).map(line).collect::<Vec<_>>(), 5).await.expect("append");
    // A line of a binding that no longer exists is dropped, not an error.
    let gone = gw_core::PluginLogRecord { binding_id: gw_core::PluginBindingId::new(), ..line(99) };
    store.append_plugin_logs(&[gone], 5).await.expect("append orphan");
    let first = store.list_plugin_logs(inst.id, bound.id, PageRequest::first(3)).await.expect("logs");
    assert_eq!(first.items.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["line 7", "line 6", "line 5"]);
    assert_eq!(first.items[0].level, "info", "an unknown level is kept as info");
    let second = store.list_plugin_logs(inst.id, bound.id, PageRequest::new(first.next, 3)).await.expect("second page");
    assert_eq!(second.items.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["line 4", "line 3"]);
    assert!(second.next.is_none());
    let elsewhere = instance(&store, sub.id, "elsewhere").await;
    assert!(
        store.list_plugin_logs(elsewhere.id, bound.id, PageRequest::first(3)).await.expect_err("scoped").is_not_found()
    );
}

pub async fn plugin_kv_round_trip_and_limits(store: Arc<dyn Store>) {
    let sub = subscription(&store, 5).await;
    let inst = instance(&store, sub.id, "kv").await;
    let other_inst = instance(&store, sub.id, "kv2").await;
    let p = plugin(&store, sub.id, "opt-out").await;
    assert_eq!(store.plugin_kv_get(p.id, inst.id, "k").await.expect("get"), None);
    store.plugin_kv_set(p.id, inst.id, "k", b"one").await.expect("set");
    store.plugin_kv_set(p.id, inst.id, "k", b"two").await.expect("overwrite");
    assert_eq!(store.plugin_kv_get(p.id, inst.id, "k").await.expect("get").as_deref(), Some(&b"two"[..]));
    // Per instance: the same key elsewhere is another value.
    assert_eq!(store.plugin_kv_get(p.id, other_inst.id, "k").await.expect("get"), None);
    assert!(matches!(
        store.plugin_kv_set(p.id, inst.id, "big", &vec![0; PLUGIN_KV_MAX_VALUE_BYTES + 1]).await,
        Err(StoreError::LimitReached(Limit::PluginKv { what: "value_bytes", .. }))
    ));
    assert!(matches!(
        store.plugin_kv_set(p.id, inst.id, &"k".repeat(PLUGIN_KV_MAX_KEY_BYTES + 1), b"v").await,
        Err(StoreError::LimitReached(Limit::PluginKv { what: "key_bytes", .. }))
    ));
    assert!(
        store.plugin_kv_set(gw_core::PluginId::new(), inst.id, "k", b"v").await.expect_err("no plugin").is_not_found()
    );
    store.plugin_kv_delete(p.id, inst.id, "k").await.expect("delete");
    assert_eq!(store.plugin_kv_get(p.id, inst.id, "k").await.expect("get"), None);
}

pub async fn plugin_delete_cascades_and_reports_bound_instances(store: Arc<dyn Store>) {
    let sub = subscription(&store, 5).await;
    let inst = instance(&store, sub.id, "cascade").await;
    let doomed = plugin(&store, sub.id, "doomed").await;
    let keeper = plugin(&store, sub.id, "keeper").await;
    upload(&store, doomed.id, 1).await;
    upload(&store, doomed.id, 2).await;
    upload(&store, keeper.id, 2).await;
    let bound = store.create_plugin_binding(binding(inst.id, doomed.id), &actor()).await.expect("bind");
    store.plugin_kv_set(doomed.id, inst.id, "k", b"v").await.expect("kv");
    let log = gw_core::PluginLogRecord {
        binding_id: bound.id,
        level: "info".into(),
        message: "hi".into(),
        at: Timestamp::now(),
    };
    store.append_plugin_logs(&[log], 10).await.expect("log");

    let other = subscription(&store, 5).await;
    assert!(
        store
            .delete_plugin(Scope::Subscription(other.id), doomed.id, &actor())
            .await
            .expect_err("hidden")
            .is_not_found()
    );
    let affected = store.delete_plugin(Scope::Subscription(sub.id), doomed.id, &actor()).await.expect("delete");
    assert_eq!(affected, [inst.id]);
    assert!(store.get_plugin(Scope::All, doomed.id).await.expect_err("gone").is_not_found());
    assert!(store.get_plugin_binding(inst.id, bound.id).await.expect_err("binding gone").is_not_found());
    assert_eq!(store.plugin_kv_get(doomed.id, inst.id, "k").await.expect("kv"), None);
    // Bytes only the deleted plugin used are gone; shared ones stay.
    assert_eq!(store.plugin_component(&sha(1)).await.expect("component"), None);
    assert!(store.plugin_component(&sha(2)).await.expect("component").is_some());

    // Deleting the instance takes its bindings along.
    store.create_plugin_binding(binding(inst.id, keeper.id), &actor()).await.expect("bind keeper");
    store.delete_instance(Scope::All, inst.id, &actor()).await.expect("delete instance");
    assert!(store.plugin_instances(keeper.id).await.expect("instances").is_empty());
}

pub async fn store_catalog_adds_the_subscriptions_limits(store: Arc<dyn Store>) {
    use gw_core::PluginCatalog as _;
    let sub = subscription(&store, 5).await;
    let inst = instance(&store, sub.id, "catalog").await;
    let p = plugin(&store, sub.id, "limited").await;
    upload(&store, p.id, 7).await;
    store.create_plugin_binding(binding(inst.id, p.id), &actor()).await.expect("bind");
    let limits = gw_core::PluginLimits { fuel: 42, memory_bytes: 1 << 20, timeout_ms: 50, max_module_bytes: 1 << 20 };
    let expected_sub = sub.id;
    let catalog = StoreCatalog::new(
        store.clone(),
        Arc::new(move |s: &gw_core::Subscription| {
            assert_eq!(s.id, expected_sub);
            limits
        }),
    );
    let chain = catalog.chain(inst.id).await.expect("chain");
    assert_eq!(chain.len(), 1);
    assert_eq!((chain[0].limits, chain[0].sha256.clone(), chain[0].plugin_name.as_str()), (limits, sha(7), "limited"));
    assert_eq!(catalog.component(&sha(7)).await.expect("component"), Some(vec![7; 100]));
    assert!(catalog.chain(instance(&store, sub.id, "empty").await.id).await.expect("empty chain").is_empty());
    catalog.kv_set(p.id, inst.id, "k", b"v".to_vec()).await.expect("kv set");
    assert_eq!(catalog.kv_get(p.id, inst.id, "k").await.expect("kv get"), Some(b"v".to_vec()));

    // A write past a limit of the contract is refused to the plugin (the WIT's `err`), not a failure of the store
    // that would fail the call as `host_error`.
    let refused = |result| matches!(result, Err(gw_core::KvSetError::Refused(_)));
    assert!(refused(catalog.kv_set(p.id, inst.id, &"k".repeat(PLUGIN_KV_MAX_KEY_BYTES + 1), b"v".to_vec()).await));
    assert!(refused(catalog.kv_set(p.id, inst.id, "big", vec![0; PLUGIN_KV_MAX_VALUE_BYTES + 1]).await));
    for i in 1..PLUGIN_KV_MAX_KEYS {
        catalog.kv_set(p.id, inst.id, &format!("fill-{i}"), b"v".to_vec()).await.expect("under the key limit");
    }
    let past = catalog.kv_set(p.id, inst.id, "one-too-many", b"v".to_vec()).await;
    assert_eq!(past, Err(gw_core::KvSetError::Refused(format!("keys limit reached (at most {PLUGIN_KV_MAX_KEYS})"))));
    catalog.kv_set(p.id, inst.id, "k", b"overwrite".to_vec()).await.expect("an existing key can still be written");
}
