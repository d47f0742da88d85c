//! The PostgreSQL backend: for several nodes behind a load balancer, or whenever SQLite's single writer is not
//! enough.

use gw_store::StoreResult;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::db_err;
use crate::open::{OpenError, OpenOptions, redact_url};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

pub struct PgStore {
    pool: PgPool,
    /// Wake-ups of every node, forwarded from PostgreSQL by one `LISTEN` task started on first subscription.
    wakes: tokio::sync::broadcast::Sender<gw_core::InstanceId>,
    listening: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database a `postgres://` URL names.
    pub async fn open(url: &str, options: &OpenOptions) -> Result<Self, OpenError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect(url)
            .await
            .map_err(|source| OpenError::Connect { url: redact_url(url), source })?;
        if options.migrate {
            MIGRATOR.run(&pool).await.map_err(|source| OpenError::Migrate { url: redact_url(url), source })?;
        }
        Ok(Self {
            pool,
            wakes: tokio::sync::broadcast::channel(crate::cluster::WAKE_BUFFER).0,
            listening: std::sync::Mutex::new(None),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn close(&self) {
        if let Some(task) = self.listening.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        self.pool.close().await;
    }

    async fn begin_write(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(db_err("transaction"))
    }
}

/// The migrations this backend embeds, for the tidy test that compares backends.
pub fn migration_versions() -> Vec<i64> {
    MIGRATOR.iter().map(|m| m.version).collect()
}

mod store {
    impl_store!(super::PgStore, sqlx::Postgres, "postgres", " FOR SHARE");
}

mod message_store {
    crate::messages::impl_message_store!(super::PgStore, " FOR SHARE");
}

mod whatsapp_state {
    impl_whatsapp_state_store!(super::PgStore, " FOR SHARE");
}

mod webhook_deliveries {
    crate::webhooks::impl_webhook_delivery_store!(super::PgStore, sqlx::Postgres, " FOR UPDATE OF d SKIP LOCKED");
}

mod plugin_store {
    crate::plugins::impl_plugin_store!(super::PgStore, sqlx::Postgres);
}

mod cluster_store {
    crate::cluster::impl_cluster_store!(super::PgStore, pg);
}
