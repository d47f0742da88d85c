//! Protocol bookkeeping: sender-key devices, LID/PN mappings, base keys, device lists, group metadata,
//! trusted-contact tokens, sent messages and the pending-inbound buffer.

use gw_store::WaStateWrite;
use whatsapp_rust::wacore::store::error::Result;
use whatsapp_rust::wacore::store::traits::{
    DeviceListRecord, LidPnMappingEntry, PendingInboundKey, PendingInboundRow, ProtocolStore, TcTokenEntry,
};

use super::{GatewayBackend, SEP, StateError, StateResult, from_json, join2, join3, kind, now_secs, to_json};

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
