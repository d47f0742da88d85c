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
    // Names this process's envelopes, so it ignores its own notifications.
    let node = format!("{:032x}", rand::random::<u128>());
    tracing::info!(node, "live events fan out through PostgreSQL LISTEN/NOTIFY");
    Ok(Some((gw_sessions::EventRelay::new(node), Arc::new(fanout))))
}
