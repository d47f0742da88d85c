//! The gateway's HTTP edge: the axum router, its extractors and middleware, the problem+json error model, the
//! request and response shapes, and the OpenAPI document.
//!
//! Architecture invariant: only this crate knows HTTP and JSON shapes. Handlers are thin: they turn a request into
//! a call on a domain service and its result into a response; errors map to problem+json once, in `error.rs`.

mod dto;
pub mod error;
mod extract;
mod middleware;
mod openapi;
mod qr_png;
mod routes;
mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;

pub use error::{ApiError, ProblemType};
pub use middleware::{REQUEST_ID_HEADER, RateLimitSlot, RequestId};
pub use openapi::ApiDoc;
pub use state::{AppContext, AppState, EdgeMetrics, HttpSettings, WebhookEdge};

use crate::error::ProblemType as P;
use crate::routes::{
    api_keys, audit, auth, docs, health, instances, plugins, problems, sandbox, sessions, subscriptions, usage,
    webhooks,
};

async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

async fn route_not_found() -> ApiError {
    ApiError::Problem(&P::ROUTE_NOT_FOUND, "no endpoint at this path".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::Problem(&P::METHOD_NOT_ALLOWED, "this endpoint does not accept this method".into())
}

/// Media up to 16 MiB arrives base64-encoded in JSON (4/3 of the bytes) with room for the other fields.
const MAX_SEND_BODY_BYTES: usize = 24 * 1024 * 1024;

/// The whole API.
pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs::page))
        .route(docs::SCRIPT_PATH, get(docs::script))
        .route("/problems/{slug}", get(problems::describe))
        .route("/v1/auth/login", post(auth::login))
        .route("/v1/auth/refresh", post(auth::refresh))
        .route("/v1/auth/logout", post(auth::logout))
        .route("/v1/me", get(auth::me))
        .route("/v1/subscriptions", post(subscriptions::create).get(subscriptions::list))
        .route("/v1/subscriptions/{id}", get(subscriptions::get).patch(subscriptions::update))
        .route("/v1/subscriptions/{id}/activate", post(subscriptions::activate))
        .route("/v1/subscriptions/{id}/deactivate", post(subscriptions::deactivate))
        .route("/v1/subscriptions/{id}/users", post(subscriptions::create_user).get(subscriptions::list_users))
        .route("/v1/users/{id}/activate", post(subscriptions::activate_user))
        .route("/v1/users/{id}/deactivate", post(subscriptions::deactivate_user))
        .route("/v1/users/{id}/password", post(subscriptions::reset_password))
        .route("/v1/instances", post(instances::create).get(instances::list))
        .route("/v1/instances/{id}", get(instances::get).patch(instances::update).delete(instances::delete))
        .route("/v1/instances/{id}/status", get(instances::status))
        .route("/v1/instances/{id}/api-keys", post(api_keys::create).get(api_keys::list))
        .route("/v1/instances/{id}/api-keys/{key_id}", get(api_keys::get).delete(api_keys::delete))
        .route("/v1/instances/{id}/api-keys/{key_id}/revoke", post(api_keys::revoke))
        .route("/v1/instances/{id}/api-keys/{key_id}/rotate", post(api_keys::rotate))
        .route("/v1/audit-log", get(audit::list))
        .route("/v1/subscriptions/{id}/usage", get(usage::subscription_usage))
        .route("/v1/instances/{id}/usage", get(usage::instance_usage))
        .route("/v1/instances/{id}/stats", get(usage::instance_stats))
        .route("/v1/key", get(usage::key_self))
        .route("/v1/instances/{id}/connect", post(sessions::connect))
        .route("/v1/instances/{id}/restart", post(sessions::restart))
        .route("/v1/instances/{id}/logout", post(sessions::logout))
        .route("/v1/instances/{id}/qr", get(sessions::qr))
        .route("/v1/instances/{id}/qr.png", get(sessions::qr_png))
        .route("/v1/instances/{id}/pair-code", post(sessions::pair_code))
        .route(
            "/v1/instances/{id}/messages",
            post(sessions::send).layer(DefaultBodyLimit::max(MAX_SEND_BODY_BYTES)).get(sessions::list_messages),
        )
        .route("/v1/instances/{id}/messages/{message_id}", get(sessions::get_message))
        .route("/v1/instances/{id}/chats/{chat}/read", post(sessions::mark_read))
        .route("/v1/instances/{id}/chats/{chat}/presence", post(sessions::presence))
        .route("/v1/instances/{id}/contacts", get(sessions::list_contacts))
        .route("/v1/instances/{id}/contacts/{contact_id}", get(sessions::get_contact))
        .route("/v1/instances/{id}/contacts/{contact_id}/block", post(sessions::block))
        .route("/v1/instances/{id}/contacts/{contact_id}/unblock", post(sessions::unblock))
        .route("/v1/instances/{id}/groups", get(sessions::groups))
        .route("/v1/instances/{id}/events", get(sessions::events))
        .route("/v1/instances/{id}/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/v1/instances/{id}/webhooks/{webhook_id}",
            get(webhooks::get).patch(webhooks::update).delete(webhooks::delete),
        )
        .route("/v1/instances/{id}/webhooks/{webhook_id}/rotate-secret", post(webhooks::rotate_secret))
        .route("/v1/instances/{id}/webhooks/{webhook_id}/test", post(webhooks::test))
        .route("/v1/instances/{id}/webhooks/{webhook_id}/replay", post(webhooks::replay_range))
        .route("/v1/instances/{id}/webhooks/{webhook_id}/deliveries", get(webhooks::deliveries))
        .route("/v1/instances/{id}/webhooks/{webhook_id}/deliveries/{delivery_id}", get(webhooks::delivery))
        .route("/v1/instances/{id}/webhooks/{webhook_id}/deliveries/{delivery_id}/replay", post(webhooks::replay))
        .route("/v1/plugins", post(plugins::create).get(plugins::list))
        .route("/v1/plugins/{id}", get(plugins::get).delete(plugins::delete))
        .route(
            "/v1/plugins/{id}/versions",
            post(plugins::upload)
                .layer(DefaultBodyLimit::max(plugins::MAX_PLUGIN_UPLOAD_BYTES))
                .get(plugins::list_versions),
        )
        .route("/v1/plugins/{id}/versions/{version}/activate", post(plugins::activate))
        .route("/v1/instances/{id}/plugins", post(plugins::bind).get(plugins::list_bindings))
        .route(
            "/v1/instances/{id}/plugins/{binding_id}",
            get(plugins::get_binding).patch(plugins::update_binding).delete(plugins::unbind),
        )
        .route("/v1/instances/{id}/plugins/{binding_id}/logs", get(plugins::logs))
        .route("/v1/sandbox/instances/{id}/scan", post(sandbox::scan))
        .route("/v1/sandbox/instances/{id}/inbound", post(sandbox::inbound))
        .route("/v1/sandbox/instances/{id}/drop", post(sandbox::drop_connection))
        .route("/v1/sandbox/instances/{id}/unlink", post(sandbox::unlink))
        .route("/v1/sandbox/instances/{id}/replace", post(sandbox::replace))
        .route("/v1/sandbox/groups", post(sandbox::create_group))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, settings.request_timeout))
        .layer(axum::middleware::from_fn(middleware::request_context))
        .with_state(state)
}
