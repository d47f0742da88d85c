//! whatsapp-rust's storage traits over the gateway's store, on SQLite and on PostgreSQL: every kind of record the
//! traits have round-trips, with the semantics of the library's own in-memory backend; the device record keeps
//! `session_data` current; a wrong key and a moved row are refused.

use std::sync::Arc;

use gw_core::{DriverKind, InstanceId, Tier};
use gw_driver_whatsapp::{GatewayBackend, StateCipher, StoreAuthVault};
use gw_sessions::AuthVault;
use gw_store::{Actor, NewInstance, NewSubscription, Store, WaStateWrite};
use gw_test_support::TestDatabase;
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::traits::{
    AppStateSyncKey, AppSyncStore, DeviceInfo, DeviceListRecord, DeviceStore, LidPnMappingEntry, MsgSecretEntry,
    MsgSecretStore, PendingInboundKey, PendingInboundRow, ProtocolStore, SignalStore,
};

const KEY: [u8; 32] = [0x42; 32];

struct Fixture {
    store: Arc<dyn Store>,
    instance_id: InstanceId,
}

impl Fixture {
    fn backend_with(&self, key: &[u8; 32]) -> GatewayBackend {
        let vault: Arc<dyn AuthVault> = Arc::new(StoreAuthVault::new(self.instance_id, self.store.clone()));
        GatewayBackend::new(self.instance_id, self.store.clone(), vault, StateCipher::new(key).expect("key"))
    }

    fn backend(&self) -> GatewayBackend {
        self.backend_with(&KEY)
    }
}

async fn new_instance(store: &Arc<dyn Store>) -> InstanceId {
    let subscription = store
        .create_subscription(
            NewSubscription {
                name: "Acme".into(),
                tier: Tier::Starter,
                max_instances: 5,
                monthly_messages: 1000,
                limit_overrides: Default::default(),
            },
            &Actor::system(),
        )
        .await
        .expect("create subscription");
    store
        .create_instance(
            NewInstance {
                name: format!("wa-{}", InstanceId::new().as_uuid().simple()),
                subscription_id: subscription.id,
                created_by_id: None,
                driver: DriverKind::Whatsapp,
                settings: serde_json::json!({}),
            },
            &Actor::system(),
        )
        .await
        .expect("create instance")
        .id
}

fn err_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

async fn signal_records_round_trip(f: Fixture) {
    let b = f.backend();

    // Identities.
    assert_eq!(b.load_identity("111@s.whatsapp.net").await.expect("load"), None);
    b.put_identity("111@s.whatsapp.net", [1; 32]).await.expect("put");
    b.put_identities_batch(&[(Arc::from("222:3@s.whatsapp.net"), [2; 32]), (Arc::from("333@lid"), [3; 32])])
        .await
        .expect("batch");
    assert_eq!(b.load_identity("111@s.whatsapp.net").await.expect("load"), Some([1; 32]));
    assert_eq!(b.load_identity("333@lid").await.expect("load"), Some([3; 32]));
    b.delete_identity("111@s.whatsapp.net").await.expect("delete");
    assert_eq!(b.load_identity("111@s.whatsapp.net").await.expect("load"), None);

    // Sessions: insert, overwrite in a batch, delete.
    b.put_session("444@s.whatsapp.net", b"s1").await.expect("put");
    b.put_sessions_batch(&[
        (Arc::from("444@s.whatsapp.net"), Bytes::from_static(b"s1-new")),
        (Arc::from("555:7@s.whatsapp.net"), Bytes::from_static(b"s2")),
    ])
    .await
    .expect("batch");
    assert_eq!(b.get_session("444@s.whatsapp.net").await.expect("get"), Some(Bytes::from_static(b"s1-new")));
    assert!(b.has_session("555:7@s.whatsapp.net").await.expect("has"));
    b.delete_session("444@s.whatsapp.net").await.expect("delete");
    assert!(!b.has_session("444@s.whatsapp.net").await.expect("has"));

    // Per-user lookup across device ids, not fooled by a longer user with the same leading digits.
    assert!(b.has_signal_state_for_user("555").await.expect("user"));
    assert!(b.has_signal_state_for_user("222").await.expect("user (identity)"));
    assert!(!b.has_signal_state_for_user("55").await.expect("prefix only"));
    assert!(!b.has_signal_state_for_user("999").await.expect("unknown"));

    // Pre-keys.
    assert_eq!(b.get_max_prekey_id().await.expect("max"), 0);
    b.store_prekey(7, b"pk7", false).await.expect("store");
    b.store_prekeys_batch(&[(9, Bytes::from_static(b"pk9")), (100, Bytes::from_static(b"pk100"))], true)
        .await
        .expect("batch");
    assert_eq!(b.load_prekey(7).await.expect("load"), Some(Bytes::from_static(b"pk7")));
    let batch = b.load_prekeys_batch(&[100, 8, 7]).await.expect("batch load");
    assert_eq!(batch, vec![(100, Bytes::from_static(b"pk100")), (7, Bytes::from_static(b"pk7"))]);
    assert_eq!(b.get_max_prekey_id().await.expect("max"), 100);
    b.remove_prekey(9).await.expect("remove");
    // Marking a consumed key uploaded must not bring it back.
    b.mark_prekeys_uploaded(&[7, 9]).await.expect("mark");
    assert_eq!(b.load_prekey(9).await.expect("load"), None);
    assert_eq!(b.load_prekey(7).await.expect("load"), Some(Bytes::from_static(b"pk7")));

    // Signed pre-keys.
    b.store_signed_prekey(2, b"spk2").await.expect("store");
    b.store_signed_prekey(1, b"spk1").await.expect("store");
    assert_eq!(b.load_signed_prekey(2).await.expect("load"), Some(b"spk2".to_vec()));
    assert_eq!(b.load_all_signed_prekeys().await.expect("all"), vec![(1, b"spk1".to_vec()), (2, b"spk2".to_vec())]);
    b.remove_signed_prekey(1).await.expect("remove");
    assert_eq!(b.load_signed_prekey(1).await.expect("load"), None);

    // Sender keys.
    b.put_sender_key("120363@g.us:111", b"sk").await.expect("put");
    b.put_sender_keys_batch(&[(Arc::from("120363@g.us:222"), Bytes::from_static(b"sk2"))]).await.expect("batch");
    assert_eq!(b.get_sender_key("120363@g.us:222").await.expect("get"), Some(b"sk2".to_vec()));
    b.delete_sender_key("120363@g.us:111").await.expect("delete");
    assert_eq!(b.get_sender_key("120363@g.us:111").await.expect("get"), None);
}

async fn app_state_records_round_trip(f: Fixture) {
    let b = f.backend();

    assert!(b.get_sync_key(b"k1").await.expect("get").is_none());
    assert_eq!(b.get_latest_sync_key_id().await.expect("latest"), None);
    let key = AppStateSyncKey { key_data: vec![1, 2, 3], fingerprint: vec![4], timestamp: 99 };
    b.set_sync_key(b"k1", key).await.expect("set");
    b.set_sync_key(&[0, 255], AppStateSyncKey::default()).await.expect("set");
    let loaded = b.get_sync_key(b"k1").await.expect("get").expect("present");
    assert_eq!((loaded.key_data, loaded.fingerprint, loaded.timestamp), (vec![1, 2, 3], vec![4], 99));
    assert_eq!(b.get_latest_sync_key_id().await.expect("latest"), Some(vec![0, 255]));

    // A collection never synced has the default version.
    assert_eq!(b.get_version("regular").await.expect("version").version, 0);
    let mut state = HashState { version: 12, ..HashState::default() };
    state.hash[0] = 9;
    state.index_value_map.insert("idx".into(), vec![5]);
    b.set_version("regular", state).await.expect("set version");
    let loaded = b.get_version("regular").await.expect("version");
    assert_eq!((loaded.version, loaded.hash[0]), (12, 9));
    assert_eq!(loaded.index_value_map.get("idx"), Some(&vec![5]));

    let mac = |i: u8, v: u8| AppStateMutationMAC { index_mac: vec![i; 32], value_mac: vec![v; 32] };
    b.put_mutation_macs("regular", 12, &[mac(1, 10), mac(2, 20)]).await.expect("put");
    b.put_mutation_macs("critical", 3, &[mac(1, 30)]).await.expect("put");
    assert_eq!(b.get_mutation_mac("regular", &[1; 32]).await.expect("get"), Some(vec![10; 32]));
    let many = b.get_mutation_macs("regular", &[[1; 32], [3; 32], [2; 32]]).await.expect("many");
    assert_eq!(many.len(), 2);
    assert_eq!(many.get(&[2; 32]), Some(&vec![20; 32]));
    b.delete_mutation_macs("regular", &[vec![1; 32]]).await.expect("delete");
    assert_eq!(b.get_mutation_mac("regular", &[1; 32]).await.expect("get"), None);
    // Clearing one collection leaves the others.
    b.clear_mutation_macs("regular").await.expect("clear");
    assert_eq!(b.get_mutation_mac("regular", &[2; 32]).await.expect("get"), None);
    assert_eq!(b.get_mutation_mac("critical", &[1; 32]).await.expect("get"), Some(vec![30; 32]));
}

async fn protocol_records_round_trip(f: Fixture) {
    let b = f.backend();

    // Sender-key distribution status per group and device.
    b.set_sender_key_status("g1@g.us", &[("a:1@s.whatsapp.net", true), ("b@lid", false)]).await.expect("set");
    b.set_sender_key_status("g2@g.us", &[("a:1@s.whatsapp.net", true)]).await.expect("set");
    let mut devices = b.get_sender_key_devices("g1@g.us").await.expect("get");
    devices.sort();
    assert_eq!(devices, vec![("a:1@s.whatsapp.net".to_owned(), true), ("b@lid".to_owned(), false)]);
    b.delete_sender_key_device_rows(&["a:1@s.whatsapp.net"]).await.expect("delete rows");
    assert_eq!(b.get_sender_key_devices("g1@g.us").await.expect("get"), vec![("b@lid".to_owned(), false)]);
    assert!(b.get_sender_key_devices("g2@g.us").await.expect("get").is_empty());
    b.clear_sender_key_devices("g1@g.us").await.expect("clear");
    assert!(b.get_sender_key_devices("g1@g.us").await.expect("get").is_empty());
    b.set_sender_key_status("g3@g.us", &[("c@lid", true)]).await.expect("set");
    b.clear_all_sender_key_devices().await.expect("clear all");
    assert!(b.get_sender_key_devices("g3@g.us").await.expect("get").is_empty());

    // LID <-> PN mappings, including a LID that moves to another number.
    let mapping = |lid: &str, pn: &str| LidPnMappingEntry {
        lid: lid.into(),
        phone_number: pn.into(),
        created_at: 1,
        updated_at: 2,
        learning_source: "usync".into(),
    };
    b.put_lid_mapping(&mapping("100000012345678", "559980000001")).await.expect("put");
    b.put_lid_mappings(&[mapping("100000099999999", "559980000002")]).await.expect("put batch");
    assert_eq!(b.get_lid_mapping("100000012345678").await.expect("get").expect("lid").phone_number, "559980000001");
    assert_eq!(b.get_pn_mapping("559980000002").await.expect("get").expect("pn").lid, "100000099999999");
    b.put_lid_mapping(&mapping("100000012345678", "559980000003")).await.expect("remap");
    assert!(b.get_pn_mapping("559980000001").await.expect("old pn").is_none());
    assert_eq!(b.get_pn_mapping("559980000003").await.expect("new pn").expect("pn").lid, "100000012345678");
    assert_eq!(b.get_all_lid_mappings().await.expect("all").len(), 2);

    // Base keys for retry collision detection.
    b.save_base_key("a@s.whatsapp.net", "M1", b"base").await.expect("save");
    assert!(b.has_same_base_key("a@s.whatsapp.net", "M1", b"base").await.expect("same"));
    assert!(!b.has_same_base_key("a@s.whatsapp.net", "M1", b"other").await.expect("different"));
    b.delete_base_key("a@s.whatsapp.net", "M1").await.expect("delete");
    assert!(!b.has_same_base_key("a@s.whatsapp.net", "M1", b"base").await.expect("gone"));

    // Device lists.
    let record = DeviceListRecord {
        user: "559980000001".into(),
        devices: vec![DeviceInfo::new(0, None), DeviceInfo::new(3, Some(2)).with_hosting(true)],
        timestamp: 1234,
        phash: Some("2:abc".into()),
        raw_id: Some(7),
    };
    b.update_device_list(record).await.expect("update");
    let loaded = b.get_devices("559980000001").await.expect("get").expect("present");
    assert_eq!((loaded.devices.len(), loaded.raw_id, loaded.phash.as_deref()), (2, Some(7), Some("2:abc")));
    assert!(loaded.devices[1].is_hosted);
    b.update_device_lists(vec![DeviceListRecord { devices: vec![], ..loaded }]).await.expect("batch");
    assert!(b.get_devices("559980000001").await.expect("get").expect("present").devices.is_empty());
    b.delete_devices("559980000001").await.expect("delete");
    assert!(b.get_devices("559980000001").await.expect("get").is_none());

    // Group metadata blobs.
    b.put_group_metadata("g1@g.us", b"meta").await.expect("put");
    assert_eq!(b.get_group_metadata("g1@g.us").await.expect("get"), Some(b"meta".to_vec()));
    b.delete_group_metadata("g1@g.us").await.expect("delete");
    assert_eq!(b.get_group_metadata("g1@g.us").await.expect("get"), None);

    // Trusted-contact tokens: placeholder, newer-wins, the sender bucket only advances, expiry of both windows.
    b.touch_tc_token_sender_timestamp("t1@lid", 100).await.expect("touch");
    let placeholder = b.get_tc_token("t1@lid").await.expect("get").expect("placeholder");
    assert!(placeholder.token.is_empty());
    b.store_received_tc_token("t1@lid", b"tok", 200).await.expect("receive");
    b.store_received_tc_token("t1@lid", b"stale", 150).await.expect("stale receive");
    b.touch_tc_token_sender_timestamp("t1@lid", 50).await.expect("older touch");
    let entry = b.get_tc_token("t1@lid").await.expect("get").expect("entry");
    assert_eq!((entry.token, entry.token_timestamp, entry.sender_timestamp), (b"tok".to_vec(), 200, Some(100)));
    b.store_received_tc_token("t2@lid", b"old", 10).await.expect("receive");
    let mut jids = b.get_all_tc_token_jids().await.expect("jids");
    jids.sort();
    assert_eq!(jids, vec!["t1@lid".to_owned(), "t2@lid".to_owned()]);
    assert_eq!(b.delete_expired_tc_tokens(100, 100).await.expect("expire"), 1);
    assert!(b.get_tc_token("t2@lid").await.expect("get").is_none());
    b.delete_tc_token("t1@lid").await.expect("delete");
    assert!(b.get_tc_token("t1@lid").await.expect("get").is_none());

    // Sent messages for retries: taking consumes.
    b.store_sent_message("c@s.whatsapp.net", "S1", b"payload").await.expect("store");
    assert_eq!(b.take_sent_message("c@s.whatsapp.net", "S1").await.expect("take"), Some(b"payload".to_vec()));
    assert_eq!(b.take_sent_message("c@s.whatsapp.net", "S1").await.expect("take again"), None);
    b.store_sent_message("c@s.whatsapp.net", "S2", b"p2").await.expect("store");
    assert_eq!(b.delete_expired_sent_messages(0).await.expect("nothing older than 1970"), 0);
    assert_eq!(b.delete_expired_sent_messages(i64::MAX).await.expect("everything"), 1);

    // The durability hook's pending-inbound buffer.
    b.store_pending_inbound("c@s.whatsapp.net", "c@s.whatsapp.net", "I1", b"m1").await.expect("store");
    b.store_pending_inbound_batch(&[
        PendingInboundRow { chat: "g@g.us", sender: "a@lid", id: "I1", message: b"m2" },
        PendingInboundRow { chat: "g@g.us", sender: "b@lid", id: "I1", message: b"m3" },
    ])
    .await
    .expect("batch");
    // Same stanza id, different (chat, sender): different rows.
    assert_eq!(b.get_pending_inbound("g@g.us", "b@lid", "I1").await.expect("get"), Some(b"m3".to_vec()));
    assert_eq!(
        b.get_pending_inbound("c@s.whatsapp.net", "c@s.whatsapp.net", "I1").await.expect("get"),
        Some(b"m1".to_vec())
    );
    b.delete_pending_inbound_batch(&[PendingInboundKey { chat: "g@g.us", sender: "a@lid", id: "I1" }])
        .await
        .expect("batch delete");
    assert_eq!(b.get_pending_inbound("g@g.us", "a@lid", "I1").await.expect("get"), None);
    b.delete_pending_inbound("g@g.us", "b@lid", "I1").await.expect("delete");
    assert_eq!(b.get_pending_inbound("g@g.us", "b@lid", "I1").await.expect("get"), None);
    assert_eq!(b.delete_expired_pending_inbound(i64::MAX).await.expect("expire"), 1);
}

async fn message_secrets_round_trip(f: Fixture) {
    let b = f.backend();
    let entry = |id: &str, secret: u8, expires_at: i64, message_ts: i64| MsgSecretEntry {
        chat: Arc::from("c@s.whatsapp.net"),
        sender: Arc::from("me@s.whatsapp.net"),
        msg_id: Arc::from(id),
        secret: [secret; 32],
        expires_at,
        message_ts,
    };
    assert_eq!(b.get_msg_secret("c@s.whatsapp.net", "me@s.whatsapp.net", "M1").await.expect("miss"), None);
    b.put_msg_secret("c@s.whatsapp.net", "me@s.whatsapp.net", "M0", &[9; 32]).await.expect("put");
    let stored = b.put_msg_secrets(vec![entry("M1", 1, 1000, 50), entry("M2", 2, 2000, 0)]).await.expect("put");
    assert_eq!(stored, 2);
    // Overwrite: new secret, the later deadline and the known parent time survive.
    b.put_msg_secrets(vec![entry("M1", 3, 500, 0)]).await.expect("overwrite");
    assert_eq!(
        b.get_msg_secret_with_ts("c@s.whatsapp.net", "me@s.whatsapp.net", "M1").await.expect("get"),
        Some((vec![3; 32], 50))
    );
    // Keyed by all three parts.
    assert_eq!(b.get_msg_secret("c@s.whatsapp.net", "other@s.whatsapp.net", "M1").await.expect("get"), None);
    // Deadline at or before the cutoff goes; "never" (0) stays.
    assert_eq!(b.delete_expired_msg_secrets(1000).await.expect("expire"), 1);
    assert_eq!(b.get_msg_secret("c@s.whatsapp.net", "me@s.whatsapp.net", "M1").await.expect("get"), None);
    assert!(b.get_msg_secret("c@s.whatsapp.net", "me@s.whatsapp.net", "M2").await.expect("get").is_some());
    assert_eq!(b.delete_expired_msg_secrets(i64::MAX - 1).await.expect("expire"), 1);
    assert_eq!(
        b.get_msg_secret("c@s.whatsapp.net", "me@s.whatsapp.net", "M0").await.expect("never expires"),
        Some(vec![9; 32])
    );
}

async fn device_record_keeps_session_data_current(f: Fixture) {
    let b = f.backend();
    assert!(!b.exists().await.expect("exists"));
    assert_eq!(b.create().await.expect("create"), 1);
    assert!(b.load().await.expect("load").is_none(), "nothing is written before the library saves a device");

    let mut device = Device::new();
    device.push_name = "Acme support".into();
    device.next_pre_key_id = 812;
    b.save(&device).await.expect("save");
    assert!(b.exists().await.expect("exists"));
    let loaded = b.load().await.expect("load").expect("device");
    assert_eq!(loaded.push_name, "Acme support");
    assert_eq!(loaded.next_pre_key_id, 812);
    assert_eq!(loaded.registration_id, device.registration_id);
    assert_eq!(loaded.identity_key.public_key.public_key_bytes(), device.identity_key.public_key.public_key_bytes());

    let session = f.store.load_session(f.instance_id).await.expect("session").expect("row");
    assert!(session.session_valid);
    assert!(session.last_backup.is_some());
    // The store sees only ciphertext: not even the push name is readable in the row.
    let needle = b"Acme support";
    assert!(!session.auth_state.expose().windows(needle.len()).any(|w| w == needle));

    // A logout invalidates the session: the next connect starts a new pairing.
    StoreAuthVault::new(f.instance_id, f.store.clone()).invalidate().await.expect("invalidate");
    assert!(!b.exists().await.expect("exists"));
    assert!(b.load().await.expect("load").is_none());
    assert!(!f.store.load_session(f.instance_id).await.expect("session").expect("kept for audit").session_valid);
}

async fn forget_session_wipes_protocol_state_and_invalidates(f: Fixture) {
    let b = f.backend();
    b.save(&Device::new()).await.expect("save device");
    b.put_session("a@s.whatsapp.net", b"s").await.expect("put");
    b.store_prekey(1, b"pk", true).await.expect("prekey");
    b.put_msg_secret("c@s.whatsapp.net", "me@s.whatsapp.net", "M", &[1; 32]).await.expect("secret");
    b.forget_session().await.expect("forget");
    assert!(b.get_session("a@s.whatsapp.net").await.expect("get").is_none());
    assert!(b.load_prekey(1).await.expect("get").is_none());
    assert!(b.get_msg_secret("c@s.whatsapp.net", "me@s.whatsapp.net", "M").await.expect("get").is_none());
    assert!(!b.exists().await.expect("exists"), "the next connect pairs afresh");
    let row = f.store.load_session(f.instance_id).await.expect("session").expect("kept for audit");
    assert!(!row.session_valid);
}

async fn wrong_key_fails_clearly(f: Fixture) {
    f.backend().put_session("a@s.whatsapp.net", b"secret ratchet").await.expect("put");
    let err = f.backend_with(&[0x43; 32]).get_session("a@s.whatsapp.net").await.expect_err("a wrong key must fail");
    let text = err_chain(&err);
    assert!(text.contains("failed authentication") && text.contains("wrong encryption key"), "unclear error: {text}");
    assert!(text.contains("session/a@s.whatsapp.net"), "error names the record: {text}");
}

async fn moved_rows_are_refused(f: Fixture) {
    let b = f.backend();
    b.put_session("a@s.whatsapp.net", b"session of a").await.expect("put");
    b.put_session("b@s.whatsapp.net", b"session of b").await.expect("put");
    let a = f.store.wa_state_get(f.instance_id, "session", "a@s.whatsapp.net").await.expect("get").expect("row a");
    let b_row = f.store.wa_state_get(f.instance_id, "session", "b@s.whatsapp.net").await.expect("get").expect("row b");
    // Swap the two ciphertexts directly in the store, as someone with database access could.
    f.store
        .wa_state_apply(
            f.instance_id,
            vec![
                WaStateWrite::Put { kind: "session", key: "a@s.whatsapp.net".into(), value: b_row.value, stamp: 0 },
                WaStateWrite::Put { kind: "session", key: "b@s.whatsapp.net".into(), value: a.value.clone(), stamp: 0 },
            ],
            None,
        )
        .await
        .expect("swap");
    for address in ["a@s.whatsapp.net", "b@s.whatsapp.net"] {
        let err = b.get_session(address).await.expect_err("a swapped row must be refused");
        assert!(err_chain(&err).contains("failed authentication"), "{}", err_chain(&err));
    }
    // Copied to another kind, or another instance: refused too.
    f.store
        .wa_state_apply(
            f.instance_id,
            vec![WaStateWrite::Put {
                kind: "sender_key",
                key: "a@s.whatsapp.net".into(),
                value: a.value.clone(),
                stamp: 0,
            }],
            None,
        )
        .await
        .expect("copy");
    assert!(b.get_sender_key("a@s.whatsapp.net").await.is_err());
    let other = Fixture { store: f.store.clone(), instance_id: new_instance(&f.store).await };
    f.store
        .wa_state_apply(
            other.instance_id,
            vec![WaStateWrite::Put { kind: "session", key: "a@s.whatsapp.net".into(), value: a.value, stamp: 0 }],
            None,
        )
        .await
        .expect("copy to another instance");
    assert!(other.backend().get_session("a@s.whatsapp.net").await.is_err());
}

/// Rows and a device record written by the AES-256-GCM code (version 1) open as they are; `reseal_legacy_rows`
/// rewrites them in the current envelope once, leaving their contents and stamps as they were.
async fn rows_sealed_by_the_old_code_open_and_are_sealed_again_once(f: Fixture) {
    use gw_driver_whatsapp::crypto::seal_v1_for_tests;
    let old = |kind: &'static str, key: &str, plain: &[u8], stamp: i64| WaStateWrite::Put {
        kind,
        key: key.to_owned(),
        value: seal_v1_for_tests(&KEY, f.instance_id, kind, key, plain),
        stamp,
    };
    let writes =
        vec![old("session", "a@s.whatsapp.net", b"old ratchet", 0), old("sent_message", "c|m1", b"payload", 77)];
    f.store.wa_state_apply(f.instance_id, writes, None).await.expect("old rows");
    let device = serde_json::to_vec(&Device::new()).expect("device json");
    let vault = StoreAuthVault::new(f.instance_id, f.store.clone());
    vault.save(&seal_v1_for_tests(&KEY, f.instance_id, "device", "", &device)).await.expect("old device");

    let b = f.backend();
    let session = b.get_session("a@s.whatsapp.net").await.expect("old row opens");
    assert_eq!(session.as_deref(), Some(&b"old ratchet"[..]));
    assert!(b.load().await.expect("old device opens").is_some());

    assert_eq!(b.reseal_legacy_rows().await.expect("reseal"), 3, "two rows and the device record");
    for (kind, key, stamp) in [("session", "a@s.whatsapp.net", 0), ("sent_message", "c|m1", 77)] {
        let row = f.store.wa_state_get(f.instance_id, kind, key).await.expect("get").expect("row");
        assert!(StateCipher::is_current(&row.value), "{kind}/{key} sealed again");
        assert_eq!(row.stamp, stamp, "{kind}/{key} keeps its stamp");
    }
    assert!(StateCipher::is_current(&vault.load().await.expect("load").expect("device")));
    let session = b.get_session("a@s.whatsapp.net").await.expect("get");
    assert_eq!(session.as_deref(), Some(&b"old ratchet"[..]));
    assert!(b.load().await.expect("device opens").is_some());
    assert_eq!(b.reseal_legacy_rows().await.expect("again"), 0, "done once per instance");
}

async fn instances_do_not_share_state(f: Fixture) {
    let other = Fixture { store: f.store.clone(), instance_id: new_instance(&f.store).await };
    f.backend().put_session("a@s.whatsapp.net", b"mine").await.expect("put");
    assert_eq!(other.backend().get_session("a@s.whatsapp.net").await.expect("get"), None);
    // Deleting an instance deletes its state (ON DELETE CASCADE).
    f.store.delete_instance(gw_store::Visibility::All, f.instance_id, &Actor::system()).await.expect("delete instance");
    assert!(f.store.wa_state_list(f.instance_id, "session", "").await.expect("list").is_empty());
}

/// The store trait itself: prefixes are literal (no LIKE wildcards), large key lists are chunked, a take happens
/// once, and stamps sweep only their kind.
async fn raw_store_operations(f: Fixture) {
    let (store, id) = (&f.store, f.instance_id);
    let put = |kind: &'static str, key: &str, stamp: i64| WaStateWrite::Put {
        kind,
        key: key.to_owned(),
        value: key.as_bytes().to_vec(),
        stamp,
    };
    store
        .wa_state_apply(
            id,
            vec![put("k", "a_b|1", 1), put("k", "axb|2", 2), put("k", "a%|3", 3), put("other", "a_b|9", 1)],
            None,
        )
        .await
        .expect("apply");
    let keys = |records: Vec<gw_store::WaStateRecord>| records.into_iter().map(|r| r.key).collect::<Vec<_>>();
    assert_eq!(keys(store.wa_state_list(id, "k", "a_").await.expect("list")), vec!["a_b|1".to_owned()]);
    assert_eq!(keys(store.wa_state_list(id, "k", "a%").await.expect("list")), vec!["a%|3".to_owned()]);
    assert_eq!(store.wa_state_list(id, "k", "").await.expect("list").len(), 3);

    // More keys than one IN list holds.
    let many: Vec<WaStateWrite> = (0..1200).map(|i| put("bulk", &format!("{i:05}"), 0)).collect();
    store.wa_state_apply(id, many, None).await.expect("bulk");
    let mut wanted: Vec<String> = (0..1200).step_by(2).map(|i| format!("{i:05}")).collect();
    wanted.push("missing".into());
    assert_eq!(store.wa_state_get_many(id, "bulk", &wanted).await.expect("many").len(), 600);

    // Records belong to an existing instance (foreign key).
    let orphan = InstanceId::new();
    assert!(store.wa_state_apply(orphan, vec![put("k", "x", 0)], None).await.is_err(), "no such instance");
    assert!(store.wa_state_list(orphan, "k", "").await.expect("list").is_empty());

    assert!(store.wa_state_take(id, "k", "axb|2", None).await.expect("take").is_some());
    assert!(store.wa_state_take(id, "k", "axb|2", None).await.expect("take").is_none());
    assert_eq!(store.wa_state_delete_stamped_before(id, "k", 3, None).await.expect("sweep"), 1);
    assert_eq!(keys(store.wa_state_list(id, "k", "").await.expect("list")), vec!["a%|3".to_owned()]);
    assert!(store.wa_state_get(id, "other", "a_b|9").await.expect("get").is_some(), "other kinds untouched");
    store
        .wa_state_apply(id, vec![WaStateWrite::DeletePrefix { kind: "bulk", prefix: "001".into() }], None)
        .await
        .expect("delete prefix");
    assert_eq!(store.wa_state_list(id, "bulk", "").await.expect("list").len(), 1100);
}

/// A fresh, migrated store on each backend with one instance (the database is dropped even if the test panics).
async fn fixture(database: &TestDatabase) -> Fixture {
    let store = database.store().await;
    let instance_id = new_instance(&store).await;
    Fixture { store, instance_id }
}

gw_test_support::on_both_backends!(fixture =>
    signal_records_round_trip,
    app_state_records_round_trip,
    protocol_records_round_trip,
    message_secrets_round_trip,
    device_record_keeps_session_data_current,
    wrong_key_fails_clearly,
    moved_rows_are_refused,
    instances_do_not_share_state,
    raw_store_operations,
    forget_session_wipes_protocol_state_and_invalidates,
    rows_sealed_by_the_old_code_open_and_are_sealed_again_once,
);
