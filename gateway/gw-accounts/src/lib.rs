//! Accounts: how operators and tenants get in, and how tiers are enforced on them.
//!
//! Owns the password policy and Argon2id hashing, access tokens (JWT, HS256 pinned) and rotating refresh tokens
//! with reuse detection, sign-in throttling, tier limits with per-subscription overrides, the permission table,
//! and the account services built on the store: subscriptions, users, instances and audit reads.
//!
//! Architecture invariant: no HTTP types here. The edge turns requests into calls on [`Accounts`] and maps
//! [`AccountError`] to problem+json once.

pub mod api_keys;
mod error;
pub mod jwt;
pub mod key_auth;
pub mod password;
pub mod permissions;
mod principal;
mod refresh;
mod service;
pub mod throttle;
pub mod tiers;

pub use error::{AccountError, FieldError};
pub use jwt::{AccessClaims, JwtSettings, SigningKey, TokenError, TokenIssuer};
pub use key_auth::{InvalidationPublisher, KeyInvalidation, KeyPrincipal};
pub use password::{PasswordHasherService, PasswordPolicyError};
pub use permissions::{Action, allows};
pub use principal::Principal;
pub use service::{
    Accounts, AccountsConfig, CreateApiKey, CreateInstance, CreateSubscription, CreateUser, RotatedApiKey, Session,
    UpdateInstance, UpdateSubscription,
};
pub use throttle::ThrottlePolicy;
pub use tiers::{TierCatalog, TierLimits};
