//! [`AuthVault`] over the gateway's `SESSION_DATA`.

use std::sync::Arc;

use gw_core::{InstanceId, Timestamp};
use gw_store::Store;

use crate::sealer::{ENVELOPE_V1, Sealer, envelope_version};
use crate::state::Tenure;
use crate::{AuthVault, DriverError};

/// Keeps a driver's auth state in the instance's `SESSION_DATA` row.
#[derive(Debug, Clone)]
pub struct StoreVault {
    store: Arc<dyn Store>,
    cipher: Arc<SessionCipher>,
    instance_id: InstanceId,
    /// The session's lease: its writes carry the epoch and a refusal stops the session.
    tenure: Option<Arc<Tenure>>,
}

impl StoreVault {
    pub fn new(store: Arc<dyn Store>, cipher: Arc<SessionCipher>, instance_id: InstanceId) -> Self {
        Self { store, cipher, instance_id, tenure: None }
    }

    pub(crate) fn fenced(self, tenure: Arc<Tenure>) -> Self {
        Self { tenure: Some(tenure), ..self }
    }

    fn fence(&self) -> Option<gw_store::OwnerEpoch> {
        self.tenure.as_ref().and_then(|t| t.fence())
    }

    fn check<T>(&self, result: &Result<T, gw_store::StoreError>) {
        if let Some(tenure) = &self.tenure {
            tenure.check(result);
        }
    }
}

/// Seals auth state at rest with the gateway's [`Sealer`], the instance id in the context so one instance's row
/// cannot be replayed into another's. Rows of the first format (version 1: the same cipher with the bare instance
/// id as associated data) still open; every save writes version 2.
#[derive(Debug)]
pub struct SessionCipher {
    sealer: Sealer,
}

/// The table the context names, so a `session_data` value never opens as any other sealed row.
const CONTEXT: &[u8] = b"session_data";

impl SessionCipher {
    pub fn new(key: &[u8; 32]) -> Self {
        Self { sealer: Sealer::new(key) }
    }

    pub fn seal(&self, instance_id: InstanceId, plain: &[u8]) -> Result<Vec<u8>, DriverError> {
        self.sealer
            .seal(&[CONTEXT, instance_id.as_uuid().as_bytes()], plain)
            .map_err(|_| DriverError::Other("session state could not be encrypted".into()))
    }

    pub fn open(&self, instance_id: InstanceId, sealed: &[u8]) -> Result<Vec<u8>, DriverError> {
        let instance = instance_id.as_uuid();
        let opened = match envelope_version(sealed) {
            Some(ENVELOPE_V1) => self.sealer.open_v1(instance.as_bytes(), sealed),
            _ => self.sealer.open(&[CONTEXT, instance.as_bytes()], sealed),
        };
        opened.map_err(|_| {
            DriverError::LoggedOut(
                "the stored session cannot be decrypted with the configured key (was sessions.encryption_key changed?)"
                    .into(),
            )
        })
    }
}

fn store_err(e: gw_store::StoreError) -> DriverError {
    DriverError::Transient(format!("session store: {e}"))
}

#[async_trait::async_trait]
impl AuthVault for StoreVault {
    async fn load(&self) -> Result<Option<Vec<u8>>, DriverError> {
        let session = self.store.load_session(self.instance_id).await.map_err(store_err)?;
        match session.filter(|s| s.session_valid) {
            Some(s) => self.cipher.open(self.instance_id, s.auth_state.expose()).map(Some),
            None => Ok(None),
        }
    }

    async fn save(&self, state: &[u8]) -> Result<(), DriverError> {
        let sealed = self.cipher.seal(self.instance_id, state)?;
        let saved = self.store.save_session(self.instance_id, sealed, Timestamp::now(), self.fence()).await;
        self.check(&saved);
        saved.map_err(store_err)?;
        Ok(())
    }

    async fn invalidate(&self) -> Result<(), DriverError> {
        let invalidated = self.store.invalidate_session(self.instance_id, Timestamp::now(), self.fence()).await;
        self.check(&invalidated);
        invalidated.map_err(store_err)
    }

    fn fence(&self) -> Option<gw_store::OwnerEpoch> {
        StoreVault::fence(self)
    }

    fn observe(&self, error: &gw_store::StoreError) {
        if let Some(tenure) = &self.tenure {
            tenure.observe(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_state_opens_only_with_the_same_key_and_instance() {
        let cipher = SessionCipher::new(&[7; 32]);
        let instance = InstanceId::new();
        let sealed = cipher.seal(instance, b"auth state").expect("seal");
        assert!(!sealed.windows(10).any(|w| w == b"auth state"), "plain text must not be stored");
        assert_eq!(cipher.open(instance, &sealed).expect("open"), b"auth state");
        assert!(cipher.open(InstanceId::new(), &sealed).is_err(), "another instance's row must not open");
        assert!(SessionCipher::new(&[8; 32]).open(instance, &sealed).is_err(), "another key must not open");
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(cipher.open(instance, &tampered).is_err());
    }

    /// A row as the first format sealed it (version 1: the bare instance id as associated data) still opens.
    #[test]
    fn rows_of_the_first_format_still_open() {
        use chacha20poly1305::XChaCha20Poly1305;
        use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};

        let instance = InstanceId::new();
        let aead = XChaCha20Poly1305::new(&[7; 32].into());
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let body =
            aead.encrypt(&nonce, Payload { msg: b"old state", aad: instance.as_uuid().as_bytes() }).expect("seal");
        let old = [&[1u8][..], &nonce, &body].concat();

        let cipher = SessionCipher::new(&[7; 32]);
        assert_eq!(cipher.open(instance, &old).expect("open"), b"old state");
        assert!(cipher.open(InstanceId::new(), &old).is_err());
        let resealed = cipher.seal(instance, b"old state").expect("seal");
        assert_eq!(resealed[0], crate::sealer::ENVELOPE_V2, "every save writes the current envelope");
    }
}
