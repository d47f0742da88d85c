//! The shared sandbox network's server: one [`SandboxNetwork`] that several nodes dial (`gateway sandbox-network`).
//!
//! Each node's connections run here through the same [`SandboxDriver`] the embedded mode uses; only the ends
//! differ. The node's credential vault is reached back over the node's own link, so credentials stay in the node's
//! session store. When a node's link ends (the node died or restarted), its connections are disconnected, so the
//! accounts go offline and the next connection of the same device is not a replacement; the inbound messages it
//! had not acknowledged are delivered again, in order, as WhatsApp does, so a node's crash loses none.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use gw_core::InstanceId;

use super::wire::{
    Answer, Call, CallError, ClientFrame, MAX_LINE, ServerFrame, VaultOp, WireEvent, WireInbound, encode,
};
use super::{SandboxControl, SandboxDriver, SandboxNetwork};
use crate::{AuthVault, ConnectRequest, Connection, Driver, DriverError, DriverEvent, DriverEvents, InboundAck};

/// How long the network waits for a node's vault to answer.
const VAULT_WAIT: Duration = Duration::from_secs(10);

/// Serves `network` on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, network: Arc<SandboxNetwork>, shutdown: impl Future<Output = ()>) {
    let driver = SandboxDriver::new(network.clone());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::info!(%peer, "a node joined the sandbox network");
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_node(stream, network.clone(), driver.clone()));
                }
                Err(err) => {
                    // Out of descriptors and the like: the listener itself stays usable.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// An inbound message the node has not acknowledged yet.
#[derive(Debug)]
struct Unacked {
    ack: InboundAck,
    instance_id: InstanceId,
    message: WireInbound,
}

/// What a node's vault answered.
type VaultAnswer = Result<Option<Vec<u8>>, DriverError>;

/// One node's link.
#[derive(Debug, Default)]
struct Node {
    out: Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>,
    connections: Mutex<HashMap<u64, Arc<dyn Connection>>>,
    /// Inbound messages sent to the node and not yet acknowledged, by token.
    acks: Mutex<HashMap<u64, Unacked>>,
    vault_waiters: Mutex<HashMap<u64, oneshot::Sender<VaultAnswer>>>,
    next: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Single inserts and removes: a poisoned map is still consistent.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Node {
    fn send(&self, frame: &ServerFrame) {
        if let (Some(out), Some(line)) = (lock(&self.out).as_ref(), encode(frame)) {
            let _ = out.send(line);
        }
    }

    fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn connection(&self, conn: u64) -> Result<Arc<dyn Connection>, DriverError> {
        lock(&self.connections).get(&conn).cloned().ok_or(DriverError::NotConnected)
    }
}

async fn serve_node(stream: TcpStream, network: Arc<SandboxNetwork>, driver: SandboxDriver) {
    let (read, mut write) = stream.into_split();
    let (out, mut lines) = mpsc::unbounded_channel::<Vec<u8>>();
    let node = Arc::new(Node { out: Mutex::new(Some(out)), ..Node::default() });
    let writer = tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            if write.write_all(&line).await.is_err() {
                break;
            }
        }
    });
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut line).await {
            Ok(0) => break,
            Ok(_) if line.last() != Some(&b'\n') => {
                tracing::warn!("a node sent an overlong or truncated line; closing its link");
                break;
            }
            Ok(_) => {}
            Err(err) => {
                tracing::info!(%err, "a node's link failed");
                break;
            }
        }
        let frame: ClientFrame = match serde_json::from_slice(&line) {
            Ok(frame) => frame,
            Err(err) => {
                tracing::warn!(%err, "a node sent a frame this network does not understand; closing its link");
                break;
            }
        };
        match frame {
            ClientFrame::Request { id, call } => {
                let (node, network, driver) = (node.clone(), network.clone(), driver.clone());
                tokio::spawn(async move {
                    let result = answer(&node, &network, &driver, call).await;
                    node.send(&ServerFrame::Reply { id, result });
                });
            }
            ClientFrame::Ack { token } => {
                if let Some(unacked) = lock(&node.acks).remove(&token) {
                    unacked.ack.ack();
                }
            }
            ClientFrame::VaultReply { id, result } => {
                if let Some(waiter) = lock(&node.vault_waiters).remove(&id) {
                    let _ = waiter.send(result.map_err(DriverError::from));
                }
            }
        }
    }
    // The node is gone: its accounts go offline, as when a phone loses a linked device's connection.
    lock(&node.out).take();
    let connections: Vec<_> = lock(&node.connections).drain().map(|(_, c)| c).collect();
    for connection in connections {
        connection.disconnect().await;
    }
    lock(&node.vault_waiters).clear();
    let mut unacked: Vec<(u64, Unacked)> = lock(&node.acks).drain().collect();
    unacked.sort_by_key(|(token, _)| *token);
    let redelivered = unacked.len();
    {
        let mut state = network.lock();
        for (_, Unacked { ack, instance_id, message }) in unacked {
            if let Some(jid) = state.jid_of.get(&instance_id).cloned() {
                state.deliver(&jid, DriverEvent::Message(message.into_message(ack)));
            }
        }
    }
    if redelivered > 0 {
        tracing::info!(redelivered, "inbound messages the node had not acknowledged are delivered again");
    }
    let _ = writer.await;
    tracing::info!("a node left the sandbox network");
}

async fn answer(
    node: &Arc<Node>,
    network: &Arc<SandboxNetwork>,
    driver: &SandboxDriver,
    call: Call,
) -> Result<Answer, CallError> {
    let driver_call = |e: DriverError| CallError::Driver(e.into());
    let control = CallError::Sandbox;
    match call {
        Call::Connect { conn, instance_id, pair_phone } => {
            let vault = Arc::new(RemoteVault { node: node.clone(), conn });
            let request = ConnectRequest { instance_id, pair_phone };
            let (connection, events) = driver.connect(request, vault).await.map_err(driver_call)?;
            let connection: Arc<dyn Connection> = Arc::from(connection);
            lock(&node.connections).insert(conn, connection.clone());
            tokio::spawn(pump(node.clone(), conn, instance_id, events));
            if lock(&node.out).is_none() {
                // The node left while this connection was being made: nobody would read it.
                lock(&node.connections).remove(&conn);
                connection.disconnect().await;
            }
            Ok(Answer::Done)
        }
        Call::Send { conn, message } => {
            let connection = node.connection(conn).map_err(driver_call)?;
            connection.send(message.into()).await.map(Answer::from).map_err(driver_call)
        }
        Call::MarkRead { conn, chat_jid, ids } => {
            let connection = node.connection(conn).map_err(driver_call)?;
            connection.mark_read(&chat_jid, &ids).await.map(|()| Answer::Done).map_err(driver_call)
        }
        Call::Presence { conn, chat_jid, presence } => {
            let connection = node.connection(conn).map_err(driver_call)?;
            connection.send_presence(&chat_jid, presence).await.map(|()| Answer::Done).map_err(driver_call)
        }
        Call::Block { conn, jid, blocked } => {
            let connection = node.connection(conn).map_err(driver_call)?;
            connection.set_blocked(&jid, blocked).await.map(|()| Answer::Done).map_err(driver_call)
        }
        Call::Groups { conn } => {
            let connection = node.connection(conn).map_err(driver_call)?;
            connection.groups().await.map(Answer::Groups).map_err(driver_call)
        }
        Call::CheckNumbers { conn, phones } => {
            let connection = node.connection(conn).map_err(driver_call)?;
            connection.check_numbers(&phones).await.map(Answer::Numbers).map_err(driver_call)
        }
        Call::PairCode { conn, phone } => {
            let connection = node.connection(conn).map_err(driver_call)?;
            connection.request_pair_code(&phone).await.map(Answer::Text).map_err(driver_call)
        }
        Call::Logout { conn } => {
            let connection = node.connection(conn).map_err(driver_call)?;
            connection.logout().await.map(|()| Answer::Done).map_err(driver_call)
        }
        Call::Disconnect { conn } => {
            let connection = lock(&node.connections).remove(&conn);
            if let Some(connection) = connection {
                connection.disconnect().await;
            }
            Ok(Answer::Done)
        }
        Call::Scan { instance_id, display_name } => {
            network.scan(instance_id, display_name).await.map(Answer::Text).map_err(control)
        }
        Call::Inbound { message, wait_ms } => {
            let wait = Duration::from_millis(wait_ms.min(60_000));
            SandboxControl::inbound(network.as_ref(), message, wait).await.map(Answer::Inbound).map_err(control)
        }
        Call::Drop { instance_id } => network.drop_connection(instance_id).map(|()| Answer::Done).map_err(control),
        Call::Unlink { instance_id } => network.unlink(instance_id).map(|()| Answer::Done).map_err(control),
        Call::Replace { instance_id } => network.replace(instance_id).map(|()| Answer::Done).map_err(control),
        Call::CreateGroup { subject, participants, admins } => {
            Ok(Answer::Text(network.create_group(&subject, &participants, &admins)))
        }
        Call::Received { jid } => Ok(Answer::Received(network.received(&jid))),
        Call::SetOnWhatsApp { phones, on_whatsapp } => {
            network.set_on_whatsapp(&phones, on_whatsapp);
            Ok(Answer::Done)
        }
    }
}

/// Sends a connection's events to its node, in order, keeping each message's acknowledgement until the node
/// returns it; says `Closed` when the network ends the connection.
async fn pump(node: Arc<Node>, conn: u64, instance_id: InstanceId, mut events: DriverEvents) {
    while let Some(event) = events.recv().await {
        let mut kept = None;
        let event = WireEvent::from_event(event, |ack| {
            let token = node.next();
            kept = Some((token, ack));
            token
        });
        if let (Some((token, ack)), WireEvent::Message(message)) = (kept, &event) {
            lock(&node.acks).insert(token, Unacked { ack, instance_id, message: message.clone() });
        }
        node.send(&ServerFrame::Event { conn, event });
    }
    lock(&node.connections).remove(&conn);
    node.send(&ServerFrame::Closed { conn });
}

/// A connection's credential vault, which stays on its node: every call goes back over the node's link.
#[derive(Debug)]
struct RemoteVault {
    node: Arc<Node>,
    conn: u64,
}

impl RemoteVault {
    async fn call(&self, op: VaultOp) -> VaultAnswer {
        let id = self.node.next();
        let (tx, rx) = oneshot::channel();
        lock(&self.node.vault_waiters).insert(id, tx);
        self.node.send(&ServerFrame::Vault { id, conn: self.conn, op });
        let result = tokio::time::timeout(VAULT_WAIT, rx).await;
        lock(&self.node.vault_waiters).remove(&id);
        match result {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(DriverError::Transient("the node's link to the sandbox network closed".into())),
            Err(_) => Err(DriverError::Transient("the node's session store did not answer in time".into())),
        }
    }
}

#[async_trait::async_trait]
impl AuthVault for RemoteVault {
    async fn load(&self) -> Result<Option<Vec<u8>>, DriverError> {
        self.call(VaultOp::Load).await
    }

    async fn save(&self, state: &[u8]) -> Result<(), DriverError> {
        self.call(VaultOp::Save { state: state.to_vec() }).await.map(|_| ())
    }

    async fn invalidate(&self) -> Result<(), DriverError> {
        self.call(VaultOp::Invalidate).await.map(|_| ())
    }
}
