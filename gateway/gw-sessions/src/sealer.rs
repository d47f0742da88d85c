//! The gateway's one at-rest sealer: everything stored encrypted under `sessions.encryption_key` (the engine's
//! `session_data`, the whatsapp driver's protocol state) goes through [`Sealer`].
//!
//! XChaCha20-Poly1305 with a fresh random 192-bit nonce per write (random nonces that never realistically repeat,
//! which 96-bit GCM nonces cannot promise at this volume under one key). The associated data is a *context*: a
//! domain label and the parts that name the row (instance, kind, key), length-prefixed so no two contexts produce
//! the same bytes. A row copied to another instance, kind or key, or into another table, fails authentication.
//!
//! The envelope is `version (1 byte) || nonce (24) || ciphertext || tag (16)`. Version 2 is the only one written.
//! Version 1 is what came before, one per table: the session vault's XChaCha20-Poly1305 with the bare instance id
//! as associated data ([`Sealer::open_v1`]), and the driver's AES-256-GCM, which the driver reads with its own code
//! until every row is rewritten. Readers dispatch on [`envelope_version`].

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The envelope every write produces.
pub const ENVELOPE_V2: u8 = 2;
/// The envelope of the first formats (see the module docs).
pub const ENVELOPE_V1: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Domain separation from any other use of the same key.
const CONTEXT_LABEL: &[u8] = b"gw-sealer/v2";

/// Why a value could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the encryption key must be 32 bytes, got {0}")]
    KeyLength(usize),
    #[error("value too large to encrypt")]
    TooLarge,
    #[error("stored value is truncated or of an unknown format")]
    Malformed,
    /// Wrong key, a tampered value, or a row moved to another context.
    #[error("stored value failed authentication (wrong encryption key, or the row was altered or moved)")]
    Authentication,
}

/// The version byte of a sealed value, if it has one.
pub fn envelope_version(sealed: &[u8]) -> Option<u8> {
    sealed.first().copied()
}

/// Seals and opens values under one 32-byte key.
#[derive(Clone)]
pub struct Sealer {
    aead: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

fn associated_data(context: &[&[u8]]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(CONTEXT_LABEL.len() + context.iter().map(|part| 8 + part.len()).sum::<usize>());
    aad.extend_from_slice(CONTEXT_LABEL);
    for part in context {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Self {
        Self { aead: XChaCha20Poly1305::new(key.into()) }
    }

    pub fn from_slice(key: &[u8]) -> Result<Self, SealError> {
        let key: &[u8; 32] = key.try_into().map_err(|_| SealError::KeyLength(key.len()))?;
        Ok(Self::new(key))
    }

    /// Seals `plain` under `context` as a version-2 envelope.
    pub fn seal(&self, context: &[&[u8]], plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(context);
        let sealed = self.aead.encrypt(&nonce, Payload { msg: plain, aad: &aad }).map_err(|_| SealError::TooLarge)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(ENVELOPE_V2);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a version-2 envelope sealed under the same `context`.
    pub fn open(&self, context: &[&[u8]], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.open_raw(ENVELOPE_V2, &associated_data(context), sealed)
    }

    /// Opens the session vault's version-1 envelope: the same cipher and layout, with `aad` as it was given.
    pub fn open_v1(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.open_raw(ENVELOPE_V1, aad, sealed)
    }

    fn open_raw(&self, version: u8, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&found, rest) = sealed.split_first().ok_or(SealError::Malformed)?;
        if found != version || rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        self.aead.decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad }).map_err(|_| SealError::Authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_under_the_same_key_and_context() {
        let sealer = Sealer::new(&[7; 32]);
        let sealed = sealer.seal(&[b"table", b"row"], b"secret").expect("seal");
        assert_eq!(envelope_version(&sealed), Some(ENVELOPE_V2));
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "plain text must not be stored");
        assert_ne!(sealed, sealer.seal(&[b"table", b"row"], b"secret").expect("seal"), "a fresh nonce per write");
        assert_eq!(sealer.open(&[b"table", b"row"], &sealed).expect("open"), b"secret");
        assert_eq!(Sealer::new(&[8; 32]).open(&[b"table", b"row"], &sealed), Err(SealError::Authentication));
        assert_eq!(sealer.open(&[b"table", b"rox"], &sealed), Err(SealError::Authentication));
        // Length prefixes: moving a byte from one part to the next is another context.
        assert_eq!(sealer.open(&[b"tabler", b"ow"], &sealed), Err(SealError::Authentication));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(sealer.open(&[b"table", b"row"], &tampered), Err(SealError::Authentication));
        assert_eq!(sealer.open(&[b"table", b"row"], &sealed[..20]), Err(SealError::Malformed));
        assert_eq!(sealer.open(&[b"table", b"row"], &[]), Err(SealError::Malformed));
        assert_eq!(sealer.open_v1(b"row", &sealed), Err(SealError::Malformed), "a version is never read as another");
    }

    #[test]
    fn keys_must_be_32_bytes() {
        assert_eq!(Sealer::from_slice(&[0; 16]).map(|_| ()), Err(SealError::KeyLength(16)));
        assert!(Sealer::from_slice(&[0; 32]).is_ok());
    }
}
