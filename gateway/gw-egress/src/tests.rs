use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::routing::post;

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

#[test]
fn the_classifier_refuses_every_non_public_range() {
    let table: &[(&str, Option<Refusal>)] = &[
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("172.32.0.1", None),
        ("100.128.0.1", None),
        ("0.0.0.0", Some(Refusal::Unspecified)),
        ("127.0.0.1", Some(Refusal::Loopback)),
        ("127.255.255.254", Some(Refusal::Loopback)),
        ("10.1.2.3", Some(Refusal::Private)),
        ("172.16.0.1", Some(Refusal::Private)),
        ("172.31.255.255", Some(Refusal::Private)),
        ("192.168.1.1", Some(Refusal::Private)),
        ("169.254.169.254", Some(Refusal::CloudMetadata)),
        ("168.63.129.16", Some(Refusal::CloudMetadata)),
        ("100.100.100.200", Some(Refusal::CloudMetadata)),
        ("169.254.1.1", Some(Refusal::LinkLocal)),
        ("100.64.0.1", Some(Refusal::SharedAddressSpace)),
        ("100.127.255.255", Some(Refusal::SharedAddressSpace)),
        ("224.0.0.1", Some(Refusal::Multicast)),
        ("239.255.255.250", Some(Refusal::Multicast)),
        ("255.255.255.255", Some(Refusal::Broadcast)),
        ("240.0.0.1", Some(Refusal::Reserved)),
        ("192.0.2.1", Some(Refusal::Reserved)),
        ("198.51.100.7", Some(Refusal::Reserved)),
        ("203.0.113.9", Some(Refusal::Reserved)),
        ("198.18.0.1", Some(Refusal::Reserved)),
        ("192.0.0.8", Some(Refusal::Reserved)),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
        ("::", Some(Refusal::Unspecified)),
        ("::1", Some(Refusal::Loopback)),
        ("::ffff:127.0.0.1", Some(Refusal::Loopback)),
        ("::ffff:10.0.0.1", Some(Refusal::Private)),
        ("::ffff:169.254.169.254", Some(Refusal::CloudMetadata)),
        ("::127.0.0.1", Some(Refusal::Loopback)),
        ("64:ff9b::7f00:1", Some(Refusal::Loopback)),
        ("64:ff9b::a9fe:a9fe", Some(Refusal::CloudMetadata)),
        ("64:ff9b:1::1", Some(Refusal::Reserved)),
        ("2002:7f00:1::", Some(Refusal::Loopback)),
        ("2002:c0a8:101::", Some(Refusal::Private)),
        ("fc00::1", Some(Refusal::UniqueLocal)),
        ("fd00:ec2::254", Some(Refusal::UniqueLocal)),
        ("fe80::1", Some(Refusal::LinkLocal)),
        ("fec0::1", Some(Refusal::Reserved)),
        ("ff02::1", Some(Refusal::Multicast)),
        ("2001:db8::1", Some(Refusal::Reserved)),
        ("2001::1", Some(Refusal::Reserved)),
        ("100::1", Some(Refusal::Reserved)),
        ("4000::1", Some(Refusal::Reserved)),
    ];
    for (text, expected) in table {
        assert_eq!(classify(ip(text)), *expected, "{text}");
    }
}

#[test]
fn urls_are_checked_before_any_lookup() {
    let policy = EgressPolicy::default();
    assert!(policy.validate_url("https://hooks.example.com/wa?x=1").is_ok());
    assert_eq!(policy.validate_url("http://hooks.example.com/"), Err(UrlError::Scheme { allow_http: false }));
    assert_eq!(policy.validate_url("ftp://hooks.example.com/"), Err(UrlError::Scheme { allow_http: false }));
    assert_eq!(policy.validate_url("not a url"), Err(UrlError::Invalid));
    assert_eq!(policy.validate_url("https://user:pw@hooks.example.com/"), Err(UrlError::UserInfo));
    let long = format!("https://hooks.example.com/{}", "a".repeat(2048));
    assert_eq!(policy.validate_url(&long), Err(UrlError::TooLong { max: 2048 }));
    for literal in [
        "https://127.0.0.1/",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://0x7f.1/",
    ] {
        assert!(matches!(policy.validate_url(literal), Err(UrlError::Refused { .. })), "{literal}");
    }
    let http = EgressPolicy { allow_http: true, ..EgressPolicy::default() };
    assert!(http.validate_url("http://hooks.example.com/").is_ok());
    let allowed = EgressPolicy { allow_cidrs: vec!["127.0.0.0/8".parse().expect("cidr")], ..EgressPolicy::default() };
    assert!(allowed.validate_url("https://127.0.0.1/").is_ok());
    assert!(allowed.validate_url("https://[::ffff:127.0.0.1]/").is_ok(), "a mapped address is its IPv4 address");
    assert!(matches!(allowed.validate_url("https://10.0.0.1/"), Err(UrlError::Refused { .. })));
}

async fn receiver() -> SocketAddr {
    let app = Router::new()
        .route("/ok", post(|| async { "x".repeat(5000) }))
        .route("/redirect", post(|| async { (http::StatusCode::FOUND, [(http::header::LOCATION, "/ok")], "") }))
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn loopback_policy() -> EgressPolicy {
    EgressPolicy {
        allow_http: true,
        allow_cidrs: vec!["127.0.0.0/8".parse().expect("cidr")],
        total_timeout: Duration::from_millis(300),
        ..EgressPolicy::default()
    }
}

#[tokio::test]
async fn loopback_is_refused_unless_allow_listed_by_literal_and_by_name() {
    let addr = receiver().await;
    let strict = GuardedClient::new(EgressPolicy { allow_http: true, ..EgressPolicy::default() }).expect("client");
    let by_ip = strict.post(&format!("http://{addr}/ok"), Default::default(), Vec::new()).await;
    assert!(matches!(by_ip, Err(EgressError::Url(UrlError::Refused { reason: Refusal::Loopback, .. }))), "{by_ip:?}");
    let by_name = strict.post(&format!("http://localhost:{}/ok", addr.port()), Default::default(), Vec::new()).await;
    assert!(matches!(by_name, Err(EgressError::Resolved { .. })), "{by_name:?}");

    let open = GuardedClient::new(loopback_policy()).expect("client");
    let response = open.post(&format!("http://localhost:{}/ok", addr.port()), Default::default(), Vec::new()).await;
    let response = response.expect("allow-listed");
    assert_eq!(response.status, http::StatusCode::OK);
    assert_eq!((response.body.len(), response.truncated), (1024, true), "at most max_response_bytes are kept");
}

#[tokio::test]
async fn redirects_are_not_followed_and_slow_receivers_time_out() {
    let addr = receiver().await;
    let client = GuardedClient::new(loopback_policy()).expect("client");
    let response = client.post(&format!("http://{addr}/redirect"), Default::default(), Vec::new()).await;
    assert_eq!(response.expect("a response").status, http::StatusCode::FOUND);
    let slow = client.post(&format!("http://{addr}/slow"), Default::default(), Vec::new()).await;
    assert!(matches!(slow, Err(EgressError::Timeout)), "{slow:?}");
}
