//! The contract of the audit log: filters and newest-first order.

use std::sync::Arc;

use gw_core::{ApiKeyId, Timestamp, UserId};

use super::fixtures::subscription;
use crate::*;

pub async fn audit_log_filters_and_order(store: Arc<dyn Store>) {
    let acme = subscription(&store, 1).await;
    let globex = subscription(&store, 1).await;
    let ann = UserId::new();
    let before = Timestamp::now();
    for action in [gw_core::AuditAction::AuthLogin, gw_core::AuditAction::AuthLogout, gw_core::AuditAction::AuthLogin] {
        store
            .append_audit(NewAuditEntry {
                subscription_id: Some(acme.id),
                action,
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
            action: gw_core::AuditAction::InstanceUpdate,
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
                resource: Some(gw_core::AuditResource::Session),
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
                resource: Some(gw_core::AuditResource::Session),
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
            AuditFilter { until: Some(before), resource: Some(gw_core::AuditResource::Session), ..Default::default() },
            PageRequest::default(),
        )
        .await
        .expect("until");
    assert!(none_yet.items.is_empty());

    let logouts = store
        .list_audit(
            AuditFilter { action: Some(gw_core::AuditAction::AuthLogout), ..Default::default() },
            PageRequest::default(),
        )
        .await
        .expect("by action");
    assert_eq!(
        logouts.items.iter().map(|e| (e.action, e.resource, e.subscription_id)).collect::<Vec<_>>(),
        [(gw_core::AuditAction::AuthLogout, gw_core::AuditResource::Session, Some(acme.id))]
    );
}
