//! Turning sqlx errors into [`StoreError`]s, once, for both backends. PostgreSQL names the violated constraint;
//! SQLite names the columns in its message. Both are mapped to the same [`UniqueKey`].

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

/// Maps a failed statement about `entity` to the store's error.
pub(crate) fn map_db_error(err: sqlx::Error, entity: &'static str, on_fk: OnForeignKey) -> StoreError {
    match err {
        sqlx::Error::RowNotFound => StoreError::NotFound { entity },
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            StoreError::Unavailable(Box::new(err))
        }
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
            // SQLITE_BUSY after the busy timeout: the database is locked by another writer for too long.
            _ if db.code().as_deref() == Some("5") => StoreError::Unavailable(Box::new(err)),
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
