//! The driver against loopback only (WhatsApp's servers are not reachable from here, and tests must not try):
//! a closed port and a listener that drops every connection. Connect must report a `Disconnected` with the reason
//! promptly, close the event channel, not retry on its own (the engine owns backoff), and never panic or hang.
//! The version is pinned so that the client makes no HTTP request either.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gw_core::{DriverKind, InstanceId, Tier};
use gw_driver_whatsapp::{ConfigError, StoreAuthVault, WhatsAppDriver, WhatsAppDriverConfig};
use gw_sessions::{ConnectRequest, Driver, DriverError, DriverEvent, OutgoingContent, OutgoingMessage, Presence};
use gw_store::{Actor, NewInstance, NewSubscription, Store};
use gw_store_sql::{OpenOptions, SqliteStore};

const KEY_B64: &str = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";
/// Fails the test rather than hanging it; every wait below ends on an event long before this.
const GUARD: Duration = Duration::from_secs(60);

async fn store_with_instance() -> (Arc<dyn Store>, InstanceId) {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open("sqlite::memory:", &OpenOptions::default()).await.expect("open sqlite"));
    let subscription = store
        .create_subscription(
            NewSubscription {
                name: "Acme".into(),
                tier: Tier::Starter,
                max_instances: 5,
                monthly_messages: 1000,
                limit_overrides: Default::default(),
            },
            &Actor::system(),
        )
        .await
        .expect("subscription");
    let instance = store
        .create_instance(
            NewInstance {
                name: "wa".into(),
                subscription_id: subscription.id,
                created_by_id: None,
                driver: DriverKind::Whatsapp,
                settings: serde_json::json!({}),
            },
            &Actor::system(),
        )
        .await
        .expect("instance");
    (store, instance.id)
}

fn loopback_config(port: u16) -> WhatsAppDriverConfig {
    let mut config = WhatsAppDriverConfig::new(KEY_B64);
    config.ws_url = Some(format!("ws://127.0.0.1:{port}/ws/chat"));
    config.version = Some((2, 3000, 1_023_000_000));
    config
}

/// Connects and collects events until the channel closes; returns them and how long it took.
async fn connect_until_closed(port: u16) -> (Vec<DriverEvent>, Duration, Box<dyn gw_sessions::Connection>) {
    let (store, instance_id) = store_with_instance().await;
    let driver = WhatsAppDriver::new(loopback_config(port), store.clone()).expect("driver");
    let vault = Arc::new(StoreAuthVault::new(instance_id, store));
    let started = Instant::now();
    let (connection, mut events) =
        driver.connect(ConnectRequest { instance_id, pair_phone: None }, vault).await.expect("connect starts");
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(GUARD, events.recv()).await {
            Ok(Some(event)) => seen.push(event),
            Ok(None) => break,
            Err(_) => panic!("no end of the event stream within {GUARD:?}; events so far: {seen:?}"),
        }
    }
    (seen, started.elapsed(), connection)
}

fn only_disconnected(events: &[DriverEvent]) -> &str {
    match events {
        [DriverEvent::Disconnected { reason }] => reason,
        other => panic!("expected exactly one Disconnected, got {other:?}"),
    }
}

#[tokio::test]
async fn closed_port_reports_disconnected_promptly_and_closes() {
    // Bind and release a port: nothing listens there any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let (events, elapsed, connection) = connect_until_closed(port).await;
    let reason = only_disconnected(&events);
    assert!(reason.contains(&format!("cannot reach ws://127.0.0.1:{port}/ws/chat")), "reason: {reason}");
    // The library's own dial timeout is 20 s; a refused connection must not wait for it.
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");

    // Commands on a connection that never opened fail cleanly.
    let message = OutgoingMessage {
        wa_message_id: gw_sessions::new_wa_message_id(),
        chat_jid: "5511987650001@s.whatsapp.net".into(),
        content: OutgoingContent::Text { body: "hi".into() },
        quoted_message_id: None,
    };
    assert_eq!(connection.send(message.clone()).await, Err(DriverError::NotConnected));
    let bad = OutgoingMessage { chat_jid: "nobody".into(), ..message };
    assert!(matches!(connection.send(bad).await, Err(DriverError::InvalidRecipient(_))));
    assert_eq!(
        connection.send_presence("5511@s.whatsapp.net", Presence::Composing).await,
        Err(DriverError::NotConnected)
    );
    assert_eq!(connection.groups().await, Err(DriverError::NotConnected));
    assert_eq!(connection.request_pair_code("+55 11 98765-0001").await, Err(DriverError::NotConnected));
    assert!(matches!(connection.request_pair_code("12").await, Err(DriverError::InvalidRecipient(_))));
    // Disconnecting an ended connection returns (no hang).
    tokio::time::timeout(GUARD, connection.disconnect()).await.expect("disconnect returns");
}

#[tokio::test]
async fn listener_that_drops_connections_reports_disconnected_without_retrying() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });

    let (events, elapsed, connection) = connect_until_closed(port).await;
    let reason = only_disconnected(&events);
    assert!(reason.contains(&format!("127.0.0.1:{port}")), "reason names the endpoint: {reason}");
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
    // One dial, no reconnect loop of the library's own: backoff is the engine's.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    tokio::time::timeout(GUARD, connection.logout()).await.expect("logout returns").expect("logout");
    server.abort();
}

#[test]
fn configuration_is_checked_up_front() {
    let store_less = |config: WhatsAppDriverConfig| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let (store, _) = store_with_instance().await;
            WhatsAppDriver::new(config, store).map(|_| ())
        })
    };
    assert!(matches!(store_less(WhatsAppDriverConfig::new("short")), Err(ConfigError::EncryptionKey(_))));
    let mut http = WhatsAppDriverConfig::new(KEY_B64);
    http.ws_url = Some("http://127.0.0.1:1".into());
    assert!(matches!(store_less(http), Err(ConfigError::WsUrl(_))));
    // The key never shows in logs.
    assert!(!format!("{:?}", WhatsAppDriverConfig::new(KEY_B64)).contains(KEY_B64));
    assert!(store_less(WhatsAppDriverConfig::new(KEY_B64)).is_ok());
}

#[tokio::test]
async fn a_session_sealed_with_another_key_is_refused_at_connect_without_retry() {
    use gw_driver_whatsapp::{GatewayBackend, StateCipher};
    use whatsapp_rust::wacore::store::Device;
    use whatsapp_rust::wacore::store::traits::DeviceStore;

    let (store, instance_id) = store_with_instance().await;
    let vault = Arc::new(StoreAuthVault::new(instance_id, store.clone()));
    let other_key =
        GatewayBackend::new(instance_id, store.clone(), vault.clone(), StateCipher::new(&[1; 32]).expect("key"));
    other_key.save(&Device::new()).await.expect("save device under another key");

    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let driver = WhatsAppDriver::new(loopback_config(port), store).expect("driver");
    match driver.connect(ConnectRequest { instance_id, pair_phone: None }, vault).await {
        Err(DriverError::Other(reason)) => {
            assert!(reason.contains("encryption_key") && reason.contains("failed authentication"), "{reason}");
        }
        Err(other) => panic!("expected a non-transient error, got {other:?}"),
        Ok(_) => panic!("connect must refuse a session it cannot decrypt"),
    }
}

/// Answers one websocket upgrade (RFC 6455 accept key), waits for the client's first bytes after it (the start
/// of WhatsApp's Noise handshake) and closes. Returns how many bytes the client sent after the upgrade.
async fn upgrade_then_close(listener: tokio::net::TcpListener) -> usize {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (mut socket, _) = listener.accept().await.expect("accept");
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await.expect("read upgrade request");
        assert!(n > 0, "client closed before finishing the upgrade request");
        request.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&request);
    let key = text
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key").then(|| value.trim().to_owned())
        })
        .expect("Sec-WebSocket-Key");
    let mut sha = sha1_smol::Sha1::new();
    sha.update(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    socket.write_all(response.as_bytes()).await.expect("write upgrade response");
    let n = socket.read(&mut buf).await.expect("read first frame");
    drop(socket);
    n
}

#[tokio::test]
async fn server_that_closes_after_the_upgrade_reports_disconnected() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(upgrade_then_close(listener));

    let (events, elapsed, _connection) = connect_until_closed(port).await;
    let sent_after_upgrade = server.await.expect("server task");
    assert!(sent_after_upgrade > 0, "the client began its handshake over the upgraded socket");
    let reason = only_disconnected(&events);
    assert_eq!(reason, "the connection to WhatsApp ended");
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
}
