//! An [`AuthVault`] over the gateway's [`SessionStore`]: the `session_data` row of an instance.
//!
//! The engine may bring its own vault; this one is what the driver's tests use and what the engine can use as is.
//! What it stores is already sealed by the driver ([`crate::backend`]), so it adds no second layer of encryption.

use std::sync::Arc;

use gw_core::{InstanceId, Timestamp};
use gw_sessions::{AuthVault, DriverError};
use gw_store::Store;

#[derive(Debug, Clone)]
pub struct StoreAuthVault {
    instance_id: InstanceId,
    store: Arc<dyn Store>,
}

impl StoreAuthVault {
    pub fn new(instance_id: InstanceId, store: Arc<dyn Store>) -> Self {
        Self { instance_id, store }
    }
}

fn store_error(err: gw_store::StoreError) -> DriverError {
    // A database that is down now may be back on the next attempt; the engine retries transient errors.
    match err {
        gw_store::StoreError::Unavailable(_) => DriverError::Transient(format!("session store: {err}")),
        other => DriverError::Other(format!("session store: {other}")),
    }
}

#[async_trait::async_trait]
impl AuthVault for StoreAuthVault {
    async fn load(&self) -> Result<Option<Vec<u8>>, DriverError> {
        let session = self.store.load_session(self.instance_id).await.map_err(store_error)?;
        Ok(session.filter(|s| s.session_valid).map(|s| s.auth_state.into_inner()))
    }

    async fn save(&self, state: &[u8]) -> Result<(), DriverError> {
        self.store.save_session(self.instance_id, state.to_vec(), Timestamp::now(), None).await.map_err(store_error)?;
        Ok(())
    }

    async fn invalidate(&self) -> Result<(), DriverError> {
        self.store.invalidate_session(self.instance_id, Timestamp::now(), None).await.map_err(store_error)
    }
}
