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
//! One type implements the library's five storage traits, one file each (`signal`, `app_sync`, `protocol`,
//! `msg_secret`, `device`), over the record kinds, key helpers and sealed row access here.
//!
//! [`Backend`]: whatsapp_rust::wacore::store::traits::Backend

use std::collections::HashMap;
use std::sync::Arc;

use gw_core::InstanceId;
use gw_sessions::AuthVault;
use gw_store::{Store, WaStateWrite};
use tokio::sync::Mutex;
use whatsapp_rust::wacore::store::error::StoreError as WaStoreError;

use crate::crypto::{CryptoError, StateCipher};

mod app_sync;
mod device;
mod msg_secret;
mod protocol;
mod signal;

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
}
