//! Access tokens: short-lived JWTs signed with HMAC-SHA256.
//!
//! The algorithm is pinned in code: a token whose header names any other algorithm (`none` included) is refused
//! before its signature is looked at. Keys carry an id (`kid` header) so a new key can sign while tokens signed
//! with the previous one stay valid until they expire. Issuer and audience are always checked; clock skew is
//! bounded by a small leeway.

use chrono::Duration;
use gw_core::{Redacted, SubscriptionId, Timestamp, UserId, UserRole};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

const ALGORITHM: Algorithm = Algorithm::HS256;
/// HMAC keys shorter than the hash output weaken the signature (RFC 7518 §3.2).
pub const MIN_KEY_BYTES: usize = 32;

/// A signing key and its id.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub kid: String,
    pub secret: Redacted<String>,
}

/// How tokens are issued and checked.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// Signs new tokens.
    pub active: SigningKey,
    /// Still accepted for verification (keys being rotated out).
    pub previous: Vec<SigningKey>,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    /// Tolerated clock difference between nodes, in seconds.
    pub leeway_secs: u64,
}

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: String,
    /// The user's subscription; absent for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub role: UserRole,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

impl AccessClaims {
    pub fn user_id(&self) -> Result<UserId, TokenError> {
        self.sub.parse().map_err(|_| TokenError::Malformed)
    }

    pub fn subscription_id(&self) -> Result<Option<SubscriptionId>, TokenError> {
        self.sid.as_deref().map(|s| s.parse().map_err(|_| TokenError::Malformed)).transpose()
    }
}

/// Why a token was refused; each becomes its own problem type at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is malformed")]
    Malformed,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token's signature is invalid")]
    BadSignature,
    #[error("the access token was signed with an algorithm this gateway does not accept")]
    WrongAlgorithm,
    #[error("the access token was signed with an unknown key")]
    UnknownKey,
    #[error("the access token is for another audience")]
    WrongAudience,
    #[error("the access token is from another issuer")]
    WrongIssuer,
    #[error("the access token cannot be used yet")]
    NotYetValid,
    #[error("signing failed")]
    Signing,
}

/// Issues and verifies access tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    settings: JwtSettings,
    encoding: EncodingKey,
    decoding: Vec<(String, DecodingKey)>,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl TokenIssuer {
    pub fn new(settings: JwtSettings) -> Self {
        let encoding = EncodingKey::from_secret(settings.active.secret.expose().as_bytes());
        let decoding = std::iter::once(&settings.active)
            .chain(settings.previous.iter())
            .map(|key| (key.kid.clone(), DecodingKey::from_secret(key.secret.expose().as_bytes())))
            .collect();
        Self { settings, encoding, decoding }
    }

    pub fn access_ttl(&self) -> Duration {
        self.settings.access_ttl
    }

    /// A signed access token for a user, valid from `now` for the configured lifetime.
    pub fn issue(
        &self,
        user_id: UserId,
        subscription_id: Option<SubscriptionId>,
        role: UserRole,
        now: Timestamp,
    ) -> Result<(String, AccessClaims), TokenError> {
        let iat = now.as_datetime().timestamp();
        let claims = AccessClaims {
            sub: user_id.to_string(),
            sid: subscription_id.map(|id| id.to_string()),
            role,
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            iat,
            exp: iat + self.settings.access_ttl.num_seconds(),
            jti: uuid::Uuid::now_v7().simple().to_string(),
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.settings.active.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|_| TokenError::Signing)?;
        Ok((token, claims))
    }

    /// Checks a token's algorithm, key, signature, expiry, issuer and audience.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|err| match err.kind() {
            ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => TokenError::WrongAlgorithm,
            _ => TokenError::Malformed,
        })?;
        if header.alg != ALGORITHM {
            return Err(TokenError::WrongAlgorithm);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.decoding.iter().find(|(id, _)| *id == kid).map(|(_, key)| key).ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = self.settings.leeway_secs;
        validation.validate_nbf = true;
        jsonwebtoken::decode::<AccessClaims>(token, key, &validation).map(|data| data.claims).map_err(|err| {
            match err.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
                _ => TokenError::Malformed,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn key(kid: &str, secret: &str) -> SigningKey {
        SigningKey { kid: kid.into(), secret: Redacted::new(secret.into()) }
    }

    fn settings(active: SigningKey, previous: Vec<SigningKey>) -> JwtSettings {
        JwtSettings {
            active,
            previous,
            issuer: "gateway".into(),
            audience: "gateway-api".into(),
            access_ttl: Duration::minutes(15),
            leeway_secs: 30,
        }
    }

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(settings(key("k1", &"a".repeat(32)), vec![]))
    }

    #[test]
    fn a_fresh_token_verifies() {
        let issuer = issuer();
        let user = UserId::new();
        let sub = SubscriptionId::new();
        let (token, claims) = issuer.issue(user, Some(sub), UserRole::Owner, Timestamp::now()).expect("issue");
        let verified = issuer.verify(&token).expect("verify");
        assert_eq!(verified, claims);
        assert_eq!((verified.user_id(), verified.subscription_id()), (Ok(user), Ok(Some(sub))));
        assert_eq!(verified.exp - verified.iat, 15 * 60);
    }

    #[test]
    fn expiry_is_enforced_beyond_the_leeway() {
        let issuer = issuer();
        let long_ago = Timestamp::now().checked_add(Duration::minutes(-16)).expect("in range");
        let (token, _) = issuer.issue(UserId::new(), None, UserRole::Admin, long_ago).expect("issue");
        assert_eq!(issuer.verify(&token), Err(TokenError::Expired));
        let within_leeway = Timestamp::now().checked_add(Duration::seconds(-(15 * 60 + 10))).expect("in range");
        let (token, _) = issuer.issue(UserId::new(), None, UserRole::Admin, within_leeway).expect("issue");
        assert!(issuer.verify(&token).is_ok(), "10 s of skew is tolerated");
    }

    #[test]
    fn other_audiences_issuers_and_keys_are_refused() {
        let ours = issuer();
        let mut other = settings(key("k1", &"a".repeat(32)), vec![]);
        other.audience = "someone-else".into();
        let (token, _) =
            TokenIssuer::new(other).issue(UserId::new(), None, UserRole::Admin, Timestamp::now()).expect("issue");
        assert_eq!(ours.verify(&token), Err(TokenError::WrongAudience));

        let mut other = settings(key("k1", &"a".repeat(32)), vec![]);
        other.issuer = "evil".into();
        let (token, _) =
            TokenIssuer::new(other).issue(UserId::new(), None, UserRole::Admin, Timestamp::now()).expect("issue");
        assert_eq!(ours.verify(&token), Err(TokenError::WrongIssuer));

        let forged = TokenIssuer::new(settings(key("k1", &"b".repeat(32)), vec![]));
        let (token, _) = forged.issue(UserId::new(), None, UserRole::Admin, Timestamp::now()).expect("issue");
        assert_eq!(ours.verify(&token), Err(TokenError::BadSignature));

        let unknown = TokenIssuer::new(settings(key("k9", &"a".repeat(32)), vec![]));
        let (token, _) = unknown.issue(UserId::new(), None, UserRole::Admin, Timestamp::now()).expect("issue");
        assert_eq!(ours.verify(&token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn rotated_keys_keep_verifying_old_tokens() {
        let old = issuer();
        let (token, _) = old.issue(UserId::new(), None, UserRole::Admin, Timestamp::now()).expect("issue");
        let rotated = TokenIssuer::new(settings(key("k2", &"c".repeat(32)), vec![key("k1", &"a".repeat(32))]));
        assert!(rotated.verify(&token).is_ok());
        let (new_token, _) = rotated.issue(UserId::new(), None, UserRole::Admin, Timestamp::now()).expect("issue");
        assert_eq!(old.verify(&new_token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let issuer = issuer();
        let (token, _) = issuer.issue(UserId::new(), None, UserRole::Admin, Timestamp::now()).expect("issue");
        let payload = token.split('.').nth(1).expect("payload");
        for alg in ["none", "HS512", "RS256"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"k1"}}"#));
            let forged = format!("{header}.{payload}.");
            let err = issuer.verify(&forged).expect_err(alg);
            assert!(matches!(err, TokenError::WrongAlgorithm | TokenError::Malformed), "{alg}: {err:?}");
        }
        assert_eq!(issuer.verify("not.a.jwt"), Err(TokenError::Malformed));
        assert_eq!(issuer.verify(""), Err(TokenError::Malformed));
    }
}
