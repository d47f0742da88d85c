//! The sandbox driver: an in-process simulation of the WhatsApp network, for development, demos and tests.
//!
//! It is a simulator, not WhatsApp. A sandbox instance shows a QR code and is paired when told to (the sandbox API
//! plays the phone scanning it); it then gets a phone number in the `+1 555` fiction range. Sandbox accounts on one
//! node can message each other; any other number is a simulated external contact that accepts every message, unless
//! the controls marked it as not on WhatsApp (`numbers.rs`): then number checks say so and sends to it fail.
//! Receipts flow as on WhatsApp: `delivered` once the recipient's gateway stored the message (for external
//! contacts at once), `read` when the recipient marks it read. Messages to an offline account wait for it.
//! As on WhatsApp, a recipient gets a message id from a sender once: a second send under the same id (a retry
//! after a crash) is not delivered again, only acknowledged. What each recipient got is kept (bounded) and can be
//! read with [`SandboxNetwork::received`].
//! The network lives in memory: a restart forgets it, but each instance's credentials (its number) live in the
//! session store, so a restarted node resumes its instances without a new pairing.
//!
//! As on WhatsApp, a device has one live connection: a second connection of the same paired account replaces the
//! first, which gets [`DriverEvent::StreamReplaced`] (the engine parks it as `replaced`).
//!
//! Two modes share this one network logic. Embedded (the default), each node has its own [`SandboxNetwork`]. Shared,
//! one `gateway sandbox-network` process runs it ([`server`]) and every node dials it ([`remote`]), so several
//! nodes see one network and a double connection shows. [`SandboxControl`] is the control API in both modes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use gw_core::{InstanceId, MessageKind, Timestamp};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

mod control;
mod numbers;
pub mod remote;
pub mod server;
mod wire;

pub use control::{InboundOutcome, SandboxControl, SandboxInbound};
pub use remote::RemoteSandbox;

use crate::{
    AuthVault, ConnectRequest, Connection, Driver, DriverError, DriverEvent, DriverEvents, GroupInfo, InboundAck,
    InboundMessage, NumberCheck, OutgoingContent, OutgoingMessage, Presence, ReceiptKind, SentMessage,
};

/// How long a sandbox QR code is shown before it would be replaced.
const QR_TTL_SECONDS: i64 = 60;

/// How many received messages the network remembers per recipient (for de-duplication and [`SandboxNetwork::
/// received`]); older ones are forgotten, like a real de-duplication window.
const INBOX_CAPACITY: usize = 4096;

/// A message as a recipient on the sandbox network got it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxDelivery {
    /// The sender's JID.
    pub from: String,
    pub wa_message_id: String,
    pub kind: MessageKind,
    pub text: Option<String>,
    /// How often the sender sent this id: the network delivered it once, and more than one shows a resend (a
    /// node that crashed after sending and before recording it, whose successor sent it again).
    #[serde(default = "one")]
    pub copies: u32,
}

fn one() -> u32 {
    1
}

/// What one recipient (a sandbox account or a simulated external contact) has received, oldest first.
#[derive(Debug, Default)]
struct Inbox {
    deliveries: VecDeque<SandboxDelivery>,
    /// `(sender, id)` of every remembered delivery, and whether its recipient acknowledged it.
    seen: HashMap<(String, String), bool>,
}

impl Inbox {
    /// Records a delivery; `false` (and only the copy counted) if this sender's id was delivered before.
    fn accept(&mut self, delivery: SandboxDelivery) -> bool {
        let key = (delivery.from.clone(), delivery.wa_message_id.clone());
        if self.seen.contains_key(&key) {
            let first = self.deliveries.iter_mut().rev().find(|d| d.from == key.0 && d.wa_message_id == key.1);
            if let Some(first) = first {
                first.copies += 1;
            }
            return false;
        }
        if self.deliveries.len() >= INBOX_CAPACITY
            && let Some(old) = self.deliveries.pop_front()
        {
            self.seen.remove(&(old.from, old.wa_message_id));
        }
        self.seen.insert(key, false);
        self.deliveries.push_back(delivery);
        true
    }
}

/// What the sandbox keeps in the session store: enough to come back as the same account.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
struct SandboxCredentials {
    jid: String,
    display_name: Option<String>,
}

/// Errors of the sandbox control API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "cause", rename_all = "snake_case")]
pub enum SandboxError {
    #[error("the instance is not waiting to be paired (connect it first)")]
    NotPairing,
    #[error("the instance is not connected to the sandbox network")]
    NotConnected,
    #[error("the pairing could not be saved: {0}")]
    Vault(String),
    /// The session store could not be reached to save the pairing; retrying later may succeed.
    #[error("the pairing could not be saved now: {0}")]
    Unavailable(String),
    /// The shared sandbox network (`sessions.sandbox_network`) cannot be reached; retrying later may succeed.
    #[error("the shared sandbox network is unreachable: {0}")]
    Unreachable(String),
}

#[derive(Debug)]
struct Account {
    display_name: Option<String>,
    /// The live connection's event channel; `None` while offline.
    online: Option<mpsc::UnboundedSender<DriverEvent>>,
    /// Which connection is current; older connection handles are refused.
    generation: u64,
    /// Events for an offline account, delivered in order when it connects.
    pending: Vec<DriverEvent>,
    blocked: HashSet<String>,
}

#[derive(Debug)]
struct Pairing {
    events: mpsc::UnboundedSender<DriverEvent>,
    vault: Arc<dyn AuthVault>,
    pair_code: Option<String>,
    generation: u64,
}

#[derive(Debug, Clone)]
struct Group {
    subject: String,
    participants: Vec<String>,
    admins: Vec<String>,
}

#[derive(Debug, Default)]
struct NetState {
    /// Group numbers; account numbers are random, see [`NetState::new_number`].
    next_number: u64,
    next_generation: u64,
    accounts: HashMap<String, Account>,
    jid_of: HashMap<InstanceId, String>,
    pairing: HashMap<InstanceId, Pairing>,
    /// Who sent each message, so read receipts find their way back.
    senders: HashMap<String, String>,
    groups: HashMap<String, Group>,
    /// What each recipient received, by recipient JID.
    inboxes: HashMap<String, Inbox>,
    /// Numbers (digits) that are not on WhatsApp.
    unregistered: HashSet<String>,
    /// The LID of a phone-number JID, learnt from contacts that wrote under one.
    lids: HashMap<String, String>,
}

impl NetState {
    /// A number no known account has. Random rather than counted: the network forgets its accounts when it
    /// restarts and learns them again only as they reconnect, so a counter starting over would hand out a number
    /// a stored pairing still uses. The low range stays free for the fixed numbers tests and demos write to.
    fn new_number(&self) -> String {
        let mut rng = rand::rng();
        loop {
            let jid = format!("1555{:07}@s.whatsapp.net", rng.random_range(1_000_000..10_000_000u32));
            if !self.accounts.contains_key(&jid) && !self.jid_of.values().any(|j| *j == jid) {
                return jid;
            }
        }
    }

    /// Queues an event for an account: to its live connection, or to its pending list while it is offline.
    fn deliver(&mut self, jid: &str, event: DriverEvent) {
        if let Some(account) = self.accounts.get_mut(jid) {
            match &account.online {
                Some(tx) => {
                    if let Err(mpsc::error::SendError(event)) = tx.send(event) {
                        account.online = None;
                        account.pending.push(event);
                    }
                }
                None => account.pending.push(event),
            }
        }
    }
}

/// The simulated network, shared by every sandbox instance of the node.
#[derive(Debug, Default)]
pub struct SandboxNetwork {
    state: Mutex<NetState>,
}

fn wa_id() -> String {
    format!("SB{}", uuid_like())
}

fn uuid_like() -> String {
    let mut rng = rand::rng();
    (0..16).map(|_| format!("{:02X}", rng.random::<u8>())).collect()
}

impl SandboxNetwork {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        // Every critical section leaves the maps consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Plays the phone scanning the QR code (or typing the pairing code): the instance gets a number and connects.
    pub async fn scan(&self, instance_id: InstanceId, display_name: Option<String>) -> Result<String, SandboxError> {
        let (vault, jid) = {
            let state = self.lock();
            let Some(pairing) = state.pairing.get(&instance_id) else { return Err(SandboxError::NotPairing) };
            let vault = pairing.vault.clone();
            (vault, state.new_number())
        };
        let credentials = SandboxCredentials { jid: jid.clone(), display_name: display_name.clone() };
        let bytes = serde_json::to_vec(&credentials).map_err(|e| SandboxError::Vault(e.to_string()))?;
        vault.save(&bytes).await.map_err(|e| match e {
            DriverError::Transient(cause) => SandboxError::Unavailable(cause),
            other => SandboxError::Vault(other.to_string()),
        })?;
        let mut state = self.lock();
        let Some(pairing) = state.pairing.remove(&instance_id) else { return Err(SandboxError::NotPairing) };
        let _ = pairing.events.send(DriverEvent::PairSuccess {
            jid: jid.clone(),
            lid: None,
            display_name: display_name.clone(),
        });
        let _ = pairing.events.send(DriverEvent::Connected {
            jid: jid.clone(),
            lid: None,
            display_name: display_name.clone(),
        });
        state.jid_of.insert(instance_id, jid.clone());
        state.accounts.insert(
            jid.clone(),
            Account {
                display_name,
                online: Some(pairing.events),
                generation: pairing.generation,
                pending: Vec::new(),
                blocked: HashSet::new(),
            },
        );
        Ok(jid)
    }

    /// The pairing code the instance asked for, as the phone would show it (for demos of code pairing).
    pub fn pair_code(&self, instance_id: InstanceId) -> Option<String> {
        self.lock().pairing.get(&instance_id).and_then(|p| p.pair_code.clone())
    }

    /// What `jid` (a sandbox account or an external contact) has received from senders on this network, oldest
    /// first; a message sent again under the same id appears once.
    pub fn received(&self, jid: &str) -> Vec<SandboxDelivery> {
        self.lock().inboxes.get(jid).map(|inbox| inbox.deliveries.iter().cloned().collect()).unwrap_or_default()
    }

    /// The number the instance is paired with on this network.
    pub fn jid_of(&self, instance_id: InstanceId) -> Option<String> {
        self.lock().jid_of.get(&instance_id).cloned()
    }

    /// A message from a simulated contact to the instance. `from_lid` makes the contact write under its LID with
    /// the phone-number mapping attached, as WhatsApp does. Resolves once the instance's gateway stored the
    /// message (`true`), or `false` if it did not within the wait (the message stays pending).
    pub async fn inject_inbound(
        &self,
        instance_id: InstanceId,
        from: &str,
        from_lid: Option<&str>,
        push_name: Option<String>,
        text: &str,
    ) -> Result<(String, tokio::sync::oneshot::Receiver<()>), SandboxError> {
        let mut state = self.lock();
        let Some(to) = state.jid_of.get(&instance_id).cloned() else { return Err(SandboxError::NotConnected) };
        let id = wa_id();
        let (ack, acked) = InboundAck::new();
        let (sender_jid, sender_pn_jid) = match from_lid {
            Some(lid) => {
                state.lids.insert(from.to_owned(), lid.to_owned());
                (lid.to_owned(), Some(from.to_owned()))
            }
            None => (from.to_owned(), None),
        };
        let message = InboundMessage {
            wa_message_id: id.clone(),
            chat_jid: from.to_owned(),
            sender_jid,
            sender_pn_jid,
            push_name,
            kind: MessageKind::Text,
            text: Some(text.to_owned()),
            media: None,
            quoted_message_id: None,
            timestamp: Timestamp::now(),
            from_me: false,
            ack,
        };
        state.senders.insert(id.clone(), from.to_owned());
        state.deliver(&to, DriverEvent::Message(message));
        Ok((id, acked))
    }

    /// Simulates WhatsApp telling the instance about a contact (an address-book sync or a new push name).
    pub fn push_contact(&self, instance_id: InstanceId, jid: &str, name: Option<String>) -> Result<(), SandboxError> {
        let mut state = self.lock();
        let to = state.jid_of.get(&instance_id).cloned().ok_or(SandboxError::NotConnected)?;
        let event = DriverEvent::Contact { jid: jid.to_owned(), lid: None, pn_jid: None, name, notify: None };
        state.deliver(&to, event);
        Ok(())
    }

    /// Simulates a network blip: the connection drops; the session stays valid.
    pub fn drop_connection(&self, instance_id: InstanceId) -> Result<(), SandboxError> {
        self.end_connection(instance_id, DriverEvent::Disconnected { reason: "sandbox: network blip".into() })
    }

    /// Simulates the phone removing this linked device.
    pub fn unlink(&self, instance_id: InstanceId) -> Result<(), SandboxError> {
        let event = DriverEvent::LoggedOut { reason: "sandbox: the phone removed this device".into() };
        self.end_connection(instance_id, event)?;
        let mut state = self.lock();
        if let Some(jid) = state.jid_of.remove(&instance_id) {
            state.accounts.remove(&jid);
        }
        Ok(())
    }

    /// Simulates the same credentials connecting from elsewhere.
    pub fn replace(&self, instance_id: InstanceId) -> Result<(), SandboxError> {
        self.end_connection(instance_id, DriverEvent::StreamReplaced)
    }

    fn end_connection(&self, instance_id: InstanceId, event: DriverEvent) -> Result<(), SandboxError> {
        let mut state = self.lock();
        let jid = state.jid_of.get(&instance_id).cloned().ok_or(SandboxError::NotConnected)?;
        let account = state.accounts.get_mut(&jid).ok_or(SandboxError::NotConnected)?;
        let tx = account.online.take().ok_or(SandboxError::NotConnected)?;
        let _ = tx.send(event);
        Ok(())
    }

    /// Creates a group of sandbox accounts (and simulated contacts); returns its JID.
    pub fn create_group(&self, subject: &str, participants: &[String], admins: &[String]) -> String {
        let mut state = self.lock();
        state.next_number += 1;
        let jid = format!("120363{:010}@g.us", state.next_number);
        let group = Group { subject: subject.to_owned(), participants: participants.to_vec(), admins: admins.to_vec() };
        state.groups.insert(jid.clone(), group);
        jid
    }
}

/// The sandbox as a [`Driver`].
#[derive(Debug, Clone)]
pub struct SandboxDriver {
    network: Arc<SandboxNetwork>,
}

impl SandboxDriver {
    pub fn new(network: Arc<SandboxNetwork>) -> Self {
        Self { network }
    }
}

/// Moves events from a connection's unbounded queue (the network's or a remote link's) to the engine's channel,
/// in order.
fn forward(mut from: mpsc::UnboundedReceiver<DriverEvent>, to: mpsc::Sender<DriverEvent>) {
    tokio::spawn(async move {
        while let Some(event) = from.recv().await {
            if to.send(event).await.is_err() {
                break;
            }
        }
    });
}

#[async_trait::async_trait]
impl Driver for SandboxDriver {
    async fn connect(
        &self,
        request: ConnectRequest,
        vault: Arc<dyn AuthVault>,
    ) -> Result<(Box<dyn Connection>, DriverEvents), DriverError> {
        let stored = vault.load().await?;
        let (tx, rx) = mpsc::channel(1024);
        let (events, queue) = mpsc::unbounded_channel();
        forward(queue, tx);
        let mut state = self.network.lock();
        state.next_generation += 1;
        let generation = state.next_generation;
        match stored {
            Some(bytes) => {
                let credentials: SandboxCredentials = serde_json::from_slice(&bytes)
                    .map_err(|e| DriverError::LoggedOut(format!("sandbox credentials unreadable: {e}")))?;
                let jid = credentials.jid;
                // A restarted node has an empty network: the stored credentials bring the account back.
                let account = state.accounts.entry(jid.clone()).or_insert_with(|| Account {
                    display_name: credentials.display_name.clone(),
                    online: None,
                    generation,
                    pending: Vec::new(),
                    blocked: HashSet::new(),
                });
                account.generation = generation;
                // One live connection per device: the one already online (on this node or another) is replaced.
                if let Some(previous) = account.online.take() {
                    let _ = previous.send(DriverEvent::StreamReplaced);
                }
                let _ = events.send(DriverEvent::Connected {
                    jid: jid.clone(),
                    lid: None,
                    display_name: account.display_name.clone(),
                });
                for event in account.pending.drain(..) {
                    let _ = events.send(event);
                }
                account.online = Some(events);
                state.jid_of.insert(request.instance_id, jid);
            }
            None => {
                let code = format!("2@sandbox,{},{}", request.instance_id, uuid_like());
                let expires_at =
                    Timestamp::from_datetime(Timestamp::now().as_datetime() + chrono_seconds(QR_TTL_SECONDS));
                let _ = events.send(DriverEvent::Qr { code, expires_at });
                state.pairing.insert(request.instance_id, Pairing { events, vault, pair_code: None, generation });
            }
        }
        let connection =
            SandboxConnection { network: self.network.clone(), instance_id: request.instance_id, generation };
        Ok((Box::new(connection), rx))
    }
}

fn chrono_seconds(seconds: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::seconds(seconds)
}

/// One instance's connection to the sandbox network.
#[derive(Debug)]
struct SandboxConnection {
    network: Arc<SandboxNetwork>,
    instance_id: InstanceId,
    generation: u64,
}

impl SandboxConnection {
    /// This connection's own JID, if it is still the account's current, online connection.
    fn me(&self, state: &NetState) -> Result<String, DriverError> {
        let jid = state.jid_of.get(&self.instance_id).ok_or(DriverError::NotConnected)?;
        let account = state.accounts.get(jid).ok_or(DriverError::NotConnected)?;
        if account.generation != self.generation || account.online.is_none() {
            return Err(DriverError::NotConnected);
        }
        Ok(jid.clone())
    }
}

fn message_parts(content: &OutgoingContent) -> (MessageKind, Option<String>, Option<gw_core::MediaInfo>) {
    match content {
        OutgoingContent::Text { body } => (MessageKind::Text, Some(body.clone()), None),
        OutgoingContent::Media { kind, info, caption, .. } => (*kind, caption.clone(), Some(info.clone())),
        OutgoingContent::Location { name, .. } => (MessageKind::Location, name.clone(), None),
        OutgoingContent::ContactCard { display_name, .. } => {
            (MessageKind::ContactCard, Some(display_name.clone()), None)
        }
        OutgoingContent::Reaction { emoji, .. } => (MessageKind::Reaction, Some(emoji.clone()), None),
    }
}

#[async_trait::async_trait]
impl Connection for SandboxConnection {
    async fn send(&self, message: OutgoingMessage) -> Result<SentMessage, DriverError> {
        let network = self.network.clone();
        let mut state = self.network.lock();
        let me = self.me(&state)?;
        let id = message.wa_message_id.clone();
        if id.is_empty() {
            return Err(DriverError::Other("a message id is required".into()));
        }
        let now = Timestamp::now();
        state.senders.insert(id.clone(), me.clone());
        let recipients: Vec<(String, String)> = match state.groups.get(&message.chat_jid) {
            Some(group) => {
                group.participants.iter().filter(|p| **p != me).map(|p| (p.clone(), message.chat_jid.clone())).collect()
            }
            None if message.chat_jid.ends_with("@g.us") => {
                return Err(DriverError::InvalidRecipient(format!("no sandbox group {}", message.chat_jid)));
            }
            None if state.unregistered(&message.chat_jid) => {
                return Err(DriverError::InvalidRecipient(format!("{} is not on WhatsApp", message.chat_jid)));
            }
            None => vec![(message.chat_jid.clone(), me.clone())],
        };
        let (kind, text, media) = message_parts(&message.content);
        let mut external_receipt = false;
        for (recipient, chat_jid) in recipients {
            let account = state.accounts.get(&recipient);
            if account.is_some_and(|a| a.blocked.contains(&me)) {
                // As on WhatsApp: the sender sees "sent", never "delivered".
                continue;
            }
            let is_account = account.is_some();
            let delivery =
                SandboxDelivery { from: me.clone(), wa_message_id: id.clone(), kind, text: text.clone(), copies: 1 };
            let inbox = state.inboxes.entry(recipient.clone()).or_default();
            if !inbox.accept(delivery) {
                // Already delivered under this id: WhatsApp drops the copy. The recipient acknowledges it again
                // if it had acknowledged the first, so a "delivered" lost in the sender's crash still arrives.
                let acked = inbox.seen.get(&(me.clone(), id.clone())).copied().unwrap_or(false);
                if !is_account {
                    external_receipt = true;
                } else if acked {
                    let receipt = DriverEvent::Receipt {
                        chat_jid: recipient.clone(),
                        wa_message_ids: vec![id.clone()],
                        kind: ReceiptKind::Delivered,
                        at: now,
                    };
                    state.deliver(&me, receipt);
                }
                continue;
            }
            if !is_account {
                external_receipt = true;
                continue;
            }
            let (ack, acked) = InboundAck::new();
            let inbound = InboundMessage {
                wa_message_id: id.clone(),
                chat_jid,
                sender_jid: me.clone(),
                sender_pn_jid: None,
                push_name: state.accounts.get(&me).and_then(|a| a.display_name.clone()),
                kind,
                text: text.clone(),
                media: media.clone(),
                quoted_message_id: message.quoted_message_id.clone(),
                timestamp: now,
                from_me: false,
                ack,
            };
            state.deliver(&recipient, DriverEvent::Message(inbound));
            // "Delivered" once the recipient's gateway stored it.
            let (network, sender, chat, wa) = (network.clone(), me.clone(), recipient.clone(), id.clone());
            tokio::spawn(async move {
                if acked.await.is_ok() {
                    let receipt = DriverEvent::Receipt {
                        chat_jid: chat.clone(),
                        wa_message_ids: vec![wa.clone()],
                        kind: ReceiptKind::Delivered,
                        at: Timestamp::now(),
                    };
                    let mut state = network.lock();
                    if let Some(seen) = state.inboxes.get_mut(&chat).and_then(|i| i.seen.get_mut(&(sender.clone(), wa)))
                    {
                        *seen = true;
                    }
                    state.deliver(&sender, receipt);
                }
            });
        }
        if external_receipt {
            // A simulated external contact's phone is always reachable.
            let receipt = DriverEvent::Receipt {
                chat_jid: message.chat_jid.clone(),
                wa_message_ids: vec![id.clone()],
                kind: ReceiptKind::Delivered,
                at: now,
            };
            state.deliver(&me, receipt);
        }
        Ok(SentMessage { wa_message_id: id, timestamp: now })
    }

    async fn mark_read(&self, chat_jid: &str, wa_message_ids: &[String]) -> Result<(), DriverError> {
        let mut state = self.network.lock();
        let me = self.me(&state)?;
        for id in wa_message_ids {
            if let Some(sender) = state.senders.get(id).cloned() {
                let chat = if chat_jid.ends_with("@g.us") { chat_jid.to_owned() } else { me.clone() };
                let receipt = DriverEvent::Receipt {
                    chat_jid: chat,
                    wa_message_ids: vec![id.clone()],
                    kind: ReceiptKind::Read,
                    at: Timestamp::now(),
                };
                state.deliver(&sender, receipt);
            }
        }
        Ok(())
    }

    async fn send_presence(&self, chat_jid: &str, presence: Presence) -> Result<(), DriverError> {
        let mut state = self.network.lock();
        let me = self.me(&state)?;
        let online = state.accounts.get(chat_jid).is_some_and(|a| a.online.is_some());
        if online {
            state.deliver(chat_jid, DriverEvent::Presence { jid: me, presence, last_seen: None });
        }
        Ok(())
    }

    async fn set_blocked(&self, jid: &str, blocked: bool) -> Result<(), DriverError> {
        let mut state = self.network.lock();
        let me = self.me(&state)?;
        let account = state.accounts.get_mut(&me).ok_or(DriverError::NotConnected)?;
        if blocked {
            account.blocked.insert(jid.to_owned());
        } else {
            account.blocked.remove(jid);
        }
        Ok(())
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, DriverError> {
        let state = self.network.lock();
        let me = self.me(&state)?;
        let mut groups: Vec<GroupInfo> = state
            .groups
            .iter()
            .filter(|(_, g)| g.participants.contains(&me))
            .map(|(jid, g)| GroupInfo {
                jid: jid.clone(),
                subject: g.subject.clone(),
                participants: g.participants.clone(),
                admins: g.admins.clone(),
            })
            .collect();
        groups.sort_by(|a, b| a.jid.cmp(&b.jid));
        Ok(groups)
    }

    async fn check_numbers(&self, phones: &[String]) -> Result<Vec<NumberCheck>, DriverError> {
        let state = self.network.lock();
        self.me(&state)?;
        Ok(state.check_numbers(phones))
    }

    async fn request_pair_code(&self, _phone: &str) -> Result<String, DriverError> {
        let mut state = self.network.lock();
        let pairing = state.pairing.get_mut(&self.instance_id).ok_or(DriverError::NotConnected)?;
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTVWXYZ23456789";
        let mut rng = rand::rng();
        let code: String = (0..8).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
        pairing.pair_code = Some(code.clone());
        Ok(code)
    }

    async fn logout(&self) -> Result<(), DriverError> {
        let mut state = self.network.lock();
        state.pairing.remove(&self.instance_id);
        if let Some(jid) = state.jid_of.remove(&self.instance_id) {
            state.accounts.remove(&jid);
        }
        Ok(())
    }

    async fn disconnect(&self) {
        let mut state = self.network.lock();
        if state.pairing.get(&self.instance_id).is_some_and(|p| p.generation == self.generation) {
            state.pairing.remove(&self.instance_id);
        }
        if let Some(jid) = state.jid_of.get(&self.instance_id).cloned()
            && let Some(account) = state.accounts.get_mut(&jid)
            && account.generation == self.generation
        {
            account.online = None;
        }
    }
}
