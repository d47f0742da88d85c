//! Refresh tokens: opaque, random, shown once, stored as SHA-256 hashes (they carry 256 bits of randomness, so a
//! fast hash is the right store form; Argon2 is for low-entropy passwords).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

const PREFIX: &str = "gwr_";

/// A new refresh token and the hash to store.
pub(crate) fn generate() -> (String, Vec<u8>) {
    let secret: [u8; 32] = rand::random();
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = hash(&token);
    (token, hash)
}

pub(crate) fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Cheap shape check before any look-up.
pub(crate) fn looks_valid(token: &str) -> bool {
    token.len() == PREFIX.len() + 43 && token.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_well_formed() {
        let (a, hash_a) = generate();
        let (b, _) = generate();
        assert_ne!(a, b);
        assert!(looks_valid(&a), "{a}");
        assert_eq!(hash(&a), hash_a);
        assert!(!looks_valid("gwr_short"));
    }
}
