//! Operators manage subscriptions and their users; tenants may read their own subscription and its users.

use axum::extract::State;
use axum::http::StatusCode;
use gw_accounts::{CreateSubscription, CreateUser, UpdateSubscription};
use gw_core::{Subscription, SubscriptionId, Tier, UserId, UserRole};

use crate::dto::{
    CreateSubscriptionRequest, CreateUserRequest, PageDto, ResetPasswordRequest, SubscriptionDto,
    UpdateSubscriptionRequest, UserDto,
};
use crate::error::{ApiError, ProblemBody};
use crate::extract::{Auth, Json, PageQuery, Path, Query};
use crate::state::AppState;

fn parse_tier(raw: &str) -> Result<Tier, ApiError> {
    raw.parse().map_err(|e: gw_core::ParseEnumError| ApiError::invalid("tier", e.to_string()))
}

fn dto(state: &AppState, subscription: Subscription) -> SubscriptionDto {
    let limits = state.accounts.effective_limits(&subscription);
    SubscriptionDto::new(subscription, limits)
}

/// Creates a subscription with its tier's default limits, overridden where `limit_overrides` says. Operators only.
#[utoipa::path(post, path = "/v1/subscriptions", tag = "subscriptions", security(("bearer" = [])),
    request_body = CreateSubscriptionRequest, responses(
    (status = 201, body = SubscriptionDto),
    (status = 403, body = ProblemBody, content_type = "application/problem+json"),
    (status = 422, body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn create(
    State(state): State<AppState>,
    Auth(by): Auth,
    Json(body): Json<CreateSubscriptionRequest>,
) -> Result<(StatusCode, Json<SubscriptionDto>), ApiError> {
    let tier = parse_tier(&body.tier)?;
    let created = state
        .accounts
        .create_subscription(&by, CreateSubscription { name: body.name, tier, overrides: body.limit_overrides.into() })
        .await?;
    Ok((StatusCode::CREATED, Json(dto(&state, created))))
}

/// Lists subscriptions. Operators only.
#[utoipa::path(get, path = "/v1/subscriptions", tag = "subscriptions", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = PageDto<SubscriptionDto>), (status = 403, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    Auth(by): Auth,
    Query(query): Query<PageQuery>,
) -> Result<Json<PageDto<SubscriptionDto>>, ApiError> {
    let page = state.accounts.list_subscriptions(&by, query.page_request()?).await?;
    Ok(Json(PageDto::from_page(page, |s| dto(&state, s))))
}

/// Reads a subscription: operators any, owners their own.
#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = SubscriptionDto), (status = 404, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<SubscriptionId>,
) -> Result<Json<SubscriptionDto>, ApiError> {
    let subscription = state.accounts.get_subscription(&by, id).await?;
    Ok(Json(dto(&state, subscription)))
}

/// Renames, re-tiers, re-limits, activates or deactivates a subscription. Deactivation stops its users, keys and
/// instances at once; nothing is deleted. Operators only.
#[utoipa::path(patch, path = "/v1/subscriptions/{id}", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = UpdateSubscriptionRequest,
    responses((status = 200, body = SubscriptionDto), (status = 404, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn update(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<SubscriptionId>,
    Json(body): Json<UpdateSubscriptionRequest>,
) -> Result<Json<SubscriptionDto>, ApiError> {
    let update = UpdateSubscription {
        name: body.name,
        tier: body.tier.as_deref().map(parse_tier).transpose()?,
        overrides: body.limit_overrides.map(Into::into),
        is_active: body.is_active,
    };
    let subscription = state.accounts.update_subscription(&by, id, update).await?;
    Ok(Json(dto(&state, subscription)))
}

async fn set_active(
    state: AppState,
    by: gw_accounts::Principal,
    id: SubscriptionId,
    active: bool,
) -> Result<Json<SubscriptionDto>, ApiError> {
    let update = UpdateSubscription { is_active: Some(active), ..Default::default() };
    let subscription = state.accounts.update_subscription(&by, id, update).await?;
    Ok(Json(dto(&state, subscription)))
}

/// Activates a subscription. Operators only.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/activate", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = SubscriptionDto)))]
pub async fn activate(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<SubscriptionId>,
) -> Result<Json<SubscriptionDto>, ApiError> {
    set_active(state, by, id, true).await
}

/// Deactivates a subscription: its users, keys and instances stop working at once. Operators only.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/deactivate", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = SubscriptionDto)))]
pub async fn deactivate(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<SubscriptionId>,
) -> Result<Json<SubscriptionDto>, ApiError> {
    set_active(state, by, id, false).await
}

/// Creates a user (`owner` or `member`) in a subscription. Operators only.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/users", tag = "users", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = CreateUserRequest, responses(
    (status = 201, body = UserDto),
    (status = 409, body = ProblemBody, content_type = "application/problem+json"),
    (status = 422, body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn create_user(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<SubscriptionId>,
    Json(body): Json<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserDto>), ApiError> {
    let role: UserRole =
        body.role.parse().map_err(|e: gw_core::ParseEnumError| ApiError::invalid("role", e.to_string()))?;
    let user = state
        .accounts
        .create_user(&by, id, CreateUser { email: body.email, password: body.password, name: body.name, role })
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Lists a subscription's users: operators any, owners their own.
#[utoipa::path(get, path = "/v1/subscriptions/{id}/users", tag = "users", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), PageQuery), responses((status = 200, body = PageDto<UserDto>)))]
pub async fn list_users(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<SubscriptionId>,
    Query(query): Query<PageQuery>,
) -> Result<Json<PageDto<UserDto>>, ApiError> {
    let page = state.accounts.list_users(&by, id, query.page_request()?).await?;
    Ok(Json(PageDto::from_page(page, Into::into)))
}

/// Deactivates a user and ends all their sessions. Operators only.
#[utoipa::path(post, path = "/v1/users/{id}/deactivate", tag = "users", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = UserDto)))]
pub async fn deactivate_user(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<UserId>,
) -> Result<Json<UserDto>, ApiError> {
    Ok(Json(state.accounts.set_user_active(&by, id, false).await?.into()))
}

/// Reactivates a user. Operators only.
#[utoipa::path(post, path = "/v1/users/{id}/activate", tag = "users", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = UserDto)))]
pub async fn activate_user(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<UserId>,
) -> Result<Json<UserDto>, ApiError> {
    Ok(Json(state.accounts.set_user_active(&by, id, true).await?.into()))
}

/// Sets a user's password (subject to the policy) and ends all their sessions. Operators only.
#[utoipa::path(post, path = "/v1/users/{id}/password", tag = "users", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = ResetPasswordRequest, responses((status = 200, body = UserDto)))]
pub async fn reset_password(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<UserId>,
    Json(body): Json<ResetPasswordRequest>,
) -> Result<Json<UserDto>, ApiError> {
    Ok(Json(state.accounts.reset_password(&by, id, &body.password).await?.into()))
}
