//! An instance's webhook endpoints: CRUD (the signing secret is shown once), secret rotation with a grace period,
//! a test fire, the delivery log, and replays. Owners (or keys with `webhooks:write`) manage them; members read.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gw_core::{InstanceId, Timestamp, WebhookConfigId, WebhookDeliveryId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::{PageDto, WebhookDeliveryDto, WebhookDto};
use crate::error::{ApiError, ProblemBody};
use crate::extract::{Caller, Json, PageQuery, Path, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// `https://…` (`http://` only where the operator allows it).
    #[schema(max_length = 2048)]
    pub url: String,
    /// Event types to receive, or `["*"]` (the default) for all of them.
    #[schema(value_type = Option<Vec<gw_core::EventSelector>>, min_items = 1, max_items = 32)]
    pub events: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[schema(value_type = Option<Vec<gw_core::EventSelector>>, min_items = 1, max_items = 32)]
    pub events: Option<Vec<String>>,
    /// `true` re-enables an endpoint the gateway disabled (and clears `disabled_reason`).
    pub is_active: Option<bool>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateWebhookSecretRequest {
    /// How long the old secret keeps signing beside the new one, in seconds; default 24 h, at most 7 days.
    #[schema(minimum = 0, maximum = 604_800)]
    pub grace_period_secs: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRangeRequest {
    /// RFC 3339; deliveries created at or after this instant.
    pub from: DateTime<Utc>,
    /// RFC 3339; deliveries created before this instant.
    pub to: DateTime<Utc>,
}

/// A new endpoint or a rotated secret: the only time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecretDto {
    /// `whsec_…`: verify signatures with it (README: verifying webhooks). Store it now; it is not shown again.
    pub secret: String,
    pub webhook: WebhookDto,
}

impl From<gw_services::WithSecret> for WebhookWithSecretDto {
    fn from(created: gw_services::WithSecret) -> Self {
        Self { secret: created.secret, webhook: created.webhook.into() }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestFireDto {
    pub success: bool,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayedDto {
    /// How many deliveries are due again.
    pub replayed: u64,
}

/// Adds an endpoint. The response carries its signing secret, which is never shown again.
#[utoipa::path(post, path = "/v1/instances/{id}/webhooks", tag = "webhooks", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = CreateWebhookRequest, responses(
    (status = 201, body = WebhookWithSecretDto),
    (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    (status = 422, body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
    Json(body): Json<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<WebhookWithSecretDto>), ApiError> {
    let created = state.webhooks.create(&caller, id, body.url, body.events).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// The instance's endpoints, without secrets.
#[utoipa::path(get, path = "/v1/instances/{id}/webhooks", tag = "webhooks", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = PageDto<WebhookDto>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
) -> Result<Json<PageDto<WebhookDto>>, ApiError> {
    let items = state.webhooks.list(&caller, id).await?.into_iter().map(Into::into).collect();
    Ok(Json(PageDto { items, next_cursor: None }))
}

/// One endpoint with its counters, without its secret.
#[utoipa::path(get, path = "/v1/instances/{id}/webhooks/{webhook_id}", tag = "webhooks",
    security(("bearer" = []), ("api_key" = [])), params(("id" = uuid::Uuid, Path), ("webhook_id" = uuid::Uuid, Path)),
    responses((status = 200, body = WebhookDto)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, webhook_id)): Path<(InstanceId, WebhookConfigId)>,
) -> Result<Json<WebhookDto>, ApiError> {
    Ok(Json(state.webhooks.get(&caller, id, webhook_id).await?.into()))
}

/// Changes the URL, the events, or re-enables / disables the endpoint.
#[utoipa::path(patch, path = "/v1/instances/{id}/webhooks/{webhook_id}", tag = "webhooks",
    security(("bearer" = []), ("api_key" = [])), params(("id" = uuid::Uuid, Path), ("webhook_id" = uuid::Uuid, Path)),
    request_body = UpdateWebhookRequest, responses((status = 200, body = WebhookDto)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, webhook_id)): Path<(InstanceId, WebhookConfigId)>,
    Json(body): Json<UpdateWebhookRequest>,
) -> Result<Json<WebhookDto>, ApiError> {
    let config = state.webhooks.update(&caller, id, webhook_id, body.url, body.events, body.is_active).await?;
    Ok(Json(config.into()))
}

/// Deletes the endpoint and its delivery log.
#[utoipa::path(delete, path = "/v1/instances/{id}/webhooks/{webhook_id}", tag = "webhooks",
    security(("bearer" = []), ("api_key" = [])), params(("id" = uuid::Uuid, Path), ("webhook_id" = uuid::Uuid, Path)),
    responses((status = 204)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, webhook_id)): Path<(InstanceId, WebhookConfigId)>,
) -> Result<StatusCode, ApiError> {
    state.webhooks.delete(&caller, id, webhook_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issues a new secret (shown once); the old one keeps signing beside it for the grace period.
#[utoipa::path(post, path = "/v1/instances/{id}/webhooks/{webhook_id}/rotate-secret", tag = "webhooks",
    security(("bearer" = []), ("api_key" = [])), params(("id" = uuid::Uuid, Path), ("webhook_id" = uuid::Uuid, Path)),
    request_body = Option<RotateWebhookSecretRequest>, responses((status = 201, body = WebhookWithSecretDto)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, webhook_id)): Path<(InstanceId, WebhookConfigId)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<WebhookWithSecretDto>), ApiError> {
    let grace = || -> Result<Option<i64>, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let request: RotateWebhookSecretRequest =
            serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", e.to_string()))?;
        Ok(request.grace_period_secs)
    };
    let rotated = state.webhooks.rotate_secret(&caller, id, webhook_id, grace).await?;
    Ok((StatusCode::CREATED, Json(rotated.into())))
}

/// Sends a signed `webhook.test` event to the endpoint now and reports the outcome (nothing is stored).
#[utoipa::path(post, path = "/v1/instances/{id}/webhooks/{webhook_id}/test", tag = "webhooks",
    security(("bearer" = []), ("api_key" = [])), params(("id" = uuid::Uuid, Path), ("webhook_id" = uuid::Uuid, Path)),
    responses((status = 200, body = TestFireDto),
    (status = 503, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, webhook_id)): Path<(InstanceId, WebhookConfigId)>,
) -> Result<Json<TestFireDto>, ApiError> {
    let fired = state.webhooks.test_fire(&caller, id, webhook_id).await?;
    Ok(Json(TestFireDto {
        success: fired.success,
        status_code: fired.status_code,
        latency_ms: fired.latency_ms,
        error: fired.error,
        response_excerpt: fired.response_excerpt,
    }))
}

/// The endpoint's deliveries, newest first, each with its attempts (status code, latency, error, response start).
#[utoipa::path(get, path = "/v1/instances/{id}/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path), ("webhook_id" = uuid::Uuid, Path), PageQuery),
    responses((status = 200, body = PageDto<WebhookDeliveryDto>)))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, webhook_id)): Path<(InstanceId, WebhookConfigId)>,
    Query(query): Query<PageQuery>,
) -> Result<Json<PageDto<WebhookDeliveryDto>>, ApiError> {
    let page = query.page_request()?;
    let page = state.webhooks.deliveries(&caller, id, webhook_id, page).await?;
    Ok(Json(PageDto::from_page(page, Into::into)))
}

/// One delivery with its attempts.
#[utoipa::path(get, path = "/v1/instances/{id}/webhooks/{webhook_id}/deliveries/{delivery_id}", tag = "webhooks",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path), ("webhook_id" = uuid::Uuid, Path), ("delivery_id" = uuid::Uuid, Path)),
    responses((status = 200, body = WebhookDeliveryDto)))]
pub async fn delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, webhook_id, delivery_id)): Path<(InstanceId, WebhookConfigId, WebhookDeliveryId)>,
) -> Result<Json<WebhookDeliveryDto>, ApiError> {
    Ok(Json(state.webhooks.delivery(&caller, id, webhook_id, delivery_id).await?.into()))
}

/// Sends one delivery again (same `webhook-id`), whatever its state.
#[utoipa::path(post, path = "/v1/instances/{id}/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
    tag = "webhooks", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path), ("webhook_id" = uuid::Uuid, Path), ("delivery_id" = uuid::Uuid, Path)),
    responses((status = 202, body = WebhookDeliveryDto)))]
pub async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, webhook_id, delivery_id)): Path<(InstanceId, WebhookConfigId, WebhookDeliveryId)>,
) -> Result<(StatusCode, Json<WebhookDeliveryDto>), ApiError> {
    let delivery = state.webhooks.replay(&caller, id, webhook_id, delivery_id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery.into())))
}

/// Sends again every finished delivery (succeeded or dead) created in `[from, to)`.
#[utoipa::path(post, path = "/v1/instances/{id}/webhooks/{webhook_id}/replay", tag = "webhooks",
    security(("bearer" = []), ("api_key" = [])), params(("id" = uuid::Uuid, Path), ("webhook_id" = uuid::Uuid, Path)),
    request_body = ReplayRangeRequest, responses((status = 202, body = ReplayedDto)))]
pub async fn replay_range(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, webhook_id)): Path<(InstanceId, WebhookConfigId)>,
    Json(body): Json<ReplayRangeRequest>,
) -> Result<(StatusCode, Json<ReplayedDto>), ApiError> {
    let (from, to) = (Timestamp::from(body.from), Timestamp::from(body.to));
    let replayed = state.webhooks.replay_range(&caller, id, webhook_id, from, to).await?;
    Ok((StatusCode::ACCEPTED, Json(ReplayedDto { replayed })))
}
