//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): HMAC-SHA256 over `{id}.{timestamp}.{body}`,
//! keyed with the base64 bytes after `whsec_`, sent as `v1,<base64>`; several space-separated signatures while a
//! rotated secret is still in its grace period.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// A signing key, decoded from its `whsec_` form. `Debug` never shows it.
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

/// A secret that is not `whsec_` followed by base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is `whsec_` followed by base64")]
pub struct SecretFormatError;

impl SigningSecret {
    pub fn parse(text: &str) -> Result<Self, SecretFormatError> {
        let encoded = text.strip_prefix(PREFIX).unwrap_or(text);
        let key = STANDARD.decode(encoded).map_err(|_| SecretFormatError)?;
        if key.is_empty() {
            return Err(SecretFormatError);
        }
        Ok(Self(key))
    }

    /// A new random secret (24 bytes, the size Svix issues) in `whsec_` form.
    pub fn generate() -> String {
        let mut key = [0u8; 24];
        rand::rng().fill_bytes(&mut key);
        format!("{PREFIX}{}", STANDARD.encode(key))
    }

    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(msg_id, timestamp, body)))
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

/// The `webhook-signature` header value: one signature per secret, space-separated.
pub fn signature_header(secrets: &[SigningSecret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| s.sign(msg_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// Why a receiver must reject a webhook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the secret is not in whsec_ form")]
    Secret,
    #[error("the timestamp is not an integer")]
    Timestamp,
    #[error("the timestamp is too far from now (replay protection)")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// What a receiver does, as the Standard Webhooks libraries do it: the timestamp within `tolerance_secs` of
/// `now`, and one of the `v1` signatures in the header equal (in constant time) to the expected one.
pub fn verify(
    secret: &str,
    msg_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    use subtle::ConstantTimeEq as _;
    let secret = SigningSecret::parse(secret).map_err(|_| VerifyError::Secret)?;
    let timestamp: i64 = timestamp.trim().parse().map_err(|_| VerifyError::Timestamp)?;
    if (now - timestamp).abs() > tolerance_secs {
        return Err(VerifyError::Stale);
    }
    let expected = secret.mac(msg_id, timestamp, body);
    let matches = signature_header
        .split(' ')
        .filter_map(|part| part.strip_prefix("v1,"))
        .filter_map(|sig| STANDARD.decode(sig).ok())
        .any(|sig| bool::from(sig.as_slice().ct_eq(expected.as_slice())));
    if matches { Ok(()) } else { Err(VerifyError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The specification's own test vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_specification_vector() {
        let secret = SigningSecret::parse(SECRET).expect("secret");
        assert_eq!(secret.sign(MSG_ID, TIMESTAMP, BODY), SIGNATURE);
    }

    #[test]
    fn verifies_like_a_receiver() {
        assert_eq!(verify(SECRET, MSG_ID, "1614265330", SIGNATURE, BODY, TIMESTAMP + 10, 300), Ok(()));
        let rotated = format!("v1,bm90IGl0 {SIGNATURE}");
        assert_eq!(verify(SECRET, MSG_ID, "1614265330", &rotated, BODY, TIMESTAMP, 300), Ok(()), "any one matches");
        assert_eq!(verify(SECRET, MSG_ID, "1614265330", SIGNATURE, b"{}", TIMESTAMP, 300), Err(VerifyError::Mismatch));
        assert_eq!(
            verify(SECRET, "msg_other", "1614265330", SIGNATURE, BODY, TIMESTAMP, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, MSG_ID, "1614265330", SIGNATURE, BODY, TIMESTAMP + 301, 300),
            Err(VerifyError::Stale)
        );
        assert_eq!(verify("whsec_!!", MSG_ID, "1614265330", SIGNATURE, BODY, TIMESTAMP, 300), Err(VerifyError::Secret));
    }

    #[test]
    fn generated_secrets_parse_and_differ() {
        let (a, b) = (SigningSecret::generate(), SigningSecret::generate());
        assert!(a.starts_with("whsec_") && a != b);
        assert_eq!(SigningSecret::parse(&a).expect("parses").0.len(), 24);
        assert!(!format!("{:?}", SigningSecret::parse(&a).expect("parses")).contains(&a[6..]));
    }
}
