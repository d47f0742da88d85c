//! The cluster as operators see it: which nodes are live and how many sessions each runs.

use axum::extract::State;
use gw_accounts::Action;

use crate::dto::ClusterNodesDto;
use crate::error::{ApiError, ProblemBody};
use crate::extract::{Auth, Json};
use crate::state::AppState;

/// Lists the live nodes sharing the database (heartbeat within one lease TTL): id, listen address, start and last
/// heartbeat (the database's clock), and how many instance sessions each runs. Operators only.
#[utoipa::path(get, path = "/v1/cluster/nodes", tag = "cluster", security(("bearer" = [])), responses(
    (status = 200, body = ClusterNodesDto),
    (status = 403, body = ProblemBody, content_type = "application/problem+json"),
    (status = 503, body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn nodes(State(state): State<AppState>, Auth(by): Auth) -> Result<Json<ClusterNodesDto>, ApiError> {
    by.require(Action::ManagePlatform)?;
    let nodes = state.engine.cluster_nodes().await?;
    Ok(Json(ClusterNodesDto { items: nodes.into_iter().map(Into::into).collect() }))
}
