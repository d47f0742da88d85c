//! An instance's API keys: owners create (the key is shown once), list, read, revoke, rotate and delete them.

use axum::extract::State;
use axum::http::StatusCode;
use gw_accounts::CreateApiKey;
use gw_core::{ApiKeyId, InstanceId, Timestamp};

use crate::dto::{ApiKeyDto, CreateApiKeyRequest, CreatedApiKeyDto, PageDto, RotateApiKeyRequest, RotatedApiKeyDto};
use crate::error::{ApiError, ProblemBody};
use crate::extract::{Auth, Json, PageQuery, Path, Query};
use crate::state::AppState;

/// Creates an API key for the instance. The response carries the full key; it is never shown again.
#[utoipa::path(post, path = "/v1/instances/{id}/api-keys", tag = "api-keys", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = CreateApiKeyRequest, responses(
    (status = 201, body = CreatedApiKeyDto),
    (status = 403, body = ProblemBody, content_type = "application/problem+json"),
    (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    (status = 422, body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn create(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path(instance_id): Path<InstanceId>,
    Json(body): Json<CreateApiKeyRequest>,
) -> Result<(StatusCode, Json<CreatedApiKeyDto>), ApiError> {
    let request = CreateApiKey {
        name: body.name,
        permissions: body.permissions,
        expires_at: body.expires_at.map(Timestamp::from),
        rate_limit: body.rate_limit,
    };
    let (key, secret) = state.accounts.create_api_key(&by, instance_id, request).await?;
    Ok((StatusCode::CREATED, Json(CreatedApiKeyDto { key: secret.into_inner(), api_key: key.into() })))
}

/// Lists the instance's keys, without secrets.
#[utoipa::path(get, path = "/v1/instances/{id}/api-keys", tag = "api-keys", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), PageQuery), responses((status = 200, body = PageDto<ApiKeyDto>)))]
pub async fn list(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path(instance_id): Path<InstanceId>,
    Query(query): Query<PageQuery>,
) -> Result<Json<PageDto<ApiKeyDto>>, ApiError> {
    let page = state.accounts.list_api_keys(&by, instance_id, query.page_request()?).await?;
    Ok(Json(PageDto::from_page(page, Into::into)))
}

/// Reads one key, without its secret.
#[utoipa::path(get, path = "/v1/instances/{id}/api-keys/{key_id}", tag = "api-keys", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("key_id" = uuid::Uuid, Path)), responses((status = 200, body = ApiKeyDto)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path((instance_id, key_id)): Path<(InstanceId, ApiKeyId)>,
) -> Result<Json<ApiKeyDto>, ApiError> {
    Ok(Json(state.accounts.get_api_key(&by, instance_id, key_id).await?.into()))
}

/// Revokes a key at once.
#[utoipa::path(post, path = "/v1/instances/{id}/api-keys/{key_id}/revoke", tag = "api-keys", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("key_id" = uuid::Uuid, Path)), responses((status = 200, body = ApiKeyDto)))]
pub async fn revoke(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path((instance_id, key_id)): Path<(InstanceId, ApiKeyId)>,
) -> Result<Json<ApiKeyDto>, ApiError> {
    Ok(Json(state.accounts.revoke_api_key(&by, instance_id, key_id).await?.into()))
}

/// Issues a successor key (shown once) and keeps the old one valid for a grace period (default 24 h, at most 7 d).
#[utoipa::path(post, path = "/v1/instances/{id}/api-keys/{key_id}/rotate", tag = "api-keys", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("key_id" = uuid::Uuid, Path)), request_body = Option<RotateApiKeyRequest>,
    responses((status = 201, body = RotatedApiKeyDto)))]
pub async fn rotate(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path((instance_id, key_id)): Path<(InstanceId, ApiKeyId)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<RotatedApiKeyDto>), ApiError> {
    // The body is optional: an empty one takes the default grace period.
    let request: RotateApiKeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateApiKeyRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", e.to_string()))?
    };
    let grace_secs = request.grace_period_secs.unwrap_or(24 * 3600);
    // `Duration::seconds` panics past ±i64::MAX milliseconds; the service checks the range.
    let grace = chrono::Duration::try_seconds(grace_secs)
        .ok_or_else(|| ApiError::invalid("grace_period_secs", "must be between 0 and 604800 seconds"))?;
    let rotated = state.accounts.rotate_api_key(&by, instance_id, key_id, grace).await?;
    Ok((
        StatusCode::CREATED,
        Json(RotatedApiKeyDto {
            key: rotated.secret.into_inner(),
            api_key: rotated.key.into(),
            previous: rotated.previous.into(),
        }),
    ))
}

/// Deletes a key.
#[utoipa::path(delete, path = "/v1/instances/{id}/api-keys/{key_id}", tag = "api-keys", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("key_id" = uuid::Uuid, Path)), responses((status = 204)))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path((instance_id, key_id)): Path<(InstanceId, ApiKeyId)>,
) -> Result<StatusCode, ApiError> {
    state.accounts.delete_api_key(&by, instance_id, key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
