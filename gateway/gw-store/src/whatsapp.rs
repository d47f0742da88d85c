//! A per-instance keyed record store for the state a WhatsApp protocol library keeps (Signal sessions, pre-keys,
//! app-state sync keys, LID mappings, ...).
//!
//! The store does not know what the records mean: a record is `(instance, kind, key) -> value`, where `kind` is a
//! short namespace the driver chooses, `key` is text, and `value` is opaque bytes (the driver encrypts them before
//! they arrive here). Each record also carries a `stamp`, a plain integer the driver picks (a unix time) so that
//! expired records can be removed without decrypting them. Records go when their instance is deleted.

use async_trait::async_trait;
use gw_core::InstanceId;

use crate::{OwnerEpoch, StoreResult};

/// One stored record of a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaStateRecord {
    pub key: String,
    pub value: Vec<u8>,
    pub stamp: i64,
}

/// One change in a [`WhatsAppStateStore::wa_state_apply`] batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaStateWrite {
    /// Inserts or replaces the record.
    Put { kind: &'static str, key: String, value: Vec<u8>, stamp: i64 },
    /// Removes the record if it exists.
    Delete { kind: &'static str, key: String },
    /// Removes every record of the kind whose key starts with `prefix` (all of the kind for `""`).
    DeletePrefix { kind: &'static str, prefix: String },
}

#[async_trait]
pub trait WhatsAppStateStore: Send + Sync {
    async fn wa_state_get(&self, instance_id: InstanceId, kind: &str, key: &str) -> StoreResult<Option<WaStateRecord>>;
    /// The records of `keys` that exist, in no particular order.
    async fn wa_state_get_many(
        &self,
        instance_id: InstanceId,
        kind: &str,
        keys: &[String],
    ) -> StoreResult<Vec<WaStateRecord>>;
    /// Every record of the kind whose key starts with `prefix` (all of the kind for `""`), ordered by key.
    async fn wa_state_list(&self, instance_id: InstanceId, kind: &str, prefix: &str)
    -> StoreResult<Vec<WaStateRecord>>;
    /// Applies the writes in order, in one transaction: all of them or none. With a `fence` (the session's lease
    /// epoch), none of them once another node took the instance over: [`crate::StoreError::Fenced`].
    async fn wa_state_apply(
        &self,
        instance_id: InstanceId,
        writes: Vec<WaStateWrite>,
        fence: Option<OwnerEpoch>,
    ) -> StoreResult<()>;
    /// Removes the record and returns it, atomically: of two concurrent takes, one gets it. Fenced as
    /// [`WhatsAppStateStore::wa_state_apply`].
    async fn wa_state_take(
        &self,
        instance_id: InstanceId,
        kind: &str,
        key: &str,
        fence: Option<OwnerEpoch>,
    ) -> StoreResult<Option<WaStateRecord>>;
    /// Removes the records of the kind whose stamp is below `cutoff`; returns how many. Fenced as
    /// [`WhatsAppStateStore::wa_state_apply`].
    async fn wa_state_delete_stamped_before(
        &self,
        instance_id: InstanceId,
        kind: &str,
        cutoff: i64,
        fence: Option<OwnerEpoch>,
    ) -> StoreResult<u64>;
}
