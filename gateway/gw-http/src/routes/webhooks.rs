//! An instance's webhook endpoints: CRUD (the signing secret is shown once), secret rotation with a grace period,
//! a test fire, the delivery log, and replays. Owners (or keys with `webhooks:write`) manage them; members read.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gw_accounts::Action;
use gw_core::{EventType, InstanceId, Timestamp, WebhookConfigId, WebhookDeliveryId};
use gw_store::{Actor, NewWebhookConfig, WebhookConfigPatch};
use gw_webhooks::SigningSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::{PageDto, WebhookDeliveryDto, WebhookDto};
use crate::error::{ApiError, ProblemBody, ProblemType};
use crate::extract::{Caller, Json, PageQuery, Path, Query};
use crate::routes::sessions::instance_for;
use crate::state::AppState;

const SCOPE: &str = "webhooks:write";
const MAX_EVENTS: usize = 32;
/// Longest grace period for a rotated secret.
const MAX_GRACE_SECS: i64 = 7 * 24 * 3600;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// `https://…` (`http://` only where the operator allows it).
    #[schema(max_length = 2048)]
    pub url: String,
    /// Event types to receive, or `["*"]` (the default) for all of them.
    #[schema(value_type = Option<Vec<crate::dto::WebhookEventName>>, min_items = 1, max_items = 32)]
    pub events: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[schema(value_type = Option<Vec<crate::dto::WebhookEventName>>, min_items = 1, max_items = 32)]
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

fn actor(caller: &Caller) -> Actor {
    match caller {
        Caller::User(p) => Actor::user(p.user_id, p.ip_address.clone()),
        Caller::Key(k) => Actor::api_key(k.key_id, k.ip_address.map(|ip| ip.to_string())),
    }
}

fn check_url(state: &AppState, url: &str) -> Result<(), ApiError> {
    state
        .webhooks
        .policy
        .validate_url(url)
        .map(|_| ())
        .map_err(|e| ApiError::Problem(&ProblemType::INVALID_WEBHOOK_URL, format!("the webhook URL is refused: {e}")))
}

fn check_events(events: &[String]) -> Result<(), ApiError> {
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(ApiError::invalid("events", format!("list 1 to {MAX_EVENTS} event types, or [\"*\"]")));
    }
    for event in events {
        let known = event == "*" || event.parse::<EventType>().is_ok_and(|t| t != EventType::WebhookTest);
        if !known {
            return Err(ApiError::invalid(
                "events",
                format!("`{event}` is not an event type (the book's events reference)"),
            ));
        }
    }
    Ok(())
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
    let instance = instance_for(&state, &caller, id, Action::ManageInstances, SCOPE).await?;
    check_url(&state, &body.url)?;
    let events = body.events.unwrap_or_else(|| vec!["*".into()]);
    check_events(&events)?;
    let secret = SigningSecret::generate();
    let new = NewWebhookConfig { instance_id: instance.id, url: body.url, events, secret: secret.clone() };
    let config = state.store.create_webhook_config(new, &actor(&caller)).await?;
    Ok((StatusCode::CREATED, Json(WebhookWithSecretDto { secret, webhook: config.into() })))
}

/// The instance's endpoints, without secrets.
#[utoipa::path(get, path = "/v1/instances/{id}/webhooks", tag = "webhooks", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = PageDto<WebhookDto>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
) -> Result<Json<PageDto<WebhookDto>>, ApiError> {
    let instance = instance_for(&state, &caller, id, Action::ReadInstances, SCOPE).await?;
    let items = state.store.list_webhook_configs(instance.id).await?.into_iter().map(Into::into).collect();
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
    let instance = instance_for(&state, &caller, id, Action::ReadInstances, SCOPE).await?;
    Ok(Json(state.store.get_webhook_config(instance.id, webhook_id).await?.into()))
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
    let instance = instance_for(&state, &caller, id, Action::ManageInstances, SCOPE).await?;
    if let Some(url) = &body.url {
        check_url(&state, url)?;
    }
    if let Some(events) = &body.events {
        check_events(events)?;
    }
    let patch = WebhookConfigPatch { url: body.url, events: body.events, secret: None, is_active: body.is_active };
    let config = state.store.update_webhook_config(instance.id, webhook_id, patch, &actor(&caller)).await?;
    if config.is_active {
        state.webhooks.wake();
    }
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
    let instance = instance_for(&state, &caller, id, Action::ManageInstances, SCOPE).await?;
    state.store.delete_webhook_config(instance.id, webhook_id, &actor(&caller)).await?;
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
    let instance = instance_for(&state, &caller, id, Action::ManageInstances, SCOPE).await?;
    let request: RotateWebhookSecretRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateWebhookSecretRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", e.to_string()))?
    };
    let grace = request.grace_period_secs.unwrap_or(24 * 3600);
    if !(0..=MAX_GRACE_SECS).contains(&grace) {
        return Err(ApiError::invalid("grace_period_secs", format!("0 to {MAX_GRACE_SECS} seconds")));
    }
    let until = Timestamp::now().checked_add(chrono::Duration::seconds(grace)).unwrap_or_else(Timestamp::now);
    let secret = SigningSecret::generate();
    let config =
        state.store.rotate_webhook_secret(instance.id, webhook_id, secret.clone(), until, &actor(&caller)).await?;
    Ok((StatusCode::CREATED, Json(WebhookWithSecretDto { secret, webhook: config.into() })))
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
    let instance = instance_for(&state, &caller, id, Action::ManageInstances, SCOPE).await?;
    let config = state.store.get_webhook_config(instance.id, webhook_id).await?;
    let dispatcher = state.webhooks.dispatcher.as_ref().ok_or_else(|| {
        ApiError::Problem(&ProblemType::WEBHOOKS_DISABLED, "webhook delivery is disabled on this node".into())
    })?;
    let fired = dispatcher.test_fire(&config, instance.subscription_id).await;
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
    let instance = instance_for(&state, &caller, id, Action::ReadInstances, SCOPE).await?;
    let config = state.store.get_webhook_config(instance.id, webhook_id).await?;
    let page = state.store.list_webhook_deliveries(instance.id, config.id, query.page_request()?).await?;
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
    let instance = instance_for(&state, &caller, id, Action::ReadInstances, SCOPE).await?;
    Ok(Json(state.store.get_webhook_delivery(instance.id, webhook_id, delivery_id).await?.into()))
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
    let instance = instance_for(&state, &caller, id, Action::ManageInstances, SCOPE).await?;
    let delivery = state
        .store
        .replay_webhook_delivery(instance.id, webhook_id, delivery_id, Timestamp::now(), &actor(&caller))
        .await?;
    state.webhooks.wake();
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
    let instance = instance_for(&state, &caller, id, Action::ManageInstances, SCOPE).await?;
    if body.from >= body.to {
        return Err(ApiError::invalid("to", "must be after `from`"));
    }
    let config = state.store.get_webhook_config(instance.id, webhook_id).await?;
    let replayed = state
        .store
        .replay_webhook_deliveries(
            instance.id,
            config.id,
            Timestamp::from(body.from),
            Timestamp::from(body.to),
            Timestamp::now(),
            &actor(&caller),
        )
        .await?;
    state.webhooks.wake();
    Ok((StatusCode::ACCEPTED, Json(ReplayedDto { replayed })))
}
