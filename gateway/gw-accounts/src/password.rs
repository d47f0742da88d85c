//! Passwords: the policy a new password must meet, and Argon2id hashing.
//!
//! Parameters follow OWASP's recommendation for Argon2id (m = 19 MiB, t = 2, p = 1; about 22 ms per hash on the
//! project's machines). A stored hash made with other parameters still verifies, and is re-hashed with the current
//! ones on the next successful sign-in.

use argon2::password_hash::{PasswordHash as PhcHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use gw_core::PasswordHash;

/// Why a password is refused. The messages state the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordPolicyError {
    #[error("a password must be at least {min} characters long")]
    TooShort { min: usize },
    #[error("a password must be at most {max} characters long")]
    TooLong { max: usize },
    #[error("a password must use at least {min} different characters")]
    TooRepetitive { min: usize },
    #[error("a password must not contain the account's email address or its name part")]
    ContainsEmail,
}

/// The password policy, in the spirit of NIST SP 800-63B: length matters, composition rules do not.
/// At least 12 and at most 128 characters, at least 5 distinct characters, and not containing the email address
/// (or the part before `@`).
pub fn check_policy(password: &str, email: &str) -> Result<(), PasswordPolicyError> {
    const MIN: usize = 12;
    const MAX: usize = 128;
    const DISTINCT: usize = 5;
    let length = password.chars().count();
    if length < MIN {
        return Err(PasswordPolicyError::TooShort { min: MIN });
    }
    if length > MAX {
        return Err(PasswordPolicyError::TooLong { max: MAX });
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < DISTINCT {
        return Err(PasswordPolicyError::TooRepetitive { min: DISTINCT });
    }
    let lowered = password.to_lowercase();
    let email = email.to_lowercase();
    let local = email.split('@').next().unwrap_or_default();
    if (!email.is_empty() && lowered.contains(&email)) || (local.chars().count() >= 4 && lowered.contains(local)) {
        return Err(PasswordPolicyError::ContainsEmail);
    }
    Ok(())
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Valid { needs_rehash: bool },
    Invalid,
}

/// Argon2id with fixed, current parameters.
#[derive(Debug, Clone)]
pub struct PasswordHasherService {
    params: Params,
    /// A hash of a random password, verified when the email is unknown so that both cases cost the same.
    dummy: PasswordHash,
}

/// Hashing failed: only on an internal error of the hashing library.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl PasswordHasherService {
    /// OWASP's recommended Argon2id parameters.
    pub fn owasp() -> Self {
        Self::with_params(19 * 1024, 2, 1)
    }

    /// Cheap parameters for tests elsewhere in the workspace; never for production.
    pub fn for_tests() -> Self {
        Self::with_params(64, 1, 1)
    }

    fn with_params(m_cost: u32, t_cost: u32, p_cost: u32) -> Self {
        let params = Params::new(m_cost, t_cost, p_cost, None).unwrap_or_default();
        let mut service = Self { params, dummy: PasswordHash::from_phc(String::new()) };
        let random: [u8; 24] = rand::random();
        let dummy_password: String = random.iter().map(|b| format!("{b:02x}")).collect();
        service.dummy = service.hash(&dummy_password).unwrap_or_else(|_| PasswordHash::from_phc(String::new()));
        service
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Hashes a password into a PHC string with a fresh random salt. CPU-bound: call off the async runtime.
    pub fn hash(&self, password: &str) -> Result<PasswordHash, HashError> {
        let salt_bytes: [u8; 16] = rand::random();
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| HashError(e.to_string()))?;
        let phc = self.argon2().hash_password(password.as_bytes(), &salt).map_err(|e| HashError(e.to_string()))?;
        Ok(PasswordHash::from_phc(phc.to_string()))
    }

    /// Checks a password against a stored hash; `None` (unknown user) checks against a dummy hash so the time
    /// taken does not reveal whether the account exists. CPU-bound: call off the async runtime.
    pub fn verify(&self, password: &str, stored: Option<&PasswordHash>) -> Verification {
        let target = stored.unwrap_or(&self.dummy);
        let Ok(parsed) = PhcHash::new(target.as_phc()) else {
            return Verification::Invalid;
        };
        let matches = self.argon2().verify_password(password.as_bytes(), &parsed).is_ok();
        match (matches, stored) {
            (true, Some(_)) => Verification::Valid { needs_rehash: self.needs_rehash(&parsed) },
            _ => Verification::Invalid,
        }
    }

    fn needs_rehash(&self, parsed: &PhcHash<'_>) -> bool {
        let current = [("m", self.params.m_cost()), ("t", self.params.t_cost()), ("p", self.params.p_cost())];
        parsed.algorithm.as_str() != "argon2id"
            || parsed.version != Some(Version::V0x13 as u32)
            || current.iter().any(|(name, value)| parsed.params.get_decimal(*name) != Some(*value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_is_length_first() {
        assert_eq!(check_policy("short", "a@b.co"), Err(PasswordPolicyError::TooShort { min: 12 }));
        assert_eq!(check_policy(&"ab".repeat(65), "a@b.co"), Err(PasswordPolicyError::TooLong { max: 128 }));
        assert_eq!(check_policy("aaaabbbbcccc", "a@b.co"), Err(PasswordPolicyError::TooRepetitive { min: 5 }));
        assert_eq!(check_policy("xxannie.lee99", "annie.lee@example.com"), Err(PasswordPolicyError::ContainsEmail));
        assert_eq!(check_policy("correct horse battery", "annie@example.com"), Ok(()));
    }

    #[test]
    fn hashes_verify_and_are_salted() {
        let hasher = PasswordHasherService::for_tests();
        let a = hasher.hash("correct horse battery").expect("hash");
        let b = hasher.hash("correct horse battery").expect("hash");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(a.as_phc().starts_with("$argon2id$v=19$"));
        assert_eq!(hasher.verify("correct horse battery", Some(&a)), Verification::Valid { needs_rehash: false });
        assert_eq!(hasher.verify("wrong horse battery", Some(&a)), Verification::Invalid);
        assert_eq!(hasher.verify("correct horse battery", None), Verification::Invalid);
    }

    #[test]
    fn hashes_with_other_parameters_ask_for_a_rehash() {
        let old = PasswordHasherService::with_params(32, 1, 1).hash("correct horse battery").expect("hash");
        let current = PasswordHasherService::for_tests();
        assert_eq!(current.verify("correct horse battery", Some(&old)), Verification::Valid { needs_rehash: true });
    }

    #[test]
    fn owasp_parameters_are_the_production_ones() {
        let hasher = PasswordHasherService::owasp();
        let hash = hasher.hash("correct horse battery").expect("hash");
        assert!(hash.as_phc().contains("m=19456,t=2,p=1"), "{}", hash.as_phc());
    }
}
