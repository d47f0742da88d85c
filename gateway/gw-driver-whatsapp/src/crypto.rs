//! Encryption at rest of the driver's state records.
//!
//! AES-256-GCM with a fresh random 96-bit nonce per write. The associated data binds a ciphertext to the instance,
//! kind and key it was written under, so a row copied to another key or instance (or two rows swapped) fails
//! authentication instead of handing one contact's Signal session to another. A stored value is
//! `version (1 byte) || nonce (12) || ciphertext+tag`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use gw_core::InstanceId;

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
/// Domain separation: the same key used elsewhere in the gateway can never authenticate these records.
const AAD_LABEL: &[u8] = b"gw-driver-whatsapp/state/v1";

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

/// The key that seals every state record of every instance.
#[derive(Clone)]
pub struct StateCipher {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for StateCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCipher(***)")
    }
}

fn associated_data(instance_id: InstanceId, kind: &str, key: &str) -> Vec<u8> {
    // Lengths are prefixed so ("ab", "c") and ("a", "bc") never produce the same bytes.
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 16 + 16 + kind.len() + key.len());
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(instance_id.as_uuid().as_bytes());
    aad.extend_from_slice(&(kind.len() as u64).to_be_bytes());
    aad.extend_from_slice(kind.as_bytes());
    aad.extend_from_slice(&(key.len() as u64).to_be_bytes());
    aad.extend_from_slice(key.as_bytes());
    aad
}

impl StateCipher {
    pub fn new(key: &[u8]) -> Result<Self, CryptoError> {
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::KeyLength(key.len()))?;
        Ok(Self { cipher })
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
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        let aad = associated_data(instance_id, kind, key);
        // GCM refuses only plaintexts beyond its 64 GiB limit.
        let ciphertext =
            self.cipher.encrypt(&nonce, Payload { msg: plaintext, aad: &aad }).map_err(|_| CryptoError::TooLarge)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    pub fn open(&self, instance_id: InstanceId, kind: &str, key: &str, stored: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (&version, rest) = stored.split_first().ok_or(CryptoError::Malformed)?;
        if version != FORMAT_V1 || rest.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce_bytes, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce_bytes: [u8; NONCE_LEN] = nonce_bytes.try_into().map_err(|_| CryptoError::Malformed)?;
        let aad = associated_data(instance_id, kind, key);
        self.cipher
            .decrypt(&Nonce::from(nonce_bytes), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| CryptoError::Authentication)
    }
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

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert_eq!(StateCipher::new(&[0u8; 16]).map(|_| ()), Err(CryptoError::KeyLength(16)));
        assert_eq!(StateCipher::from_base64("not base64!").map(|_| ()), Err(CryptoError::KeyEncoding));
        assert!(StateCipher::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_ok());
    }
}
