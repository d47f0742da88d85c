//! The SQLite backend: the embedded default, one file under `./data/`, no other service needed.
//!
//! SQLite allows one writer at a time. Write transactions start with `BEGIN IMMEDIATE`, so they queue on the busy
//! timeout instead of failing when a read lock cannot be upgraded; WAL lets readers proceed beside the writer.

use std::str::FromStr;
use std::time::Duration;

use gw_store::StoreResult;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::error::db_err;
use crate::group_commit::GroupCommit;
use crate::open::{OpenError, OpenOptions, redact_url};
use crate::outbox_writer::MAX_BATCH;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
    /// Wake-ups stay in the process: SQLite serves one node.
    wakes: tokio::sync::broadcast::Sender<gw_core::InstanceId>,
    /// Accepted sends, committed in groups by one writer (so they stop queueing on SQLite's write lock one by one).
    outbox: GroupCommit<outbox::OutboxWriter>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file a `sqlite://` URL names.
    pub async fn open(url: &str, options: &OpenOptions) -> Result<Self, OpenError> {
        let connect = |source| OpenError::Connect { url: redact_url(url), source };
        let connect_options = SqliteConnectOptions::from_str(url)
            .map_err(connect)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory && let Some(dir) = connect_options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir { url: redact_url(url), source })?;
        }
        // An in-memory database lives and dies with its one connection, so the pool must keep exactly one.
        let pool_options = if in_memory {
            SqlitePoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(options.max_connections)
        };
        let pool = pool_options
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect_options)
            .await
            .map_err(connect)?;
        if options.migrate {
            MIGRATOR.run(&pool).await.map_err(|source| OpenError::Migrate { url: redact_url(url), source })?;
        }
        Ok(Self {
            outbox: GroupCommit::new(outbox::OutboxWriter::new(pool.clone()), MAX_BATCH),
            pool,
            wakes: tokio::sync::broadcast::channel(crate::cluster::WAKE_BUFFER).0,
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin_write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err("transaction"))
    }
}

/// The migrations this backend embeds, for the tidy test that compares backends.
pub fn migration_versions() -> Vec<i64> {
    MIGRATOR.iter().map(|m| m.version).collect()
}

mod store {
    crate::shared::impl_store!(super::SqliteStore, "sqlite");
}

mod subscriptions {
    crate::subscriptions::impl_subscription_store!(super::SqliteStore);
}

mod users {
    crate::users::impl_user_store!(super::SqliteStore);
}

mod instances {
    crate::instances::impl_instance_store!(super::SqliteStore, sqlx::Sqlite);
}

mod api_keys {
    crate::api_keys::impl_api_key_store!(super::SqliteStore);
}

mod message_stats {
    crate::message_stats::impl_message_stat_store!(super::SqliteStore);
}

mod contacts {
    crate::contacts::impl_contact_store!(super::SqliteStore, "");
}

mod webhook_configs {
    crate::webhook_configs::impl_webhook_config_store!(super::SqliteStore);
}

mod sessions {
    crate::sessions::impl_session_store!(super::SqliteStore, "");
}

mod usage {
    crate::usage::impl_usage_store!(super::SqliteStore);
}

mod audit {
    crate::audit::impl_audit_log_store!(super::SqliteStore, sqlx::Sqlite);
}

mod refresh_tokens {
    crate::refresh_tokens::impl_refresh_token_store!(super::SqliteStore);
}

mod outbox {
    crate::outbox_writer::impl_outbox_writer!(sqlx::Sqlite, sqlx::SqlitePool, "BEGIN IMMEDIATE");
}

mod message_store {
    crate::messages::impl_message_store!(super::SqliteStore, "");
}

mod whatsapp_state {
    impl_whatsapp_state_store!(super::SqliteStore, "");
}

mod webhook_deliveries {
    crate::webhooks::impl_webhook_delivery_store!(super::SqliteStore, sqlx::Sqlite, "");
}

mod plugin_store {
    crate::plugins::impl_plugin_store!(super::SqliteStore, sqlx::Sqlite);
}

mod cluster_store {
    crate::cluster::impl_cluster_store!(super::SqliteStore, memory);
}
