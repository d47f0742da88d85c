//! The boundary between the engine and a WhatsApp implementation.
//!
//! A [`Driver`] opens [`Connection`]s. A connection reports everything that happens as [`DriverEvent`]s on a channel
//! and accepts commands as async calls. The engine owns reconnection, status, persistence of messages and the
//! outbox; a driver only translates.

use std::fmt;

use gw_core::{InstanceId, MediaInfo, MessageKind, Timestamp};
use tokio::sync::{mpsc, oneshot};

/// Failures a driver reports. `transient` errors are retried with backoff; the others end the connection attempt
/// with a status that needs a person (a new pairing, a ban to wait out).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The network or the service is unreachable right now.
    #[error("transient: {0}")]
    Transient(String),
    /// The stored credentials are no longer accepted: the phone removed this device.
    #[error("logged out: {0}")]
    LoggedOut(String),
    /// The command needs a connected session.
    #[error("not connected")]
    NotConnected,
    /// The recipient does not exist or cannot receive messages.
    #[error("invalid recipient: {0}")]
    InvalidRecipient(String),
    /// The driver cannot do this (for example a pairing code on a driver without them).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Anything else; not retried automatically.
    #[error("{0}")]
    Other(String),
}

impl DriverError {
    pub fn is_transient(&self) -> bool {
        matches!(self, DriverError::Transient(_))
    }
}

/// Where a driver keeps an instance's credentials between connections. The engine hands one to the driver; the
/// implementation encrypts and stores it in the gateway's database, so a restart or another node resumes the
/// session without a new scan. Drivers with richer state (the Signal protocol's keys) keep it behind their own
/// storage trait, implemented over the same store.
#[async_trait::async_trait]
pub trait AuthVault: Send + Sync + fmt::Debug {
    /// The opaque auth state the driver saved last, if the session is still valid.
    async fn load(&self) -> Result<Option<Vec<u8>>, DriverError>;
    /// Replaces the auth state; `load` returns it from now on.
    async fn save(&self, state: &[u8]) -> Result<(), DriverError>;
    /// The session was logged out: the state is kept for audit but never used again.
    async fn invalidate(&self) -> Result<(), DriverError>;
    /// The fencing token (lease epoch) the driver's own state writes carry; `None` when the session holds no lease
    /// (a vault outside the engine, as in tests).
    fn fence(&self) -> Option<gw_store::OwnerEpoch> {
        None
    }
    /// Tells the session a store write of the driver failed: a [`gw_store::StoreError::Fenced`] one stops the
    /// session (another node took the instance over).
    fn observe(&self, _error: &gw_store::StoreError) {}
}

/// What the engine asks a driver to connect.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    pub instance_id: InstanceId,
    /// Pair with a phone number by code instead of a QR code.
    pub pair_phone: Option<String>,
}

/// The receiving end of a connection's events. The channel closing means the connection is gone.
pub type DriverEvents = mpsc::Receiver<DriverEvent>;

/// Opens connections of one kind (sandbox, whatsapp).
#[async_trait::async_trait]
pub trait Driver: Send + Sync + fmt::Debug {
    /// Starts connecting. Returns at once with the command handle and the event stream; progress (QR codes,
    /// `Connected`, failures) arrives as events.
    async fn connect(
        &self,
        request: ConnectRequest,
        vault: std::sync::Arc<dyn AuthVault>,
    ) -> Result<(Box<dyn Connection>, DriverEvents), DriverError>;
}

/// A typing indicator or availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Available,
    Unavailable,
    Composing,
    Recording,
    Paused,
}

/// What to send.
#[derive(Debug, Clone, PartialEq)]
pub enum OutgoingContent {
    Text { body: String },
    Media { kind: MessageKind, info: MediaInfo, bytes: std::sync::Arc<[u8]>, caption: Option<String> },
    Location { latitude: f64, longitude: f64, name: Option<String>, address: Option<String> },
    ContactCard { display_name: String, vcard: String },
    Reaction { target_message_id: String, emoji: String },
}

/// One message to send. `chat_jid` is a full JID (`…@s.whatsapp.net`, `…@lid`, `…@g.us`).
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    /// The WhatsApp id the engine chose when it accepted the message. A driver sends under this id on every
    /// attempt, never one of its own: WhatsApp drops a second message with an id the recipient already has, so a
    /// message sent again after a crash (sent, but not yet recorded as sent) does not arrive twice.
    pub wa_message_id: String,
    pub chat_jid: String,
    pub content: OutgoingContent,
    /// WhatsApp id of a message to quote.
    pub quoted_message_id: Option<String>,
}

/// A fresh WhatsApp message id in WhatsApp Web's shape (`3EB0` and 18 upper-case hex digits, 72 random bits), the
/// shape whatsapp-rust generates itself; chosen once per accepted message.
pub fn new_wa_message_id() -> String {
    use rand::Rng;
    use std::fmt::Write;
    let bytes: [u8; 9] = rand::rng().random();
    let mut id = String::with_capacity(22);
    id.push_str("3EB0");
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(id, "{b:02X}");
    }
    id
}

/// WhatsApp accepted the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The id the message went under (the one it was given); receipts refer to it.
    pub wa_message_id: String,
    pub timestamp: Timestamp,
}

/// A group the account belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct GroupInfo {
    pub jid: String,
    pub subject: String,
    pub participants: Vec<String>,
    pub admins: Vec<String>,
}

/// Whether one phone number is on WhatsApp, as WhatsApp answered it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NumberCheck {
    /// The number asked about, digits only (country code first).
    pub phone: String,
    pub on_whatsapp: bool,
    /// The phone-number JID when the number is on WhatsApp.
    pub jid: Option<String>,
    /// The account's LID when WhatsApp named it.
    pub lid: Option<String>,
}

/// The commands of an open connection.
#[async_trait::async_trait]
pub trait Connection: Send + Sync + fmt::Debug {
    async fn send(&self, message: OutgoingMessage) -> Result<SentMessage, DriverError>;
    async fn mark_read(&self, chat_jid: &str, wa_message_ids: &[String]) -> Result<(), DriverError>;
    async fn send_presence(&self, chat_jid: &str, presence: Presence) -> Result<(), DriverError>;
    async fn set_blocked(&self, jid: &str, blocked: bool) -> Result<(), DriverError>;
    async fn groups(&self) -> Result<Vec<GroupInfo>, DriverError>;
    /// Which of `phones` (digits only, country code first) are on WhatsApp: one answer per number, in order.
    async fn check_numbers(&self, _phones: &[String]) -> Result<Vec<NumberCheck>, DriverError> {
        Err(DriverError::Unsupported("number checks".into()))
    }
    /// Asks for an 8-character code the user types on the phone, instead of scanning a QR code.
    async fn request_pair_code(&self, phone: &str) -> Result<String, DriverError>;
    /// Ends the session on WhatsApp's side too (the device is removed from the phone).
    async fn logout(&self) -> Result<(), DriverError>;
    /// Closes the connection; the session stays valid for the next connect.
    async fn disconnect(&self);
}

/// Acknowledges an inbound message to WhatsApp. The engine completes it only after the message is stored, so a
/// crash before that makes WhatsApp deliver it again (at-least-once). Dropping it unacknowledged is allowed.
#[derive(Debug)]
pub struct InboundAck(Option<oneshot::Sender<()>>);

impl InboundAck {
    /// An ack and the receiver the driver waits on before acknowledging to the server.
    pub fn new() -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Self(Some(tx)), rx)
    }

    /// An ack nobody waits for (drivers without a durability hook).
    pub fn detached() -> Self {
        Self(None)
    }

    pub fn ack(mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// A message from WhatsApp.
#[derive(Debug)]
pub struct InboundMessage {
    pub wa_message_id: String,
    pub chat_jid: String,
    /// The author: in a group the participant, otherwise the chat.
    pub sender_jid: String,
    /// The author's phone-number JID when the message names them by LID and the mapping is known.
    pub sender_pn_jid: Option<String>,
    pub push_name: Option<String>,
    pub kind: MessageKind,
    pub text: Option<String>,
    pub media: Option<MediaInfo>,
    pub quoted_message_id: Option<String>,
    pub timestamp: Timestamp,
    pub from_me: bool,
    pub ack: InboundAck,
}

/// How far an outbound message got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    Delivered,
    Read,
    Played,
}

/// Everything a connection reports, already translated to the gateway's vocabulary.
#[derive(Debug)]
pub enum DriverEvent {
    /// A QR code to show; replaced by the next one when it expires.
    Qr {
        code: String,
        expires_at: Timestamp,
    },
    /// The phone accepted the pairing; `Connected` follows.
    PairSuccess {
        jid: String,
        lid: Option<String>,
        display_name: Option<String>,
    },
    /// Pairing failed; the connection ends.
    PairError {
        reason: String,
    },
    /// Ready to send and receive.
    Connected {
        jid: String,
        lid: Option<String>,
        display_name: Option<String>,
    },
    /// The connection dropped. Never a logout: the engine reconnects with backoff.
    Disconnected {
        reason: String,
    },
    /// The phone removed this device, or WhatsApp refused the credentials. Not retried.
    LoggedOut {
        reason: String,
    },
    /// The same credentials connected elsewhere. Not retried: two sessions would fight.
    StreamReplaced,
    /// WhatsApp banned the account for a while.
    TemporaryBan {
        reason: String,
        until: Option<Timestamp>,
    },
    Message(InboundMessage),
    Receipt {
        chat_jid: String,
        wa_message_ids: Vec<String>,
        kind: ReceiptKind,
        at: Timestamp,
    },
    Presence {
        jid: String,
        presence: Presence,
        last_seen: Option<Timestamp>,
    },
    /// A contact's details changed; `lid`/`pn_jid` carry the mapping between the two address forms when known.
    Contact {
        jid: String,
        lid: Option<String>,
        pn_jid: Option<String>,
        name: Option<String>,
        notify: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_ids_have_whatsapp_webs_shape_and_differ() {
        let (a, b) = (super::new_wa_message_id(), super::new_wa_message_id());
        assert_eq!(a.len(), 22);
        assert!(a.starts_with("3EB0") && a[4..].bytes().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)));
        assert_ne!(a, b);
    }
}
