//! The request middleware: request id, the request's tracing span, and finishing problem+json bodies.

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::error::{ApiError, Problem, ProblemBody, ProblemType};

/// What the request middleware needs to refuse an oversized body before reading it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The body limit of a (method, route template), given the configured default.
    pub body_limit: fn(&Method, Option<&str>, usize) -> usize,
    pub default_body_bytes: usize,
}

/// A handler that panicked: a 500 problem with the request id (the request middleware finishes it), never a
/// dropped connection. The panic message is logged, never sent.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    ApiError::Internal(format!("handler panicked: {message}")).into_response()
}

/// The longest path and query the edge reads. hyper's own limit is far higher (64 KiB) and answers without a body,
/// so the edge's is the one clients meet.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes (names, values and separators) the edge reads; below hyper's read buffer (the binary sets
/// it to 1 MiB) for the same reason.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// A request head larger than the edge accepts: 414 or 431 as problem+json.
fn head_too_large(request: &Request) -> Option<ApiError> {
    let uri = request.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri > MAX_URI_BYTES {
        return Some(ApiError::Problem(
            &ProblemType::URI_TOO_LONG,
            format!("the path and query have {uri} bytes; at most {MAX_URI_BYTES} are accepted"),
        ));
    }
    let headers: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    (headers > MAX_HEADER_BYTES).then(|| {
        ApiError::Problem(
            &ProblemType::HEADERS_TOO_LARGE,
            format!("the headers have {headers} bytes; at most {MAX_HEADER_BYTES} are accepted"),
        )
    })
}

/// A declared body larger than the route accepts. A `Content-Length` hyper could not parse never gets here.
fn declared_too_large(request: &Request, limits: Limits, route: Option<&str>) -> Option<ApiError> {
    let declared: u64 = request.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()?;
    let limit = (limits.body_limit)(request.method(), route, limits.default_body_bytes);
    (declared > limit as u64).then(|| {
        ApiError::Problem(
            &ProblemType::PAYLOAD_TOO_LARGE,
            format!("this endpoint accepts bodies of at most {limit} bytes; the request declares {declared}"),
        )
    })
}

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Filled by the API key extractor with its rate-limit decision, so the response can carry the IETF `RateLimit`
/// headers whatever the handler returns.
#[derive(Debug, Clone, Default)]
pub struct RateLimitSlot(pub std::sync::Arc<std::sync::OnceLock<(&'static str, gw_ratelimit::Decision)>>);

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers) of the deciding policy (`per-key` or
/// `per-subscription`, whichever is tighter or refused): its quota over a 60 s window, what remains now, and
/// seconds until it is fully restored.
fn rate_limit_headers(response: &mut Response, (name, decision): &(&'static str, gw_ratelimit::Decision)) {
    use std::fmt::Write as _;
    if let Some(policy) = policy_value(name, decision.quota.per_minute) {
        response.headers_mut().insert(RATELIMIT_POLICY, policy);
    }
    let reset = decision.reset_after.as_secs_f64().ceil() as u64;
    // On every key request: written straight into the header's buffer (no intermediate `format!` string).
    let mut state = String::with_capacity(48);
    let _ = write!(state, "\"{name}\";r={};t={reset}", decision.remaining);
    if let Ok(value) = HeaderValue::from_maybe_shared(axum::body::Bytes::from(state)) {
        response.headers_mut().insert(RATELIMIT, value);
    }
}

thread_local! {
    /// `RateLimit-Policy` values this thread has written: a policy is a name and a quota, and a few of them answer
    /// almost every request, so each is formatted once per thread instead of once per request.
    static POLICIES: std::cell::RefCell<Vec<(&'static str, u32, HeaderValue)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Distinct policies a thread keeps before starting afresh.
const POLICIES_PER_THREAD: usize = 64;

fn policy_value(name: &'static str, per_minute: u32) -> Option<HeaderValue> {
    POLICIES.with_borrow_mut(|known| {
        if let Some((_, _, value)) = known.iter().find(|(n, q, _)| *q == per_minute && *n == name) {
            return Some(value.clone());
        }
        let value = HeaderValue::from_str(&format!("\"{name}\";q={per_minute};w=60")).ok()?;
        if known.len() >= POLICIES_PER_THREAD {
            known.clear();
        }
        known.push((name, per_minute, value.clone()));
        Some(value)
    })
}

/// The id of the request being served: the client's `x-request-id` when it is sane, otherwise a new UUIDv7.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Assigns the request id, runs the request inside its span, echoes the id, and writes problem bodies.
pub async fn request_context(State(limits): State<Limits>, mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    let rate_limit = RateLimitSlot::default();
    request.extensions_mut().insert(rate_limit.clone());
    let path = request.uri().path().to_owned();
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        route = route.as_deref().unwrap_or("<unmatched>"),
        tenant = tracing::field::Empty,
        instance = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    async move {
        let started = std::time::Instant::now();
        let refused = head_too_large(&request).or_else(|| declared_too_large(&request, limits, route.as_deref()));
        let response = match refused {
            Some(refused) => refused.into_response(),
            None => next.run(request).await,
        };
        let mut response = finish_problem(response, &path, &id);
        // API responses are tenants' data and sometimes secrets (tokens, keys, signing secrets): no cache may keep
        // them. A route that may be cached (the docs' assets) says so itself.
        if !response.headers().contains_key(header::CACHE_CONTROL) {
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        if let Some(decision) = rate_limit.0.get() {
            rate_limit_headers(&mut response, decision);
        }
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        let status = response.status().as_u16();
        tracing::Span::current().record("status", status);
        tracing::info!(status, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "request finished");
        response
    }
    .instrument(span)
    .await
}

/// Turns a response carrying a [`Problem`] (or an error status with no body of ours, from a lower layer) into
/// the final problem+json body, and logs what must be logged.
fn finish_problem(response: Response, path: &str, request_id: &str) -> Response {
    let status = response.status();
    let (mut parts, body) = response.into_parts();
    let problem = match parts.extensions.remove::<Problem>() {
        Some(problem) => problem,
        None if status.is_client_error() || status.is_server_error() => {
            let is_problem = parts
                .headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
            if is_problem {
                return Response::from_parts(parts, body);
            }
            let kind = ProblemType::for_status(status);
            Problem {
                kind,
                detail: kind.description.to_owned(),
                errors: Vec::new(),
                key: None,
                rejection: None,
                internal: None,
            }
        }
        None => return Response::from_parts(parts, body),
    };
    if let Some(internal) = &problem.internal {
        tracing::error!(problem = problem.kind.slug, cause = %internal, "request failed");
    } else if problem.kind.status >= 500 {
        tracing::error!(problem = problem.kind.slug, "request failed");
    }
    let body = ProblemBody {
        type_uri: problem.kind.type_uri(),
        title: problem.kind.title.to_owned(),
        status: status.as_u16(),
        detail: problem.detail,
        instance: path.to_owned(),
        request_id: request_id.to_owned(),
        errors: problem.errors,
        key: problem.key,
        rejection: problem.rejection,
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(json)).into_response()
}

#[cfg(test)]
mod tests {
    use super::{acceptable, policy_value};

    #[test]
    fn a_policy_is_formatted_once_per_thread_and_told_apart_by_name_and_quota() {
        let key = policy_value("per-key", 600).expect("value");
        assert_eq!(key, "\"per-key\";q=600;w=60");
        assert_eq!(policy_value("per-key", 600).expect("value"), key);
        assert_eq!(policy_value("per-key", 601).expect("value"), "\"per-key\";q=601;w=60");
        assert_eq!(policy_value("per-subscription", 600).expect("value"), "\"per-subscription\";q=600;w=60");
        for quota in 0..200 {
            assert_eq!(policy_value("per-key", quota).expect("value"), format!("\"per-key\";q={quota};w=60").as_str());
        }
    }

    #[test]
    fn request_ids_must_be_short_visible_ascii() {
        assert!(acceptable("abc-123"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(!acceptable(&"x".repeat(129)));
        assert!(!acceptable("naïve"));
    }
}
