//! A Redis publish/subscribe channel that survives outages: publishing never blocks the caller, and the subscriber
//! reconnects by itself. After every (re)subscription the handler is told [`Delivery::Resubscribed`], because
//! messages published while it was disconnected are lost (Redis pub/sub keeps nothing), so whoever caches on the
//! strength of these messages must drop everything then.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use redis::aio::ConnectionManager;

use crate::RedisFailure;

/// What the subscriber hands to its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A message published on the channel (by any node, this one included).
    Message(String),
    /// The subscription was (re)established; anything published before may have been missed.
    Resubscribed,
}

/// Publishes on one channel.
#[derive(Clone)]
pub struct Publisher {
    connection: ConnectionManager,
    channel: String,
    timeout: Duration,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("channel", &self.channel).finish_non_exhaustive()
    }
}

impl Publisher {
    /// Connects to `url` and waits for Redis to answer; the connection manager reconnects by itself.
    pub async fn connect(url: &str, channel: impl Into<String>) -> Result<Self, RedisFailure> {
        let publisher = Self::connect_lazy(url, channel)?;
        crate::ping(&publisher.connection, publisher.timeout).await?;
        Ok(publisher)
    }

    /// Like [`Publisher::connect`] without waiting: the connection is made on first use and remade after a
    /// failure. Only a malformed URL is an error.
    pub fn connect_lazy(url: &str, channel: impl Into<String>) -> Result<Self, RedisFailure> {
        let connection = crate::lazy_connection(url)?;
        Ok(Self { connection, channel: channel.into(), timeout: Duration::from_secs(2) })
    }

    /// Publishes and waits for Redis to take it.
    pub async fn publish(&self, message: &str) -> Result<(), RedisFailure> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("PUBLISH");
        command.arg(&self.channel).arg(message);
        let send = command.query_async::<i64>(&mut connection);
        match tokio::time::timeout(self.timeout, send).await {
            Ok(result) => result.map(|_| ()).map_err(RedisFailure::from),
            Err(_) => Err(RedisFailure::Timeout(self.timeout)),
        }
    }

    /// Publishes in the background; a failure is logged (the cache TTL still bounds staleness on other nodes).
    pub fn publish_detached(&self, message: String) {
        let publisher = self.clone();
        tokio::spawn(async move {
            if let Err(err) = publisher.publish(&message).await {
                tracing::warn!(%err, channel = %publisher.channel, "could not publish; other nodes rely on the TTL");
            }
        });
    }
}

/// Subscribes to `channel` at `url` and calls `handler` for every delivery until `stop` turns true. Connection
/// failures are retried with a capped backoff (logged once per outage), never returned.
pub fn spawn_subscriber(
    url: String,
    channel: String,
    handler: Arc<dyn Fn(Delivery) + Send + Sync>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        loop {
            let session = async {
                let client = redis::Client::open(url.as_str())?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = tokio::select! {
                _ = stop.changed() => return,
                outcome = tokio::time::timeout(Duration::from_secs(5), session) => outcome,
            };
            match pubsub {
                Ok(Ok(pubsub)) => {
                    if failing {
                        tracing::info!(%channel, "subscribed again");
                    }
                    backoff = Duration::from_millis(100);
                    handler(Delivery::Resubscribed);
                    let mut messages = pubsub.into_on_message();
                    loop {
                        tokio::select! {
                            _ = stop.changed() => return,
                            message = messages.next() => match message {
                                Some(message) => match message.get_payload::<String>() {
                                    Ok(payload) => handler(Delivery::Message(payload)),
                                    Err(err) => tracing::warn!(%err, %channel, "unreadable message ignored"),
                                },
                                None => break,
                            },
                        }
                    }
                    tracing::warn!(%channel, "subscription lost; reconnecting");
                    failing = true;
                }
                Ok(Err(err)) => {
                    if !failing {
                        tracing::warn!(%err, %channel, "cannot subscribe; retrying");
                    }
                    failing = true;
                }
                Err(_) => {
                    if !failing {
                        tracing::warn!(%channel, "subscribing timed out; retrying");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    })
}
