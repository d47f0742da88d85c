//! The shared sandbox's wire protocol: one JSON object per line over TCP, both ways.
//!
//! A node (the client) sends requests, each with an id the reply carries back, and acknowledgements of inbound
//! messages. The network (the server) sends replies, the events of each connection (named by a connection number
//! the client chose), and requests to the connection's credential vault, which stays with the node: the session
//! store is the node's, and the network never sees it. Media bytes are not carried: the sandbox never looks at
//! them (it records kind, metadata and caption).

use gw_core::{InstanceId, MediaInfo, MessageKind, Timestamp};
use serde::{Deserialize, Serialize};

use super::{InboundOutcome, SandboxDelivery, SandboxError, SandboxInbound};
use crate::{
    DriverError, DriverEvent, GroupInfo, InboundAck, InboundMessage, NumberCheck, OutgoingContent, OutgoingMessage,
    Presence, ReceiptKind, SentMessage,
};

/// The longest line either side accepts (a group of 256 participants or a long text fit easily).
pub(super) const MAX_LINE: usize = 4 * 1024 * 1024;

/// From a node to the network.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ClientFrame {
    Request {
        id: u64,
        call: Call,
    },
    /// The node stored the inbound message the network sent under this token.
    Ack {
        token: u64,
    },
    VaultReply {
        id: u64,
        result: Result<Option<Vec<u8>>, WireDriverError>,
    },
}

/// What a node asks of the network.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Call {
    Connect { conn: u64, instance_id: InstanceId, pair_phone: Option<String> },
    Send { conn: u64, message: WireOutgoing },
    MarkRead { conn: u64, chat_jid: String, ids: Vec<String> },
    Presence { conn: u64, chat_jid: String, presence: Presence },
    Block { conn: u64, jid: String, blocked: bool },
    Groups { conn: u64 },
    CheckNumbers { conn: u64, phones: Vec<String> },
    PairCode { conn: u64, phone: String },
    Logout { conn: u64 },
    Disconnect { conn: u64 },
    Scan { instance_id: InstanceId, display_name: Option<String> },
    Inbound { message: SandboxInbound, wait_ms: u64 },
    Drop { instance_id: InstanceId },
    Unlink { instance_id: InstanceId },
    Replace { instance_id: InstanceId },
    CreateGroup { subject: String, participants: Vec<String>, admins: Vec<String> },
    Received { jid: String },
    SetOnWhatsApp { phones: Vec<String>, on_whatsapp: bool },
}

/// The answer to a [`Call`]; which variant follows from the call.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Answer {
    Done,
    Sent { wa_message_id: String, timestamp: Timestamp },
    Groups(Vec<GroupInfo>),
    Numbers(Vec<NumberCheck>),
    Text(String),
    Inbound(InboundOutcome),
    Received(Vec<SandboxDelivery>),
}

/// Why a call failed: a driver call's error or a control call's.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum CallError {
    Driver(WireDriverError),
    Sandbox(SandboxError),
}

/// From the network to a node.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ServerFrame {
    Reply {
        id: u64,
        result: Result<Answer, CallError>,
    },
    Event {
        conn: u64,
        event: WireEvent,
    },
    /// The connection ended on the network's side; no more events follow.
    Closed {
        conn: u64,
    },
    Vault {
        id: u64,
        conn: u64,
        op: VaultOp,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum VaultOp {
    Load,
    Save { state: Vec<u8> },
    Invalidate,
}

/// [`DriverError`] on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "cause", rename_all = "snake_case")]
pub(super) enum WireDriverError {
    Transient(String),
    LoggedOut(String),
    NotConnected,
    InvalidRecipient(String),
    Unsupported(String),
    Other(String),
}

impl From<DriverError> for WireDriverError {
    fn from(e: DriverError) -> Self {
        match e {
            DriverError::Transient(s) => Self::Transient(s),
            DriverError::LoggedOut(s) => Self::LoggedOut(s),
            DriverError::NotConnected => Self::NotConnected,
            DriverError::InvalidRecipient(s) => Self::InvalidRecipient(s),
            DriverError::Unsupported(s) => Self::Unsupported(s),
            DriverError::Other(s) => Self::Other(s),
        }
    }
}

impl From<WireDriverError> for DriverError {
    fn from(e: WireDriverError) -> Self {
        match e {
            WireDriverError::Transient(s) => Self::Transient(s),
            WireDriverError::LoggedOut(s) => Self::LoggedOut(s),
            WireDriverError::NotConnected => Self::NotConnected,
            WireDriverError::InvalidRecipient(s) => Self::InvalidRecipient(s),
            WireDriverError::Unsupported(s) => Self::Unsupported(s),
            WireDriverError::Other(s) => Self::Other(s),
        }
    }
}

/// [`OutgoingMessage`] without media bytes.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct WireOutgoing {
    wa_message_id: String,
    chat_jid: String,
    content: WireContent,
    quoted_message_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireContent {
    Text { body: String },
    Media { kind: MessageKind, info: MediaInfo, caption: Option<String> },
    Location { latitude: f64, longitude: f64, name: Option<String>, address: Option<String> },
    ContactCard { display_name: String, vcard: String },
    Reaction { target_message_id: String, emoji: String },
}

impl From<OutgoingMessage> for WireOutgoing {
    fn from(m: OutgoingMessage) -> Self {
        let content = match m.content {
            OutgoingContent::Text { body } => WireContent::Text { body },
            OutgoingContent::Media { kind, info, caption, bytes: _ } => WireContent::Media { kind, info, caption },
            OutgoingContent::Location { latitude, longitude, name, address } => {
                WireContent::Location { latitude, longitude, name, address }
            }
            OutgoingContent::ContactCard { display_name, vcard } => WireContent::ContactCard { display_name, vcard },
            OutgoingContent::Reaction { target_message_id, emoji } => {
                WireContent::Reaction { target_message_id, emoji }
            }
        };
        Self { wa_message_id: m.wa_message_id, chat_jid: m.chat_jid, content, quoted_message_id: m.quoted_message_id }
    }
}

impl From<WireOutgoing> for OutgoingMessage {
    fn from(m: WireOutgoing) -> Self {
        let content = match m.content {
            WireContent::Text { body } => OutgoingContent::Text { body },
            WireContent::Media { kind, info, caption } => {
                OutgoingContent::Media { kind, info, caption, bytes: std::sync::Arc::from(Vec::new()) }
            }
            WireContent::Location { latitude, longitude, name, address } => {
                OutgoingContent::Location { latitude, longitude, name, address }
            }
            WireContent::ContactCard { display_name, vcard } => OutgoingContent::ContactCard { display_name, vcard },
            WireContent::Reaction { target_message_id, emoji } => {
                OutgoingContent::Reaction { target_message_id, emoji }
            }
        };
        Self { wa_message_id: m.wa_message_id, chat_jid: m.chat_jid, content, quoted_message_id: m.quoted_message_id }
    }
}

impl From<SentMessage> for Answer {
    fn from(m: SentMessage) -> Self {
        Answer::Sent { wa_message_id: m.wa_message_id, timestamp: m.timestamp }
    }
}

/// An inbound message on the wire; `ack` names the acknowledgement the network waits for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct WireInbound {
    wa_message_id: String,
    chat_jid: String,
    sender_jid: String,
    sender_pn_jid: Option<String>,
    push_name: Option<String>,
    kind: MessageKind,
    text: Option<String>,
    media: Option<MediaInfo>,
    quoted_message_id: Option<String>,
    timestamp: Timestamp,
    from_me: bool,
    ack: u64,
}

impl WireInbound {
    /// The message for a driver, acknowledged through `ack`.
    pub(super) fn into_message(self, ack: InboundAck) -> InboundMessage {
        InboundMessage {
            wa_message_id: self.wa_message_id,
            chat_jid: self.chat_jid,
            sender_jid: self.sender_jid,
            sender_pn_jid: self.sender_pn_jid,
            push_name: self.push_name,
            kind: self.kind,
            text: self.text,
            media: self.media,
            quoted_message_id: self.quoted_message_id,
            timestamp: self.timestamp,
            from_me: self.from_me,
            ack,
        }
    }
}

/// [`DriverEvent`] on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum WireEvent {
    Qr { code: String, expires_at: Timestamp },
    PairSuccess { jid: String, lid: Option<String>, display_name: Option<String> },
    PairError { reason: String },
    Connected { jid: String, lid: Option<String>, display_name: Option<String> },
    Disconnected { reason: String },
    LoggedOut { reason: String },
    StreamReplaced,
    TemporaryBan { reason: String, until: Option<Timestamp> },
    Message(WireInbound),
    Receipt { chat_jid: String, wa_message_ids: Vec<String>, kind: ReceiptKind, at: Timestamp },
    Presence { jid: String, presence: Presence, last_seen: Option<Timestamp> },
    Contact { jid: String, lid: Option<String>, pn_jid: Option<String>, name: Option<String>, notify: Option<String> },
}

impl WireEvent {
    /// The event for the wire; a message's acknowledgement stays behind, under the token `keep` returns.
    pub(super) fn from_event(event: DriverEvent, keep: impl FnOnce(InboundAck) -> u64) -> Self {
        match event {
            DriverEvent::Qr { code, expires_at } => Self::Qr { code, expires_at },
            DriverEvent::PairSuccess { jid, lid, display_name } => Self::PairSuccess { jid, lid, display_name },
            DriverEvent::PairError { reason } => Self::PairError { reason },
            DriverEvent::Connected { jid, lid, display_name } => Self::Connected { jid, lid, display_name },
            DriverEvent::Disconnected { reason } => Self::Disconnected { reason },
            DriverEvent::LoggedOut { reason } => Self::LoggedOut { reason },
            DriverEvent::StreamReplaced => Self::StreamReplaced,
            DriverEvent::TemporaryBan { reason, until } => Self::TemporaryBan { reason, until },
            DriverEvent::Message(m) => Self::Message(WireInbound {
                ack: keep(m.ack),
                wa_message_id: m.wa_message_id,
                chat_jid: m.chat_jid,
                sender_jid: m.sender_jid,
                sender_pn_jid: m.sender_pn_jid,
                push_name: m.push_name,
                kind: m.kind,
                text: m.text,
                media: m.media,
                quoted_message_id: m.quoted_message_id,
                timestamp: m.timestamp,
                from_me: m.from_me,
            }),
            DriverEvent::Receipt { chat_jid, wa_message_ids, kind, at } => {
                Self::Receipt { chat_jid, wa_message_ids, kind, at }
            }
            DriverEvent::Presence { jid, presence, last_seen } => Self::Presence { jid, presence, last_seen },
            DriverEvent::Contact { jid, lid, pn_jid, name, notify } => Self::Contact { jid, lid, pn_jid, name, notify },
        }
    }

    /// The event for the engine; a message gets a fresh acknowledgement, whose receiver goes to `on_ack` with the
    /// token to send back.
    pub(super) fn into_event(self, on_ack: impl FnOnce(u64, tokio::sync::oneshot::Receiver<()>)) -> DriverEvent {
        match self {
            Self::Qr { code, expires_at } => DriverEvent::Qr { code, expires_at },
            Self::PairSuccess { jid, lid, display_name } => DriverEvent::PairSuccess { jid, lid, display_name },
            Self::PairError { reason } => DriverEvent::PairError { reason },
            Self::Connected { jid, lid, display_name } => DriverEvent::Connected { jid, lid, display_name },
            Self::Disconnected { reason } => DriverEvent::Disconnected { reason },
            Self::LoggedOut { reason } => DriverEvent::LoggedOut { reason },
            Self::StreamReplaced => DriverEvent::StreamReplaced,
            Self::TemporaryBan { reason, until } => DriverEvent::TemporaryBan { reason, until },
            Self::Message(m) => {
                let (ack, acked) = InboundAck::new();
                on_ack(m.ack, acked);
                DriverEvent::Message(m.into_message(ack))
            }
            Self::Receipt { chat_jid, wa_message_ids, kind, at } => {
                DriverEvent::Receipt { chat_jid, wa_message_ids, kind, at }
            }
            Self::Presence { jid, presence, last_seen } => DriverEvent::Presence { jid, presence, last_seen },
            Self::Contact { jid, lid, pn_jid, name, notify } => DriverEvent::Contact { jid, lid, pn_jid, name, notify },
        }
    }
}

/// Writes one frame as a line.
pub(super) fn encode<T: Serialize>(frame: &T) -> Option<Vec<u8>> {
    let mut line = serde_json::to_vec(frame).ok()?;
    line.push(b'\n');
    Some(line)
}
