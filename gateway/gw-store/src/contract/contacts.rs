//! The contract of contacts: upsert, search, and merging a LID with a phone number.

use std::sync::Arc;

use gw_core::InstanceId;

use super::fixtures::{actor, at, instance, subscription};
use crate::*;

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
