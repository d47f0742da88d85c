//! Best-effort messages between the nodes that share one database: live events for every node's SSE clients.
//! Nothing here is stored or retried; what must not be lost goes through the store (the outbox, webhook
//! deliveries), and the live stream says so.

use crate::StoreResult;

/// What a listener heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// One message, whole, as published (every listener gets each message once, in publish order per node).
    Message(String),
    /// The listener lost its connection and listens again: messages published meanwhile are lost.
    Gap,
}

/// Sends a message to every node listening, this one included.
#[async_trait::async_trait]
pub trait NodeFanout: Send + Sync + std::fmt::Debug {
    /// Publishes `message` (any length; the backend splits what its channel cannot carry at once).
    async fn publish(&self, message: &str) -> StoreResult<()>;
    /// Starts listening: messages published from now on arrive on the listener.
    async fn listen(&self) -> StoreResult<Box<dyn FanoutListener>>;
}

/// The receiving end of [`NodeFanout::listen`].
#[async_trait::async_trait]
pub trait FanoutListener: Send + std::fmt::Debug {
    /// The next message or gap; an error means the backend is unreachable now (listen again later).
    async fn next(&mut self) -> StoreResult<Heard>;
}
