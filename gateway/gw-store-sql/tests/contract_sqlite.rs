//! The store contract on SQLite: each test gets its own database file in a fresh temporary directory.

use std::sync::Arc;

use gw_store::contract::TestStore;
use gw_store_sql::{OpenOptions, SqliteStore};

async fn sqlite_store() -> Option<TestStore> {
    let dir = std::env::temp_dir().join(format!("gw-contract-{}", uuid::Uuid::now_v7().simple()));
    let url = format!("sqlite://{}/gateway.db", dir.display());
    let store = SqliteStore::open(&url, &OpenOptions::default()).await.expect("open sqlite store");
    Some(TestStore::new(Arc::new(store), async move {
        let _ = std::fs::remove_dir_all(dir);
    }))
}

gw_store::store_contract_tests!(sqlite_store);

#[tokio::test]
async fn in_memory_database_keeps_its_data_across_queries() {
    let store = SqliteStore::open("sqlite::memory:", &OpenOptions::default()).await.expect("open");
    gw_store::contract::subscription_crud(Arc::new(store)).await;
}
