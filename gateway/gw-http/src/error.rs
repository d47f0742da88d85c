//! Every error the API answers with, mapped once to RFC 9457 `application/problem+json`.
//!
//! Handlers return [`ApiError`]; its `IntoResponse` puts a [`Problem`] into the response's extensions, and the
//! request middleware (which knows the request id and path) writes the body and logs internal causes. So the body
//! always carries `instance` and `request_id`, and no handler formats an error itself.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gw_accounts::{AccountError, FieldError, TokenError};
use gw_store::{Limit, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

/// A problem type: its stable slug (the `type` is `/problems/<slug>`), title, status and description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemType {
    pub slug: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub description: &'static str,
}

macro_rules! problem_types {
    ($($name:ident = ($slug:literal, $status:literal, $title:literal, $description:literal);)+) => {
        impl ProblemType {
            $(pub const $name: ProblemType = ProblemType { slug: $slug, title: $title, status: $status, description: $description };)+
            /// Every problem type the API uses.
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$name),+];
        }
    };
}

problem_types! {
    NOT_FOUND = ("not-found", 404, "Not found", "No such resource, or not one the caller may see. Another tenant's resources are reported this way too, so ids do not leak.");
    ROUTE_NOT_FOUND = ("route-not-found", 404, "No such endpoint", "No endpoint at this path.");
    METHOD_NOT_ALLOWED = ("method-not-allowed", 405, "Method not allowed", "The endpoint exists but not for this HTTP method.");
    CONFLICT = ("conflict", 409, "Conflict", "The request would duplicate a unique value (the `key` member names which).");
    IN_USE = ("in-use", 409, "Still in use", "The resource is referenced by others and cannot be deleted; deactivate it instead.");
    INSTANCE_LIMIT = ("instance-limit-reached", 409, "Instance limit reached", "The subscription has as many instances as its tier allows.");
    QUOTA_EXCEEDED = ("quota-exceeded", 429, "Quota exceeded", "The subscription's monthly message allowance is used up until the period resets.");
    INACTIVE = ("inactive", 409, "Inactive", "The subscription is deactivated.");
    VALIDATION = ("validation", 422, "Invalid request", "One or more fields are not acceptable; `errors` lists them.");
    MALFORMED_JSON = ("malformed-json", 400, "Malformed JSON", "The body is not valid JSON.");
    UNSUPPORTED_MEDIA_TYPE = ("unsupported-media-type", 415, "Unsupported media type", "The body must be `application/json`.");
    PAYLOAD_TOO_LARGE = ("payload-too-large", 413, "Payload too large", "The body is larger than the server accepts.");
    URI_TOO_LONG = ("uri-too-long", 414, "URI too long", "The request's path and query are longer than the server accepts (8 KiB).");
    HEADERS_TOO_LARGE = ("headers-too-large", 431, "Request headers too large", "The request's headers are larger than the server accepts (64 KiB in all).");
    BAD_REQUEST = ("bad-request", 400, "Bad request", "The request's path or query is not acceptable.");
    INVALID_CURSOR = ("invalid-cursor", 400, "Invalid cursor", "The pagination cursor was not issued by this API.");
    UNAUTHENTICATED = ("unauthenticated", 401, "Authentication required", "Send `Authorization: Bearer <access token>`.");
    INVALID_TOKEN = ("invalid-token", 401, "Invalid access token", "The access token is malformed, forged, for another audience or issuer, or uses an algorithm other than HS256.");
    TOKEN_EXPIRED = ("token-expired", 401, "Access token expired", "Get a new one with the refresh token.");
    INVALID_CREDENTIALS = ("invalid-credentials", 401, "Invalid credentials", "Unknown email or wrong password.");
    ACCOUNT_INACTIVE = ("account-inactive", 401, "Account inactive", "The user or their subscription is deactivated.");
    INVALID_REFRESH_TOKEN = ("invalid-refresh-token", 401, "Invalid refresh token", "The refresh token is unknown, expired or revoked.");
    REFRESH_TOKEN_REUSED = ("refresh-token-reused", 401, "Refresh token reused", "The refresh token had already been used; every session descended from its sign-in is revoked. Sign in again.");
    INVALID_API_KEY = ("invalid-api-key", 401, "Invalid API key", "Not a key of this gateway: unknown, or mistyped (its checksum does not match, so it was refused without a look-up).");
    API_KEY_REVOKED = ("api-key-revoked", 401, "API key revoked", "The key was revoked; create or rotate a key.");
    API_KEY_EXPIRED = ("api-key-expired", 401, "API key expired", "The key's expiry (or its rotation grace period) has passed.");
    API_KEY_INACTIVE = ("api-key-inactive", 401, "API key inactive", "The key's instance or subscription is deactivated.");
    INSUFFICIENT_SCOPE = ("insufficient-scope", 403, "Insufficient scope", "The API key lacks the scope this endpoint needs.");
    RATE_LIMITED = ("rate-limited", 429, "Rate limited", "The key's requests-per-minute limit is reached; retry after the time in `Retry-After`.");
    FORBIDDEN = ("forbidden", 403, "Forbidden", "The caller's role does not allow this action.");
    TOO_MANY_ATTEMPTS = ("too-many-attempts", 429, "Too many attempts", "Too many failed sign-ins; retry after the time in `Retry-After`.");
    TIMEOUT = ("timeout", 408, "Request timeout", "The request took longer than the server allows.");
    UNAVAILABLE = ("unavailable", 503, "Service unavailable", "A dependency (the database) is unreachable; retry later.");
    INSTANCE_NOT_CONNECTED = ("instance-not-connected", 409, "Instance not connected", "The instance is not connected (the detail names its status); connect or pair it first.");
    NOT_PAIRING = ("not-pairing", 409, "Not waiting for pairing", "There is no QR code or pairing code: the instance is not waiting to be paired.");
    MEDIA_TOO_LARGE = ("media-too-large", 413, "Media too large", "The media exceeds its kind's size limit (the book's API tour: sending).");
    UNSUPPORTED_MEDIA = ("unsupported-media", 415, "Unsupported media", "The media's MIME type is not accepted for its kind (the book's API tour: sending).");
    IDEMPOTENCY_KEY_REUSED = ("idempotency-key-reused", 422, "Idempotency key reused", "This Idempotency-Key was first used with a different request; use a new key for a new request.");
    DRIVER_UNAVAILABLE = ("driver-unavailable", 503, "Driver unavailable", "This node has no driver of the instance's kind configured.");
    DRIVER_ERROR = ("driver-error", 502, "WhatsApp refused", "The WhatsApp connection refused or failed the command; the detail says why.");
    INVALID_WEBHOOK_URL = ("invalid-webhook-url", 422, "Webhook URL refused", "The webhook URL is not acceptable: the detail says why (scheme, length, user info, or an address that is loopback, private, link-local, cloud metadata, multicast or reserved). See the book's webhooks guide.");
    WEBHOOKS_DISABLED = ("webhooks-disabled", 503, "Webhook delivery disabled", "Webhook delivery is switched off on this node (`[webhooks] enabled = false`); endpoints can be managed, not fired.");
    PLUGIN_TOO_LARGE = ("plugin-too-large", 413, "Plugin too large", "The uploaded component is larger than the subscription's tier allows (`plugin_max_module_bytes`); the detail names the limit.");
    INVALID_PLUGIN = ("invalid-plugin", 422, "Invalid plugin", "The upload is not an acceptable plugin. `kind` says why: `invalid_component` (not a WebAssembly component), `forbidden_import` (it imports something the plugin world does not offer: network, files, ...), `wrong_world` (it does not export the plugin world), `smoke_test_failed` (it trapped or ran out of limits when tried); the detail says more.");
    PLUGIN_LIMIT = ("plugin-limit-reached", 409, "Plugin limit reached", "The subscription has as many plugins as its tier allows (`plugin_max_count`).");
    PLUGINS_UNAVAILABLE = ("plugins-unavailable", 503, "Plugins unavailable", "This node runs no plugin host (`plugins.enabled = false`), so uploads cannot be checked.");
    SANDBOX_DISABLED = ("sandbox-disabled", 404, "Sandbox disabled", "The sandbox control API is disabled on this node.");
    INTERNAL = ("internal", 500, "Internal error", "Something went wrong on the server; the request id helps operators find it.");
}

impl ProblemType {
    pub fn type_uri(&self) -> String {
        format!("/problems/{}", self.slug)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn by_slug(slug: &str) -> Option<&'static ProblemType> {
        Self::ALL.iter().find(|p| p.slug == slug)
    }

    /// The generic problem for a status some layer produced without a body (timeouts, say).
    pub fn for_status(status: StatusCode) -> &'static ProblemType {
        match status.as_u16() {
            404 => &Self::ROUTE_NOT_FOUND,
            405 => &Self::METHOD_NOT_ALLOWED,
            408 => &Self::TIMEOUT,
            413 => &Self::PAYLOAD_TOO_LARGE,
            414 => &Self::URI_TOO_LONG,
            415 => &Self::UNSUPPORTED_MEDIA_TYPE,
            431 => &Self::HEADERS_TOO_LARGE,
            503 => &Self::UNAVAILABLE,
            s if s < 500 => &Self::BAD_REQUEST,
            _ => &Self::INTERNAL,
        }
    }
}

/// One field that failed validation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

/// The RFC 9457 body of every error.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody {
    /// A stable URI reference naming the problem type, e.g. `/problems/not-found`.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request path.
    pub instance: String,
    pub request_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
    /// For conflicts: which unique value is taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// For `invalid-plugin`: why the upload was refused (`too_large` has a problem type of its own).
    #[serde(rename = "kind", skip_serializing_if = "Option::is_none")]
    pub rejection: Option<gw_core::RejectionKind>,
}

/// A problem waiting for the middleware to finish it, plus what is logged but never sent.
#[derive(Debug, Clone)]
pub struct Problem {
    pub kind: &'static ProblemType,
    pub detail: String,
    pub errors: Vec<FieldProblem>,
    pub key: Option<String>,
    pub rejection: Option<gw_core::RejectionKind>,
    pub internal: Option<String>,
}

/// The edge's error type. Each variant has one status and one problem type.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{1}")]
    Problem(&'static ProblemType, String),
    #[error("validation failed")]
    Validation(Vec<FieldProblem>),
    #[error("{entity} already exists")]
    Conflict { entity: &'static str, key: &'static str },
    #[error("too many attempts")]
    Throttled { retry_after: Duration },
    #[error("rate limited")]
    RateLimited { retry_after: Duration },
    #[error("{detail}")]
    QuotaExceeded { detail: String, retry_after: Duration },
    /// A failure whose cause is logged and not shown.
    #[error("internal: {0}")]
    Internal(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The node running the instance's session did not answer a forwarded command in time.
    #[error("the node running this instance did not answer in time")]
    OwnerUnavailable,
    /// The plugin host refused an upload.
    #[error("plugin rejected: {0}")]
    PluginRejected(gw_core::PluginRejection),
}

impl ApiError {
    pub fn not_found(what: &str) -> Self {
        ApiError::Problem(&ProblemType::NOT_FOUND, format!("{what} not found"))
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::Problem(&ProblemType::BAD_REQUEST, detail.into())
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldProblem { field: field.into(), message: message.into() }])
    }

    fn into_problem(self) -> (Problem, Option<Duration>) {
        let simple = |kind: &'static ProblemType, detail: String| Problem {
            kind,
            detail,
            errors: Vec::new(),
            key: None,
            rejection: None,
            internal: None,
        };
        match self {
            ApiError::Problem(kind, detail) => (simple(kind, detail), None),
            ApiError::Validation(errors) => {
                let detail =
                    errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
                (Problem { errors, ..simple(&ProblemType::VALIDATION, detail) }, None)
            }
            ApiError::Conflict { entity, key } => (
                Problem {
                    key: Some(key.to_owned()),
                    ..simple(
                        &ProblemType::CONFLICT,
                        format!("a {entity} with this {} already exists", key.replace('_', " ")),
                    )
                },
                None,
            ),
            ApiError::Throttled { retry_after } => (
                simple(&ProblemType::TOO_MANY_ATTEMPTS, format!("retry in {} seconds", retry_after.as_secs().max(1))),
                Some(retry_after),
            ),
            ApiError::QuotaExceeded { detail, retry_after } => {
                (simple(&ProblemType::QUOTA_EXCEEDED, detail), Some(retry_after))
            }
            ApiError::RateLimited { retry_after } => (
                simple(&ProblemType::RATE_LIMITED, format!("retry in {} seconds", retry_after.as_secs().max(1))),
                Some(retry_after),
            ),
            ApiError::Internal(cause) => (
                Problem {
                    internal: Some(cause),
                    ..simple(&ProblemType::INTERNAL, "an internal error occurred".into())
                },
                None,
            ),
            ApiError::PluginRejected(rejection) if rejection.kind == gw_core::RejectionKind::TooLarge => {
                (simple(&ProblemType::PLUGIN_TOO_LARGE, rejection.message), None)
            }
            ApiError::PluginRejected(rejection) => (
                Problem { rejection: Some(rejection.kind), ..simple(&ProblemType::INVALID_PLUGIN, rejection.message) },
                None,
            ),
            ApiError::Unavailable(cause) => (
                Problem {
                    internal: Some(cause),
                    ..simple(&ProblemType::UNAVAILABLE, "the database is unavailable; retry later".into())
                },
                Some(Duration::from_secs(5)),
            ),
            ApiError::OwnerUnavailable => (
                simple(
                    &ProblemType::UNAVAILABLE,
                    "the node running this instance did not answer in time; the command is kept and may still be \
                     carried out; retry later"
                        .into(),
                ),
                Some(Duration::from_secs(2)),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (problem, retry_after) = self.into_problem();
        let mut response = problem.kind.status_code().into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(wait) = retry_after
            && let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response.extensions_mut().insert(problem);
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { entity } => ApiError::not_found(entity),
            StoreError::Conflict { entity, key } => ApiError::Conflict { entity, key: key.as_str() },
            StoreError::InUse { entity, referenced_by } => {
                ApiError::Problem(&ProblemType::IN_USE, format!("the {entity} is still used by {referenced_by}"))
            }
            StoreError::LimitReached(Limit::Instances { max }) => ApiError::Problem(
                &ProblemType::INSTANCE_LIMIT,
                format!("the subscription already has its maximum of {max} instances"),
            ),
            StoreError::LimitReached(Limit::MonthlyMessages { max }) => ApiError::Problem(
                &ProblemType::QUOTA_EXCEEDED,
                format!("the monthly allowance of {max} messages is used up"),
            ),
            StoreError::LimitReached(Limit::Plugins { max }) => ApiError::Problem(
                &ProblemType::PLUGIN_LIMIT,
                format!("the subscription already has its maximum of {max} plugins"),
            ),
            StoreError::LimitReached(Limit::PluginKv { what, max }) => {
                ApiError::invalid(what, format!("a plugin's key-value store allows at most {max}"))
            }
            StoreError::Inactive { entity } => {
                ApiError::Problem(&ProblemType::INACTIVE, format!("the {entity} is deactivated"))
            }
            StoreError::InvalidCursor => {
                ApiError::Problem(&ProblemType::INVALID_CURSOR, "invalid pagination cursor".into())
            }
            StoreError::Unavailable(source) => ApiError::Unavailable(source.to_string()),
            // The instance moved to another node mid-request: a retry reaches the new owner's state.
            fenced @ StoreError::Fenced { .. } => ApiError::Unavailable(fenced.to_string()),
            err @ (StoreError::Corrupt { .. } | StoreError::Backend(_)) => {
                ApiError::Internal(format!("{err}: {err:?}"))
            }
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        let problem = |kind: &'static ProblemType, e: &AccountError| ApiError::Problem(kind, e.to_string());
        match err {
            AccountError::InvalidCredentials => problem(&ProblemType::INVALID_CREDENTIALS, &err),
            AccountError::Throttled { retry_after } => ApiError::Throttled { retry_after },
            AccountError::InvalidToken(TokenError::Expired) => problem(&ProblemType::TOKEN_EXPIRED, &err),
            AccountError::InvalidToken(TokenError::Signing) => ApiError::Internal(err.to_string()),
            AccountError::InvalidToken(_) => problem(&ProblemType::INVALID_TOKEN, &err),
            AccountError::InvalidRefreshToken => problem(&ProblemType::INVALID_REFRESH_TOKEN, &err),
            AccountError::RefreshTokenReused => problem(&ProblemType::REFRESH_TOKEN_REUSED, &err),
            AccountError::AccountInactive => problem(&ProblemType::ACCOUNT_INACTIVE, &err),
            AccountError::Forbidden => problem(&ProblemType::FORBIDDEN, &err),
            AccountError::InvalidApiKey => problem(&ProblemType::INVALID_API_KEY, &err),
            AccountError::ApiKeyRevoked => problem(&ProblemType::API_KEY_REVOKED, &err),
            AccountError::ApiKeyExpired => problem(&ProblemType::API_KEY_EXPIRED, &err),
            AccountError::ApiKeyInactive => problem(&ProblemType::API_KEY_INACTIVE, &err),
            AccountError::InsufficientScope(_) => problem(&ProblemType::INSUFFICIENT_SCOPE, &err),
            AccountError::Validation(fields) => ApiError::Validation(
                fields
                    .into_iter()
                    .map(|FieldError { field, message }| FieldProblem { field: field.into(), message })
                    .collect(),
            ),
            AccountError::Store(store) => store.into(),
            AccountError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<gw_sessions::EngineError> for ApiError {
    fn from(err: gw_sessions::EngineError) -> Self {
        use gw_sessions::{EngineError, MediaRefused, QuotaError};
        let detail = err.to_string();
        match err {
            EngineError::NotConnected { .. } => ApiError::Problem(&ProblemType::INSTANCE_NOT_CONNECTED, detail),
            EngineError::Invalid(field) => ApiError::invalid(field.field, field.reason),
            EngineError::Media(MediaRefused::TooLarge { .. } | MediaRefused::TooLargeAtUrl { .. }) => {
                ApiError::Problem(&ProblemType::MEDIA_TOO_LARGE, detail)
            }
            EngineError::Media(MediaRefused::UnsupportedType { .. }) => {
                ApiError::Problem(&ProblemType::UNSUPPORTED_MEDIA, detail)
            }
            EngineError::Quota(QuotaError::Exceeded { resets_at, .. }) => {
                let wait =
                    (resets_at.as_datetime() - gw_core::Timestamp::now().as_datetime()).to_std().unwrap_or_default();
                ApiError::QuotaExceeded { detail, retry_after: wait }
            }
            EngineError::Quota(QuotaError::Inactive) => ApiError::Problem(&ProblemType::INACTIVE, detail),
            EngineError::IdempotencyKeyReused => ApiError::Problem(&ProblemType::IDEMPOTENCY_KEY_REUSED, detail),
            EngineError::NoDriver(_) => ApiError::Problem(&ProblemType::DRIVER_UNAVAILABLE, detail),
            EngineError::Driver(gw_sessions::DriverError::NotConnected) => {
                ApiError::Problem(&ProblemType::INSTANCE_NOT_CONNECTED, detail)
            }
            EngineError::Driver(gw_sessions::DriverError::InvalidRecipient(reason)) => ApiError::invalid("jid", reason),
            EngineError::Driver(_) => ApiError::Problem(&ProblemType::DRIVER_ERROR, detail),
            EngineError::Store(e) => e.into(),
            // Another node runs the instance and did not answer: retrying reaches it (or its successor).
            EngineError::OwnerUnavailable => ApiError::OwnerUnavailable,
        }
    }
}

impl From<gw_sessions::InvalidField> for ApiError {
    fn from(err: gw_sessions::InvalidField) -> Self {
        ApiError::invalid(err.field, err.reason)
    }
}

impl From<gw_services::AccessError> for ApiError {
    fn from(err: gw_services::AccessError) -> Self {
        use gw_services::AccessError;
        match err {
            AccessError::NotFound(what) => ApiError::not_found(what),
            AccessError::InsufficientScope(_) => ApiError::Problem(&ProblemType::INSUFFICIENT_SCOPE, err.to_string()),
            AccessError::Account(e) => e.into(),
            AccessError::Store(e) => e.into(),
        }
    }
}

impl From<gw_services::MessagingError> for ApiError {
    fn from(err: gw_services::MessagingError) -> Self {
        use gw_services::MessagingError;
        match err {
            MessagingError::Access(e) => e.into(),
            MessagingError::Engine(e) => e.into(),
            MessagingError::Store(e) => e.into(),
            MessagingError::Invalid(e) => e.into(),
            MessagingError::NotPairing(_) => ApiError::Problem(&ProblemType::NOT_PAIRING, err.to_string()),
        }
    }
}

impl From<gw_services::WebhookError> for ApiError {
    fn from(err: gw_services::WebhookError) -> Self {
        use gw_services::WebhookError;
        match err {
            WebhookError::Access(e) => e.into(),
            WebhookError::Store(e) => e.into(),
            WebhookError::UrlRefused(_) => ApiError::Problem(&ProblemType::INVALID_WEBHOOK_URL, err.to_string()),
            WebhookError::Invalid(FieldError { field, message }) => ApiError::invalid(field, message),
            WebhookError::Disabled => ApiError::Problem(&ProblemType::WEBHOOKS_DISABLED, err.to_string()),
        }
    }
}

impl From<gw_services::UsageError> for ApiError {
    fn from(err: gw_services::UsageError) -> Self {
        match err {
            gw_services::UsageError::Access(e) => e.into(),
            gw_services::UsageError::Store(e) => e.into(),
        }
    }
}

impl From<gw_services::PluginError> for ApiError {
    fn from(err: gw_services::PluginError) -> Self {
        use gw_services::PluginError;
        match err {
            PluginError::Access(e) => e.into(),
            PluginError::Store(e) => e.into(),
            PluginError::NotFound(what) => ApiError::not_found(what),
            PluginError::Invalid(FieldError { field, message }) => ApiError::invalid(field, message),
            PluginError::Unavailable => ApiError::Problem(&ProblemType::PLUGINS_UNAVAILABLE, err.to_string()),
            PluginError::Rejected(rejection) => ApiError::PluginRejected(rejection),
        }
    }
}
