//! The store contract on PostgreSQL: each test gets its own freshly created database.

use std::sync::Arc;

use gw_store::contract::TestStore;
use gw_store_sql::testing::PgTestDatabase;
use gw_store_sql::{OpenOptions, PgStore};

async fn postgres_store() -> Option<TestStore> {
    let database = PgTestDatabase::create().await?;
    let options = OpenOptions { max_connections: 8, ..OpenOptions::default() };
    let store = PgStore::open(database.url(), &options).await.expect("open postgres store");
    let store = Arc::new(store);
    let pool_owner = store.clone();
    Some(TestStore::new(store, async move {
        pool_owner.close().await;
        database.drop_database().await;
    }))
}

gw_store::store_contract_tests!(postgres_store);
