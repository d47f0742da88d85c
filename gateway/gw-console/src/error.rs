//! The console's errors: one enum, each variant a friendly page with its status. A dependency outage is a 503
//! with `Retry-After`; internal causes are logged, never shown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gw_accounts::AccountError;
use gw_services::{AccessError, MessagingError, PluginError, UsageError, WebhookError};
use gw_store::StoreError;
use maud::html;

use crate::layout;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Absent, or another tenant's (the same page either way).
    #[error("not found")]
    NotFound,
    #[error("your role does not allow this")]
    Forbidden,
    /// The request is wrong in a way the user can fix; the message says how.
    #[error("{0}")]
    Invalid(String),
    #[error("the form has expired; reload the page and try again")]
    Csrf,
    #[error("the database is unavailable")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ConsoleError {
    fn status(&self) -> StatusCode {
        match self {
            ConsoleError::NotFound => StatusCode::NOT_FOUND,
            ConsoleError::Forbidden | ConsoleError::Csrf => StatusCode::FORBIDDEN,
            ConsoleError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ConsoleError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the page says.
    fn message(&self) -> String {
        match self {
            ConsoleError::NotFound => "There is nothing here, or it is not yours to see.".into(),
            ConsoleError::Internal(_) => "Something went wrong on our side. It has been logged.".into(),
            ConsoleError::Unavailable => "The database is unavailable; try again in a few seconds.".into(),
            other => capitalised(&other.to_string()),
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        if let ConsoleError::Internal(cause) = &self {
            tracing::error!(%cause, "console request failed");
        }
        let status = self.status();
        // A fragment: htmx swaps it where the form's result goes (see `layout::page`: 4xx/5xx are swapped too).
        let body = html! {
            div.error role="alert" {
                p { strong { (status.canonical_reason().unwrap_or("Error")) } ": " (self.message()) }
                @if matches!(self, ConsoleError::NotFound | ConsoleError::Forbidden) {
                    p { a href="/console/" { "Back to your instances" } }
                }
            }
        };
        let mut response = (status, layout::bare("Console", body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

fn from_store(error: StoreError) -> ConsoleError {
    match error {
        StoreError::NotFound { .. } => ConsoleError::NotFound,
        StoreError::Unavailable(_) => ConsoleError::Unavailable,
        StoreError::Conflict { entity, .. } => ConsoleError::Invalid(format!("that {entity} already exists")),
        StoreError::LimitReached(limit) => ConsoleError::Invalid(format!("limit reached: {limit:?}")),
        StoreError::Inactive { entity } => ConsoleError::Invalid(format!("the {entity} is deactivated")),
        StoreError::InUse { entity, referenced_by } => {
            ConsoleError::Invalid(format!("the {entity} is still used by {referenced_by}"))
        }
        other => ConsoleError::Internal(other.to_string()),
    }
}

impl From<StoreError> for ConsoleError {
    fn from(error: StoreError) -> Self {
        from_store(error)
    }
}

impl From<AccountError> for ConsoleError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Forbidden => ConsoleError::Forbidden,
            AccountError::Store(error) => from_store(error),
            AccountError::Validation(fields) => ConsoleError::Invalid(
                fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; "),
            ),
            AccountError::Internal(cause) => ConsoleError::Internal(cause),
            other => ConsoleError::Invalid(other.to_string()),
        }
    }
}

impl From<AccessError> for ConsoleError {
    fn from(error: AccessError) -> Self {
        match error {
            AccessError::NotFound(_) => ConsoleError::NotFound,
            AccessError::InsufficientScope(_) => ConsoleError::Forbidden,
            AccessError::Account(error) => error.into(),
            AccessError::Store(error) => from_store(error),
        }
    }
}

impl From<MessagingError> for ConsoleError {
    fn from(error: MessagingError) -> Self {
        match error {
            MessagingError::Access(error) => error.into(),
            MessagingError::Store(error) => from_store(error),
            MessagingError::Invalid(invalid) => ConsoleError::Invalid(invalid.to_string()),
            MessagingError::NotPairing(_) => ConsoleError::Invalid(error.to_string()),
            MessagingError::Engine(engine) => ConsoleError::Invalid(engine.to_string()),
        }
    }
}

impl From<WebhookError> for ConsoleError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::Access(error) => error.into(),
            WebhookError::Store(error) => from_store(error),
            other => ConsoleError::Invalid(other.to_string()),
        }
    }
}

impl From<PluginError> for ConsoleError {
    fn from(error: PluginError) -> Self {
        match error {
            PluginError::Access(error) => error.into(),
            PluginError::Store(error) => from_store(error),
            PluginError::NotFound(_) => ConsoleError::NotFound,
            other => ConsoleError::Invalid(other.to_string()),
        }
    }
}

impl From<UsageError> for ConsoleError {
    fn from(error: UsageError) -> Self {
        match error {
            UsageError::Access(error) => error.into(),
            UsageError::Store(error) => from_store(error),
        }
    }
}

pub async fn not_found() -> ConsoleError {
    ConsoleError::NotFound
}

/// A panicking page: logged by the panic hook, answered with the friendly 500.
pub fn panic_page(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ConsoleError::Internal("a console handler panicked".into()).into_response()
}
