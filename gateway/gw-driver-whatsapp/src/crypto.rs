//! Encryption at rest of the driver's state records, with the gateway's one sealer ([`gw_sessions::Sealer`]).
//!
//! The context of every record is the table, the instance, the kind and the key, so a row copied to another key or
//! instance (or two rows swapped) fails authentication instead of handing one contact's Signal session to another.
//! Every write is the sealer's version-2 envelope. Rows written before it (version 1: AES-256-GCM under the same
//! key, `1 || nonce (12) || ciphertext+tag`) still open here, and [`crate::GatewayBackend::reseal_legacy_rows`]
//! rewrites them once per instance.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use gw_core::InstanceId;
use gw_sessions::sealer::{ENVELOPE_V1, ENVELOPE_V2, SealError, Sealer, envelope_version};

/// The table the context names, so a state record never opens as any other sealed row.
const CONTEXT: &[u8] = b"whatsapp_state";

/// Why a stored record could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the encryption key must be 32 bytes, got {0}")]
    KeyLength(usize),
    #[error("the encryption key is not valid base64")]
    KeyEncoding,
    #[error("record too large to encrypt")]
    TooLarge,
    #[error("stored record is truncated or of an unknown format")]
    Malformed,
    /// Wrong key, a tampered value, or a row moved to another instance/kind/key.
    #[error("stored record failed authentication (wrong encryption key, or the row was altered or moved)")]
    Authentication,
}

impl From<SealError> for CryptoError {
    fn from(err: SealError) -> Self {
        match err {
            SealError::KeyLength(len) => CryptoError::KeyLength(len),
            SealError::TooLarge => CryptoError::TooLarge,
            SealError::Malformed => CryptoError::Malformed,
            SealError::Authentication => CryptoError::Authentication,
        }
    }
}

/// The key that seals every state record of every instance.
#[derive(Clone)]
pub struct StateCipher {
    sealer: Sealer,
    /// Opens version-1 rows only; nothing is sealed with it any more.
    legacy: Aes256Gcm,
}

impl std::fmt::Debug for StateCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCipher(***)")
    }
}

impl StateCipher {
    pub fn new(key: &[u8]) -> Result<Self, CryptoError> {
        let sealer = Sealer::from_slice(key)?;
        let legacy = Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::KeyLength(key.len()))?;
        Ok(Self { sealer, legacy })
    }

    /// A key given as standard base64 of 32 bytes (the configuration's form).
    pub fn from_base64(encoded: &str) -> Result<Self, CryptoError> {
        use base64::Engine as _;
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| CryptoError::KeyEncoding)?;
        Self::new(&bytes)
    }

    pub fn seal(
        &self,
        instance_id: InstanceId,
        kind: &str,
        key: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let instance = instance_id.as_uuid();
        Ok(self.sealer.seal(&[CONTEXT, instance.as_bytes(), kind.as_bytes(), key.as_bytes()], plaintext)?)
    }

    pub fn open(&self, instance_id: InstanceId, kind: &str, key: &str, stored: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match envelope_version(stored) {
            Some(ENVELOPE_V1) => self.open_v1(instance_id, kind, key, stored),
            _ => {
                let instance = instance_id.as_uuid();
                Ok(self.sealer.open(&[CONTEXT, instance.as_bytes(), kind.as_bytes(), key.as_bytes()], stored)?)
            }
        }
    }

    /// Whether `stored` is in the envelope every write produces (a row that is not should be sealed again).
    pub fn is_current(stored: &[u8]) -> bool {
        envelope_version(stored) == Some(ENVELOPE_V2)
    }

    fn open_v1(&self, instance_id: InstanceId, kind: &str, key: &str, stored: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let rest = stored.get(1..).filter(|rest| rest.len() >= V1_NONCE_LEN + 16).ok_or(CryptoError::Malformed)?;
        let (nonce, ciphertext) = rest.split_at(V1_NONCE_LEN);
        let nonce: [u8; V1_NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Malformed)?;
        let aad = v1_associated_data(instance_id, kind, key);
        self.legacy
            .decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| CryptoError::Authentication)
    }
}

const V1_NONCE_LEN: usize = 12;
/// Version 1's domain label; its associated data is kept byte for byte so old rows authenticate.
const V1_AAD_LABEL: &[u8] = b"gw-driver-whatsapp/state/v1";

fn v1_associated_data(instance_id: InstanceId, kind: &str, key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(V1_AAD_LABEL.len() + 16 + 16 + kind.len() + key.len());
    aad.extend_from_slice(V1_AAD_LABEL);
    aad.extend_from_slice(instance_id.as_uuid().as_bytes());
    aad.extend_from_slice(&(kind.len() as u64).to_be_bytes());
    aad.extend_from_slice(kind.as_bytes());
    aad.extend_from_slice(&(key.len() as u64).to_be_bytes());
    aad.extend_from_slice(key.as_bytes());
    aad
}

/// Seals as version 1 did, for tests that need a row written by the old code.
#[doc(hidden)]
pub fn seal_v1_for_tests(key: &[u8; 32], instance_id: InstanceId, kind: &str, row_key: &str, plain: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.into());
    let nonce: [u8; V1_NONCE_LEN] = rand::random();
    let aad = v1_associated_data(instance_id, kind, row_key);
    let sealed = cipher.encrypt(&Nonce::from(nonce), Payload { msg: plain, aad: &aad }).unwrap_or_default();
    [&[ENVELOPE_V1][..], &nonce, &sealed].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> InstanceId {
        InstanceId::from_uuid(uuid::Uuid::now_v7())
    }

    #[test]
    fn seal_then_open_round_trips_and_nonces_differ() {
        let cipher = StateCipher::new(&[7u8; 32]).expect("key");
        let id = instance();
        let a = cipher.seal(id, "session", "123@s.whatsapp.net", b"ratchet").expect("seal");
        let b = cipher.seal(id, "session", "123@s.whatsapp.net", b"ratchet").expect("seal");
        assert_ne!(a, b, "a fresh nonce per write");
        assert!(StateCipher::is_current(&a));
        assert_eq!(cipher.open(id, "session", "123@s.whatsapp.net", &a).expect("open"), b"ratchet");
    }

    #[test]
    fn wrong_key_moved_row_and_garbage_are_refused() {
        let cipher = StateCipher::new(&[7u8; 32]).expect("key");
        let other = StateCipher::new(&[8u8; 32]).expect("key");
        let id = instance();
        let sealed = cipher.seal(id, "session", "a", b"x").expect("seal");
        assert_eq!(other.open(id, "session", "a", &sealed), Err(CryptoError::Authentication));
        assert_eq!(cipher.open(id, "session", "b", &sealed), Err(CryptoError::Authentication));
        assert_eq!(cipher.open(id, "identity", "a", &sealed), Err(CryptoError::Authentication));
        assert_eq!(cipher.open(instance(), "session", "a", &sealed), Err(CryptoError::Authentication));
        assert_eq!(cipher.open(id, "session", "a", &[1, 2, 3]), Err(CryptoError::Malformed));
        assert_eq!(cipher.open(id, "session", "a", &[]), Err(CryptoError::Malformed));
    }

    /// A row the AES-256-GCM code wrote opens, bound to its instance, kind and key as before.
    #[test]
    fn rows_sealed_by_the_old_code_still_open() {
        let cipher = StateCipher::new(&[7u8; 32]).expect("key");
        let id = instance();
        let old = seal_v1_for_tests(&[7; 32], id, "session", "a", b"old ratchet");
        assert!(!StateCipher::is_current(&old));
        assert_eq!(cipher.open(id, "session", "a", &old).expect("open"), b"old ratchet");
        assert_eq!(cipher.open(id, "session", "b", &old), Err(CryptoError::Authentication));
        let other = StateCipher::new(&[8u8; 32]).expect("key");
        assert_eq!(other.open(id, "session", "a", &old), Err(CryptoError::Authentication));
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert_eq!(StateCipher::new(&[0u8; 16]).map(|_| ()), Err(CryptoError::KeyLength(16)));
        assert_eq!(StateCipher::from_base64("not base64!").map(|_| ()), Err(CryptoError::KeyEncoding));
        assert!(StateCipher::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_ok());
    }
}
