//! The contract of session data: it round-trips.

use std::sync::Arc;

use gw_core::InstanceId;

use super::fixtures::{at, instance, subscription};
use crate::*;

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
