//! The console's session: the API's own access and refresh tokens kept in HttpOnly, SameSite=Strict cookies, and
//! a CSRF token (double submit: a random cookie that every unsafe request must repeat in the `X-CSRF-Token` header,
//! which htmx sends, or in a `csrf` form field). Why this shape: `docs/src/design/console.md`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gw_accounts::{AccountError, Principal};
use gw_core::UserRole;
use gw_services::Caller;
use rand::Rng as _;
use subtle::ConstantTimeEq as _;

use crate::ConsoleState;
use crate::error::ConsoleError;

const ACCESS_COOKIE: &str = "gw_console_access";
const REFRESH_COOKIE: &str = "gw_console_refresh";
const CSRF_COOKIE: &str = "gw_console_csrf";
/// The header htmx sends on every request (set once on `<body hx-headers>`).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The hidden field of every form, for the same check without script.
pub const CSRF_FIELD: &str = "csrf";
/// An urlencoded form read to find its CSRF field; the console's forms are far smaller.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// How long a refresh's result is reused by requests that still carry the old refresh token (the live status poll
/// racing a click): presenting a used refresh token again would revoke the whole sign-in.
const REFRESH_GRACE: Duration = Duration::from_secs(60);

/// How the console's cookies are marked.
#[derive(Debug)]
pub struct CookiePolicy {
    /// `Secure`: the browser sends them over HTTPS only. Off only for plain-HTTP development and tests.
    pub secure: bool,
    /// Refreshes done in the last [`REFRESH_GRACE`], by the old refresh token.
    recent_refreshes: tokio::sync::Mutex<HashMap<String, (Instant, Tokens)>>,
}

impl CookiePolicy {
    pub fn new(secure: bool) -> Self {
        Self { secure, recent_refreshes: tokio::sync::Mutex::default() }
    }

    fn cookie(&self, name: &str, value: &str, max_age_secs: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie =
            format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}");
        // Tokens and hex strings only: always a valid header value.
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
    }
}

/// The API's token pair, as cookies carry it.
#[derive(Debug, Clone)]
struct Tokens {
    access: String,
    refresh: String,
    max_age_secs: i64,
}

impl From<gw_accounts::Session> for Tokens {
    fn from(session: gw_accounts::Session) -> Self {
        let max_age_secs = (chrono::DateTime::<chrono::Utc>::from(session.refresh_expires_at) - chrono::Utc::now())
            .num_seconds()
            .max(0);
        Self { access: session.access_token, refresh: session.refresh_token, max_age_secs }
    }
}

/// The signed-in user of a console request, and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub struct Signed {
    pub principal: Principal,
    pub csrf: Csrf,
}

impl Signed {
    pub fn caller(&self) -> Caller {
        Caller::User(self.principal.clone())
    }

    pub fn is_operator(&self) -> bool {
        self.principal.role == UserRole::Admin
    }
}

/// The request's CSRF token (from its cookie, or new for a first visit).
#[derive(Debug, Clone)]
pub struct Csrf(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match (parts.extensions.get::<Principal>(), parts.extensions.get::<Csrf>()) {
            (Some(principal), Some(csrf)) => Ok(Signed { principal: principal.clone(), csrf: csrf.clone() }),
            _ => Err(to_login(&parts.headers)),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Csrf {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Csrf>().cloned().ok_or_else(|| ConsoleError::Internal("no CSRF token".into()))
    }
}

/// The client's address for the audit log and sign-in throttling: the peer (the console does not read
/// `X-Forwarded-For`).
fn client_ip(parts: &Parts) -> Option<String> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip().to_string())
}

/// [`client_ip`] as an extractor.
#[derive(Debug)]
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// Back to the sign-in page: a redirect, or for an htmx request (which would swap the page into a fragment) the
/// `HX-Redirect` header that makes htmx load it whole.
pub fn to_login(headers: &HeaderMap) -> Response {
    redirect(headers, "/console/login")
}

pub fn redirect(headers: &HeaderMap, to: &str) -> Response {
    if headers.contains_key("hx-request") {
        ([("hx-redirect", to)], "").into_response()
    } else {
        axum::response::Redirect::to(to).into_response()
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name && !value.is_empty()).then_some(value))
}

fn new_csrf_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every console request: refuses an unsafe one whose CSRF token does not match its cookie, resolves the signed-in
/// user (refreshing an expired access token), and sets whatever cookies changed on the response.
pub async fn csrf_guard(State(state): State<ConsoleState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let cookie_csrf = cookie_value(&parts.headers, CSRF_COOKIE).map(str::to_owned);
    let mut set_cookies = Vec::new();
    let csrf = match cookie_csrf {
        Some(token) => token,
        None => {
            let token = new_csrf_token();
            set_cookies.push(state.cookies.cookie(CSRF_COOKIE, &token, 60 * 60 * 24 * 30));
            token
        }
    };
    let body = if is_safe(&parts.method) {
        body
    } else {
        match checked_body(&parts, body, &csrf).await {
            Ok(body) => body,
            Err(error) => return error.into_response(),
        }
    };
    parts.extensions.insert(Csrf(csrf));
    match signed_in(&state, &parts).await {
        Ok(Some((principal, refreshed))) => {
            parts.extensions.insert(principal);
            if let Some(tokens) = refreshed {
                set_cookies.extend(session_cookies(&state, &tokens));
            }
        }
        Ok(None) => {}
        Err(error) => return error.into_response(),
    }
    let mut response = next.run(Request::from_parts(parts, body)).await;
    for cookie in set_cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The body of an unsafe request whose token matches, unchanged; a 403 page otherwise.
async fn checked_body(parts: &Parts, body: Body, csrf: &str) -> Result<Body, ConsoleError> {
    let matches = |sent: &str| bool::from(sent.as_bytes().ct_eq(csrf.as_bytes()));
    if let Some(sent) = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        return if matches(sent) { Ok(body) } else { Err(ConsoleError::Csrf) };
    }
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(ConsoleError::Csrf);
    }
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| ConsoleError::Csrf)?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).map_err(|_| ConsoleError::Csrf)?;
    match fields.iter().find(|(name, _)| name == CSRF_FIELD) {
        Some((_, sent)) if matches(sent) => Ok(Body::from(bytes)),
        _ => Err(ConsoleError::Csrf),
    }
}

/// The signed-in user, and new tokens when the access token had expired and was refreshed. `None`: not signed in
/// (or the sign-in ended: revoked, deactivated).
async fn signed_in(state: &ConsoleState, parts: &Parts) -> Result<Option<(Principal, Option<Tokens>)>, ConsoleError> {
    let Some(access) = cookie_value(&parts.headers, ACCESS_COOKIE) else { return Ok(None) };
    let ip = client_ip(parts);
    match state.accounts.authenticate(access, ip.clone()).await {
        Ok(principal) => return Ok(Some((principal, None))),
        Err(AccountError::InvalidToken(_)) => {}
        Err(AccountError::Store(gw_store::StoreError::Unavailable(_))) => return Err(ConsoleError::Unavailable),
        Err(_) => return Ok(None),
    }
    let Some(refresh) = cookie_value(&parts.headers, REFRESH_COOKIE) else { return Ok(None) };
    let tokens = {
        let mut recent = state.cookies.recent_refreshes.lock().await;
        recent.retain(|_, (at, _)| at.elapsed() < REFRESH_GRACE);
        match recent.get(refresh) {
            Some((_, tokens)) => tokens.clone(),
            None => match state.accounts.refresh(refresh, ip.clone()).await {
                Ok(session) => {
                    let tokens = Tokens::from(session);
                    recent.insert(refresh.to_owned(), (Instant::now(), tokens.clone()));
                    tokens
                }
                Err(AccountError::Store(gw_store::StoreError::Unavailable(_))) => {
                    return Err(ConsoleError::Unavailable);
                }
                Err(_) => return Ok(None),
            },
        }
    };
    match state.accounts.authenticate(&tokens.access, ip).await {
        Ok(principal) => Ok(Some((principal, Some(tokens)))),
        Err(_) => Ok(None),
    }
}

fn session_cookies(state: &ConsoleState, tokens: &Tokens) -> [HeaderValue; 2] {
    [
        state.cookies.cookie(ACCESS_COOKIE, &tokens.access, tokens.max_age_secs),
        state.cookies.cookie(REFRESH_COOKIE, &tokens.refresh, tokens.max_age_secs),
    ]
}

/// The cookies of a new sign-in, on `response`.
pub fn start(state: &ConsoleState, session: gw_accounts::Session, mut response: Response) -> Response {
    for cookie in session_cookies(state, &Tokens::from(session)) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The refresh token of the request, for signing out.
pub fn refresh_token(headers: &HeaderMap) -> Option<&str> {
    cookie_value(headers, REFRESH_COOKIE)
}

/// Clears the session's cookies on `response`.
pub fn end(state: &ConsoleState, mut response: Response) -> Response {
    for name in [ACCESS_COOKIE, REFRESH_COOKIE] {
        response.headers_mut().append(header::SET_COOKIE, state.cookies.cookie(name, "", 0));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("x_gw_console_csrf=no; gw_console_csrf=yes; a=b"));
        assert_eq!(cookie_value(&headers, CSRF_COOKIE), Some("yes"));
        assert_eq!(cookie_value(&headers, ACCESS_COOKIE), None);
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_when_asked() {
        let secure = CookiePolicy::new(true).cookie(CSRF_COOKIE, "t", 5);
        assert_eq!(secure, "gw_console_csrf=t; Path=/console; HttpOnly; SameSite=Strict; Max-Age=5; Secure");
        let plain = CookiePolicy::new(false).cookie(CSRF_COOKIE, "t", 5);
        assert!(!plain.to_str().unwrap_or_default().contains("Secure"));
    }
}
