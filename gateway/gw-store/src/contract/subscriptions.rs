//! The contract of subscriptions: CRUD, instance slots, the monthly message allowance and its rollover, limit
//! overrides.

use std::sync::Arc;

use gw_core::{DriverKind, LimitOverrides, SubscriptionId, Tier, Timestamp};
use serde_json::json;

use super::fixtures::{actor, instance, owner, subscription};
use crate::*;

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
