//! The contract every aggregate shares: keyset pagination, not-found errors.

use std::sync::Arc;

use gw_core::{ApiKeyId, InstanceId, SubscriptionId, Timestamp, UserId};

use super::fixtures::{actor, instance, subscription};
use crate::*;

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
