//! The session engine on the sandbox network, against real databases (SQLite file and PostgreSQL).
//! Every wait is on an observable event or state, bounded by a timeout; nothing sleeps to synchronise.

use std::sync::Arc;
use std::time::Duration;

use gw_core::{DriverKind, EventType, GatewayEvent, Instance, InstanceStatus, MessageStatus};
use gw_sessions::sandbox::{SandboxDriver, SandboxNetwork};
use gw_sessions::{
    Engine, EngineError, FetchError, FetchedMedia, Idempotency, MediaFetcher, MediaRefused, SendContent, SendRequest,
};
use gw_store::{PageRequest, Store, Visibility};
use gw_test_support::TestDatabase;
use serde_json::json;
use tokio::sync::broadcast;

mod common;

use common::{new_instance, new_instance_on, tenant};

const WAIT: Duration = Duration::from_secs(10);

struct Node {
    engine: Engine,
    network: Arc<SandboxNetwork>,
    events: broadcast::Receiver<GatewayEvent>,
}

fn node(store: Arc<dyn Store>, network: Arc<SandboxNetwork>) -> Node {
    node_with(store, network, None)
}

fn node_with(store: Arc<dyn Store>, network: Arc<SandboxNetwork>, fetcher: Option<Arc<dyn MediaFetcher>>) -> Node {
    let engine = common::engine(&store)
        .driver(DriverKind::Sandbox, Arc::new(SandboxDriver::new(network.clone())))
        .config(common::fast_reconnects(20, 200));
    let engine = match fetcher {
        Some(fetcher) => engine.media_fetcher(fetcher),
        None => engine,
    }
    .build();
    let events = engine.subscribe();
    Node { engine, network, events }
}

impl Node {
    /// Waits for the first event of `instance` that `matches`, skipping others.
    async fn expect(
        &mut self,
        instance: &Instance,
        what: &str,
        matches: impl Fn(&GatewayEvent) -> bool,
    ) -> GatewayEvent {
        common::next_event(&mut self.events, instance, WAIT, what, matches).await
    }

    async fn expect_status(&mut self, instance: &Instance, status: InstanceStatus) -> GatewayEvent {
        common::expect_status(&mut self.events, instance, WAIT, status).await
    }

    /// Connects and pairs a new instance; returns it as stored, connected.
    async fn paired(&mut self, store: &Arc<dyn Store>, instance: &Instance, name: &str) -> Instance {
        common::pair(&self.engine, &mut self.events, store, instance, self.network.as_ref(), name, WAIT).await
    }
}

fn text(to: &str, body: &str) -> SendRequest {
    SendRequest {
        to: to.into(),
        content: SendContent::Text { body: body.into() },
        quoted_message_id: None,
        idempotency: None,
    }
}

fn phone_jid(instance: &Instance) -> String {
    format!("{}@s.whatsapp.net", instance.phone.as_deref().expect("paired").trim_start_matches('+'))
}

async fn pairing_sending_receipts_and_ordering(store: Arc<dyn Store>) {
    let mut node = node(store.clone(), SandboxNetwork::new());
    let sub = tenant(&store, 1000).await;
    let alice = new_instance(&store, &sub, "alice").await;
    let bob = new_instance(&store, &sub, "bob").await;
    let alice = node.paired(&store, &alice, "Alice").await;
    let bob = node.paired(&store, &bob, "Bob").await;
    assert_eq!(alice.status, InstanceStatus::Connected);
    assert!(alice.phone.as_deref().is_some_and(|p| p.starts_with("+1555")));
    assert_eq!(alice.qr_code, None, "the QR code is cleared once paired");

    // Alice -> Bob, five messages: Bob receives them in order, Alice sees delivered.
    let mut ids = Vec::new();
    for n in 0..5 {
        let accepted = node.engine.send(&alice, text(&phone_jid(&bob), &format!("m{n}"))).await.expect("send");
        assert_eq!(accepted.message.status, MessageStatus::Queued);
        ids.push(accepted.message.id);
    }
    let mut received = Vec::new();
    while received.len() < 5 {
        let event = node.expect(&bob, "a received message", |e| e.event_type == EventType::MessageReceived).await;
        assert_eq!(event.data["from"], phone_jid(&alice));
        received.push(event.data["text"].as_str().expect("text").to_owned());
    }
    assert_eq!(received, ["m0", "m1", "m2", "m3", "m4"]);
    let last = *ids.last().expect("ids");
    node.expect(&alice, "delivered", |e| {
        e.event_type == EventType::MessageStatus && e.data["id"] == json!(last) && e.data["status"] == "delivered"
    })
    .await;

    // Bob reads it: Alice sees read.
    let stored = store.get_message(alice.id, last).await.expect("message");
    let wa_id = stored.wa_message_id.expect("sent");
    let bob_connection = node.engine.connection(&bob).expect("connected");
    bob_connection.mark_read(&phone_jid(&alice), &[wa_id]).await.expect("read");
    node.expect(&alice, "read", |e| e.event_type == EventType::MessageStatus && e.data["status"] == "read").await;
    assert_eq!(store.get_message(alice.id, last).await.expect("message").status, MessageStatus::Read);

    // Bob's contact list knows Alice by her number and push name.
    let contact = store.find_contact_by_jid(bob.id, &phone_jid(&alice)).await.expect("find").expect("contact");
    assert_eq!(contact.notify.as_deref(), Some("Alice"));
    node.engine.shutdown().await;
}

async fn idempotent_retries_and_refusals_write_nothing(store: Arc<dyn Store>) {
    let mut node = node(store.clone(), SandboxNetwork::new());
    let sub = tenant(&store, 2).await;
    let inst = new_instance(&store, &sub, "idem").await;

    // Not connected yet: refused with the status, nothing written.
    let refused = node.engine.send(&inst, text("+15550009999", "hi")).await;
    assert!(matches!(refused, Err(EngineError::NotConnected { status: InstanceStatus::Created })));
    let inst = node.paired(&store, &inst, "Idem").await;

    let keyed = |body: &str, hash: &[u8]| SendRequest {
        idempotency: Some(Idempotency { key: "order-42".into(), request_hash: hash.to_vec() }),
        ..text("+15550009999", body)
    };
    let first = node.engine.send(&inst, keyed("hi", b"a")).await.expect("first");
    let retry = node.engine.send(&inst, keyed("hi", b"a")).await.expect("retry");
    assert!(retry.replayed);
    assert_eq!(retry.message.id, first.message.id);
    assert!(matches!(node.engine.send(&inst, keyed("other", b"b")).await, Err(EngineError::IdempotencyKeyReused)));

    for bad in [text("hello", "x"), text("+15550009999", "  ")] {
        assert!(matches!(node.engine.send(&inst, bad).await, Err(EngineError::Invalid(_))));
    }
    let oversized = SendRequest {
        content: SendContent::Media {
            kind: gw_core::MessageKind::Image,
            mime_type: "image/png".into(),
            file_name: None,
            data: vec![0; 6 * 1024 * 1024],
            caption: None,
        },
        ..text("+15550009999", "")
    };
    assert!(matches!(node.engine.send(&inst, oversized).await, Err(EngineError::Media(_))));

    // Quota of 2: the retry reserved nothing, so one more fits and the next is refused.
    node.engine.send(&inst, text("+15550009999", "second")).await.expect("second");
    assert!(matches!(
        node.engine.send(&inst, text("+15550009999", "third")).await,
        Err(EngineError::Quota(gw_sessions::QuotaError::Exceeded { limit: 2, .. }))
    ));
    let all = store.list_messages(inst.id, None, PageRequest::first(50)).await.expect("list");
    assert_eq!(all.items.len(), 2, "refused sends leave no row");
    node.engine.shutdown().await;
}

async fn restart_resumes_without_pairing_and_blips_are_not_logouts(store: Arc<dyn Store>) {
    let network = SandboxNetwork::new();
    let mut first = node(store.clone(), network.clone());
    let sub = tenant(&store, 1000).await;
    let inst = new_instance(&store, &sub, "resume").await;
    let inst = first.paired(&store, &inst, "Resume").await;
    let phone = inst.phone.clone();

    // A network blip: disconnected, then connected again by itself, same number, session still valid.
    network.drop_connection(inst.id).expect("blip");
    first.expect_status(&inst, InstanceStatus::Disconnected).await;
    first.expect_status(&inst, InstanceStatus::Connected).await;
    assert!(store.load_session(inst.id).await.expect("session").is_some_and(|s| s.session_valid));
    first.engine.shutdown().await;

    // A new node process (new engine, empty network): resumes from the stored, encrypted session.
    let mut second = node(store.clone(), SandboxNetwork::new());
    assert_eq!(second.engine.resume_all().await.expect("resume"), 1);
    second.expect_status(&inst, InstanceStatus::Connected).await;
    let resumed = store.get_instance(Visibility::All, inst.id).await.expect("instance");
    assert_eq!(resumed.phone, phone, "same account, no new pairing");

    // The phone unlinks the device: logged out, never retried, not resumed at the next start.
    second.network.unlink(inst.id).expect("unlink");
    second.expect_status(&inst, InstanceStatus::LoggedOut).await;
    assert!(!store.load_session(inst.id).await.expect("session").is_some_and(|s| s.session_valid));
    second.engine.shutdown().await;
    let third = node(store.clone(), SandboxNetwork::new());
    assert_eq!(third.engine.resume_all().await.expect("resume"), 0);
}

async fn stream_replaced_parks_the_instance(store: Arc<dyn Store>) {
    let mut node = node(store.clone(), SandboxNetwork::new());
    let sub = tenant(&store, 1000).await;
    let inst = new_instance(&store, &sub, "replaced").await;
    let inst = node.paired(&store, &inst, "R").await;
    node.network.replace(inst.id).expect("replace");
    node.expect_status(&inst, InstanceStatus::Replaced).await;
    let parked = store.get_instance(Visibility::All, inst.id).await.expect("instance");
    assert!(parked.last_error.as_deref().is_some_and(|e| e.contains("stream replaced")));
    // A restart through the API takes the session back.
    node.engine.restart(&parked).expect("restart");
    node.expect_status(&inst, InstanceStatus::Connected).await;
    node.engine.shutdown().await;
}

async fn inbound_from_a_lid_keeps_one_contact(store: Arc<dyn Store>) {
    let mut node = node(store.clone(), SandboxNetwork::new());
    let sub = tenant(&store, 1000).await;
    let inst = new_instance(&store, &sub, "lid").await;
    let inst = node.paired(&store, &inst, "L").await;
    let (_, acked) = node
        .network
        .inject_inbound(inst.id, "15557770001@s.whatsapp.net", Some("987654321@lid"), Some("Zoe".into()), "hello")
        .await
        .expect("inject");
    let event = node.expect(&inst, "the message", |e| e.event_type == EventType::MessageReceived).await;
    assert_eq!(event.data["from"], "15557770001@s.whatsapp.net");
    assert_eq!(event.data["content"]["sender_lid"], "987654321@lid");
    tokio::time::timeout(WAIT, acked).await.expect("acknowledged in time").expect("acknowledged");
    let by_lid = store.find_contact_by_jid(inst.id, "987654321@lid").await.expect("find").expect("contact");
    assert_eq!(by_lid.jid, "15557770001@s.whatsapp.net");
    assert_eq!(store.list_contacts(inst.id, None, PageRequest::first(10)).await.expect("list").items.len(), 1);
    node.engine.shutdown().await;
}

/// A driver that cannot reach its service, or that panics for one chosen instance; counts its connect calls.
#[derive(Debug, Default)]
struct BrokenDriver {
    panics_for: std::sync::Mutex<Option<gw_core::InstanceId>>,
    attempts: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl gw_sessions::Driver for BrokenDriver {
    async fn connect(
        &self,
        request: gw_sessions::ConnectRequest,
        _vault: Arc<dyn gw_sessions::AuthVault>,
    ) -> Result<(Box<dyn gw_sessions::Connection>, gw_sessions::DriverEvents), gw_sessions::DriverError> {
        self.attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if *self.panics_for.lock().expect("lock") == Some(request.instance_id) {
            panic!("driver bug for one instance");
        }
        Err(gw_sessions::DriverError::Transient("connection refused (127.0.0.1:9)".into()))
    }
}

async fn an_unreachable_service_backs_off_with_a_clear_error(store: Arc<dyn Store>) {
    let broken = Arc::new(BrokenDriver::default());
    let engine = common::engine(&store)
        .driver(DriverKind::Whatsapp, broken.clone())
        .config(common::fast_reconnects(10, 40))
        .build();
    let mut events = engine.subscribe();
    let sub = tenant(&store, 10).await;
    let inst = new_instance_on(&store, &sub, "wa", DriverKind::Whatsapp).await;
    engine.start(&inst, None).expect("start");
    // Several attempts, each recorded as disconnected with the driver's reason, never a crash or a logout.
    let mut disconnected = 0;
    while disconnected < 3 {
        let event = tokio::time::timeout(WAIT, events.recv()).await.expect("an event in time").expect("bus open");
        if event.event_type == EventType::ConnectionUpdate && event.data["status"] == "disconnected" {
            assert!(
                event.data["last_error"].as_str().is_some_and(|e| e.contains("connection refused")),
                "{}",
                event.data
            );
            disconnected += 1;
        }
    }
    let stored = store.get_instance(Visibility::All, inst.id).await.expect("instance");
    assert!(stored.connection_attempts >= 3, "attempts are counted: {}", stored.connection_attempts);
    assert!(stored.last_error_at.is_some());
    assert_ne!(stored.status, InstanceStatus::LoggedOut);
    engine.shutdown().await;
    let after = broken.attempts.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(engine.running(), 0);
    // Stopped means stopped: no attempt after shutdown returns.
    assert_eq!(broken.attempts.load(std::sync::atomic::Ordering::SeqCst), after);
}

async fn a_panicking_instance_never_touches_another(store: Arc<dyn Store>) {
    let broken = Arc::new(BrokenDriver::default());
    let network = SandboxNetwork::new();
    let engine = common::engine(&store)
        .driver(DriverKind::Whatsapp, broken.clone())
        .driver(DriverKind::Sandbox, Arc::new(SandboxDriver::new(network.clone())))
        .config(common::fast_reconnects(10, 40))
        .build();
    let mut node = Node { events: engine.subscribe(), engine, network };
    let sub = tenant(&store, 10).await;
    let bad = new_instance_on(&store, &sub, "bad", DriverKind::Whatsapp).await;
    *broken.panics_for.lock().expect("lock") = Some(bad.id);
    node.engine.start(&bad, None).expect("start");
    let good = new_instance(&store, &sub, "good").await;
    let good = node.paired(&store, &good, "Good").await;
    // The panicking instance is restarted by its supervisor (attempts keep coming) and reports it.
    node.expect(&bad, "the panic reported", |e| {
        e.event_type == EventType::ConnectionUpdate
            && e.data["last_error"].as_str().is_some_and(|r| r.contains("internal error"))
    })
    .await;
    let before = broken.attempts.load(std::sync::atomic::Ordering::SeqCst);
    node.expect(&bad, "another attempt", |e| {
        e.event_type == EventType::ConnectionUpdate && e.data["status"] == "connecting"
    })
    .await;
    assert!(broken.attempts.load(std::sync::atomic::Ordering::SeqCst) >= before);
    // Meanwhile the healthy instance sends as usual.
    node.engine.send(&good, text("+15550001234", "still fine")).await.expect("send");
    node.expect(&good, "sent", |e| e.event_type == EventType::MessageSent).await;
    node.engine.shutdown().await;
}

/// Serves fixed answers per URL, standing in for the egress client (which has its own tests against a real server).
#[derive(Debug)]
struct FixedFetcher;

#[async_trait::async_trait]
impl MediaFetcher for FixedFetcher {
    async fn fetch(&self, url: &str, max_bytes: u64) -> Result<FetchedMedia, FetchError> {
        match url {
            "https://media.example/cat.png" => {
                Ok(FetchedMedia { bytes: b"\x89PNG fake".to_vec(), content_type: Some("image/png".into()) })
            }
            "https://media.example/huge.png" => Err(FetchError::TooLarge { limit: max_bytes }),
            "https://media.example/virus.exe" => {
                Ok(FetchedMedia { bytes: b"MZ".to_vec(), content_type: Some("application/x-msdownload".into()) })
            }
            _ => Err(FetchError::Failed("HTTP 404".into())),
        }
    }
}

fn image_url(url: &str) -> SendRequest {
    SendRequest {
        content: SendContent::MediaUrl {
            kind: gw_core::MessageKind::Image,
            url: url.into(),
            mime_type: None,
            file_name: Some("cat.png".into()),
            caption: Some("a cat".into()),
        },
        ..text("+15550009999", "")
    }
}

async fn media_by_url_is_fetched_before_the_send_is_accepted(store: Arc<dyn Store>) {
    let network = SandboxNetwork::new();
    let mut plain = node(store.clone(), network.clone());
    let sub = tenant(&store, 100).await;
    let inst = new_instance(&store, &sub, "media").await;
    let inst = plain.paired(&store, &inst, "Media").await;

    // Without a fetcher the gateway says so instead of failing later.
    match plain.engine.send(&inst, image_url("https://media.example/cat.png")).await {
        Err(EngineError::Invalid(e)) => assert_eq!(e.field, "media.url"),
        other => panic!("expected a refusal naming media.url, got {other:?}"),
    }
    plain.engine.shutdown().await;

    let node = node_with(store.clone(), network, Some(Arc::new(FixedFetcher)));
    let inst = store.get_instance(Visibility::All, inst.id).await.expect("instance");
    node.engine.resume_all().await.expect("resume");
    let accepted = node.engine.send(&inst, image_url("https://media.example/cat.png")).await.expect("accepted");
    assert_eq!(accepted.message.kind, gw_core::MessageKind::Image);
    let media = accepted.message.content.media().expect("the attachment's metadata");
    assert_eq!(media.mime_type, "image/png", "type taken from the response");
    assert_eq!(media.size_bytes, 9);

    assert!(matches!(
        node.engine.send(&inst, image_url("https://media.example/huge.png")).await,
        Err(EngineError::Media(MediaRefused::TooLargeAtUrl { .. }))
    ));
    assert!(matches!(
        node.engine.send(&inst, image_url("https://media.example/virus.exe")).await,
        Err(EngineError::Media(MediaRefused::UnsupportedType { .. }))
    ));
    assert!(matches!(
        node.engine.send(&inst, image_url("https://media.example/gone")).await,
        Err(EngineError::Invalid(_))
    ));
    assert!(matches!(
        node.engine.send(&inst, image_url("ftp://media.example/cat.png")).await,
        Err(EngineError::Invalid(_))
    ));
    let all = store.list_messages(inst.id, None, PageRequest::first(50)).await.expect("list");
    assert_eq!(all.items.len(), 1, "only the fetched send left a row");
    node.engine.shutdown().await;
}

async fn logging_out_an_instance_that_never_paired_parks_it(store: Arc<dyn Store>) {
    let node = node(store.clone(), SandboxNetwork::new());
    let sub = tenant(&store, 10).await;
    let inst = new_instance(&store, &sub, "never-paired").await;
    assert_eq!(store.load_session(inst.id).await.expect("load"), None, "no session was ever saved");
    node.engine.logout(&inst).await.expect("logging out needs no stored session");
    let after = store.get_instance(Visibility::All, inst.id).await.expect("instance");
    assert_eq!(after.status, InstanceStatus::LoggedOut);
    node.engine.shutdown().await;
}

/// The sandbox driver, except that its connections "crash" right after putting a message on the wire: `send`
/// delivers through the sandbox network, signals, and never returns, as a process killed before it recorded the
/// send would. The network (WhatsApp) lives on; the gateway restarts and sends the queued row again.
#[derive(Debug)]
struct CrashAfterSend {
    inner: SandboxDriver,
    on_the_wire: Arc<tokio::sync::Notify>,
}

#[derive(Debug)]
struct CrashingConnection {
    inner: Box<dyn gw_sessions::Connection>,
    on_the_wire: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl gw_sessions::Driver for CrashAfterSend {
    async fn connect(
        &self,
        request: gw_sessions::ConnectRequest,
        vault: Arc<dyn gw_sessions::AuthVault>,
    ) -> Result<(Box<dyn gw_sessions::Connection>, gw_sessions::DriverEvents), gw_sessions::DriverError> {
        let (inner, events) = self.inner.connect(request, vault).await?;
        Ok((Box::new(CrashingConnection { inner, on_the_wire: self.on_the_wire.clone() }), events))
    }
}

#[async_trait::async_trait]
impl gw_sessions::Connection for CrashingConnection {
    async fn send(
        &self,
        message: gw_sessions::OutgoingMessage,
    ) -> Result<gw_sessions::SentMessage, gw_sessions::DriverError> {
        self.inner.send(message).await?;
        self.on_the_wire.notify_one();
        std::future::pending().await
    }
    async fn mark_read(&self, chat_jid: &str, ids: &[String]) -> Result<(), gw_sessions::DriverError> {
        self.inner.mark_read(chat_jid, ids).await
    }
    async fn send_presence(&self, jid: &str, presence: gw_sessions::Presence) -> Result<(), gw_sessions::DriverError> {
        self.inner.send_presence(jid, presence).await
    }
    async fn set_blocked(&self, jid: &str, blocked: bool) -> Result<(), gw_sessions::DriverError> {
        self.inner.set_blocked(jid, blocked).await
    }
    async fn groups(&self) -> Result<Vec<gw_sessions::GroupInfo>, gw_sessions::DriverError> {
        self.inner.groups().await
    }
    async fn request_pair_code(&self, phone: &str) -> Result<String, gw_sessions::DriverError> {
        self.inner.request_pair_code(phone).await
    }
    async fn logout(&self) -> Result<(), gw_sessions::DriverError> {
        self.inner.logout().await
    }
    async fn disconnect(&self) {
        self.inner.disconnect().await;
    }
}

/// A message sent on the wire but not yet recorded as sent when the gateway died is sent again after the restart
/// under the id it was given when accepted, so the recipient gets it once; the stored id never changes.
async fn a_message_resent_after_a_crash_reaches_the_recipient_once(store: Arc<dyn Store>) {
    let network = SandboxNetwork::new();
    let on_the_wire = Arc::new(tokio::sync::Notify::new());
    let crashing =
        Arc::new(CrashAfterSend { inner: SandboxDriver::new(network.clone()), on_the_wire: on_the_wire.clone() });
    let engine = common::engine(&store).driver(DriverKind::Sandbox, crashing).build();
    let mut first = Node { events: engine.subscribe(), engine, network: network.clone() };
    let sub = tenant(&store, 100).await;
    let inst = new_instance(&store, &sub, "crashy").await;
    let inst = first.paired(&store, &inst, "Crashy").await;

    let recipient = "15550007777@s.whatsapp.net";
    let accepted = first.engine.send(&inst, text("+1 555 000 7777", "only once")).await.expect("send");
    let wa_id = accepted.message.wa_message_id.clone().expect("the id is chosen when the message is accepted");
    tokio::time::timeout(WAIT, on_the_wire.notified()).await.expect("the message went out on the wire");
    let seen = network.received(recipient);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].wa_message_id, wa_id);
    let row = store.get_message(inst.id, accepted.message.id).await.expect("message");
    assert_eq!(row.status, MessageStatus::Queued, "the crash window: sent on the wire, not recorded as sent");
    first.engine.shutdown().await;

    // The restarted gateway resumes the instance and its outbox sends the queued message again.
    let mut second = node(store.clone(), network.clone());
    assert_eq!(second.engine.resume_all().await.expect("resume"), 1);
    second
        .expect(&inst, "the resent message recorded as sent", |e| {
            e.event_type == EventType::MessageSent && e.data["id"] == json!(accepted.message.id)
        })
        .await;
    let after = second.engine.send(&inst, text("+1 555 000 7777", "and then this")).await.expect("send");
    second
        .expect(&inst, "the next message sent", |e| {
            e.event_type == EventType::MessageSent && e.data["id"] == json!(after.message.id)
        })
        .await;
    let texts: Vec<_> = network.received(recipient).into_iter().map(|d| (d.wa_message_id, d.text, d.copies)).collect();
    assert_eq!(
        texts,
        [
            (wa_id.clone(), Some("only once".to_owned()), 2),
            (after.message.wa_message_id.clone().expect("id"), Some("and then this".to_owned()), 1)
        ],
        "the recipient got the first message once, though it was sent twice"
    );
    let row = store.get_message(inst.id, accepted.message.id).await.expect("message");
    assert!(matches!(row.status, MessageStatus::Sent | MessageStatus::Delivered), "{:?}", row.status);
    assert_eq!(row.wa_message_id.as_deref(), Some(wa_id.as_str()), "the stored id never changes");
    assert_eq!(store.get_subscription(sub.id).await.expect("sub").messages_used, 2, "each accepted message paid once");
    second.engine.shutdown().await;
}

/// Each test gets a fresh, migrated store on each backend (the database is dropped even if the test panics).
async fn store(database: &TestDatabase) -> Arc<dyn Store> {
    database.store().await
}

gw_test_support::on_both_backends!(store =>
    an_unreachable_service_backs_off_with_a_clear_error,
    a_panicking_instance_never_touches_another,
    pairing_sending_receipts_and_ordering,
    idempotent_retries_and_refusals_write_nothing,
    restart_resumes_without_pairing_and_blips_are_not_logouts,
    stream_replaced_parks_the_instance,
    inbound_from_a_lid_keeps_one_contact,
    media_by_url_is_fetched_before_the_send_is_accepted,
    logging_out_an_instance_that_never_paired_parks_it,
    a_message_resent_after_a_crash_reaches_the_recipient_once,
);
