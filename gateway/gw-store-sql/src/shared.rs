//! What the per-aggregate store files share: the helpers their statements use, and [`impl_store!`], the
//! [`gw_store::Store`] root trait.
//!
//! Each aggregate's trait is implemented once, in SQL both backends accept, by a `macro_rules!` in its own file
//! (`subscriptions.rs`, `users.rs`, …), and instantiated in `sqlite.rs` and `postgres.rs`. Macros and not a generic
//! `impl<DB: sqlx::Database>`: sqlx needs a higher-ranked bound per bound type and per executor
//! (`for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>`, `Uuid: Encode<'q, DB> + Type<DB>`, …), and
//! those bounds would have to be repeated on every impl and every helper that uses them; the macro is checked
//! against the concrete backend types instead. A backend type provides `pool` (a `sqlx::Pool`) and `begin_write()`
//! (a transaction that takes the write lock up front where the database needs it); the macros provide the rest.
//!
//! Rules the statements keep so both dialects accept them: `$n` placeholders, `RETURNING`, `ON CONFLICT`,
//! booleans compared as `col` / `TRUE`, timestamps always bound from Rust (never the database's clock, whose SQLite
//! text format differs), and `lower(..) LIKE` for case-insensitive search.

use chrono::{DateTime, Utc};
use gw_core::Timestamp;
use gw_store::PageRequest;
use uuid::Uuid;

pub(crate) fn now() -> DateTime<Utc> {
    Timestamp::now().as_datetime()
}

/// One row more than the page holds, to learn whether another page follows.
pub(crate) fn page_limit(page: PageRequest) -> i64 {
    i64::from(page.limit()) + 1
}

/// The id the page starts after (keyset pagination), if any.
pub(crate) fn after(page: PageRequest) -> Option<Uuid> {
    page.after.map(|c| c.last_id())
}

macro_rules! impl_store {
    ($store:ty, $backend:literal) => {
        use async_trait::async_trait;
        use gw_store::{Store, StoreError, StoreResult};

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
                    .map_err(|err| StoreError::Unavailable(Box::new(err)))
            }

            async fn close(&self) {
                self.pool.close().await;
            }
        }
    };
}
pub(crate) use impl_store;
