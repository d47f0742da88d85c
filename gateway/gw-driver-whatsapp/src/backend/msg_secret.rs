//! Message secrets, merged on write as the trait asks; the deadline is the row's stamp.

use std::collections::HashMap;

use whatsapp_rust::wacore::store::error::Result;
use whatsapp_rust::wacore::store::traits::{
    MsgSecretEntry, MsgSecretStore, merge_msg_secret_expiry, merge_msg_secret_message_ts,
};

use super::{GatewayBackend, StateError, StateResult, join3, kind};

/// A message-secret row is the parent message's time (8 bytes, big-endian) followed by the secret.
impl GatewayBackend {
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
