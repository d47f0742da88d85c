//! [`WhatsAppDriverConfig`]: what the gateway binary loads for the driver, and what it cannot start with.

use gw_core::Redacted;

use crate::crypto::CryptoError;

/// How the `whatsapp` driver is configured. Loaded by the gateway binary; nothing here reads the environment.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppDriverConfig {
    /// Standard base64 of 32 random bytes (`openssl rand -base64 32`). Seals every stored protocol record; losing
    /// it means every instance must pair again, changing it needs a re-encryption the driver does not do.
    pub encryption_key: Redacted<String>,
    /// The WhatsApp Web websocket; `None` is the library's default (`wss://web.whatsapp.com/ws/chat`). Tests point it
    /// at loopback.
    #[serde(default)]
    pub ws_url: Option<String>,
    /// Pins the WhatsApp Web version instead of fetching the current one over HTTP at connect (tests set it so
    /// that no request leaves the machine).
    #[serde(default)]
    pub version: Option<(u32, u32, u32)>,
    /// How long an inbound message may wait for the engine's ack before it is left unacknowledged (WhatsApp then
    /// redelivers it on the next connect).
    #[serde(default = "default_ack_timeout_secs")]
    pub inbound_ack_timeout_secs: u64,
    /// Capacity of a connection's event channel to the engine; a full channel slows the connection down.
    #[serde(default = "default_event_buffer")]
    pub event_buffer: usize,
}

fn default_ack_timeout_secs() -> u64 {
    60
}

fn default_event_buffer() -> usize {
    256
}

impl WhatsAppDriverConfig {
    pub fn new(encryption_key: impl Into<String>) -> Self {
        Self {
            encryption_key: Redacted::new(encryption_key.into()),
            ws_url: None,
            version: None,
            inbound_ack_timeout_secs: default_ack_timeout_secs(),
            event_buffer: default_event_buffer(),
        }
    }
}

impl std::fmt::Debug for WhatsAppDriverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppDriverConfig")
            .field("encryption_key", &"***")
            .field("ws_url", &self.ws_url)
            .field("version", &self.version)
            .field("inbound_ack_timeout_secs", &self.inbound_ack_timeout_secs)
            .field("event_buffer", &self.event_buffer)
            .finish()
    }
}

/// Configuration the driver cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("whatsapp.encryption_key: {0}")]
    EncryptionKey(#[from] CryptoError),
    #[error("whatsapp.ws_url {0:?} is not a ws:// or wss:// URL")]
    WsUrl(String),
    #[error("whatsapp.event_buffer must be at least 1")]
    EventBuffer,
}
