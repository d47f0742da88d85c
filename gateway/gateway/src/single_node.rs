//! SQLite serves one node: a second `gateway` process on the same database file would run every session twice.
//! The first process holds an exclusive lock on `<database file>.lock` for its lifetime (released by the operating
//! system when it exits, however it exits); a second one finds it taken and refuses to start.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Another process serves the SQLite file (the binary exits with [`crate::EXIT_LOCKED`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "another gateway process is serving the SQLite database {}: SQLite runs one node (the lock is {}); stop that \
     process, or use PostgreSQL to run several nodes",
    database.display(),
    lock.display()
)]
pub struct AlreadyServed {
    database: PathBuf,
    lock: PathBuf,
}

/// Held while the process serves the database.
#[derive(Debug)]
pub struct SingleNodeLock {
    _file: File,
}

/// The database file a `sqlite:` URL names; `None` for an in-memory database (nothing to share).
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.contains(":memory:") && !url.contains("mode=memory")).then(|| PathBuf::from(path))
}

/// Takes the database's lock, or explains who holds it.
pub fn lock(database: &Path) -> anyhow::Result<SingleNodeLock> {
    use anyhow::Context as _;
    let mut lock = database.as_os_str().to_owned();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .with_context(|| format!("cannot open the lock file {}", lock.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(SingleNodeLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(AlreadyServed { database: database.to_owned(), lock }.into()),
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", lock.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_of_a_sqlite_url() {
        assert_eq!(sqlite_file("sqlite://./data/gateway.db"), Some(PathBuf::from("./data/gateway.db")));
        assert_eq!(
            sqlite_file("sqlite:///var/lib/gw/db.sqlite?mode=rwc"),
            Some(PathBuf::from("/var/lib/gw/db.sqlite"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://localhost/gw"), None);
    }

    #[test]
    fn a_second_lock_on_one_file_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("gw-lock-{}", std::process::id()));
        let database = dir.join("gateway.db");
        let first = lock(&database).expect("first");
        let second = lock(&database).expect_err("second");
        assert!(second.downcast_ref::<AlreadyServed>().is_some(), "{second:#}");
        drop(first);
        lock(&database).expect("free again");
        let _ = std::fs::remove_dir_all(dir);
    }
}
