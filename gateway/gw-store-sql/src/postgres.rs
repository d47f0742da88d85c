//! The PostgreSQL backend: for several nodes behind a load balancer, or whenever SQLite's single writer is not
//! enough.

use gw_store::StoreResult;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::db_err;
use crate::group_commit::GroupCommit;
use crate::health::GatedPool;
use crate::open::{OpenError, OpenOptions, redact_url};
use crate::outbox_writer::MAX_BATCH;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

pub struct PgStore {
    /// Fails at once while the database is known to be down (`health.rs`), instead of each statement waiting
    /// the acquire timeout.
    pool: GatedPool,
    /// Wake-ups of every node, forwarded from PostgreSQL by one `LISTEN` task started on first subscription.
    wakes: tokio::sync::broadcast::Sender<gw_core::InstanceId>,
    /// Accepted sends, committed in groups by one writer (one WAL flush for every send that arrived meanwhile).
    outbox: GroupCommit<outbox::OutboxWriter>,
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
        let connect: PgConnectOptions =
            url.parse().map_err(|source| OpenError::Connect { url: redact_url(url), source })?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(|source| OpenError::Connect { url: redact_url(url), source })?;
        if options.migrate {
            MIGRATOR.run(&pool).await.map_err(|source| OpenError::Migrate { url: redact_url(url), source })?;
        }
        let pool = GatedPool::new(pool, connect);
        Ok(Self {
            outbox: GroupCommit::new(outbox::OutboxWriter::new(pool.clone()), MAX_BATCH),
            pool,
            wakes: tokio::sync::broadcast::channel(crate::cluster::WAKE_BUFFER).0,
            listening: std::sync::Mutex::new(None),
        })
    }

    pub fn pool(&self) -> &PgPool {
        self.pool.inner()
    }

    /// Whether statements currently fail at once because the database was found down (see `health.rs`).
    pub fn known_down(&self) -> bool {
        self.pool.gate().is_down()
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
    crate::shared::impl_store!(super::PgStore, "postgres");
}

mod subscriptions {
    crate::subscriptions::impl_subscription_store!(super::PgStore);
}

mod users {
    crate::users::impl_user_store!(super::PgStore);
}

mod instances {
    crate::instances::impl_instance_store!(super::PgStore, sqlx::Postgres);
}

mod api_keys {
    crate::api_keys::impl_api_key_store!(super::PgStore);
}

mod message_stats {
    crate::message_stats::impl_message_stat_store!(super::PgStore);
}

mod contacts {
    crate::contacts::impl_contact_store!(super::PgStore, " FOR SHARE");
}

mod webhook_configs {
    crate::webhook_configs::impl_webhook_config_store!(super::PgStore);
}

mod sessions {
    crate::sessions::impl_session_store!(super::PgStore, " FOR SHARE");
}

mod usage {
    crate::usage::impl_usage_store!(super::PgStore);
}

mod audit {
    crate::audit::impl_audit_log_store!(super::PgStore, sqlx::Postgres);
}

mod refresh_tokens {
    crate::refresh_tokens::impl_refresh_token_store!(super::PgStore);
}

mod outbox {
    crate::outbox_writer::impl_outbox_writer!(sqlx::Postgres, crate::health::GatedPool, "BEGIN");
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
