//! The contract of plugins: versions, bindings, failures and logs, key-value state, the store-backed catalog.

use std::sync::Arc;

use gw_core::{InstanceId, SubscriptionId, Timestamp};
use serde_json::json;

use super::fixtures::{actor, instance, subscription};
use crate::*;

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
