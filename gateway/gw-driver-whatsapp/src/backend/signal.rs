//! Signal protocol records: identities, sessions, pre-keys, signed pre-keys, sender keys.

use std::sync::Arc;

use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::wacore::store::error::Result;
use whatsapp_rust::wacore::store::traits::SignalStore;

use super::{GatewayBackend, StateError, StateResult, id_key, kind, parse_id};

/// A pre-key row is its `uploaded` flag followed by the record.
impl GatewayBackend {
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
