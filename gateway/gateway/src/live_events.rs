//! Live events across nodes: on PostgreSQL, this node's engine events go to the other nodes and theirs come here
//! (`gw_sessions::EventRelay` over `gw_store_sql::PgFanout`).

use std::sync::Arc;

use anyhow::Context as _;

use crate::config::Settings;

/// The relay that shows every node's live events on this node's SSE streams, with its PostgreSQL channel; `None`
/// on SQLite (one node).
pub async fn relay(
    settings: &Settings,
) -> anyhow::Result<Option<(Arc<gw_sessions::EventRelay>, Arc<dyn gw_store::NodeFanout>)>> {
    if gw_store_sql::Backend::from_url(&settings.database.url) != Some(gw_store_sql::Backend::Postgres) {
        return Ok(None);
    }
    let fanout =
        gw_store_sql::PgFanout::connect(&settings.database.url).await.context("cannot open the live event channel")?;
    // The relay names its envelopes with the engine's node id once spawned, so it ignores its own notifications.
    tracing::info!("live events fan out through PostgreSQL LISTEN/NOTIFY");
    Ok(Some((gw_sessions::EventRelay::new(), Arc::new(fanout))))
}
