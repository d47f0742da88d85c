//! whatsapp-rust's storage [`Backend`] over the gateway's store.
//!
//! Every record the library keeps (Signal identities, sessions, pre-keys, sender keys, app-state keys and versions,
//! LID/PN mappings, device lists, message secrets, the pending-inbound buffer of the durability hook, ...) becomes
//! one row of [`gw_store::WhatsAppStateStore`], sealed by [`StateCipher`] before it leaves this crate. The device
//! record itself (the account's identity and noise keys) is the session's auth state: it goes through the
//! engine's [`AuthVault`], so `session_data` (`sessionValid`, `lastBackup`) follows every save and a logout makes
//! the next connect start a fresh pairing.
//!
//! Semantics follow the library's own `InMemoryBackend`. Read-modify-write operations (LID mapping reverse index,
//! message-secret merges, trusted-contact tokens, the pre-key `uploaded` flag) run under one per-instance lock:
//! the gateway lets exactly one node own a session at a time, so an in-process lock is enough to make them atomic.
//!
//! Over 800 lines on purpose: one type implements the library's five storage traits (`SignalStore`, `AppSyncStore`,
//! `ProtocolStore`, `MsgSecretStore`, `DeviceStore`), an `impl` block each, over the key helpers at the top; read
//! together they show every record the library keeps and how it is keyed.

use std::collections::HashMap;
use std::sync::Arc;

use gw_core::InstanceId;
use gw_sessions::AuthVault;
use gw_store::{Store, WaStateWrite};
use tokio::sync::Mutex;
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::error::{Result, StoreError as WaStoreError};
use whatsapp_rust::wacore::store::traits::{
    AppStateSyncKey, AppSyncStore, DeviceListRecord, DeviceStore, LidPnMappingEntry, MsgSecretEntry, MsgSecretStore,
    PendingInboundKey, PendingInboundRow, ProtocolStore, SignalStore, TcTokenEntry, merge_msg_secret_expiry,
    merge_msg_secret_message_ts,
};

use crate::crypto::{CryptoError, StateCipher};

/// The record kinds, one namespace each. Changing a name orphans its rows (and fails their authentication).
pub(crate) mod kind {
    pub const IDENTITY: &str = "identity";
    pub const SESSION: &str = "session";
    pub const PREKEY: &str = "prekey";
    pub const SIGNED_PREKEY: &str = "signed_prekey";
    pub const SENDER_KEY: &str = "sender_key";
    pub const SYNC_KEY: &str = "sync_key";
    pub const META: &str = "meta";
    pub const APP_VERSION: &str = "app_version";
    pub const MUTATION_MAC: &str = "mutation_mac";
    pub const SENDER_KEY_DEVICE: &str = "sender_key_device";
    pub const LID: &str = "lid";
    pub const PN: &str = "pn";
    pub const BASE_KEY: &str = "base_key";
    pub const DEVICE_LIST: &str = "device_list";
    pub const GROUP_METADATA: &str = "group_metadata";
    pub const TC_TOKEN: &str = "tc_token";
    pub const SENT_MESSAGE: &str = "sent_message";
    pub const PENDING_INBOUND: &str = "pending_inbound";
    pub const MSG_SECRET: &str = "msg_secret";
    /// The device record, sealed before it is handed to the auth vault.
    pub const DEVICE: &str = "device";

    /// Every kind stored in `whatsapp_state` (the device record lives in the auth vault instead).
    pub const ALL: [&str; 19] = [
        IDENTITY,
        SESSION,
        PREKEY,
        SIGNED_PREKEY,
        SENDER_KEY,
        SYNC_KEY,
        META,
        APP_VERSION,
        MUTATION_MAC,
        SENDER_KEY_DEVICE,
        LID,
        PN,
        BASE_KEY,
        DEVICE_LIST,
        GROUP_METADATA,
        TC_TOKEN,
        SENT_MESSAGE,
        PENDING_INBOUND,
        MSG_SECRET,
    ];
}

const LATEST_SYNC_KEY_ID: &str = "latest_sync_key_id";

/// Failures of this backend, kept typed inside the library's error so a caller can tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("gateway store: {0}")]
    Store(#[from] gw_store::StoreError),
    #[error("whatsapp state record {kind}/{key}: {source}")]
    Crypto { kind: &'static str, key: String, source: CryptoError },
    #[error("whatsapp state record {kind}: cannot decode: {reason}")]
    Decode { kind: &'static str, reason: String },
    #[error("auth vault: {0}")]
    Vault(gw_sessions::DriverError),
}

impl From<StateError> for WaStoreError {
    fn from(err: StateError) -> Self {
        match err {
            StateError::Store(_) | StateError::Vault(_) => WaStoreError::Database(Box::new(err)),
            StateError::Crypto { .. } | StateError::Decode { .. } => WaStoreError::Serialization(Box::new(err)),
        }
    }
}

/// Separates the parts of composite keys. JIDs and collection names never contain it; where a free-form part
/// (a message id) is involved it always comes last, so a key cannot be read two ways.
const SEP: char = '|';

fn join2(a: &str, b: &str) -> String {
    format!("{a}{SEP}{b}")
}

fn join3(a: &str, b: &str, c: &str) -> String {
    format!("{a}{SEP}{b}{SEP}{c}")
}

/// Pre-key ids zero-padded so keys sort numerically.
fn id_key(id: u32) -> String {
    format!("{id:010}")
}

fn parse_id(kind: &'static str, key: &str) -> std::result::Result<u32, StateError> {
    key.parse().map_err(|_| StateError::Decode { kind, reason: format!("key {key:?} is not an id") })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn to_json<T: whatsapp_rust::serde::Serialize>(
    kind: &'static str,
    value: &T,
) -> std::result::Result<Vec<u8>, StateError> {
    serde_json::to_vec(value).map_err(|e| StateError::Decode { kind, reason: e.to_string() })
}

fn from_json<T: whatsapp_rust::serde::de::DeserializeOwned>(
    kind: &'static str,
    bytes: &[u8],
) -> std::result::Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Decode { kind, reason: e.to_string() })
}

fn now_secs() -> i64 {
    gw_core::Timestamp::now().as_datetime().timestamp()
}

/// whatsapp-rust's storage backend for one instance.
pub struct GatewayBackend {
    instance_id: InstanceId,
    store: Arc<dyn Store>,
    vault: Arc<dyn AuthVault>,
    cipher: StateCipher,
    /// Serialises read-modify-write operations (see the module docs).
    rmw: Mutex<()>,
}

impl std::fmt::Debug for GatewayBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBackend").field("instance_id", &self.instance_id).finish_non_exhaustive()
    }
}

type StateResult<T> = std::result::Result<T, StateError>;

impl GatewayBackend {
    pub fn new(instance_id: InstanceId, store: Arc<dyn Store>, vault: Arc<dyn AuthVault>, cipher: StateCipher) -> Self {
        Self { instance_id, store, vault, cipher, rmw: Mutex::new(()) }
    }

    /// After a logout: the protocol state of the old device is useless (a new pairing creates a new identity, and
    /// stale Signal sessions would only produce undecryptable messages), so it is deleted, and the auth state is
    /// invalidated so the next connect pairs afresh. `session_data` itself is kept for audit.
    pub async fn forget_session(&self) -> StateResult<()> {
        let writes = kind::ALL.iter().map(|kind| WaStateWrite::DeletePrefix { kind, prefix: String::new() }).collect();
        self.apply(writes).await?;
        self.vault.invalidate().await.map_err(StateError::Vault)
    }

    fn open(&self, kind: &'static str, key: &str, stored: &[u8]) -> StateResult<Vec<u8>> {
        self.cipher.open(self.instance_id, kind, key, stored).map_err(|source| StateError::Crypto {
            kind,
            key: key.to_owned(),
            source,
        })
    }

    fn put(&self, kind: &'static str, key: String, value: &[u8], stamp: i64) -> StateResult<WaStateWrite> {
        let sealed = self.cipher.seal(self.instance_id, kind, &key, value).map_err(|source| StateError::Crypto {
            kind,
            key: key.clone(),
            source,
        })?;
        Ok(WaStateWrite::Put { kind, key, value: sealed, stamp })
    }

    fn delete(kind: &'static str, key: impl Into<String>) -> WaStateWrite {
        WaStateWrite::Delete { kind, key: key.into() }
    }

    /// A store result, after telling the session about a fenced write (which stops it).
    fn observed<T>(&self, result: gw_store::StoreResult<T>) -> gw_store::StoreResult<T> {
        if let Err(error) = &result {
            self.vault.observe(error);
        }
        result
    }

    async fn apply(&self, writes: Vec<WaStateWrite>) -> StateResult<()> {
        Ok(self.observed(self.store.wa_state_apply(self.instance_id, writes, self.vault.fence()).await)?)
    }

    async fn put_one(&self, kind: &'static str, key: String, value: &[u8], stamp: i64) -> StateResult<()> {
        let write = self.put(kind, key, value, stamp)?;
        self.apply(vec![write]).await
    }

    async fn delete_one(&self, kind: &'static str, key: impl Into<String>) -> StateResult<()> {
        self.apply(vec![Self::delete(kind, key)]).await
    }

    async fn get(&self, kind: &'static str, key: &str) -> StateResult<Option<Vec<u8>>> {
        match self.store.wa_state_get(self.instance_id, kind, key).await? {
            Some(record) => Ok(Some(self.open(kind, key, &record.value)?)),
            None => Ok(None),
        }
    }

    async fn get_with_stamp(&self, kind: &'static str, key: &str) -> StateResult<Option<(Vec<u8>, i64)>> {
        match self.store.wa_state_get(self.instance_id, kind, key).await? {
            Some(record) => Ok(Some((self.open(kind, key, &record.value)?, record.stamp))),
            None => Ok(None),
        }
    }

    async fn get_many(&self, kind: &'static str, keys: Vec<String>) -> StateResult<HashMap<String, Vec<u8>>> {
        let records = self.store.wa_state_get_many(self.instance_id, kind, &keys).await?;
        records.into_iter().map(|r| Ok((r.key.clone(), self.open(kind, &r.key, &r.value)?))).collect()
    }

    async fn list(&self, kind: &'static str, prefix: &str) -> StateResult<Vec<(String, Vec<u8>)>> {
        let records = self.store.wa_state_list(self.instance_id, kind, prefix).await?;
        records.into_iter().map(|r| Ok((r.key.clone(), self.open(kind, &r.key, &r.value)?))).collect()
    }

    async fn list_keys(&self, kind: &'static str, prefix: &str) -> StateResult<Vec<String>> {
        // Keys only: nothing to decrypt, so no authentication either; callers use them to address rows.
        Ok(self.store.wa_state_list(self.instance_id, kind, prefix).await?.into_iter().map(|r| r.key).collect())
    }

    async fn delete_before(&self, kind: &'static str, cutoff: i64) -> StateResult<u32> {
        let removed = self.observed(
            self.store.wa_state_delete_stamped_before(self.instance_id, kind, cutoff, self.vault.fence()).await,
        )?;
        Ok(u32::try_from(removed).unwrap_or(u32::MAX))
    }

    fn prekey_value(record: &[u8], uploaded: bool) -> Vec<u8> {
        let mut value = Vec::with_capacity(record.len() + 1);
        value.push(u8::from(uploaded));
        value.extend_from_slice(record);
        value
    }

    fn prekey_record(value: &[u8]) -> StateResult<Bytes> {
        value
            .split_first()
            .map(|(_, record)| Bytes::copy_from_slice(record))
            .ok_or(StateError::Decode { kind: kind::PREKEY, reason: "empty record".to_owned() })
    }

    fn msg_secret_value(secret: &[u8], message_ts: i64) -> Vec<u8> {
        let mut value = Vec::with_capacity(secret.len() + 8);
        value.extend_from_slice(&message_ts.to_be_bytes());
        value.extend_from_slice(secret);
        value
    }

    fn msg_secret_parts(value: &[u8]) -> StateResult<(Vec<u8>, i64)> {
        let bad = || StateError::Decode { kind: kind::MSG_SECRET, reason: "short record".to_owned() };
        let (ts, secret) = value.split_at_checked(8).ok_or_else(bad)?;
        let ts: [u8; 8] = ts.try_into().map_err(|_| bad())?;
        Ok((secret.to_vec(), i64::from_be_bytes(ts)))
    }

    /// Message secrets store their deadline as the stamp; `0` ("never") sorts after every cutoff.
    fn msg_secret_stamp(expires_at: i64) -> i64 {
        if expires_at == 0 { i64::MAX } else { expires_at }
    }

    fn msg_secret_expiry(stamp: i64) -> i64 {
        if stamp == i64::MAX { 0 } else { stamp }
    }
}

#[async_trait::async_trait]
impl SignalStore for GatewayBackend {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        Ok(self.put_one(kind::IDENTITY, address.to_owned(), &key, 0).await?)
    }

    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> Result<()> {
        let writes = identities
            .iter()
            .map(|(address, key)| self.put(kind::IDENTITY, address.to_string(), key, 0))
            .collect::<StateResult<Vec<_>>>()?;
        Ok(self.apply(writes).await?)
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        match self.get(kind::IDENTITY, address).await? {
            None => Ok(None),
            Some(bytes) => Ok(Some(bytes.try_into().map_err(|_| StateError::Decode {
                kind: kind::IDENTITY,
                reason: "identity key is not 32 bytes".to_owned(),
            })?)),
        }
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        Ok(self.delete_one(kind::IDENTITY, address).await?)
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        Ok(self.get(kind::SESSION, address).await?.map(Bytes::from))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        Ok(self.put_one(kind::SESSION, address.to_owned(), session, 0).await?)
    }

    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        let writes = sessions
            .iter()
            .map(|(address, session)| self.put(kind::SESSION, address.to_string(), session, 0))
            .collect::<StateResult<Vec<_>>>()?;
        Ok(self.apply(writes).await?)
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        Ok(self.delete_one(kind::SESSION, address).await?)
    }

    async fn has_session(&self, address: &str) -> Result<bool> {
        Ok(self.store.wa_state_get(self.instance_id, kind::SESSION, address).await.map_err(StateError::from)?.is_some())
    }

    async fn has_signal_state_for_user(&self, user: &str) -> Result<bool> {
        // Addresses are `user@server` or `user:device@server`; the prefix lists both forms and a check of the next
        // character drops longer users that merely start with the same digits.
        let matches = |key: &String| key.strip_prefix(user).is_some_and(|rest| rest.starts_with(['@', ':']));
        for kind in [kind::SESSION, kind::IDENTITY] {
            if self.list_keys(kind, user).await?.iter().any(matches) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        Ok(self.put_one(kind::PREKEY, id_key(id), &Self::prekey_value(record, uploaded), 0).await?)
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        let writes = keys
            .iter()
            .map(|(id, record)| self.put(kind::PREKEY, id_key(*id), &Self::prekey_value(record, uploaded), 0))
            .collect::<StateResult<Vec<_>>>()?;
        Ok(self.apply(writes).await?)
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        match self.get(kind::PREKEY, &id_key(id)).await? {
            Some(value) => Ok(Some(Self::prekey_record(&value)?)),
            None => Ok(None),
        }
    }

    async fn load_prekeys_batch(&self, ids: &[u32]) -> Result<Vec<(u32, Bytes)>> {
        let found = self.get_many(kind::PREKEY, ids.iter().map(|id| id_key(*id)).collect()).await?;
        let mut out = Vec::with_capacity(found.len());
        // In the order asked for, like the library's default implementation.
        for id in ids {
            if let Some(value) = found.get(&id_key(*id)) {
                out.push((*id, Self::prekey_record(value)?));
            }
        }
        Ok(out)
    }

    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        // UPDATE semantics: a key consumed meanwhile stays deleted.
        let _guard = self.rmw.lock().await;
        let found = self.get_many(kind::PREKEY, ids.iter().map(|id| id_key(*id)).collect()).await?;
        let mut writes = Vec::with_capacity(found.len());
        for (key, mut value) in found {
            if let Some(flag) = value.first_mut() {
                *flag = 1;
            }
            writes.push(self.put(kind::PREKEY, key, &value, 0)?);
        }
        Ok(self.apply(writes).await?)
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        Ok(self.delete_one(kind::PREKEY, id_key(id)).await?)
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        let keys = self.list_keys(kind::PREKEY, "").await?;
        let mut max = 0;
        for key in keys {
            max = max.max(parse_id(kind::PREKEY, &key)?);
        }
        Ok(max)
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        Ok(self.put_one(kind::SIGNED_PREKEY, id_key(id), record, 0).await?)
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        Ok(self.get(kind::SIGNED_PREKEY, &id_key(id)).await?)
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        let records = self.list(kind::SIGNED_PREKEY, "").await?;
        records.into_iter().map(|(key, value)| Ok((parse_id(kind::SIGNED_PREKEY, &key)?, value))).collect()
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        Ok(self.delete_one(kind::SIGNED_PREKEY, id_key(id)).await?)
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        Ok(self.put_one(kind::SENDER_KEY, address.to_owned(), record, 0).await?)
    }

    async fn put_sender_keys_batch(&self, sender_keys: &[(Arc<str>, Bytes)]) -> Result<()> {
        let writes = sender_keys
            .iter()
            .map(|(address, record)| self.put(kind::SENDER_KEY, address.to_string(), record, 0))
            .collect::<StateResult<Vec<_>>>()?;
        Ok(self.apply(writes).await?)
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get(kind::SENDER_KEY, address).await?)
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        Ok(self.delete_one(kind::SENDER_KEY, address).await?)
    }
}

#[async_trait::async_trait]
impl AppSyncStore for GatewayBackend {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        match self.get(kind::SYNC_KEY, &hex(key_id)).await? {
            Some(bytes) => Ok(Some(from_json(kind::SYNC_KEY, &bytes)?)),
            None => Ok(None),
        }
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        let writes = vec![
            self.put(kind::SYNC_KEY, hex(key_id), &to_json(kind::SYNC_KEY, &key)?, 0)?,
            self.put(kind::META, LATEST_SYNC_KEY_ID.to_owned(), key_id, 0)?,
        ];
        Ok(self.apply(writes).await?)
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        match self.get(kind::APP_VERSION, name).await? {
            Some(bytes) => Ok(from_json(kind::APP_VERSION, &bytes)?),
            None => Ok(HashState::default()),
        }
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        Ok(self.put_one(kind::APP_VERSION, name.to_owned(), &to_json(kind::APP_VERSION, &state)?, 0).await?)
    }

    async fn put_mutation_macs(&self, name: &str, _version: u64, mutations: &[AppStateMutationMAC]) -> Result<()> {
        let writes = mutations
            .iter()
            .map(|m| self.put(kind::MUTATION_MAC, join2(name, &hex(&m.index_mac)), &m.value_mac, 0))
            .collect::<StateResult<Vec<_>>>()?;
        Ok(self.apply(writes).await?)
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get(kind::MUTATION_MAC, &join2(name, &hex(index_mac))).await?)
    }

    async fn get_mutation_macs(&self, name: &str, index_macs: &[[u8; 32]]) -> Result<HashMap<[u8; 32], Vec<u8>>> {
        let keys = index_macs.iter().map(|m| join2(name, &hex(m))).collect();
        let found = self.get_many(kind::MUTATION_MAC, keys).await?;
        Ok(index_macs.iter().filter_map(|m| found.get(&join2(name, &hex(m))).map(|v| (*m, v.clone()))).collect())
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        let writes = index_macs.iter().map(|m| Self::delete(kind::MUTATION_MAC, join2(name, &hex(m)))).collect();
        Ok(self.apply(writes).await?)
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        let prefix = format!("{name}{SEP}");
        Ok(self.apply(vec![WaStateWrite::DeletePrefix { kind: kind::MUTATION_MAC, prefix }]).await?)
    }

    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.get(kind::META, LATEST_SYNC_KEY_ID).await?)
    }
}

#[async_trait::async_trait]
impl ProtocolStore for GatewayBackend {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        let prefix = format!("{group_jid}{SEP}");
        let records = self.list(kind::SENDER_KEY_DEVICE, &prefix).await?;
        Ok(records
            .into_iter()
            .filter_map(|(key, value)| {
                key.strip_prefix(&prefix).map(|device| (device.to_owned(), value.first().is_some_and(|b| *b == 1)))
            })
            .collect())
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        let writes = entries
            .iter()
            .map(|(device, has_key)| {
                self.put(kind::SENDER_KEY_DEVICE, join2(group_jid, device), &[u8::from(*has_key)], 0)
            })
            .collect::<StateResult<Vec<_>>>()?;
        Ok(self.apply(writes).await?)
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        let prefix = format!("{group_jid}{SEP}");
        Ok(self.apply(vec![WaStateWrite::DeletePrefix { kind: kind::SENDER_KEY_DEVICE, prefix }]).await?)
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        if device_jids.is_empty() {
            return Ok(());
        }
        // Rows are keyed group-first; a device's rows across all groups are found by their suffix.
        let keys = self.list_keys(kind::SENDER_KEY_DEVICE, "").await?;
        let writes = keys
            .into_iter()
            .filter(|key| key.split_once(SEP).is_some_and(|(_, device)| device_jids.contains(&device)))
            .map(|key| Self::delete(kind::SENDER_KEY_DEVICE, key))
            .collect();
        Ok(self.apply(writes).await?)
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        let prefix = String::new();
        Ok(self.apply(vec![WaStateWrite::DeletePrefix { kind: kind::SENDER_KEY_DEVICE, prefix }]).await?)
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        match self.get(kind::LID, lid).await? {
            Some(bytes) => Ok(Some(from_json(kind::LID, &bytes)?)),
            None => Ok(None),
        }
    }

    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        let Some(lid) = self.get(kind::PN, phone).await? else {
            return Ok(None);
        };
        let lid =
            String::from_utf8(lid).map_err(|_| StateError::Decode { kind: kind::PN, reason: "not UTF-8".into() })?;
        self.get_lid_mapping(&lid).await
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        self.put_lid_mappings(std::slice::from_ref(entry)).await
    }

    async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> Result<()> {
        let _guard = self.rmw.lock().await;
        let mut writes = Vec::with_capacity(entries.len() * 3);
        for entry in entries {
            // A LID that moved to another number leaves no reverse entry behind for the old number.
            if let Some(old) = self.get(kind::LID, &entry.lid).await? {
                let old: LidPnMappingEntry = from_json(kind::LID, &old)?;
                if old.phone_number != entry.phone_number {
                    writes.push(Self::delete(kind::PN, old.phone_number));
                }
            }
            writes.push(self.put(kind::PN, entry.phone_number.clone(), entry.lid.as_bytes(), 0)?);
            writes.push(self.put(kind::LID, entry.lid.clone(), &to_json(kind::LID, entry)?, 0)?);
        }
        Ok(self.apply(writes).await?)
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        let records = self.list(kind::LID, "").await?;
        Ok(records.iter().map(|(_, v)| from_json(kind::LID, v)).collect::<StateResult<Vec<_>>>()?)
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        Ok(self.put_one(kind::BASE_KEY, join2(address, message_id), base_key, 0).await?)
    }

    async fn has_same_base_key(&self, address: &str, message_id: &str, current_base_key: &[u8]) -> Result<bool> {
        Ok(self.get(kind::BASE_KEY, &join2(address, message_id)).await?.is_some_and(|k| k == current_base_key))
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        Ok(self.delete_one(kind::BASE_KEY, join2(address, message_id)).await?)
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.update_device_lists(vec![record]).await
    }

    async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> Result<()> {
        let writes = records
            .iter()
            .map(|r| self.put(kind::DEVICE_LIST, r.user.clone(), &to_json(kind::DEVICE_LIST, r)?, 0))
            .collect::<StateResult<Vec<_>>>()?;
        Ok(self.apply(writes).await?)
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        match self.get(kind::DEVICE_LIST, user).await? {
            Some(bytes) => Ok(Some(from_json(kind::DEVICE_LIST, &bytes)?)),
            None => Ok(None),
        }
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        Ok(self.delete_one(kind::DEVICE_LIST, user).await?)
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get(kind::GROUP_METADATA, group_jid).await?)
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        Ok(self.put_one(kind::GROUP_METADATA, group_jid.to_owned(), blob, 0).await?)
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        Ok(self.delete_one(kind::GROUP_METADATA, group_jid).await?)
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        match self.get(kind::TC_TOKEN, jid).await? {
            Some(bytes) => Ok(Some(from_json(kind::TC_TOKEN, &bytes)?)),
            None => Ok(None),
        }
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        Ok(self.put_one(kind::TC_TOKEN, jid.to_owned(), &to_json(kind::TC_TOKEN, entry)?, 0).await?)
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        Ok(self.delete_one(kind::TC_TOKEN, jid).await?)
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        Ok(self.list_keys(kind::TC_TOKEN, "").await?)
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        // The rule looks at two timestamps inside the sealed value, so the rows are opened here.
        let _guard = self.rmw.lock().await;
        let mut writes = Vec::new();
        for (jid, value) in self.list(kind::TC_TOKEN, "").await? {
            let entry: TcTokenEntry = from_json(kind::TC_TOKEN, &value)?;
            let token_live = !entry.token.is_empty() && entry.token_timestamp >= token_cutoff;
            let sender_live = entry.sender_timestamp.is_some_and(|ts| ts >= sender_cutoff);
            if !(token_live || sender_live) {
                writes.push(Self::delete(kind::TC_TOKEN, jid));
            }
        }
        let removed = u32::try_from(writes.len()).unwrap_or(u32::MAX);
        self.apply(writes).await?;
        Ok(removed)
    }

    async fn touch_tc_token_sender_timestamp(&self, jid: &str, sender_timestamp: i64) -> Result<()> {
        let _guard = self.rmw.lock().await;
        let entry = match self.get_tc_token(jid).await? {
            Some(existing) => TcTokenEntry {
                sender_timestamp: Some(existing.sender_timestamp.map_or(sender_timestamp, |e| e.max(sender_timestamp))),
                ..existing
            },
            None => TcTokenEntry {
                token: Vec::new(),
                token_timestamp: sender_timestamp,
                sender_timestamp: Some(sender_timestamp),
            },
        };
        self.put_tc_token(jid, &entry).await
    }

    async fn store_received_tc_token(&self, jid: &str, token: &[u8], token_timestamp: i64) -> Result<()> {
        let _guard = self.rmw.lock().await;
        let existing = self.get_tc_token(jid).await?;
        if let Some(existing) = &existing
            && !existing.token.is_empty()
            && token_timestamp < existing.token_timestamp
        {
            return Ok(());
        }
        let sender_timestamp = existing.and_then(|e| e.sender_timestamp);
        self.put_tc_token(jid, &TcTokenEntry { token: token.to_vec(), token_timestamp, sender_timestamp }).await
    }

    async fn store_sent_message(&self, chat_jid: &str, message_id: &str, payload: &[u8]) -> Result<()> {
        Ok(self.put_one(kind::SENT_MESSAGE, join2(chat_jid, message_id), payload, now_secs()).await?)
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        let key = join2(chat_jid, message_id);
        let taken = self
            .observed(self.store.wa_state_take(self.instance_id, kind::SENT_MESSAGE, &key, self.vault.fence()).await)
            .map_err(StateError::from)?;
        match taken {
            Some(record) => Ok(Some(self.open(kind::SENT_MESSAGE, &key, &record.value)?)),
            None => Ok(None),
        }
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        Ok(self.delete_before(kind::SENT_MESSAGE, cutoff_timestamp).await?)
    }

    async fn store_pending_inbound(&self, chat: &str, sender: &str, id: &str, message: &[u8]) -> Result<()> {
        Ok(self.put_one(kind::PENDING_INBOUND, join3(chat, sender, id), message, now_secs()).await?)
    }

    async fn get_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get(kind::PENDING_INBOUND, &join3(chat, sender, id)).await?)
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        Ok(self.delete_one(kind::PENDING_INBOUND, join3(chat, sender, id)).await?)
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        Ok(self.delete_before(kind::PENDING_INBOUND, cutoff_timestamp).await?)
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        let now = now_secs();
        let writes = rows
            .iter()
            .map(|r| self.put(kind::PENDING_INBOUND, join3(r.chat, r.sender, r.id), r.message, now))
            .collect::<StateResult<Vec<_>>>()?;
        Ok(self.apply(writes).await?)
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        let writes = keys.iter().map(|k| Self::delete(kind::PENDING_INBOUND, join3(k.chat, k.sender, k.id))).collect();
        Ok(self.apply(writes).await?)
    }
}

#[async_trait::async_trait]
impl MsgSecretStore for GatewayBackend {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        let stored = entries.len();
        let _guard = self.rmw.lock().await;
        let keys: Vec<String> = entries.iter().map(|e| join3(&e.chat, &e.sender, &e.msg_id)).collect();
        let existing =
            self.store.wa_state_get_many(self.instance_id, kind::MSG_SECRET, &keys).await.map_err(StateError::from)?;
        let mut current: HashMap<String, (i64, i64)> = HashMap::with_capacity(existing.len());
        for record in existing {
            let (_, message_ts) = Self::msg_secret_parts(&self.open(kind::MSG_SECRET, &record.key, &record.value)?)?;
            current.insert(record.key, (Self::msg_secret_expiry(record.stamp), message_ts));
        }
        let mut writes = Vec::with_capacity(stored);
        for (key, entry) in keys.into_iter().zip(entries) {
            // Later deadlines and known parent times win, as the trait asks (and within one batch too).
            let (expires_at, message_ts) = match current.get(&key) {
                Some((old_expiry, old_ts)) => (
                    merge_msg_secret_expiry(*old_expiry, entry.expires_at),
                    merge_msg_secret_message_ts(*old_ts, entry.message_ts),
                ),
                None => (entry.expires_at, entry.message_ts),
            };
            current.insert(key.clone(), (expires_at, message_ts));
            let value = Self::msg_secret_value(&entry.secret, message_ts);
            writes.push(self.put(kind::MSG_SECRET, key, &value, Self::msg_secret_stamp(expires_at))?);
        }
        self.apply(writes).await?;
        Ok(stored)
    }

    async fn get_msg_secret(&self, chat: &str, sender: &str, msg_id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get_msg_secret_with_ts(chat, sender, msg_id).await?.map(|(secret, _)| secret))
    }

    async fn get_msg_secret_with_ts(&self, chat: &str, sender: &str, msg_id: &str) -> Result<Option<(Vec<u8>, i64)>> {
        match self.get_with_stamp(kind::MSG_SECRET, &join3(chat, sender, msg_id)).await? {
            Some((value, _)) => Ok(Some(Self::msg_secret_parts(&value)?)),
            None => Ok(None),
        }
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        // `expires_at <= cutoff` is `stamp < cutoff + 1`; rows that never expire carry i64::MAX.
        Ok(self.delete_before(kind::MSG_SECRET, cutoff_timestamp.saturating_add(1)).await?)
    }
}

#[async_trait::async_trait]
impl DeviceStore for GatewayBackend {
    async fn save(&self, device: &Device) -> Result<()> {
        let json = to_json(kind::DEVICE, device)?;
        let sealed = self
            .cipher
            .seal(self.instance_id, kind::DEVICE, "", &json)
            .map_err(|source| StateError::Crypto { kind: kind::DEVICE, key: String::new(), source })?;
        // The vault writes `session_data`: sessionValid = true and lastBackup = now.
        Ok(self.vault.save(&sealed).await.map_err(StateError::Vault)?)
    }

    async fn load(&self) -> Result<Option<Device>> {
        let Some(sealed) = self.vault.load().await.map_err(StateError::Vault)? else {
            return Ok(None);
        };
        let json = self.open(kind::DEVICE, "", &sealed)?;
        Ok(Some(from_json(kind::DEVICE, &json)?))
    }

    async fn exists(&self) -> Result<bool> {
        Ok(self.vault.load().await.map_err(StateError::Vault)?.is_some())
    }

    async fn create(&self) -> Result<i32> {
        // One device per instance; nothing is written until the library saves the device it builds, so an
        // instance that never paired leaves no session behind.
        Ok(1)
    }

    async fn resource_report(&self) -> whatsapp_rust::wacore::stats::StorageResourceReport {
        // Rows live in the database, not in this process.
        whatsapp_rust::wacore::stats::StorageResourceReport { memory_bytes: Some(0), ..Default::default() }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn msg_secret_stamps_keep_never_after_every_cutoff() {
        assert_eq!(GatewayBackend::msg_secret_stamp(0), i64::MAX);
        assert_eq!(GatewayBackend::msg_secret_expiry(i64::MAX), 0);
        assert_eq!(GatewayBackend::msg_secret_stamp(5), 5);
    }
}
