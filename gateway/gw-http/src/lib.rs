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

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;
use utoipa_scalar::{Scalar, Servable};

pub use error::{ApiError, ProblemType};
pub use middleware::{REQUEST_ID_HEADER, RateLimitSlot, RequestId};
pub use openapi::ApiDoc;
pub use state::{AppContext, AppState, EdgeMetrics, HttpSettings, WebhookEdge};

use crate::error::ProblemType as P;
use crate::routes::{
    api_keys, audit, auth, health, instances, plugins, problems, sandbox, sessions, subscriptions, usage, webhooks,
};

async fn openapi_json(State(document): State<Arc<OpenApiJson>>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document.0.clone()).into_response()
}

/// The document, serialised once when the router is built.
#[derive(Debug)]
struct OpenApiJson(Bytes);

async fn route_not_found() -> ApiError {
    ApiError::Problem(&P::ROUTE_NOT_FOUND, "no endpoint at this path".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::Problem(&P::METHOD_NOT_ALLOWED, "this endpoint does not accept this method".into())
}

/// Media up to 16 MiB arrives base64-encoded in JSON (4/3 of the bytes) with room for the other fields.
const MAX_SEND_BODY_BYTES: usize = 24 * 1024 * 1024;

/// Every documented endpoint: the router and the OpenAPI document are built from this one declaration (each
/// handler's `#[utoipa::path]` gives both its route and its operation), so neither can list a route the other
/// lacks. Handlers of one path share a `routes!` call; a handler needing its own layer gets a call of its own.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::BaseDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(problems::describe))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(subscriptions::create, subscriptions::list))
        .routes(routes!(subscriptions::get, subscriptions::update))
        .routes(routes!(subscriptions::activate))
        .routes(routes!(subscriptions::deactivate))
        .routes(routes!(subscriptions::create_user, subscriptions::list_users))
        .routes(routes!(subscriptions::activate_user))
        .routes(routes!(subscriptions::deactivate_user))
        .routes(routes!(subscriptions::reset_password))
        .routes(routes!(instances::create, instances::list))
        .routes(routes!(instances::get, instances::update, instances::delete))
        .routes(routes!(instances::status))
        .routes(routes!(api_keys::create, api_keys::list))
        .routes(routes!(api_keys::get, api_keys::delete))
        .routes(routes!(api_keys::revoke))
        .routes(routes!(api_keys::rotate))
        .routes(routes!(audit::list))
        .routes(routes!(usage::subscription_usage))
        .routes(routes!(usage::instance_usage))
        .routes(routes!(usage::instance_stats))
        .routes(routes!(usage::key_self))
        .routes(routes!(sessions::connect))
        .routes(routes!(sessions::restart))
        .routes(routes!(sessions::logout))
        .routes(routes!(sessions::qr))
        .routes(routes!(sessions::qr_png))
        .routes(routes!(sessions::pair_code))
        .routes(routes!(sessions::send).layer(DefaultBodyLimit::max(MAX_SEND_BODY_BYTES)))
        .routes(routes!(sessions::list_messages))
        .routes(routes!(sessions::get_message))
        .routes(routes!(sessions::mark_read))
        .routes(routes!(sessions::presence))
        .routes(routes!(sessions::list_contacts))
        .routes(routes!(sessions::get_contact))
        .routes(routes!(sessions::block))
        .routes(routes!(sessions::unblock))
        .routes(routes!(sessions::groups))
        .routes(routes!(sessions::events))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::test))
        .routes(routes!(webhooks::replay_range))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::delivery))
        .routes(routes!(webhooks::replay))
        .routes(routes!(plugins::create, plugins::list))
        .routes(routes!(plugins::get, plugins::delete))
        .routes(routes!(plugins::upload).layer(DefaultBodyLimit::max(plugins::MAX_PLUGIN_UPLOAD_BYTES)))
        .routes(routes!(plugins::list_versions))
        .routes(routes!(plugins::activate))
        .routes(routes!(plugins::bind, plugins::list_bindings))
        .routes(routes!(plugins::get_binding, plugins::update_binding, plugins::unbind))
        .routes(routes!(plugins::logs))
        .routes(routes!(sandbox::scan))
        .routes(routes!(sandbox::inbound))
        .routes(routes!(sandbox::drop_connection))
        .routes(routes!(sandbox::unlink))
        .routes(routes!(sandbox::replace))
        .routes(routes!(sandbox::create_group))
}

/// The API's routes (without state or the outer layers) and its complete OpenAPI document.
pub(crate) fn routes_and_document() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut document) = api_routes().split_for_parts();
    openapi::complete(&mut document);
    (routes, document)
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    let (routes, document) = routes_and_document();
    let json = serde_json::to_vec(&document).unwrap_or_default();
    let document_route =
        Router::new().route("/openapi.json", get(openapi_json)).with_state(Arc::new(OpenApiJson(json.into())));
    routes
        .merge(document_route)
        .merge(Scalar::with_url("/docs", ApiDoc::openapi()))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, settings.request_timeout))
        .layer(axum::middleware::from_fn(middleware::request_context))
        .with_state(state)
}
