//! The session engine. Each instance is one WhatsApp account driven by a [`Driver`]; the engine keeps it connected,
//! moves messages through the pipeline and the outbox, and publishes what happened.
//!
//! Architecture invariant: the engine knows nothing of a driver's protocol. Drivers speak [`DriverEvent`]s and
//! [`DriverCommand`]-shaped calls on a [`Connection`]; everything protocol-specific stays in the driver.

mod accept;
pub mod driver;
mod engine;
pub mod events;
mod forward;
mod inbound;
mod media;
mod meter;
mod outbox;
mod ownership;
mod relay;
pub mod sandbox;
mod send;
mod state;
mod supervision;
mod translate;
mod vault;

pub use engine::{Accepted, Engine, EngineBuilder, EngineConfig, EngineError};
pub use media::{FetchError, FetchedMedia, MediaFetcher};
pub use meter::{DirectMeter, Meter, Metered, QuotaError};
pub use ownership::{ClusterConfig, PAIRING_INTERRUPTED};
pub use relay::EventRelay;
pub use send::{
    Idempotency, InvalidField, MediaRefused, SendContent, SendRequest, check_media, media_policy, normalize_recipient,
    phone_of,
};
pub use vault::{SessionCipher, StoreVault};

pub use driver::{
    AuthVault, ConnectRequest, Connection, Driver, DriverError, DriverEvent, DriverEvents, GroupInfo, InboundAck,
    InboundMessage, NumberCheck, OutgoingContent, OutgoingMessage, Presence, ReceiptKind, SentMessage,
    new_wa_message_id,
};
