//! The contract of refresh tokens: rotation once, reuse revoking the family.

use std::sync::Arc;

use gw_core::{Timestamp, TokenFamilyId, UserId};

use super::fixtures::{actor, at, owner, subscription};
use crate::*;

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
