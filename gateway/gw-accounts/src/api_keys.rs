//! API keys: their format, their stored form, and the scopes they carry.
//!
//! A key reads `gwk_<key id>_<secret><checksum>`: a readable prefix (so leaked-key scanners and people recognise
//! it), the key's id in base62 (22 characters; not secret, it names the key in logs and the API), 43 base62
//! characters of secret (256 bits), and a 6-character base62 CRC32 of everything before it, so a mistyped or
//! truncated key is refused before any look-up.
//!
//! Only a keyed hash is stored: HMAC-SHA256 under a server-side pepper. A key carries 256 bits of randomness, so a
//! fast hash cannot be brute-forced and costs ~0.2 us per request; Argon2 (tens of milliseconds by design) is for
//! low-entropy passwords and would cap the edge at tens of requests per second per core. The pepper means a copy
//! of the database alone cannot even confirm a guessed key.

use gw_core::{ApiKeyHash, ApiKeyId, KeyScope, Redacted};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "gwk_";
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ID_LEN: usize = 22;
const SECRET_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
/// `gwk_` + id + `_` + secret + checksum.
pub const KEY_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;

/// What a key may do, in text form: [`KeyScope`]'s spellings. Anything else is refused when a key is created.
pub const SCOPES: &[&str] = &{
    let mut names = [""; KeyScope::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = KeyScope::ALL[i].as_str();
        i += 1;
    }
    names
};

/// Why a string is not a well-formed key (decided without touching the database).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("not an API key of this gateway")]
    Malformed,
    #[error("the API key's checksum does not match: it was mistyped or truncated")]
    BadChecksum,
}

fn base62_fixed(mut value: u128, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Each byte's base62 digit, or `NOT_BASE62`: parsing runs on every API call.
const DIGITS: [u8; 256] = {
    let mut digits = [NOT_BASE62; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        digits[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    digits
};
const NOT_BASE62: u8 = u8::MAX;

fn base62_decode(text: &str) -> Option<u128> {
    text.bytes().try_fold(0u128, |acc, b| {
        let digit = DIGITS[usize::from(b)];
        if digit == NOT_BASE62 {
            return None;
        }
        acc.checked_mul(62)?.checked_add(u128::from(digit))
    })
}

fn checksum(body: &str) -> String {
    base62_fixed(u128::from(crc32fast::hash(body.as_bytes())), CHECKSUM_LEN)
}

/// Whether `sum` is the checksum of `body`, compared as numbers (no text is built): the fixed-width encoding of
/// a 32-bit value is unique, so equal values mean equal text.
fn checksum_matches(body: &str, sum: &str) -> bool {
    sum.len() == CHECKSUM_LEN && base62_decode(sum) == Some(u128::from(crc32fast::hash(body.as_bytes())))
}

/// A newly minted key: shown to the tenant once.
pub fn generate(id: ApiKeyId) -> Redacted<String> {
    let secret: String = (0..SECRET_LEN).map(|_| ALPHABET[rand::random_range(0..62)] as char).collect();
    let body = format!("{PREFIX}{}_{secret}", base62_fixed(id.as_uuid().as_u128(), ID_LEN));
    let sum = checksum(&body);
    Redacted::new(format!("{body}{sum}"))
}

/// Checks a presented key's shape and checksum, and returns the id it names.
pub fn parse(key: &str) -> Result<ApiKeyId, KeyFormatError> {
    if key.len() != KEY_LEN || !key.is_ascii() {
        return Err(KeyFormatError::Malformed);
    }
    let rest = key.strip_prefix(PREFIX).ok_or(KeyFormatError::Malformed)?;
    let (id, tail) = rest.split_at(ID_LEN);
    let tail = tail.strip_prefix('_').ok_or(KeyFormatError::Malformed)?;
    let (secret, sum) = tail.split_at(SECRET_LEN);
    if !secret.bytes().chain(sum.bytes()).all(|b| b.is_ascii_alphanumeric()) {
        return Err(KeyFormatError::Malformed);
    }
    let id = base62_decode(id).ok_or(KeyFormatError::Malformed)?;
    if !checksum_matches(&key[..key.len() - CHECKSUM_LEN], sum) {
        return Err(KeyFormatError::BadChecksum);
    }
    Ok(ApiKeyId::from_uuid(uuid::Uuid::from_u128(id)))
}

/// Computes the stored form of keys.
#[derive(Clone)]
pub struct ApiKeyHasher {
    /// HMAC keyed with the pepper: the key's two padded blocks are hashed once here, not on every API call.
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for ApiKeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeyHasher(***)")
    }
}

impl ApiKeyHasher {
    pub fn new(pepper: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let keyed = <Hmac<Sha256> as hmac::Mac>::new_from_slice(pepper)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self { keyed }
    }

    pub fn hash(&self, key: &str) -> ApiKeyHash {
        ApiKeyHash::from_bytes(self.digest(key).to_vec())
    }

    /// The stored form's bytes, on the stack: the per-request look-up needs no allocation.
    pub fn digest(&self, key: &str) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_to_their_id() {
        for _ in 0..200 {
            let id = ApiKeyId::new();
            let key = generate(id);
            assert_eq!(key.expose().len(), KEY_LEN);
            assert!(key.expose().starts_with("gwk_"));
            assert_eq!(parse(key.expose()), Ok(id));
        }
    }

    #[test]
    fn any_single_character_change_is_caught_before_lookup() {
        let key = generate(ApiKeyId::new()).into_inner();
        for position in 4..key.len() {
            let mut bytes = key.clone().into_bytes();
            if bytes[position] == b'_' {
                continue;
            }
            bytes[position] = if bytes[position] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(bytes).expect("ascii");
            assert!(parse(&typo).is_err(), "a typo at {position} must be refused: {typo}");
        }
        let mut wrong_sum = key.clone();
        let last = if key.ends_with('0') { "1" } else { "0" };
        wrong_sum.replace_range(key.len() - 1.., last);
        assert_eq!(parse(&wrong_sum), Err(KeyFormatError::BadChecksum), "a well-formed key with another checksum");
        assert_eq!(parse(&key[..key.len() - 1]), Err(KeyFormatError::Malformed));
        assert_eq!(parse(""), Err(KeyFormatError::Malformed));
        assert_eq!(parse(&format!("ghp_{}", &key[4..])), Err(KeyFormatError::Malformed));
    }

    #[test]
    fn hashes_depend_on_key_and_pepper() {
        let key = generate(ApiKeyId::new()).into_inner();
        let a = ApiKeyHasher::new(b"pepper-a");
        assert_eq!(a.hash(&key), a.hash(&key));
        assert_eq!(a.hash(&key).as_bytes(), &a.digest(&key)[..], "the look-up digest is the stored hash");
        assert_ne!(a.hash(&key), ApiKeyHasher::new(b"pepper-b").hash(&key));
        assert_ne!(a.hash(&key), a.hash(&generate(ApiKeyId::new()).into_inner()));
        assert!(!format!("{a:?}").contains("pepper"));
    }
}
