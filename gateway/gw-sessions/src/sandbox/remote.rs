//! A node's side of the shared sandbox network (`sessions.sandbox_network`): a [`Driver`] and the
//! [`SandboxControl`] API over one TCP link to the `gateway sandbox-network` process.
//!
//! The link is dialled on first use and again after it breaks. A broken link ends every connection made over it
//! (their event streams close, so the engine reconnects them with its usual backoff) and fails calls in flight as
//! transient; a control call then answers `Unreachable`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gw_core::InstanceId;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::wire::{Answer, Call, CallError, ClientFrame, MAX_LINE, ServerFrame, VaultOp, encode};
use super::{InboundOutcome, SandboxControl, SandboxDelivery, SandboxError, SandboxInbound, forward};
use crate::{
    AuthVault, ConnectRequest, Connection, Driver, DriverError, DriverEvent, DriverEvents, GroupInfo, NumberCheck,
    OutgoingMessage, Presence, SentMessage,
};

/// How long a call may wait for the network's answer (an inbound message's own wait comes on top).
const CALL_WAIT: Duration = Duration::from_secs(15);
/// How long dialling the network may take.
const DIAL_WAIT: Duration = Duration::from_secs(5);

/// The shared sandbox network, as seen from one node.
#[derive(Debug)]
pub struct RemoteSandbox {
    addr: String,
    link: tokio::sync::Mutex<Option<Arc<Link>>>,
    next_conn: AtomicU64,
}

#[derive(Debug)]
struct ConnEntry {
    vault: Arc<dyn AuthVault>,
    events: mpsc::UnboundedSender<DriverEvent>,
}

/// One TCP link to the network.
#[derive(Debug)]
struct Link {
    out: mpsc::UnboundedSender<Vec<u8>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Answer, CallError>>>>,
    connections: Mutex<HashMap<u64, ConnEntry>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    /// The reader and writer tasks, ended by [`RemoteSandbox::hang_up`].
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Single inserts and removes: a poisoned map is still consistent.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why a call did not get an answer.
enum LinkError {
    Unreachable(String),
    Failed(CallError),
}

impl From<LinkError> for DriverError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Unreachable(cause) => DriverError::Transient(format!("sandbox network: {cause}")),
            LinkError::Failed(CallError::Driver(e)) => e.into(),
            LinkError::Failed(CallError::Sandbox(e)) => DriverError::Other(e.to_string()),
        }
    }
}

impl From<LinkError> for SandboxError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Unreachable(cause) => SandboxError::Unreachable(cause),
            LinkError::Failed(CallError::Sandbox(e)) => e,
            LinkError::Failed(CallError::Driver(e)) => SandboxError::Unreachable(DriverError::from(e).to_string()),
        }
    }
}

fn unexpected(answer: &Answer) -> LinkError {
    LinkError::Unreachable(format!("unexpected answer {answer:?}"))
}

impl Link {
    fn send(&self, frame: &ClientFrame) -> Result<(), LinkError> {
        let line = encode(frame).ok_or_else(|| LinkError::Unreachable("a frame could not be encoded".into()))?;
        self.out.send(line).map_err(|_| LinkError::Unreachable("the link closed".into()))
    }

    async fn call(&self, call: Call, wait: Duration) -> Result<Answer, LinkError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        if let Err(e) = self.send(&ClientFrame::Request { id, call }) {
            lock(&self.pending).remove(&id);
            return Err(e);
        }
        let result = tokio::time::timeout(wait, rx).await;
        lock(&self.pending).remove(&id);
        match result {
            Ok(Ok(answer)) => answer.map_err(LinkError::Failed),
            Ok(Err(_)) => Err(LinkError::Unreachable("the link closed".into())),
            Err(_) => Err(LinkError::Unreachable(format!("no answer within {wait:?}"))),
        }
    }

    /// Handles one frame from the network.
    fn receive(self: &Arc<Self>, frame: ServerFrame) {
        match frame {
            ServerFrame::Reply { id, result } => {
                if let Some(waiter) = lock(&self.pending).remove(&id) {
                    let _ = waiter.send(result);
                }
            }
            ServerFrame::Event { conn, event } => {
                let event = event.into_event(|token, acked| {
                    let link = self.clone();
                    tokio::spawn(async move {
                        if acked.await.is_ok() {
                            let _ = link.send(&ClientFrame::Ack { token });
                        }
                    });
                });
                if let Some(entry) = lock(&self.connections).get(&conn) {
                    let _ = entry.events.send(event);
                }
            }
            ServerFrame::Closed { conn } => {
                lock(&self.connections).remove(&conn);
            }
            ServerFrame::Vault { id, conn, op } => {
                let vault = lock(&self.connections).get(&conn).map(|entry| entry.vault.clone());
                let link = self.clone();
                tokio::spawn(async move {
                    let result = match vault {
                        None => Err(DriverError::NotConnected),
                        Some(vault) => match op {
                            VaultOp::Load => vault.load().await,
                            VaultOp::Save { state } => vault.save(&state).await.map(|()| None),
                            VaultOp::Invalidate => vault.invalidate().await.map(|()| None),
                        },
                    };
                    let _ = link.send(&ClientFrame::VaultReply { id, result: result.map_err(Into::into) });
                });
            }
        }
    }

    /// The link is gone: calls in flight fail, every connection's events end.
    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        lock(&self.pending).clear();
        lock(&self.connections).clear();
    }
}

impl RemoteSandbox {
    /// The network at `addr` (`host:port`); nothing is dialled until first use.
    pub fn new(addr: impl Into<String>) -> Arc<Self> {
        Arc::new(Self { addr: addr.into(), link: tokio::sync::Mutex::new(None), next_conn: AtomicU64::new(1) })
    }

    async fn link(&self) -> Result<Arc<Link>, LinkError> {
        let mut current = self.link.lock().await;
        if let Some(link) = current.as_ref()
            && !link.closed.load(Ordering::Relaxed)
        {
            return Ok(link.clone());
        }
        let stream = match tokio::time::timeout(DIAL_WAIT, TcpStream::connect(&self.addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(LinkError::Unreachable(format!("cannot reach {}: {err}", self.addr))),
            Err(_) => return Err(LinkError::Unreachable(format!("cannot reach {} within {DIAL_WAIT:?}", self.addr))),
        };
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let (out, mut lines) = mpsc::unbounded_channel::<Vec<u8>>();
        let link = Arc::new(Link {
            out,
            pending: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        });
        let writer = tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                if write.write_all(&line).await.is_err() {
                    break;
                }
            }
        });
        let reader_link = link.clone();
        let reader = tokio::spawn(async move {
            let mut reader = BufReader::new(read);
            let mut line = Vec::new();
            loop {
                line.clear();
                match (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut line).await {
                    Ok(n) if n > 0 && line.last() == Some(&b'\n') => {}
                    _ => break,
                }
                match serde_json::from_slice::<ServerFrame>(&line) {
                    Ok(frame) => reader_link.receive(frame),
                    Err(err) => {
                        tracing::warn!(%err, "the sandbox network sent a frame this node does not understand");
                        break;
                    }
                }
            }
            tracing::info!("the link to the shared sandbox network closed");
            reader_link.close();
        });
        lock(&link.tasks).extend([writer.abort_handle(), reader.abort_handle()]);
        *current = Some(link.clone());
        Ok(link)
    }

    /// Closes the link now, as a node's crash would (the network then treats this node as gone); the next use
    /// dials again.
    pub async fn hang_up(&self) {
        if let Some(link) = self.link.lock().await.take() {
            for task in lock(&link.tasks).drain(..) {
                task.abort();
            }
            link.close();
        }
    }

    async fn control(&self, call: Call, wait: Duration) -> Result<Answer, SandboxError> {
        Ok(self.link().await?.call(call, wait).await?)
    }
}

#[async_trait::async_trait]
impl Driver for RemoteSandbox {
    async fn connect(
        &self,
        request: ConnectRequest,
        vault: Arc<dyn AuthVault>,
    ) -> Result<(Box<dyn Connection>, DriverEvents), DriverError> {
        let link = self.link().await?;
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(1024);
        let (events, queue) = mpsc::unbounded_channel();
        forward(queue, tx);
        // Registered before the call: the network asks the vault, and may send events, before it answers.
        lock(&link.connections).insert(conn, ConnEntry { vault, events });
        let call = Call::Connect { conn, instance_id: request.instance_id, pair_phone: request.pair_phone };
        if let Err(e) = link.call(call, CALL_WAIT).await {
            lock(&link.connections).remove(&conn);
            return Err(e.into());
        }
        Ok((Box::new(RemoteConnection { link, conn }), rx))
    }
}

/// One instance's connection, made over one link.
#[derive(Debug)]
struct RemoteConnection {
    link: Arc<Link>,
    conn: u64,
}

impl RemoteConnection {
    async fn call(&self, call: Call) -> Result<Answer, DriverError> {
        Ok(self.link.call(call, CALL_WAIT).await?)
    }

    async fn done(&self, call: Call) -> Result<(), DriverError> {
        match self.call(call).await? {
            Answer::Done => Ok(()),
            other => Err(unexpected(&other).into()),
        }
    }
}

#[async_trait::async_trait]
impl Connection for RemoteConnection {
    async fn send(&self, message: OutgoingMessage) -> Result<SentMessage, DriverError> {
        match self.call(Call::Send { conn: self.conn, message: message.into() }).await? {
            Answer::Sent { wa_message_id, timestamp } => Ok(SentMessage { wa_message_id, timestamp }),
            other => Err(unexpected(&other).into()),
        }
    }

    async fn mark_read(&self, chat_jid: &str, wa_message_ids: &[String]) -> Result<(), DriverError> {
        self.done(Call::MarkRead { conn: self.conn, chat_jid: chat_jid.to_owned(), ids: wa_message_ids.to_vec() }).await
    }

    async fn send_presence(&self, chat_jid: &str, presence: Presence) -> Result<(), DriverError> {
        self.done(Call::Presence { conn: self.conn, chat_jid: chat_jid.to_owned(), presence }).await
    }

    async fn set_blocked(&self, jid: &str, blocked: bool) -> Result<(), DriverError> {
        self.done(Call::Block { conn: self.conn, jid: jid.to_owned(), blocked }).await
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, DriverError> {
        match self.call(Call::Groups { conn: self.conn }).await? {
            Answer::Groups(groups) => Ok(groups),
            other => Err(unexpected(&other).into()),
        }
    }

    async fn check_numbers(&self, phones: &[String]) -> Result<Vec<NumberCheck>, DriverError> {
        match self.call(Call::CheckNumbers { conn: self.conn, phones: phones.to_vec() }).await? {
            Answer::Numbers(checks) => Ok(checks),
            other => Err(unexpected(&other).into()),
        }
    }

    async fn request_pair_code(&self, phone: &str) -> Result<String, DriverError> {
        match self.call(Call::PairCode { conn: self.conn, phone: phone.to_owned() }).await? {
            Answer::Text(code) => Ok(code),
            other => Err(unexpected(&other).into()),
        }
    }

    async fn logout(&self) -> Result<(), DriverError> {
        self.done(Call::Logout { conn: self.conn }).await
    }

    async fn disconnect(&self) {
        lock(&self.link.connections).remove(&self.conn);
        // A link that is gone took the connection with it on the network's side.
        let _ = self.link.call(Call::Disconnect { conn: self.conn }, CALL_WAIT).await;
    }
}

fn done(answer: Answer) -> Result<(), SandboxError> {
    match answer {
        Answer::Done => Ok(()),
        other => Err(unexpected(&other).into()),
    }
}

fn text(answer: Answer) -> Result<String, SandboxError> {
    match answer {
        Answer::Text(text) => Ok(text),
        other => Err(unexpected(&other).into()),
    }
}

#[async_trait::async_trait]
impl SandboxControl for RemoteSandbox {
    async fn scan(&self, instance_id: InstanceId, display_name: Option<String>) -> Result<String, SandboxError> {
        text(self.control(Call::Scan { instance_id, display_name }, CALL_WAIT).await?)
    }

    async fn inbound(&self, message: SandboxInbound, wait: Duration) -> Result<InboundOutcome, SandboxError> {
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        match self.control(Call::Inbound { message, wait_ms }, wait + CALL_WAIT).await? {
            Answer::Inbound(outcome) => Ok(outcome),
            other => Err(unexpected(&other).into()),
        }
    }

    async fn drop_connection(&self, instance_id: InstanceId) -> Result<(), SandboxError> {
        done(self.control(Call::Drop { instance_id }, CALL_WAIT).await?)
    }

    async fn unlink(&self, instance_id: InstanceId) -> Result<(), SandboxError> {
        done(self.control(Call::Unlink { instance_id }, CALL_WAIT).await?)
    }

    async fn replace(&self, instance_id: InstanceId) -> Result<(), SandboxError> {
        done(self.control(Call::Replace { instance_id }, CALL_WAIT).await?)
    }

    async fn create_group(
        &self,
        subject: String,
        participants: Vec<String>,
        admins: Vec<String>,
    ) -> Result<String, SandboxError> {
        text(self.control(Call::CreateGroup { subject, participants, admins }, CALL_WAIT).await?)
    }

    async fn received(&self, jid: String) -> Result<Vec<SandboxDelivery>, SandboxError> {
        match self.control(Call::Received { jid }, CALL_WAIT).await? {
            Answer::Received(list) => Ok(list),
            other => Err(unexpected(&other).into()),
        }
    }

    async fn set_on_whatsapp(&self, phones: Vec<String>, on_whatsapp: bool) -> Result<(), SandboxError> {
        done(self.control(Call::SetOnWhatsApp { phones, on_whatsapp }, CALL_WAIT).await?)
    }
}
