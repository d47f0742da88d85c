//! Checks that keep the two backends in step.

use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn both_backends_carry_the_same_migration_versions() {
    assert_eq!(gw_store_sql::sqlite_migration_versions(), gw_store_sql::postgres_migration_versions());
    assert!(!gw_store_sql::sqlite_migration_versions().is_empty());
}

#[test]
fn both_migration_folders_name_the_same_files() {
    let names = |backend: &str| -> BTreeSet<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations").join(backend);
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names("sqlite"), names("postgres"));
}

#[test]
fn both_schemas_create_the_same_tables() {
    let tables = |backend: &str| -> BTreeSet<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations").join(backend);
        let mut tables = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).expect("migrations dir") {
            let sql = std::fs::read_to_string(entry.expect("entry").path()).expect("read migration");
            for line in sql.lines() {
                if let Some(rest) = line.trim().strip_prefix("CREATE TABLE ") {
                    tables.insert(rest.split_whitespace().next().unwrap_or_default().to_owned());
                }
            }
        }
        tables
    };
    let sqlite = tables("sqlite");
    assert_eq!(sqlite, tables("postgres"));
    assert!(sqlite.len() >= 10, "every entity of the data model has a table: {sqlite:?}");
}
