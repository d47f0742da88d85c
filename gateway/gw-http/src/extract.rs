//! Extractors whose rejections are problem+json, the client address, and the signed-in caller.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use gw_accounts::Principal;
use gw_store::{Cursor, PageRequest};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ProblemType};
use crate::state::AppState;

/// `axum::Json` with problem+json rejections, and without the NUL character: PostgreSQL can store U+0000 neither in
/// `text` nor in `jsonb`, so a string carrying one would fail at the database (a 500) on one backend and be kept on
/// the other. It is refused here, for every body, with a 422 naming the field.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::Problem(
                &ProblemType::UNSUPPORTED_MEDIA_TYPE,
                "expected a body with content type application/json".into(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::Problem(&ProblemType::PAYLOAD_TOO_LARGE, rejection.body_text())
            } else {
                ApiError::bad_request(rejection.body_text())
            }
        })?;
        if let Some(field) = field_with_nul(&bytes) {
            return Err(ApiError::invalid(&field, "must not contain the NUL character (U+0000)"));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(Json(value))
    }
}

/// `application/json` or any `application/*+json`, as axum's own `Json` accepts.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The path of the first string (or object key) in a JSON body that contains U+0000, if any. JSON can carry the
/// character only as the escape `\u0000`, so bodies without one (all but hostile ones) are not parsed twice.
pub(crate) fn field_with_nul(body: &[u8]) -> Option<String> {
    let escaped = body.windows(6).enumerate().any(|(at, window)| {
        window == br"\u0000" && body[..at].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0
    });
    if !escaped {
        return None;
    }
    // Malformed JSON is left to the real parse, which reports it.
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    fn find(value: &serde_json::Value, path: &str) -> Option<String> {
        let here = || if path.is_empty() { "body".to_owned() } else { path.to_owned() };
        match value {
            serde_json::Value::String(s) if s.contains('\0') => Some(here()),
            serde_json::Value::Array(items) => {
                items.iter().enumerate().find_map(|(i, item)| find(item, &format!("{}[{i}]", here())))
            }
            serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
                let at = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                if key.contains('\0') { Some(at) } else { find(item, &at) }
            }),
            _ => None,
        }
    }
    find(&value, "")
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::Problem(
                &ProblemType::UNSUPPORTED_MEDIA_TYPE,
                "expected a body with content type application/json".into(),
            ),
            JsonRejection::JsonSyntaxError(e) => ApiError::Problem(&ProblemType::MALFORMED_JSON, e.body_text()),
            // Unknown fields, missing fields and wrong types: serde names the field.
            JsonRejection::JsonDataError(e) => ApiError::invalid("body", e.body_text()),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::Problem(&ProblemType::PAYLOAD_TOO_LARGE, other.body_text())
            }
            other => ApiError::bad_request(other.body_text()),
        }
    }
}

/// `axum::extract::Path` with problem+json rejections: a malformed id is a 404 (no such resource), not a 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        match rejection {
            PathRejection::FailedToDeserializePathParams(_) => ApiError::not_found("resource"),
            other => ApiError::Internal(other.body_text()),
        }
    }
}

/// `axum::extract::Query` with problem+json rejections.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

/// `?cursor=…&limit=…` on list endpoints.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    pub limit: Option<u32>,
}

impl PageQuery {
    pub fn page_request(&self) -> Result<PageRequest, ApiError> {
        let after = self
            .cursor
            .as_deref()
            .map(|c| {
                Cursor::decode(c)
                    .map_err(|_| ApiError::Problem(&ProblemType::INVALID_CURSOR, "invalid pagination cursor".into()))
            })
            .transpose()?;
        Ok(PageRequest::new(after, self.limit.unwrap_or(PageRequest::DEFAULT_LIMIT)))
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the nearest untrusted address in
/// `X-Forwarded-For` (read right to left, so a client cannot forge its way past the proxies).
#[derive(Debug, Clone)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    pub fn to_string_opt(&self) -> Option<String> {
        self.0.map(|ip| ip.to_string())
    }
}

pub(crate) fn client_ip(parts: &Parts, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(forwarded.into_iter().rev().find(|ip| !is_trusted(ip)).unwrap_or(peer))
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts, &state.settings.trusted_proxies)))
    }
}

/// The signed-in caller, from `Authorization: Bearer <access token>`, checked against the store on every request.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = match header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer "))) {
            Some(token) if !token.trim().is_empty() => token.trim(),
            _ => {
                return Err(ApiError::Problem(
                    &ProblemType::UNAUTHENTICATED,
                    "send Authorization: Bearer <access token>".into(),
                ));
            }
        };
        let ip = client_ip(parts, &state.settings.trusted_proxies).map(|ip| ip.to_string());
        let principal = state.accounts.authenticate(token, ip).await?;
        let span = tracing::Span::current();
        span.record(
            "tenant",
            tracing::field::display(
                principal.subscription_id.map(|id| id.to_string()).unwrap_or_else(|| "operator".into()),
            ),
        );
        Ok(Auth(principal))
    }
}

#[cfg(test)]
mod nul_tests {
    use super::field_with_nul;

    #[test]
    fn a_nul_anywhere_in_a_body_is_found_with_its_path() {
        assert_eq!(field_with_nul(br#"{"name":"a\u0000b"}"#).as_deref(), Some("name"));
        assert_eq!(field_with_nul(br#"{"config":{"x":[1,"\u0000"]}}"#).as_deref(), Some("config.x[1]"));
        assert_eq!(field_with_nul(br#"{"k\u0000":1}"#).as_deref(), Some("k\u{0}"));
        assert_eq!(field_with_nul(br#""\u0000""#).as_deref(), Some("body"));
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_plain_text() {
        assert_eq!(field_with_nul(br#"{"name":"C:\\u0000"}"#), None);
        assert_eq!(field_with_nul(br#"{"name":"plain"}"#), None);
        assert_eq!(field_with_nul(br#"{"name":"\\\u0000"}"#).as_deref(), Some("name"));
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(peer: &str, forwarded: Option<&str>) -> Parts {
        let mut builder = Request::builder().uri("/");
        if let Some(f) = forwarded {
            builder = builder.header("x-forwarded-for", f);
        }
        let (mut parts, _) = builder.body(()).expect("request").into_parts();
        parts.extensions.insert(ConnectInfo(peer.parse::<SocketAddr>().expect("addr")));
        parts
    }

    #[test]
    fn forwarded_for_is_honoured_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let ip = |p: Parts| client_ip(&p, &trusted).map(|ip| ip.to_string());
        assert_eq!(ip(parts("203.0.113.5:1", Some("198.51.100.1"))).as_deref(), Some("203.0.113.5"));
        assert_eq!(ip(parts("10.0.0.2:1", Some("198.51.100.1"))).as_deref(), Some("198.51.100.1"));
        // A client-supplied first entry cannot win over what the trusted proxy appended.
        assert_eq!(ip(parts("10.0.0.2:1", Some("1.2.3.4, 198.51.100.1, 10.0.0.9"))).as_deref(), Some("198.51.100.1"));
        assert_eq!(ip(parts("10.0.0.2:1", None)).as_deref(), Some("10.0.0.2"));
    }
}

/// The API key header; a constant name spares parsing the name on every request.
const X_API_KEY: axum::http::HeaderName = axum::http::HeaderName::from_static("x-api-key");

/// Who calls: a signed-in user (JWT) or an API key. Both come as `Authorization: Bearer …`; keys are told apart by
/// their `gwk_` prefix, and may also come as `X-API-Key`. A key's request is rate-limited here, before the
/// handler runs, and its decision is reported in the response's `RateLimit` headers.
pub use gw_services::Caller;

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim);
        let api_key = parts.headers.get(&X_API_KEY).and_then(|v| v.to_str().ok()).map(str::trim);
        let key = match (bearer, api_key) {
            (_, Some(key)) => key,
            (Some(token), None) if token.starts_with("gwk_") => token,
            // Boxed, so a signed-in user's look-up does not size every key request's future.
            _ => return Box::pin(Auth::from_request_parts(parts, state)).await.map(|Auth(p)| Caller::User(p)),
        };
        let ip = client_ip(parts, &state.settings.trusted_proxies);
        let principal = state.accounts.authenticate_key(key, ip).await?;
        let span = tracing::Span::current();
        span.record("tenant", tracing::field::display(principal.subscription_id));
        span.record("instance", tracing::field::display(principal.instance_id));
        // A sixth of the minute's allowance may come at once; beyond it requests are spread at the steady rate.
        let quota = |per_minute: u32| gw_ratelimit::Quota::per_minute(per_minute).with_burst((per_minute / 6).max(1));
        let (key_limit, subscription_limit) = principal.limiter_keys();
        let checks = [
            (key_limit, quota(principal.rate_limit_per_minute)),
            (subscription_limit, quota(principal.subscription_rate_limit_per_minute)),
        ];
        let (index, decision) = match state.limiter.check_all_now(&checks) {
            Some(decided) => decided,
            None => state.limiter.check_all(&checks).await,
        };
        let policy = if index == 0 { "per-key" } else { "per-subscription" };
        if let Some(slot) = parts.extensions.get::<crate::middleware::RateLimitSlot>() {
            let _ = slot.0.set((policy, decision));
        }
        use std::sync::atomic::Ordering::Relaxed;
        state.metrics.key_requests.get().fetch_add(1, Relaxed);
        if !decision.allowed {
            let refused_by =
                if index == 0 { &state.metrics.rate_limited_key } else { &state.metrics.rate_limited_subscription };
            refused_by.fetch_add(1, Relaxed);
            return Err(ApiError::RateLimited {
                retry_after: decision.retry_after.unwrap_or(std::time::Duration::from_secs(1)),
            });
        }
        let call = gw_metering::Event::ApiCall;
        state.metering.record_at(principal.subscription_id, principal.instance_id, call, principal.verified_at);
        Ok(Caller::Key(principal))
    }
}

/// Parses a JSON body already read as bytes (handlers that also hash the raw body), with the same problem types
/// as [`Json`].
pub fn parse_json<T: serde::de::DeserializeOwned>(headers: &axum::http::HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return Err(ApiError::Problem(
            &ProblemType::UNSUPPORTED_MEDIA_TYPE,
            "expected a body with content type application/json".into(),
        ));
    }
    axum::Json::<T>::from_bytes(body).map(|axum::Json(value)| value).map_err(ApiError::from)
}
