//! The web console at `/console/`: server-rendered pages (maud) for tenants and operators, with htmx (vendored,
//! embedded) for the parts that change in place: the live QR code and status, test fires, forms that answer with a
//! fragment.
//!
//! Sign-in uses the existing accounts: the console keeps the API's own access and refresh tokens in HttpOnly,
//! SameSite=Strict cookies and checks a CSRF token on every unsafe request (see `session.rs` and
//! `docs/src/design/console.md`).
//!
//! Architecture invariants: every page calls the domain services (`gw_accounts::Accounts`, `gw_services::*`) with
//! the signed-in [`gw_services::Caller`], never the store or the engine, so the API's permissions and tenant
//! isolation are the console's too; nothing here knows SQL, wasmtime or the API's JSON shapes. Errors are friendly
//! pages; problem+json stays the API's. Every asset is compiled into the binary.

mod assets;
mod error;
mod forms;
mod layout;
mod pages;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use gw_accounts::Accounts;

pub use session::CookiePolicy;

/// What the console's pages call: the same service handles the API's handlers use.
#[derive(Clone)]
pub struct ConsoleState(Arc<ConsoleContext>);

impl std::ops::Deref for ConsoleState {
    type Target = ConsoleContext;

    fn deref(&self) -> &ConsoleContext {
        &self.0
    }
}

pub struct ConsoleContext {
    pub accounts: Arc<Accounts>,
    pub messaging: gw_services::Messaging,
    pub webhooks: gw_services::Webhooks,
    pub plugins: gw_services::Plugins,
    pub usage: gw_services::Usage,
    pub cookies: CookiePolicy,
}

impl ConsoleState {
    pub fn new(context: ConsoleContext) -> Self {
        Self(Arc::new(context))
    }
}

impl std::fmt::Debug for ConsoleContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleContext").field("cookies", &self.cookies).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ConsoleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The largest plugin upload the console reads; the tier's own limit is checked by the service below it.
const MAX_UPLOAD_BYTES: usize = 16 * 1024 * 1024;

/// The console's routes, all under `/console`, to be merged beside the API by the binary (a router of its own, so
/// its layers are not the API's). Pages not found under `/console/` are the console's friendly 404, not a problem.
pub fn router(state: ConsoleState, request_timeout: Duration) -> Router {
    use pages::{admin, auth, instances, keys, plugins, usage, webhooks};
    let pages = Router::new()
        .route("/console", get(instances::index))
        .route("/console/", get(instances::index))
        .route("/console/instances", get(instances::list).post(instances::create))
        .route("/console/instances/{id}", get(instances::show))
        .route("/console/instances/{id}/live", get(instances::live))
        .route("/console/instances/{id}/connect", post(instances::connect))
        .route("/console/instances/{id}/restart", post(instances::restart))
        .route("/console/instances/{id}/logout", post(instances::logout))
        .route("/console/instances/{id}/pair-code", post(instances::pair_code))
        .route("/console/instances/{id}/messages", get(instances::messages).post(instances::send))
        .route("/console/instances/{id}/keys", get(keys::list).post(keys::create))
        .route("/console/instances/{id}/keys/{key}/rotate", post(keys::rotate))
        .route("/console/instances/{id}/keys/{key}/revoke", post(keys::revoke))
        .route("/console/instances/{id}/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/console/instances/{id}/webhooks/{hook}", get(webhooks::show))
        .route("/console/instances/{id}/webhooks/{hook}/test", post(webhooks::test_fire))
        .route("/console/instances/{id}/webhooks/{hook}/deliveries/{delivery}/replay", post(webhooks::replay))
        .route("/console/instances/{id}/plugins", get(plugins::bindings).post(plugins::bind))
        .route("/console/plugins", get(plugins::list).post(plugins::create))
        .route("/console/plugins/{id}", get(plugins::show))
        .route(
            "/console/plugins/{id}/versions",
            post(plugins::upload).layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
        )
        .route("/console/plugins/{id}/activate", post(plugins::activate))
        .route("/console/usage", get(usage::page))
        .route("/console/admin/subscriptions", get(admin::subscriptions))
        .route("/console/admin/subscriptions/{id}/users", get(admin::users))
        .route("/console/admin/audit", get(admin::audit))
        .route("/console/logout", post(auth::logout));
    Router::new()
        .merge(pages)
        .route("/console/login", get(auth::login_page).post(auth::login))
        .route("/console/assets/{name}", get(assets::serve))
        .route("/console/{*rest}", axum::routing::any(error::not_found))
        // Before every handler: a forged request is refused, the signed-in user resolved.
        .layer(axum::middleware::from_fn_with_state(state.clone(), session::csrf_guard))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(error::panic_page))
        .with_state(state)
}
