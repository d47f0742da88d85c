//! Throw-away PostgreSQL databases for tests: one per test, created on the server named by
//! `GW_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) and dropped afterwards.
//!
//! When the server cannot be reached, tests skip with a loud notice on a developer's machine, and fail when `CI`
//! or `GW_TEST_REQUIRE_POSTGRES=1` is set: in CI the PostgreSQL suite must run, never be skipped.

use sqlx::{Connection, PgConnection};

/// A table lock held in an open transaction on a connection of its own, until [`TableLock::release`]: statements
/// of the store that need a conflicting lock wait inside PostgreSQL meanwhile (a "locked table" fault).
#[derive(Debug)]
pub struct TableLock {
    connection: PgConnection,
    pid: i32,
}

impl TableLock {
    /// Ends the transaction, and with it the lock.
    pub async fn release(mut self) {
        if let Err(err) = sqlx::query("ROLLBACK").execute(&mut self.connection).await {
            panic!("could not release the table lock: {err}");
        }
        let _ = self.connection.close().await;
    }
}

/// The lock modes [`PgTestDatabase::lock_table`] takes (a closed set, so no SQL is built from free text).
#[derive(Debug, Clone, Copy)]
pub enum LockMode {
    /// Blocks inserts, updates and deletes; reads go on.
    Share,
    /// Blocks everything, reads included.
    AccessExclusive,
}

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test.
#[derive(Debug)]
pub struct PgTestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

fn postgres_required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
        || std::env::var("GW_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

fn with_database(admin_url: &str, name: &str) -> String {
    match url::Url::parse(admin_url) {
        Ok(mut url) => {
            url.set_path(&format!("/{name}"));
            url.to_string()
        }
        Err(_) => panic!("GW_TEST_POSTGRES_URL is not a URL: {}", crate::redact_url(admin_url)),
    }
}

impl PgTestDatabase {
    /// Creates a fresh, empty database; `None` if PostgreSQL is unreachable and skipping is allowed.
    pub async fn create() -> Option<Self> {
        let admin_url = std::env::var("GW_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        Self::create_on(&admin_url).await
    }

    /// A fresh, empty database on the server `admin_url` names (a private server a test started, say).
    pub async fn create_on(admin_url: &str) -> Option<Self> {
        let admin_url = admin_url.to_owned();
        let mut admin = match PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(err) if !postgres_required() => {
                eprintln!(
                    "\n*** SKIPPED: PostgreSQL at {} is unreachable ({err}); set GW_TEST_POSTGRES_URL, \
                     or CI=1 to make this a failure ***\n",
                    crate::redact_url(&admin_url)
                );
                return None;
            }
            Err(err) => panic!(
                "PostgreSQL at {} is unreachable and the PostgreSQL suite is required here: {err}",
                crate::redact_url(&admin_url)
            ),
        };
        let name = format!("gw_test_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|err| panic!("cannot create test database {name}: {err}"));
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Some(Self { admin_url, name, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Locks `table` (one of the gateway's tables, named by the test) in `mode` until the lock is released.
    pub async fn lock_table(&self, table: &'static str, mode: LockMode) -> TableLock {
        assert!(table.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "a plain table name: {table}");
        let mode = match mode {
            LockMode::Share => "SHARE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        };
        let mut connection = PgConnection::connect(&self.url).await.expect("lock connection");
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut connection).await.expect("pid");
        sqlx::query("BEGIN").execute(&mut connection).await.expect("begin");
        sqlx::query(sqlx::AssertSqlSafe(format!("LOCK TABLE {table} IN {mode} MODE")))
            .execute(&mut connection)
            .await
            .expect("lock table");
        TableLock { connection, pid }
    }

    /// How many sessions on this database wait for a lock right now.
    pub async fn sessions_waiting_on_locks(&self) -> i64 {
        let mut admin = PgConnection::connect(&self.admin_url).await.expect("admin connection");
        let waiting =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'")
                .bind(&self.name)
                .fetch_one(&mut admin)
                .await
                .expect("pg_stat_activity");
        let _ = admin.close().await;
        waiting
    }

    /// Terminates every session on this database (`pg_terminate_backend`, what an operator, a fast shutdown or a
    /// failover does to the gateway's connections), except the one holding `keep`; returns how many.
    pub async fn terminate_connections(&self, keep: Option<&TableLock>) -> i64 {
        let mut admin = PgConnection::connect(&self.admin_url).await.expect("admin connection");
        let terminated = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> $2) AS t",
        )
        .bind(&self.name)
        .bind(keep.map_or(0, |lock| lock.pid))
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
        let _ = admin.close().await;
        terminated
    }

    /// Drops the database, closing whatever connections are still open to it.
    pub async fn drop_database(self) {
        if let Ok(mut admin) = PgConnection::connect(&self.admin_url).await {
            let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            if let Err(err) = sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await {
                eprintln!("warning: could not drop test database {}: {err}", self.name);
            }
            let _ = admin.close().await;
        }
    }
}
