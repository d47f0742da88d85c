//! What the workspace's tests share, so no helper is copied into a second crate:
//!
//! - [`TestDatabase`]: a fresh SQLite file or PostgreSQL database per test, removed when the value is dropped,
//!   so a test that panics cleans up too;
//! - [`on_both_backends!`]: one `#[tokio::test]` per backend for each named test function, and [`on_postgres!`]
//!   for what only PostgreSQL can show;
//! - [`eventually`] and its kin: poll a condition until it holds or a deadline passes, never a fixed sleep.
//!
//! A dev-dependency only: nothing here is built into the gateway.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gw_store::Store;
use gw_store_sql::OpenOptions;
use gw_store_sql::testing::PgTestDatabase;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database of its own for one test, and a directory for its files. Dropping it removes both; PostgreSQL's
/// database is dropped with `WITH (FORCE)`, so connections a failed test left open do not keep it alive.
#[derive(Debug)]
pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    pub dir: PathBuf,
    postgres: Option<PgTestDatabase>,
}

impl TestDatabase {
    /// A fresh database; `None` when PostgreSQL is unreachable and skipping is allowed (CI requires it).
    pub async fn create(backend: Backend) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("gw-test-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}/gateway.db", dir.display());
                Some(Self { backend, url, dir, postgres: None })
            }
            Backend::Postgres => {
                let Some(postgres) = PgTestDatabase::create().await else {
                    let _ = std::fs::remove_dir_all(&dir);
                    return None;
                };
                Some(Self { backend, url: postgres.url().to_owned(), dir, postgres: Some(postgres) })
            }
        }
    }

    /// A fresh PostgreSQL database on the server `admin_url` names rather than `GW_TEST_POSTGRES_URL`'s.
    pub async fn create_postgres_on(admin_url: &str) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("gw-test-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let Some(postgres) = PgTestDatabase::create_on(admin_url).await else {
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        };
        Some(Self { backend: Backend::Postgres, url: postgres.url().to_owned(), dir, postgres: Some(postgres) })
    }

    /// The PostgreSQL database behind this one, for fault injection.
    pub fn postgres(&self) -> Option<&PgTestDatabase> {
        self.postgres.as_ref()
    }

    /// The store on this database, migrated.
    pub async fn store(&self) -> Arc<dyn Store> {
        let options = OpenOptions { max_connections: 8, ..OpenOptions::default() };
        gw_store_sql::open(&self.url, &options).await.expect("open the test store")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(postgres) = self.postgres.take() {
            // Drop runs inside the test's runtime, which cannot be blocked on; a thread with a runtime of its own
            // drops the database and is waited for, so nothing is left when the test ends.
            let dropped = std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    runtime.block_on(postgres.drop_database());
                }
            });
            let _ = dropped.join();
        }
    }
}

/// One `#[tokio::test]` per backend for each named `async fn name(database: &TestDatabase)`, in modules `sqlite`
/// and `postgres`. PostgreSQL tests return early (skip) when PostgreSQL is unreachable and not required.
///
/// With `setup => names`, each test gets `setup(&database).await` instead (a store, a fixture), and the database
/// lives until the test returns.
#[macro_export]
macro_rules! on_both_backends {
    ($setup:ident => $($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let database = $crate::TestDatabase::create($crate::Backend::Sqlite).await.expect("sqlite");
                    super::$name(super::$setup(&database).await).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(database) = $crate::TestDatabase::create($crate::Backend::Postgres).await else {
                        return;
                    };
                    super::$name(super::$setup(&database).await).await;
                }
            )+
        }
    };
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let database = $crate::TestDatabase::create($crate::Backend::Sqlite).await.expect("sqlite");
                    super::$name(&database).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(database) = $crate::TestDatabase::create($crate::Backend::Postgres).await else {
                        return;
                    };
                    super::$name(&database).await;
                }
            )+
        }
    };
}

/// One `#[tokio::test]` per named `async fn name(database: &TestDatabase)`, on PostgreSQL only (in module
/// `postgres_only`), for what only PostgreSQL can show (terminated backends, table locks). They return early (skip)
/// when PostgreSQL is unreachable and not required.
#[macro_export]
macro_rules! on_postgres {
    ($($name:ident),+ $(,)?) => {
        mod postgres_only {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(database) = $crate::TestDatabase::create($crate::Backend::Postgres).await else {
                        return;
                    };
                    super::$name(&database).await;
                }
            )+
        }
    };
}

/// How long [`eventually`] waits by default.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `probe` until it yields a value, failing the test with `what` after [`DEADLINE`].
pub async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Option<T>) -> T {
    eventually_within(DEADLINE, what, probe).await
}

/// [`eventually`] with a deadline of the caller's choosing. `probe` may be an `async` closure that borrows from
/// the test (or a closure returning a future).
pub async fn eventually_within<T>(deadline: Duration, what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < until, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` until it holds, failing the test with `what` after `deadline`.
pub async fn until_within(deadline: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    eventually_within(deadline, what, async || check().await.then_some(())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test that panics still leaves no database behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_test_drops_its_database() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let Some(database) = TestDatabase::create(backend).await else { continue };
            let dir = database.dir.clone();
            let url = database.url.clone();
            let store = database.store().await;
            let panicked = tokio::spawn(async move {
                let _database = database;
                let _store = store;
                panic!("the test fails");
            })
            .await;
            assert!(panicked.is_err());
            assert!(!dir.exists(), "{} is left behind", dir.display());
            if backend == Backend::Postgres {
                let options = OpenOptions { migrate: false, ..OpenOptions::default() };
                assert!(gw_store_sql::open(&url, &options).await.is_err(), "the database is left behind");
            }
        }
    }

    #[tokio::test]
    async fn eventually_returns_what_the_probe_finds() {
        let mut calls = 0;
        let found = eventually("the third call", || {
            calls += 1;
            let now = calls;
            async move { (now == 3).then_some(now) }
        })
        .await;
        assert_eq!(found, 3);
    }
}
