//! App-state sync: sync keys, collection versions, mutation MACs.

use std::collections::HashMap;

use gw_store::WaStateWrite;
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::error::Result;
use whatsapp_rust::wacore::store::traits::{AppStateSyncKey, AppSyncStore};

use super::{GatewayBackend, SEP, StateResult, from_json, hex, join2, kind, to_json};

const LATEST_SYNC_KEY_ID: &str = "latest_sync_key_id";

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
