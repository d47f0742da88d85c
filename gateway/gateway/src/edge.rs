//! Wiring of the edge's optional parts: Redis (cluster-wide limits, key-cache invalidation across nodes) and the
//! Prometheus listener.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use gw_accounts::{Accounts, InvalidationPublisher, KeyInvalidation};
use gw_ratelimit::pubsub::{Delivery, Publisher};

use crate::config::Settings;

/// Publishes key-cache invalidations on the Redis channel, without blocking the request that caused them.
#[derive(Debug, Clone)]
pub struct RedisInvalidations(Publisher);

impl InvalidationPublisher for RedisInvalidations {
    fn publish(&self, invalidation: &KeyInvalidation) {
        self.0.publish_detached(invalidation.encode());
    }
}

pub struct Redis {
    pub limiter: gw_ratelimit::FallbackLimiter,
    pub publisher: RedisInvalidations,
}

fn channel(settings: &Settings) -> String {
    format!("{}key-invalidations", settings.redis.key_prefix)
}

/// Connects when `redis.url` is set. Redis must answer at start-up (a misconfigured URL fails fast); later outages
/// fall back to local limits and recover by themselves.
pub async fn redis(settings: &Settings) -> anyhow::Result<Option<Redis>> {
    let url = settings.redis.url.expose();
    if url.is_empty() {
        tracing::info!("no redis configured; rate limits are local to this node");
        return Ok(None);
    }
    let prefix = format!("{}rl:", settings.redis.key_prefix);
    let redis = gw_ratelimit::RedisLimiter::connect(url, prefix).await.context("cannot connect to redis")?;
    let limiter = gw_ratelimit::FallbackLimiter::new(
        redis,
        gw_ratelimit::LocalLimiter::new(),
        Duration::from_millis(settings.redis.timeout_ms),
    );
    let publisher = Publisher::connect(url, channel(settings)).await.context("cannot connect to redis")?;
    tracing::info!("redis connected; rate limits are cluster-wide, key revocations reach every node");
    Ok(Some(Redis { limiter, publisher: RedisInvalidations(publisher) }))
}

/// Every node listens for invalidations (its own included) and drops the matching cached keys.
pub fn subscribe_invalidations(
    settings: &Settings,
    accounts: Arc<Accounts>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let url = settings.redis.url.expose();
    if url.is_empty() {
        return None;
    }
    let handler = Arc::new(move |delivery: Delivery| {
        let invalidation = match delivery {
            Delivery::Message(raw) => match KeyInvalidation::decode(&raw) {
                Some(invalidation) => invalidation,
                None => {
                    tracing::warn!("unreadable key invalidation ignored");
                    return;
                }
            },
            // Messages published while this node was not subscribed are lost: forget everything to be safe.
            Delivery::Resubscribed => KeyInvalidation::All,
        };
        let accounts = accounts.clone();
        tokio::spawn(async move { accounts.apply_invalidation(&invalidation).await });
    });
    Some(gw_ratelimit::pubsub::spawn_subscriber(url.to_owned(), channel(settings), handler, stop))
}

/// Serves `GET /metrics` on `metrics.listen`, when set, until `stop` turns true.
pub async fn serve_metrics(
    settings: &Settings,
    state: gw_http::AppState,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = settings.metrics_addr()? else { return Ok(None) };
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen for metrics on {addr}"))?;
    tracing::info!(%addr, "metrics at /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let state = state.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.render_metrics()) }
        }),
    );
    Ok(Some(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        if let Err(err) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(%err, "metrics server failed");
        }
    })))
}
