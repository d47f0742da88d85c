//! The device record, sealed and kept in the engine's auth vault rather than in `whatsapp_state`.

use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::error::Result;
use whatsapp_rust::wacore::store::traits::DeviceStore;

use super::{GatewayBackend, StateError, from_json, kind, to_json};

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
