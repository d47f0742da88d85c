//! [`AuthVault`] over the gateway's `SESSION_DATA`.

use std::sync::Arc;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use gw_core::{InstanceId, Timestamp};
use gw_store::Store;

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

/// Encrypts auth state at rest (XChaCha20-Poly1305, a random nonce per write, the instance id as associated data so
/// one instance's row cannot be replayed into another's).
pub struct SessionCipher {
    aead: XChaCha20Poly1305,
}

impl std::fmt::Debug for SessionCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCipher(..)")
    }
}

const NONCE_LEN: usize = 24;
/// Format tag of the sealed blob, so a future key rotation or algorithm can coexist.
const VERSION: u8 = 1;

impl SessionCipher {
    pub fn new(key: &[u8; 32]) -> Self {
        Self { aead: XChaCha20Poly1305::new(key.into()) }
    }

    pub fn seal(&self, instance_id: InstanceId, plain: &[u8]) -> Result<Vec<u8>, DriverError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .aead
            .encrypt(&nonce, Payload { msg: plain, aad: instance_id.as_uuid().as_bytes() })
            .map_err(|_| DriverError::Other("session state could not be encrypted".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, instance_id: InstanceId, sealed: &[u8]) -> Result<Vec<u8>, DriverError> {
        let refused = || {
            DriverError::LoggedOut(
                "the stored session cannot be decrypted with the configured key (was sessions.encryption_key changed?)"
                    .into(),
            )
        };
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(refused());
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
        self.aead
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: instance_id.as_uuid().as_bytes() })
            .map_err(|_| refused())
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
}
