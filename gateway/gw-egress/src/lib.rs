//! Outbound HTTP to URLs a tenant chose (webhook endpoints, media by URL), guarded against server-side request
//! forgery.
//!
//! Three checks, so that no tenant can make the gateway talk to its own network, its cloud's metadata service or
//! anything else that is not the public internet:
//! - [`EgressPolicy::validate_url`]: scheme (`https`, or `http` when the operator allows it), length, no userinfo,
//!   and literal IP hosts classified like resolved ones. Run at configuration time for a clear error, and again on
//!   every request.
//! - [`classify`]: which addresses are refused (loopback, private, link-local and cloud metadata, carrier-grade NAT,
//!   multicast, reserved and documentation ranges, unspecified, IPv6 unique-local, and IPv4 addresses hidden in
//!   IPv6 forms: mapped, compatible, NAT64, 6to4).
//! - A DNS resolver inside the HTTP client that resolves, drops refused addresses, and hands the client only what
//!   is left: the address checked is the address connected to, so a name that resolves to a public address for
//!   the check and to 127.0.0.1 for the connection (DNS rebinding) gets nowhere.
//!
//! Redirects are never followed (a 3xx is just a response), connect and total timeouts are bounded, and at most
//! `max_response_bytes` of a response body are read. An operator allow-list of CIDRs (tests, local development,
//! an on-premises receiver) lifts the address rules for those networks only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use url::Url;

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unspecified address")]
    Unspecified,
    #[error("loopback address")]
    Loopback,
    #[error("private address")]
    Private,
    #[error("link-local address")]
    LinkLocal,
    #[error("cloud metadata address")]
    CloudMetadata,
    #[error("carrier-grade NAT address")]
    SharedAddressSpace,
    #[error("multicast address")]
    Multicast,
    #[error("broadcast address")]
    Broadcast,
    #[error("reserved or documentation address")]
    Reserved,
    #[error("unique-local IPv6 address")]
    UniqueLocal,
}

/// The class of an address the gateway must not connect to, or `None` for a public address.
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let [a, b, c, d] = ip.octets();
    let refusal = match (a, b, c, d) {
        (169, 254, 169, 254) | (168, 63, 129, 16) | (100, 100, 100, 200) => Refusal::CloudMetadata,
        (0, ..) => Refusal::Unspecified,
        (127, ..) => Refusal::Loopback,
        (10, ..) | (192, 168, ..) => Refusal::Private,
        (172, 16..=31, ..) => Refusal::Private,
        (169, 254, ..) => Refusal::LinkLocal,
        (100, 64..=127, ..) => Refusal::SharedAddressSpace,
        (224..=239, ..) => Refusal::Multicast,
        (255, 255, 255, 255) => Refusal::Broadcast,
        (240..=255, ..) => Refusal::Reserved,
        (192, 0, 0, _) | (192, 0, 2, _) | (192, 88, 99, _) | (198, 51, 100, _) | (203, 0, 113, _) => Refusal::Reserved,
        (198, 18..=19, ..) => Refusal::Reserved,
        _ => return None,
    };
    Some(refusal)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if ip.is_unspecified() {
        return Some(Refusal::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Refusal::Loopback);
    }
    if let Some(v4) = embedded_v4(ip) {
        // Whatever the wrapping, the packet reaches the IPv4 address inside.
        return classify_v4(v4);
    }
    let s = ip.segments();
    let refusal = match s {
        [0xff00..=0xffff, ..] => Refusal::Multicast,
        [0xfc00..=0xfdff, ..] => Refusal::UniqueLocal,
        [0xfe80..=0xfebf, ..] => Refusal::LinkLocal,
        // Deprecated site-local.
        [0xfec0..=0xfeff, ..] => Refusal::Reserved,
        // Documentation, discard-only, Teredo (hides an address we cannot check), ORCHID, local-use NAT64.
        [0x2001, 0x0db8, ..] | [0x0100, 0, 0, 0, ..] | [0x2001, 0, ..] | [0x2001, 0x0010..=0x002f, ..] => {
            Refusal::Reserved
        }
        [0x0064, 0xff9b, 0x0001, ..] => Refusal::Reserved,
        // Anything outside global unicast 2000::/3 is not on the public internet.
        [first, ..] if !(0x2000..=0x3fff).contains(&first) => Refusal::Reserved,
        _ => return None,
    };
    Some(refusal)
}

/// The IPv4 address an IPv6 address carries: mapped (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`), NAT64
/// (`64:ff9b::a.b.c.d`) or 6to4 (`2002:AABB:CCDD::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] => Some(low),
        [0x0064, 0xff9b, 0, 0, 0, 0, ..] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

/// A URL the policy refuses, with the reason a tenant can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not a valid absolute URL")]
    Invalid,
    #[error("the scheme must be https{}", if *.allow_http { " or http" } else { "" })]
    Scheme { allow_http: bool },
    #[error("longer than {max} characters")]
    TooLong { max: usize },
    #[error("must not carry a user name or password")]
    UserInfo,
    #[error("has no host")]
    NoHost,
    #[error("{ip} is a {reason}")]
    Refused { ip: IpAddr, reason: Refusal },
}

/// What outbound requests may reach and how long they may take.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    pub allow_http: bool,
    pub max_url_len: usize,
    /// Networks exempt from the address rules (tests, local development, an on-premises receiver).
    pub allow_cidrs: Vec<IpNet>,
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
    pub max_response_bytes: usize,
    /// Idle keep-alive connections kept per host.
    pub pool_idle_per_host: usize,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        Self {
            allow_http: false,
            max_url_len: 2048,
            allow_cidrs: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            max_response_bytes: 1024,
            pool_idle_per_host: 32,
        }
    }
}

impl EgressPolicy {
    /// The refusal for an address under this policy: allow-listed networks pass, the rest are [`classify`]d.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), UrlError> {
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.allow_cidrs.iter().any(|net| net.contains(&canonical) || net.contains(&ip)) {
            return Ok(());
        }
        match classify(ip) {
            Some(reason) => Err(UrlError::Refused { ip, reason }),
            None => Ok(()),
        }
    }

    /// The checks that need no DNS: scheme, length, userinfo, host, and literal IP addresses.
    pub fn validate_url(&self, raw: &str) -> Result<Url, UrlError> {
        if raw.len() > self.max_url_len {
            return Err(UrlError::TooLong { max: self.max_url_len });
        }
        let url = Url::parse(raw).map_err(|_| UrlError::Invalid)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(UrlError::Scheme { allow_http: self.allow_http }),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::UserInfo);
        }
        match url.host() {
            None => return Err(UrlError::NoHost),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(_)) => {}
        }
        Ok(url)
    }
}

/// Why a request did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("URL refused: {0}")]
    Url(#[from] UrlError),
    #[error("every address of {host} is refused: {detail}")]
    Resolved { host: String, detail: String },
    #[error("timed out")]
    Timeout,
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// A response, with at most the policy's `max_response_bytes` of its body.
#[derive(Debug, Clone)]
pub struct CapturedResponse {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    /// Whether the body was longer than what was kept.
    pub truncated: bool,
    pub latency: Duration,
}

/// Resolves, then refuses what the policy refuses; the client connects only to the addresses returned here.
#[derive(Debug)]
struct GuardedResolver {
    policy: Arc<EgressPolicy>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ResolveRefused(String);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = Vec::new();
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match policy.check_ip(addr.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.push(e.to_string());
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let detail = if refused.is_empty() { "no address".to_owned() } else { refused.join(", ") };
                return Err(Box::new(ResolveRefused(format!("every address of {host} is refused: {detail}")))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An HTTP client that only reaches what its [`EgressPolicy`] allows. Cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct GuardedClient {
    client: reqwest::Client,
    policy: Arc<EgressPolicy>,
}

impl GuardedClient {
    pub fn new(policy: EgressPolicy) -> Result<Self, EgressError> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { policy: policy.clone() }))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.total_timeout)
            .pool_max_idle_per_host(policy.pool_idle_per_host)
            .tcp_nodelay(true)
            .http1_only()
            .user_agent(concat!("whatsapp-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EgressError::Client(e.to_string()))?;
        Ok(Self { client, policy })
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// POSTs `body` to `url` with `headers`; any status is a response (redirects are not followed).
    pub async fn post(
        &self,
        url: &str,
        headers: http::HeaderMap,
        body: Vec<u8>,
    ) -> Result<CapturedResponse, EgressError> {
        let url = self.policy.validate_url(url)?;
        let started = Instant::now();
        let response = self.client.post(url).headers(headers).body(body).send().await.map_err(request_error)?;
        capture(response, self.policy.max_response_bytes, started).await
    }

    /// GETs `url`, keeping at most `max_bytes` of the body (`truncated` says there was more); a declared
    /// `Content-Length` over the limit stops before any of the body is read.
    pub async fn get(&self, url: &str, max_bytes: usize) -> Result<CapturedResponse, EgressError> {
        let url = self.policy.validate_url(url)?;
        let started = Instant::now();
        let response = self.client.get(url).send().await.map_err(request_error)?;
        if response.content_length().is_some_and(|len| len > max_bytes as u64) {
            let status = response.status();
            let headers = response.headers().clone();
            return Ok(CapturedResponse {
                status,
                headers,
                body: Vec::new(),
                truncated: true,
                latency: started.elapsed(),
            });
        }
        capture(response, max_bytes, started).await
    }
}

async fn capture(
    mut response: reqwest::Response,
    max: usize,
    started: Instant,
) -> Result<CapturedResponse, EgressError> {
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        let room = max.saturating_sub(body.len());
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(CapturedResponse { status, headers, body, truncated, latency: started.elapsed() })
}

fn request_error(err: reqwest::Error) -> EgressError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<ResolveRefused>() {
            return EgressError::Resolved {
                host: err.url().and_then(|u| u.host_str()).unwrap_or_default().to_owned(),
                detail: refused.0.clone(),
            };
        }
        source = cause.source();
    }
    if err.is_timeout() {
        EgressError::Timeout
    } else if err.is_connect() {
        EgressError::Connect(chain(&err))
    } else {
        EgressError::Request(chain(&err))
    }
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
