//! Instances: one WhatsApp account each. Owners manage them; members read them.

use axum::extract::State;
use axum::http::StatusCode;
use gw_accounts::{CreateInstance, UpdateInstance};
use gw_core::{DriverKind, InstanceId, SubscriptionId};

use crate::dto::{CreateInstanceRequest, InstanceDto, InstanceStatusDto, PageDto, UpdateInstanceRequest};
use crate::error::{ApiError, ProblemBody};
use crate::extract::{Auth, Caller, Json, PageQuery, Path, Query};
use crate::state::AppState;

/// Creates an instance, taking one of the subscription's instance slots atomically.
#[utoipa::path(post, path = "/v1/instances", tag = "instances", security(("bearer" = [])),
    request_body = CreateInstanceRequest, responses(
    (status = 404, description = "not-found: no such subscription (`subscription_id`)", body = ProblemBody, content_type = "application/problem+json"),
    (status = 201, body = InstanceDto),
    (status = 403, body = ProblemBody, content_type = "application/problem+json"),
    (status = 409, description = "conflict (name taken) or instance-limit-reached", body = ProblemBody, content_type = "application/problem+json"),
    (status = 422, body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn create(
    State(state): State<AppState>,
    Auth(by): Auth,
    Json(body): Json<CreateInstanceRequest>,
) -> Result<(StatusCode, Json<InstanceDto>), ApiError> {
    let driver = match body.driver.as_deref() {
        None => DriverKind::Sandbox,
        Some(raw) => raw.parse().map_err(|e: gw_core::ParseEnumError| ApiError::invalid("driver", e.to_string()))?,
    };
    let subscription_id = body
        .subscription_id
        .as_deref()
        .map(|raw| raw.parse::<SubscriptionId>().map_err(|_| ApiError::invalid("subscription_id", "not a valid id")))
        .transpose()?;
    let instance = state
        .accounts
        .create_instance(
            &by,
            CreateInstance {
                name: body.name,
                driver,
                settings: body.settings.unwrap_or_else(|| serde_json::json!({})),
                subscription_id,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(instance.into())))
}

/// Lists the caller's instances (operators: all).
#[utoipa::path(get, path = "/v1/instances", tag = "instances", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = PageDto<InstanceDto>)))]
pub async fn list(
    State(state): State<AppState>,
    Auth(by): Auth,
    Query(query): Query<PageQuery>,
) -> Result<Json<PageDto<InstanceDto>>, ApiError> {
    let page = state.accounts.list_instances(&by, query.page_request()?).await?;
    Ok(Json(PageDto::from_page(page, Into::into)))
}

/// Reads an instance.
#[utoipa::path(get, path = "/v1/instances/{id}", tag = "instances", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = InstanceDto), (status = 404, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<InstanceId>,
) -> Result<Json<InstanceDto>, ApiError> {
    tracing::Span::current().record("instance", tracing::field::display(id));
    let instance = state.accounts.get_instance(&by, id).await?;
    let owner_node = state.engine.owner_node(instance.id).await?.map(|node| node.to_string());
    Ok(Json(InstanceDto { owner_node, ..instance.into() }))
}

/// Renames an instance, replaces its settings, or (de)activates it. Owners only.
#[utoipa::path(patch, path = "/v1/instances/{id}", tag = "instances", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = UpdateInstanceRequest,
    responses((status = 200, body = InstanceDto), (status = 403, body = ProblemBody, content_type = "application/problem+json"), (status = 404, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn update(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<InstanceId>,
    Json(body): Json<UpdateInstanceRequest>,
) -> Result<Json<InstanceDto>, ApiError> {
    tracing::Span::current().record("instance", tracing::field::display(id));
    let deactivate = body.is_active == Some(false);
    let update = UpdateInstance { name: body.name, settings: body.settings, is_active: body.is_active };
    let instance = state.accounts.update_instance(&by, id, update).await?;
    if deactivate {
        state.engine.stop(id).await;
    }
    Ok(Json(instance.into()))
}

/// Deletes an instance with its keys, contacts, webhooks and session, and frees its slot. Owners only.
#[utoipa::path(delete, path = "/v1/instances/{id}", tag = "instances", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 204), (status = 403, body = ProblemBody, content_type = "application/problem+json"), (status = 404, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<InstanceId>,
) -> Result<StatusCode, ApiError> {
    tracing::Span::current().record("instance", tracing::field::display(id));
    state.accounts.delete_instance(&by, id).await?;
    // After the delete succeeded (so only someone allowed to delete can stop it): end its session task.
    state.engine.stop(id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The instance's connection state. For users (any role) and for any active API key of this instance; a key of
/// another instance gets 404.
#[utoipa::path(get, path = "/v1/instances/{id}/status", tag = "instances", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), responses(
    (status = 200, body = InstanceStatusDto, description = "With RateLimit-Policy and RateLimit headers for API keys"),
    (status = 401, body = ProblemBody, content_type = "application/problem+json"),
    (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    (status = 429, description = "rate-limited, with Retry-After", body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
) -> Result<Json<InstanceStatusDto>, ApiError> {
    tracing::Span::current().record("instance", tracing::field::display(id));
    let instance = match caller {
        Caller::User(principal) => state.accounts.get_instance(&principal, id).await?,
        Caller::Key(key) if key.instance_id == id => {
            state.store.get_instance(gw_store::Scope::Subscription(key.subscription_id), id).await?
        }
        Caller::Key(_) => return Err(ApiError::not_found("instance")),
    };
    Ok(Json(instance.into()))
}
