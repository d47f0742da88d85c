//! The contract of instances: CRUD, connection updates, deletion (usage kept), concurrent creation against the
//! slot limit.

use std::sync::Arc;

use gw_core::{DriverKind, InstanceId, InstanceStatus, Timestamp, UsagePeriod, UsageRecordType};
use serde_json::json;

use super::fixtures::{actor, at, day, instance, new_key, owner, subscription};
use crate::*;

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
    assert_eq!(store.get_instance(Visibility::Subscription(acme.id), created.id).await.expect("read"), created);

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
            Visibility::Subscription(acme.id),
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
            Visibility::All,
            second.id,
            InstancePatch { name: Some("sales".into()), ..Default::default() },
            &actor(),
        )
        .await
        .expect_err("rename onto a taken name");
    assert_eq!(clash.conflict_key(), Some(UniqueKey::InstanceName));

    let listed = store.list_instances(Visibility::Subscription(acme.id), PageRequest::default()).await.expect("list");
    assert_eq!(listed.items.iter().map(|i| i.id).collect::<Vec<_>>(), vec![created.id, second.id]);

    store
        .update_instance(
            Visibility::All,
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

    store.delete_instance(Visibility::Subscription(acme.id), created.id, &actor()).await.expect("delete");
    assert!(store.get_instance(Visibility::All, created.id).await.expect_err("gone").is_not_found());
    assert_eq!(store.get_subscription(acme.id).await.expect("read").current_instances, 1, "slot released");

    store.delete_user(Visibility::All, ann.id, &actor()).await.expect("delete creator");
    let audit = store
        .list_audit(
            AuditFilter { resource: Some(gw_core::AuditResource::Instance), ..Default::default() },
            PageRequest::default(),
        )
        .await
        .expect("audit");
    assert!(audit.items.iter().any(|e| e.action == gw_core::AuditAction::InstanceCreate && e.user_id == Some(ann.id)));
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
                events: vec![gw_core::EventSelector::All],
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
    store.delete_user(Visibility::All, ann.id, &actor()).await.expect("delete creator");
    assert_eq!(store.get_instance(Visibility::All, inst.id).await.expect("still there").created_by_id, None);

    store.delete_instance(Visibility::All, inst.id, &actor()).await.expect("delete");
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
    let listed = store.list_instances(Visibility::Subscription(sub.id), PageRequest::first(100)).await.expect("list");
    assert_eq!(listed.items.len(), 10);
    assert_eq!(store.get_subscription(sub.id).await.expect("read").current_instances, 10);
}
