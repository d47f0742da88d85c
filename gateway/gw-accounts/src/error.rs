//! The errors of the account services, one variant per answer a client must be able to tell apart.

use std::time::Duration;

use gw_store::StoreError;

use crate::{PasswordPolicyError, TokenError};

/// A field of a request that is not acceptable, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Unknown email or wrong password (never says which).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Too many failed sign-ins for this email or from this address.
    #[error("too many failed sign-in attempts")]
    Throttled { retry_after: Duration },
    #[error("{0}")]
    InvalidToken(TokenError),
    /// A refresh token that is unknown, expired or revoked.
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefreshToken,
    /// A refresh token presented a second time: its whole family is now revoked.
    #[error("the refresh token was already used; every session descended from it is revoked")]
    RefreshTokenReused,
    /// The user, or the user's subscription, is deactivated.
    #[error("the account is deactivated")]
    AccountInactive,
    /// Not a key of this gateway (wrong shape or checksum), or no such key: refused before or after one look-up.
    #[error("invalid API key")]
    InvalidApiKey,
    #[error("the API key was revoked")]
    ApiKeyRevoked,
    #[error("the API key has expired")]
    ApiKeyExpired,
    /// The key's instance or subscription is deactivated.
    #[error("the API key's instance or subscription is deactivated")]
    ApiKeyInactive,
    /// The key lacks the scope the endpoint needs.
    #[error("the API key lacks the scope {0}")]
    InsufficientScope(&'static str),
    /// The caller's role may not do this to a resource it can see.
    #[error("your role does not allow this action")]
    Forbidden,
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AccountError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        AccountError::Validation(vec![FieldError { field, message: message.into() }])
    }
}

impl From<PasswordPolicyError> for AccountError {
    fn from(err: PasswordPolicyError) -> Self {
        AccountError::invalid("password", err.to_string())
    }
}

impl From<TokenError> for AccountError {
    fn from(err: TokenError) -> Self {
        AccountError::InvalidToken(err)
    }
}
