//! Throw-away PostgreSQL databases for tests: one per test, created on the server named by
//! `GW_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) and dropped afterwards.
//!
//! When the server cannot be reached, tests skip with a loud notice on a developer's machine, and fail when `CI`
//! or `GW_TEST_REQUIRE_POSTGRES=1` is set: in CI the PostgreSQL suite must run, never be skipped.

use sqlx::{Connection, PgConnection};

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
