//! The contract of users: CRUD, e-mail uniqueness, tenant visibility.

use std::sync::Arc;

use gw_core::{Email, PasswordHash, SubscriptionId, Timestamp, UserRole};

use super::fixtures::{actor, email, instance, owner, phc, subscription};
use crate::*;

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
    assert_eq!(store.get_user(Visibility::All, ann.id).await.expect("read"), ann);
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
            Visibility::Subscription(sub.id),
            ann.id,
            UserPatch { role: Some(UserRole::Member), password: Some(new_hash.clone()), ..Default::default() },
            &actor(),
        )
        .await
        .expect("update");
    assert_eq!((updated.role, &updated.password, updated.name.as_str()), (UserRole::Member, &new_hash, "ann"));

    let login_at = Timestamp::now();
    store.record_login(ann.id, login_at).await.expect("login");
    assert_eq!(store.get_user(Visibility::All, ann.id).await.expect("read").last_login_at, Some(login_at));

    let deactivated = store
        .update_user(Visibility::All, admin.id, UserPatch { is_active: Some(false), ..Default::default() }, &actor())
        .await
        .expect("deactivate");
    assert!(!deactivated.is_active);
    assert_eq!(store.count_active_admins().await.expect("count"), 0);

    let page = store.list_users(Visibility::All, PageRequest::default()).await.expect("list");
    assert_eq!(page.items.iter().map(|u| u.id).collect::<Vec<_>>(), vec![admin.id, ann.id]);

    store.delete_user(Visibility::All, ann.id, &actor()).await.expect("delete");
    assert!(store.get_user(Visibility::All, ann.id).await.expect_err("gone").is_not_found());
    let audit = store
        .list_audit(
            AuditFilter { resource: Some(gw_core::AuditResource::User), ..Default::default() },
            PageRequest::default(),
        )
        .await
        .expect("audit");
    assert!(audit.items.iter().any(|e| e.action == gw_core::AuditAction::UserPasswordReset));
    assert!(
        audit.items.iter().any(|e| e.action == gw_core::AuditAction::UserDelete && e.subscription_id == Some(sub.id))
    );
}

pub async fn user_scope_hides_other_tenants(store: Arc<dyn Store>) {
    let acme = subscription(&store, 3).await;
    let globex = subscription(&store, 3).await;
    let ann = owner(&store, acme.id, "ann").await;
    let bob = owner(&store, globex.id, "bob").await;
    let as_globex = Visibility::Subscription(globex.id);

    assert!(store.get_user(as_globex, ann.id).await.expect_err("hidden").is_not_found());
    let err = store
        .update_user(as_globex, ann.id, UserPatch { name: Some("pwned".into()), ..Default::default() }, &actor())
        .await
        .expect_err("hidden");
    assert!(err.is_not_found());
    assert!(store.delete_user(as_globex, ann.id, &actor()).await.expect_err("hidden").is_not_found());
    assert_eq!(store.get_user(Visibility::All, ann.id).await.expect("untouched").name, "ann");

    let listed = store.list_users(as_globex, PageRequest::default()).await.expect("list");
    assert_eq!(listed.items, vec![bob]);

    let inst = instance(&store, acme.id, "main").await;
    assert!(store.get_instance(as_globex, inst.id).await.expect_err("hidden").is_not_found());
    assert!(store.delete_instance(as_globex, inst.id, &actor()).await.expect_err("hidden").is_not_found());
    assert!(store.list_instances(as_globex, PageRequest::default()).await.expect("list").items.is_empty());
}
