//! Domain services beside [`gw_accounts::Accounts`]: [`Messaging`] (sends, messages, contacts, session commands),
//! [`Webhooks`], [`Plugins`] and [`Usage`]. Each method takes the authenticated [`Caller`] and checks it once, in
//! [`Access`]: *visible* first (another tenant's resource, or another instance's key, is not found), then *allowed*
//! (a user's role, a key's scope). Then it orchestrates the store, the engine, the dispatcher or the plugin runtime.
//!
//! Architecture invariants: no HTTP, JSON-shape or SQL types here (the edge maps each service's error to
//! problem+json once); no heavy engine either: plugin checks go through [`gw_core::PluginRuntime`], which the binary
//! implements over the WebAssembly host, so this crate never builds wasmtime.

mod access;
mod caller;
mod messaging;
mod number_check;
mod plugins;
mod usage;
mod webhooks;

pub use access::{Access, AccessError};
pub use caller::{Caller, Need};
pub use gw_core::KeyScope;
pub use messaging::{LiveEvents, Messaging, MessagingError};
pub use number_check::MAX_NUMBER_CHECK;
pub use plugins::{Bind, CreatePlugin, MAX_BINDING_POSITION, PluginError, Plugins, Rebind};
pub use usage::{Usage, UsageError};
pub use webhooks::{WebhookError, Webhooks, WithSecret};
