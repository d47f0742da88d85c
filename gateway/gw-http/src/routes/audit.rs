//! The audit log: operators read every subscription's, owners their own.

use axum::extract::State;
use chrono::{DateTime, Utc};
use gw_core::{ApiKeyId, AuditAction, AuditResource, SubscriptionId, Timestamp, UserId};
use gw_store::AuditFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::dto::{AuditEntryDto, PageDto};
use crate::error::{ApiError, ProblemBody};
use crate::extract::{Auth, Json, PageQuery, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Operators: one subscription. Tenants always see only their own.
    #[param(value_type = Option<String>, format = Uuid)]
    pub subscription_id: Option<SubscriptionId>,
    /// Actions by this user.
    #[param(value_type = Option<String>, format = Uuid)]
    pub user_id: Option<UserId>,
    /// Actions by this API key.
    #[param(value_type = Option<String>, format = Uuid)]
    pub api_key_id: Option<ApiKeyId>,
    /// Rows about this kind of resource (`session` for sign-ins).
    pub resource: Option<AuditResource>,
    /// Rows of this action.
    pub action: Option<AuditAction>,
    /// RFC 3339; inclusive.
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<DateTime<Utc>>,
    /// RFC 3339; exclusive.
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// Audit rows, newest first, with filters and cursor pagination.
#[utoipa::path(get, path = "/v1/audit-log", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses(
    (status = 404, description = "not-found: no such subscription (`subscription_id`)", body = ProblemBody, content_type = "application/problem+json"),(status = 200, body = PageDto<AuditEntryDto>)))]
pub async fn list(
    State(state): State<AppState>,
    Auth(by): Auth,
    Query(query): Query<AuditQuery>,
) -> Result<Json<PageDto<AuditEntryDto>>, ApiError> {
    let page = PageQuery { cursor: query.cursor, limit: query.limit }.page_request()?;
    let filter = AuditFilter {
        subscription_id: query.subscription_id,
        user_id: query.user_id,
        api_key_id: query.api_key_id,
        resource: query.resource,
        action: query.action,
        since: query.since.map(Timestamp::from),
        until: query.until.map(Timestamp::from),
    };
    let entries = state.accounts.list_audit(&by, filter, page).await?;
    Ok(Json(PageDto::from_page(entries, Into::into)))
}
