//! Choosing a backend from a database URL, connecting, and migrating.

use std::sync::Arc;
use std::time::Duration;

use gw_store::Store;

/// The databases this crate speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a URL names by its scheme.
    pub fn from_url(url: &str) -> Option<Self> {
        let scheme = url.split_once(':').map(|(scheme, _)| scheme)?;
        match scheme {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// Run pending migrations before handing out the store.
    pub migrate: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self { max_connections: 16, acquire_timeout: Duration::from_secs(5), migrate: true }
    }
}

/// Why a store could not be opened. Every message names the URL with its password removed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported database URL {url}: expected a sqlite:// or postgres:// URL")]
    UnsupportedScheme { url: String },
    #[error("backend for {url} was not compiled in")]
    NotCompiledIn { url: String },
    #[error("cannot open database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot migrate database {url}: {source}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("cannot create the directory for {url}: {source}")]
    CreateDir {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

/// Opens the store a URL names (`sqlite://path` or `postgres://…`), migrating it unless told not to.
pub async fn open(url: &str, options: &OpenOptions) -> Result<Arc<dyn Store>, OpenError> {
    match Backend::from_url(url) {
        #[cfg(feature = "sqlite")]
        Some(Backend::Sqlite) => Ok(Arc::new(crate::SqliteStore::open(url, options).await?)),
        #[cfg(feature = "postgres")]
        Some(Backend::Postgres) => Ok(Arc::new(crate::PgStore::open(url, options).await?)),
        #[allow(unreachable_patterns)]
        Some(_) => Err(OpenError::NotCompiledIn { url: redact_url(url) }),
        None => Err(OpenError::UnsupportedScheme { url: redact_url(url) }),
    }
}

/// Applies pending migrations to the database a URL names; returns the number of migrations now applied.
pub async fn migrate(url: &str, options: &OpenOptions) -> Result<(), OpenError> {
    let options = OpenOptions { migrate: true, ..options.clone() };
    open(url, &options).await.map(|_| ())
}

/// The URL with any password replaced by `***`, fit for logs and error messages.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // set_password fails only for URLs that cannot have one, which we just saw it has.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => raw.to_owned(),
        Err(_) => "<unparseable database URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/gw"), "postgres://app:***@db:5432/gw");
        assert_eq!(redact_url("sqlite://./data/gateway.db"), "sqlite://./data/gateway.db");
    }

    #[test]
    fn backend_follows_the_scheme() {
        assert_eq!(Backend::from_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("postgresql://h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("mysql://h/db"), None);
    }
}
