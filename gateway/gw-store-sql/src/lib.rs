//! The gateway's storage traits implemented with sqlx, for SQLite and for PostgreSQL.
//!
//! One body of SQL serves both backends: the statements are written in the dialect both understand (`$n`
//! placeholders, `RETURNING`, `ON CONFLICT`), and the trait implementations are generated for each backend by one
//! macro per aggregate (a file each; `shared.rs` says why macros), so a fix lands in both at once. Where the
//! dialects differ (unique keys with NULLs, error codes, connection set-up) each backend module says so. Each backend
//! embeds its own migration folder (`migrations/sqlite`, `migrations/postgres`), run at start-up.
//!
//! Architecture invariant: only this crate enables sqlx driver features; callers receive an `Arc<dyn Store>`.

mod api_keys;
mod audit;
mod cluster;
mod contacts;
mod error;
mod group_commit;
mod instances;
mod message_stats;
mod messages;
mod open;
mod outbox_writer;
mod plugin_rows;
mod plugins;
mod refresh_tokens;
mod rows;
mod sessions;
mod shared;
mod subscriptions;
mod usage;
mod users;
mod webhook_configs;
mod webhooks;
#[macro_use]
mod whatsapp;
#[cfg(feature = "postgres")]
mod fanout;
#[cfg(feature = "postgres")]
mod health;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "postgres")]
pub use fanout::PgFanout;
pub use open::{Backend, OpenError, OpenOptions, migrate, open, redact_url};
#[cfg(feature = "postgres")]
pub use postgres::{PgStore, migration_versions as postgres_migration_versions};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, migration_versions as sqlite_migration_versions};
