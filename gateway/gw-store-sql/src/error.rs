//! Turning sqlx errors into [`StoreError`]s, once, for both backends. PostgreSQL names the violated constraint;
//! SQLite names the columns in its message. Both are mapped to the same [`UniqueKey`].
//!
//! Whether the database was *unavailable* (the request may succeed if retried: the edge answers 503 with
//! `Retry-After`) or the statement *failed* (a bug or a corrupt database: 500) is decided here, in
//! [`is_unavailable`], and nowhere else.

use gw_store::{StoreError, UniqueKey};
use sqlx::error::{DatabaseError, ErrorKind};

/// What a foreign-key violation means for the statement that hit it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OnForeignKey {
    /// An insert or update named a parent row that does not exist.
    MissingParent(&'static str),
    /// A delete was refused because other rows still reference the row.
    Referenced(&'static str),
    /// The statement cannot violate a foreign key; if it does, it is a bug.
    Unexpected,
}

fn unique_key(db: &dyn DatabaseError) -> Option<UniqueKey> {
    if let Some(constraint) = db.constraint() {
        return match constraint {
            "users_email_key" => Some(UniqueKey::UserEmail),
            "instances_subscription_name_key" => Some(UniqueKey::InstanceName),
            "api_keys_key_hash_key" => Some(UniqueKey::ApiKeyHash),
            "message_stats_instance_date_key" => Some(UniqueKey::MessageStatDay),
            "contacts_instance_jid_key" => Some(UniqueKey::ContactJid),
            "session_data_instance_key" => Some(UniqueKey::SessionInstance),
            "plugins_subscription_name_key" => Some(UniqueKey::PluginName),
            "plugin_versions_plugin_version_key" => Some(UniqueKey::PluginVersion),
            "plugin_bindings_instance_plugin_key" => Some(UniqueKey::PluginBinding),
            "usage_records_period_key" | "usage_records_unattributed_period_key" => Some(UniqueKey::UsageRecordPeriod),
            name if name.ends_with("_pkey") => Some(UniqueKey::PrimaryKey),
            _ => None,
        };
    }
    let columns = db.message().split_once("constraint failed: ")?.1;
    match columns {
        "users.email" => Some(UniqueKey::UserEmail),
        "instances.subscription_id, instances.name" => Some(UniqueKey::InstanceName),
        "api_keys.key_hash" => Some(UniqueKey::ApiKeyHash),
        "message_stats.instance_id, message_stats.date" => Some(UniqueKey::MessageStatDay),
        "contacts.instance_id, contacts.jid" => Some(UniqueKey::ContactJid),
        "session_data.instance_id" => Some(UniqueKey::SessionInstance),
        "plugins.subscription_id, plugins.name" => Some(UniqueKey::PluginName),
        "plugin_versions.plugin_id, plugin_versions.version" => Some(UniqueKey::PluginVersion),
        "plugin_bindings.instance_id, plugin_bindings.plugin_id" => Some(UniqueKey::PluginBinding),
        cols if cols.starts_with("usage_records.subscription_id") => Some(UniqueKey::UsageRecordPeriod),
        cols if cols.ends_with(".id") && !cols.contains(',') => Some(UniqueKey::PrimaryKey),
        _ => None,
    }
}

/// SQLite reports a RESTRICT refusal inside a transaction as SQLITE_CONSTRAINT_TRIGGER (1811), which sqlx does
/// not classify; its message is the same as for any foreign-key failure.
fn foreign_key_aware_kind(db: &dyn DatabaseError) -> ErrorKind {
    match db.kind() {
        ErrorKind::Other if db.message() == "FOREIGN KEY constraint failed" => ErrorKind::ForeignKeyViolation,
        kind => kind,
    }
}

/// PostgreSQL SQLSTATEs that say the server or the connection went away, not that the statement was wrong:
/// class 08 (connection exception), 57P01 `admin_shutdown` (`pg_terminate_backend`, a fast shutdown), 57P02
/// `crash_shutdown`, 57P03 `cannot_connect_now` (starting up, shutting down, in recovery) and 53300
/// `too_many_connections`.
#[cfg(any(feature = "postgres", test))]
fn postgres_unavailable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// SQLite result codes (primary code = the extended code's low byte) that say the file could not be used right
/// now: SQLITE_BUSY (5) after the busy timeout, SQLITE_LOCKED (6), SQLITE_IOERR (10), SQLITE_FULL (13),
/// SQLITE_CANTOPEN (14).
fn sqlite_unavailable(extended: i32) -> bool {
    matches!(extended & 0xff, 5 | 6 | 10 | 13 | 14)
}

/// Whether `err` means the database could not be used right now (an outage: retry later) rather than that the
/// statement was refused or wrong. Connection-level failures (I/O, TLS, a closed or exhausted pool, a connection
/// whose protocol stream broke, a crashed SQLite worker) always are; a database error is when its code says so.
pub(crate) fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        // A connection cut mid-message leaves sqlx reading a truncated or unexpected frame.
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => database_unavailable(db.as_ref()),
        _ => false,
    }
}

fn database_unavailable(db: &dyn DatabaseError) -> bool {
    #[cfg(feature = "postgres")]
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return postgres_unavailable(pg.code());
    }
    #[cfg(feature = "sqlite")]
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        return db.code().and_then(|code| code.parse::<i32>().ok()).is_some_and(sqlite_unavailable);
    }
    false
}

/// Maps a failed statement about `entity` to the store's error.
pub(crate) fn map_db_error(err: sqlx::Error, entity: &'static str, on_fk: OnForeignKey) -> StoreError {
    if is_unavailable(&err) {
        return StoreError::Unavailable(Box::new(err));
    }
    match err {
        sqlx::Error::RowNotFound => StoreError::NotFound { entity },
        sqlx::Error::Database(ref db) => match foreign_key_aware_kind(db.as_ref()) {
            ErrorKind::UniqueViolation => match unique_key(db.as_ref()) {
                Some(key) => StoreError::Conflict { entity, key },
                None => StoreError::Backend(Box::new(err)),
            },
            ErrorKind::ForeignKeyViolation => match on_fk {
                OnForeignKey::MissingParent(parent) => StoreError::NotFound { entity: parent },
                OnForeignKey::Referenced(referenced_by) => StoreError::InUse { entity, referenced_by },
                OnForeignKey::Unexpected => StoreError::Backend(Box::new(err)),
            },
            _ => StoreError::Backend(Box::new(err)),
        },
        other => StoreError::Backend(Box::new(other)),
    }
}

/// Shorthand for the common case: a statement about `entity` that cannot violate a foreign key.
pub(crate) fn db_err(entity: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |err| map_db_error(err, entity, OnForeignKey::Unexpected)
}

pub(crate) fn db_err_fk(entity: &'static str, on_fk: OnForeignKey) -> impl Fn(sqlx::Error) -> StoreError {
    move |err| map_db_error(err, entity, on_fk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_level_failures_are_unavailable() {
        let io = |kind| sqlx::Error::Io(std::io::Error::new(kind, "cut"));
        for err in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            sqlx::Error::Protocol("unexpected end of stream".into()),
            io(std::io::ErrorKind::UnexpectedEof),
            io(std::io::ErrorKind::ConnectionReset),
            io(std::io::ErrorKind::BrokenPipe),
        ] {
            let mapped = map_db_error(err, "message", OnForeignKey::Unexpected);
            assert!(matches!(mapped, StoreError::Unavailable(_)), "{mapped:?}");
        }
        for err in [sqlx::Error::RowNotFound, sqlx::Error::ColumnNotFound("x".into())] {
            let mapped = map_db_error(err, "message", OnForeignKey::Unexpected);
            assert!(!matches!(mapped, StoreError::Unavailable(_)), "{mapped:?}");
        }
    }

    #[test]
    fn outage_codes_are_told_from_statement_errors() {
        for code in ["57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "53300"] {
            assert!(postgres_unavailable(code), "{code}");
        }
        // Unique and foreign-key violations, a syntax error, a cancelled statement: the statement's fault.
        for code in ["23505", "23503", "42601", "40001", "XX000"] {
            assert!(!postgres_unavailable(code), "{code}");
        }
        // SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT (517), SQLITE_LOCKED, SQLITE_IOERR_WRITE (778), SQLITE_CANTOPEN.
        for code in [5, 517, 6, 778, 13, 14] {
            assert!(sqlite_unavailable(code), "{code}");
        }
        // SQLITE_CONSTRAINT_UNIQUE (2067), SQLITE_ERROR, SQLITE_CORRUPT.
        for code in [2067, 1, 11] {
            assert!(!sqlite_unavailable(code), "{code}");
        }
    }
}
