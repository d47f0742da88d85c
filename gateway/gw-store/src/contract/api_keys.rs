//! The contract of API keys: CRUD and lookup by hash.

use std::sync::Arc;

use gw_core::{ApiKeyHash, ApiKeyId, InstanceId};

use super::fixtures::{actor, at, instance, new_key, subscription};
use crate::*;

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
        .update_instance(
            Visibility::All,
            inst.id,
            InstancePatch { is_active: Some(false), ..Default::default() },
            &actor(),
        )
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
        .list_audit(
            AuditFilter { resource: Some(gw_core::AuditResource::ApiKey), ..Default::default() },
            PageRequest::default(),
        )
        .await
        .expect("audit");
    let actions: Vec<&str> = audit.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["api_key.delete", "api_key.create", "api_key.revoke", "api_key.update", "api_key.create"]);
}
