//! The `whatsapp` session driver: [`gw_sessions::Driver`] implemented over whatsapp-rust.
//!
//! This crate owns everything that knows whatsapp-rust: its storage backend over the gateway's store
//! ([`backend`]), encryption of that state at rest ([`crypto`]), the translation of its events into
//! [`gw_sessions::DriverEvent`]s, and the commands of an open connection.
//!
//! Architecture invariant: no other crate of the workspace depends on whatsapp-rust or wacore; the engine sees
//! only the `Driver`/`Connection` traits.

pub mod backend;
pub mod config;
pub mod contacts_check;
pub mod crypto;
pub mod driver;
pub mod events;
mod inbound;
pub mod vault;

pub use backend::{GatewayBackend, StateError};
pub use config::{ConfigError, WhatsAppDriverConfig};
pub use crypto::{CryptoError, StateCipher};
pub use driver::{WhatsAppConnection, WhatsAppDriver};
pub use vault::StoreAuthVault;
