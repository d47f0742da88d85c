//! The gateway's Redis plumbing, shared by the cluster-wide rate limiter (`gw-ratelimit`) and the binary's
//! invalidation channels (API keys, plugin chains):
//!
//! - [`lazy_connection`]: a connection made on first use and remade after a failure, with short timeouts.
//! - [`ping`]: whether Redis answers within a deadline.
//! - [`pubsub`]: a reconnecting publish/subscribe channel; publishing never blocks the caller.
//!
//! Architecture invariant: nothing here knows what travels over Redis. What a message means (a key to forget, a
//! plugin chain to reload) belongs to the domain crate that publishes it; the binary joins the two.

pub mod pubsub;

use std::time::Duration;

/// Why Redis did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// A Redis connection made on first use and remade after a failure, with short timeouts: callers wait for Redis
/// only as long as their own deadline anyway. `TCP_NODELAY`, which redis-rs leaves off: commands are small and
/// multiplexed on one connection, and Nagle's algorithm would hold a command back while an earlier one waits for
/// its reply.
pub fn lazy_connection(url: &str) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
    use redis::IntoConnectionInfo as _;
    let info = url.into_connection_info()?;
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    let client = redis::Client::open(info.set_tcp_settings(tcp))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1);
    redis::aio::ConnectionManager::new_lazy_with_config(client, config)
}

/// Whether Redis answers `PING` within `timeout`.
pub async fn ping(connection: &redis::aio::ConnectionManager, timeout: Duration) -> Result<(), RedisFailure> {
    let mut connection = connection.clone();
    match tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut connection)).await {
        Ok(reply) => reply.map(|_| ()).map_err(RedisFailure::from),
        Err(_) => Err(RedisFailure::Timeout(timeout)),
    }
}
