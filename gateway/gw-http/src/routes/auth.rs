//! Sign-in, token refresh, sign-out, and who am I.

use axum::extract::State;
use axum::http::StatusCode;

use crate::dto::{LoginRequest, RefreshRequest, SessionDto, UserDto};
use crate::error::{ApiError, ProblemBody};
use crate::extract::{Auth, ClientIp, Json};
use crate::state::AppState;

/// Signs in with email and password; returns a 15-minute access token and a rotating refresh token.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = SessionDto),
    (status = 401, description = "invalid-credentials or account-inactive", body = ProblemBody, content_type = "application/problem+json"),
    (status = 422, body = ProblemBody, content_type = "application/problem+json"),
    (status = 429, description = "too-many-attempts, with Retry-After", body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    Json(body): Json<LoginRequest>,
) -> Result<Json<SessionDto>, ApiError> {
    let session = state.accounts.login(&body.email, &body.password, ip.to_string_opt()).await?;
    Ok(Json(session.into()))
}

/// Exchanges a refresh token for a new session. The token is consumed; presenting it again revokes every session
/// descended from the same sign-in.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, body = SessionDto),
    (status = 401, description = "invalid-refresh-token, refresh-token-reused or account-inactive", body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn refresh(
    State(state): State<AppState>,
    ip: ClientIp,
    Json(body): Json<RefreshRequest>,
) -> Result<Json<SessionDto>, ApiError> {
    let session = state.accounts.refresh(&body.refresh_token, ip.to_string_opt()).await?;
    Ok(Json(session.into()))
}

/// Ends the session the refresh token belongs to. Idempotent.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest, responses((status = 204)))]
pub async fn logout(
    State(state): State<AppState>,
    ip: ClientIp,
    Json(body): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    state.accounts.logout(&body.refresh_token, ip.to_string_opt()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(get, path = "/v1/me", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, body = UserDto),
    (status = 401, body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn me(State(state): State<AppState>, Auth(principal): Auth) -> Result<Json<UserDto>, ApiError> {
    let user = state.accounts.me(&principal).await?;
    Ok(Json(user.into()))
}
