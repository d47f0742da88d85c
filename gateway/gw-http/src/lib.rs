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
pub use middleware::{MAX_HEADER_BYTES, MAX_URI_BYTES, REQUEST_ID_HEADER, RateLimitSlot, RequestId};
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
    let routes = Router::new()
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
