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

pub use error::{ApiError, ProblemType};
pub use middleware::{MAX_HEADER_BYTES, MAX_URI_BYTES, REQUEST_ID_HEADER, RateLimitSlot, RequestId};
pub use openapi::ApiDoc;
pub use state::{AppContext, AppState, EdgeMetrics, HttpSettings};

use crate::error::ProblemType as P;
use crate::routes::{
    api_keys, audit, auth, cluster, docs, health, instances, numbers, plugins, problems, sandbox, sessions,
    subscriptions, usage, webhooks,
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
        .routes(routes!(cluster::nodes))
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
        .routes(routes!(numbers::check))
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
        .routes(routes!(sandbox::deliveries))
        .routes(routes!(sandbox::set_on_whatsapp))
}

/// The API's routes (without state or the outer layers) and its complete OpenAPI document.
pub(crate) fn routes_and_document() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut document) = api_routes().split_for_parts();
    openapi::complete(&mut document);
    (routes, document)
}

/// The body limit of a route: the two that take large bodies, otherwise the configured default. The request
/// middleware refuses a declared `Content-Length` above it at once (a 413 before any byte of the body is read,
/// instead of a 408 after waiting for bytes that will never be accepted); `DefaultBodyLimit` on the same routes
/// bounds bodies that declare no length.
fn body_limit(method: &axum::http::Method, route: Option<&str>, default: usize) -> usize {
    match (method, route) {
        (&axum::http::Method::POST, Some("/v1/instances/{id}/messages")) => MAX_SEND_BODY_BYTES,
        (&axum::http::Method::POST, Some("/v1/plugins/{id}/versions")) => plugins::MAX_PLUGIN_UPLOAD_BYTES,
        _ => default,
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    let (routes, document) = routes_and_document();
    let json = serde_json::to_vec(&document).unwrap_or_default();
    let document_route =
        Router::new().route("/openapi.json", get(openapi_json)).with_state(Arc::new(OpenApiJson(json.into())));
    let routes = routes
        .merge(document_route)
        .route("/docs", get(docs::page))
        .route(docs::SCRIPT_PATH, get(docs::script))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed);
    with_edge_layers(routes, &settings).with_state(state)
}

/// The layers every route is served through, outermost last: the request context (request id, span, oversized
/// declared bodies, problem bodies, `Cache-Control`), the panic catcher, the request timeout and the body limit.
fn with_edge_layers<S: Clone + Send + Sync + 'static>(routes: Router<S>, settings: &HttpSettings) -> Router<S> {
    routes
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, settings.request_timeout))
        // Inside the request context, so a panic's 500 gets the request id and problem body like any error.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            middleware::Limits { body_limit, default_body_bytes: settings.max_body_bytes },
            middleware::request_context,
        ))
}

#[cfg(test)]
mod tests {
    //! The edge's layer stack on a router of test routes: what every real route gets.

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use axum::routing::{get, post};
    use axum::{Router, response::IntoResponse};
    use tower::ServiceExt as _;

    use super::{HttpSettings, with_edge_layers};

    async fn boom() -> &'static str {
        panic!("a handler bug")
    }

    fn app() -> Router {
        let routes = Router::new()
            .route("/boom", get(boom))
            .route("/echo", post(|body: axum::body::Bytes| async move { body.len().to_string() }))
            .route(
                "/cached",
                get(|| async { ([(header::CACHE_CONTROL, "public, max-age=60")], "ok").into_response() }),
            );
        with_edge_layers(routes, &HttpSettings { max_body_bytes: 1024, ..HttpSettings::default() })
    }

    async fn body_json(response: axum::response::Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        serde_json::from_slice(&bytes).expect("json body")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_a_500_problem_with_the_request_id() {
        let request = Request::get("/boom").header("x-request-id", "req-7").body(Body::empty()).expect("request");
        let response = app().oneshot(request).await.expect("a response, not a dropped connection");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
        let body = body_json(response).await;
        assert_eq!((body["type"].as_str(), body["request_id"].as_str()), (Some("/problems/internal"), Some("req-7")));
        assert!(!body.to_string().contains("a handler bug"), "the panic message is logged, not sent: {body}");
    }

    #[tokio::test]
    async fn a_declared_body_over_the_limit_is_refused_before_it_is_read() {
        // The body never arrives: a server that waited for it would answer 408 after the request timeout.
        let pending = Body::from_stream(futures::stream::pending::<Result<axum::body::Bytes, std::io::Error>>());
        let request =
            Request::post("/echo").header(header::CONTENT_LENGTH, "1000000000000").body(pending).expect("request");
        let response = app().oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = body_json(response).await;
        assert_eq!(body["type"], "/problems/payload-too-large");

        let within = Request::post("/echo").header(header::CONTENT_LENGTH, "3").body(Body::from("abc")).expect("req");
        assert_eq!(app().oneshot(within).await.expect("response").status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn an_oversized_head_is_a_414_or_431_problem() {
        let long = format!("/echo?q={}", "x".repeat(super::MAX_URI_BYTES));
        let response = app().oneshot(Request::post(long).body(Body::empty()).expect("req")).await.expect("resp");
        assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
        assert_eq!(body_json(response).await["type"], "/problems/uri-too-long");

        let mut request = Request::post("/echo").body(Body::empty()).expect("req");
        for i in 0..9 {
            let value = "v".repeat(8 * 1024).parse().expect("value");
            request.headers_mut().insert(axum::http::HeaderName::try_from(format!("x-big-{i}")).expect("name"), value);
        }
        let response = app().oneshot(request).await.expect("resp");
        assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(body_json(response).await["type"], "/problems/headers-too-large");
    }

    #[tokio::test]
    async fn responses_are_not_stored_by_caches_unless_a_route_says_otherwise() {
        let within = Request::post("/echo").body(Body::from("abc")).expect("request");
        let response = app().oneshot(within).await.expect("response");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let missing = app().oneshot(Request::get("/nowhere").body(Body::empty()).expect("req")).await.expect("resp");
        assert_eq!(missing.headers()[header::CACHE_CONTROL], "no-store", "errors too");
        let cached = app().oneshot(Request::get("/cached").body(Body::empty()).expect("req")).await.expect("resp");
        assert_eq!(cached.headers()[header::CACHE_CONTROL], "public, max-age=60");
    }
}
