//! Wiring of the edge's optional parts: Redis (cluster-wide limits, key-cache and plugin-chain invalidation across
//! nodes) and the Prometheus listener.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use gw_accounts::{Accounts, InvalidationPublisher, KeyInvalidation};
use gw_redis::pubsub::{Delivery, Publisher};
use gw_services::{ChainInvalidation, ChainInvalidationPublisher, ClusterPlugins};

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

/// Connects when `redis.url` is set. A malformed URL fails start-up; an unreachable Redis does not: the node
/// starts with local limits (logged, and reported by `gateway_ratelimit_redis_degraded`) and uses Redis once it
/// answers, as after any later outage. Key and plugin invalidations missed meanwhile are covered by the
/// subscriber, which drops everything cached when it (re)subscribes.
pub async fn redis(settings: &Settings) -> anyhow::Result<Option<Redis>> {
    let url = settings.redis.url.expose();
    if url.is_empty() {
        tracing::info!("no redis configured; rate limits are local to this node");
        return Ok(None);
    }
    let prefix = format!("{}rl:", settings.redis.key_prefix);
    let redis = gw_ratelimit::RedisLimiter::connect_lazy(url, prefix).context("invalid redis url")?;
    let publisher = Publisher::connect_lazy(url, channel(settings)).context("invalid redis url")?;
    let (local, timeout) = (gw_ratelimit::LocalLimiter::new(), Duration::from_millis(settings.redis.timeout_ms));
    let limiter = if settings.redis.local_first {
        gw_ratelimit::FallbackLimiter::new(redis, local, timeout)
    } else {
        gw_ratelimit::FallbackLimiter::exact(redis, local, timeout)
    };
    // Connects and loads the script now, so the first requests do not pay for either.
    match limiter.warm_up(START_UP_PING).await {
        Ok(()) => tracing::info!("redis connected; rate limits are cluster-wide, key revocations reach every node"),
        Err(err) => limiter.mark_unreachable(&err),
    }
    Ok(Some(Redis { limiter, publisher: RedisInvalidations(publisher) }))
}

/// How long start-up waits to learn whether Redis answers (it starts either way).
const START_UP_PING: Duration = Duration::from_secs(2);

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
    Some(gw_redis::pubsub::spawn_subscriber(url.to_owned(), channel(settings), handler, stop))
}

fn plugin_channel(settings: &Settings) -> String {
    format!("{}plugin-invalidations", settings.redis.key_prefix)
}

/// Publishes plugin-chain invalidations on the Redis channel, without blocking the change that caused them.
#[derive(Debug, Clone)]
pub struct RedisChainInvalidations(Publisher);

impl ChainInvalidationPublisher for RedisChainInvalidations {
    fn publish(&self, invalidation: ChainInvalidation) {
        self.0.publish_detached(invalidation.encode());
    }
}

/// `local` itself without Redis; with it, `local` behind a [`ClusterPlugins`].
pub fn cluster_plugins(
    settings: &Settings,
    local: Arc<dyn gw_core::PluginRuntime>,
) -> anyhow::Result<Arc<dyn gw_core::PluginRuntime>> {
    let url = settings.redis.url.expose();
    if url.is_empty() {
        return Ok(local);
    }
    let publisher = Publisher::connect_lazy(url, plugin_channel(settings)).context("invalid redis url")?;
    Ok(Arc::new(ClusterPlugins::new(local, Arc::new(RedisChainInvalidations(publisher)))))
}

/// Every node listens for plugin-chain invalidations (its own included, which costs one more load) and drops the
/// named chain, or all of them after a gap in the subscription.
pub fn subscribe_plugin_invalidations(
    settings: &Settings,
    local: Arc<dyn gw_core::PluginRuntime>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let url = settings.redis.url.expose();
    if url.is_empty() {
        return None;
    }
    Some(gw_redis::pubsub::spawn_subscriber(url.to_owned(), plugin_channel(settings), plugin_handler(local), stop))
}

fn plugin_handler(local: Arc<dyn gw_core::PluginRuntime>) -> Arc<dyn Fn(Delivery) + Send + Sync> {
    Arc::new(move |delivery: Delivery| match delivery {
        Delivery::Message(raw) => match ChainInvalidation::decode(&raw) {
            Some(invalidation) => invalidation.apply(local.as_ref()),
            None => tracing::warn!("unreadable plugin invalidation ignored"),
        },
        // Messages published while this node was not subscribed are lost: reload every chain to be safe.
        Delivery::Resubscribed => local.invalidate_all(),
    })
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

#[cfg(test)]
mod tests {
    //! Cross-node plugin-chain invalidation against the real Redis (`GW_TEST_REDIS_URL`, default
    //! `redis://127.0.0.1:6379`), wired as the binary wires it; the plugin hosts are recording stand-ins, since
    //! what is tested is that node A's change reaches node B. Skips loudly without Redis unless `CI` is set.
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use gw_core::{InstanceId, PluginRuntime};

    use super::*;

    /// Records what it was told to invalidate.
    #[derive(Debug, Default)]
    struct Recorder {
        seen: Mutex<Vec<String>>,
        changed: tokio::sync::Notify,
    }

    #[async_trait::async_trait]
    impl PluginRuntime for Recorder {
        async fn prepare(
            &self,
            _: &[u8],
            _: &gw_core::PluginLimits,
        ) -> Result<gw_core::PreparedComponent, gw_core::PluginRejection> {
            Err(gw_core::PluginRejection {
                kind: gw_core::RejectionKind::InvalidComponent,
                message: "not part of this test".into(),
            })
        }
        fn invalidate(&self, instance: InstanceId) {
            self.seen.lock().unwrap().push(instance.to_string());
            self.changed.notify_waiters();
        }
        fn invalidate_all(&self) {
            self.seen.lock().unwrap().push(ChainInvalidation::All.encode());
            self.changed.notify_waiters();
        }
    }

    impl Recorder {
        /// Waits (at most 10 s) until `what` has been recorded `times` times.
        async fn wait_for(&self, what: &str, times: usize) {
            let count = || self.seen.lock().unwrap().iter().filter(|s| *s == what).count();
            tokio::time::timeout(std::time::Duration::from_secs(10), async {
                loop {
                    let changed = self.changed.notified();
                    if count() >= times {
                        return;
                    }
                    changed.await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{what} not recorded {times} time(s): {:?}", self.seen.lock().unwrap()));
        }
    }

    #[tokio::test]
    async fn a_plugin_change_on_one_node_invalidates_the_chain_on_another() {
        let url = std::env::var("GW_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let channel = format!("test-plugin-invalidations-{}", InstanceId::new());
        let publisher = match Publisher::connect(&url, channel.clone()).await {
            Ok(publisher) if publisher.publish("probe").await.is_ok() => publisher,
            _ if std::env::var_os("CI").is_some() => panic!("Redis at {url} is required in CI"),
            _ => {
                eprintln!("SKIPPED: Redis not reachable at {url}");
                return;
            }
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let on_b = Arc::new(Recorder::default());
        let subscriber = gw_redis::pubsub::spawn_subscriber(url, channel, plugin_handler(on_b.clone()), stopped);
        // Subscribing starts with a reload of every chain, which also says the subscription is live.
        on_b.wait_for(&ChainInvalidation::All.encode(), 1).await;

        let on_a = Arc::new(Recorder::default());
        let node_a = ClusterPlugins::new(on_a.clone(), Arc::new(RedisChainInvalidations(publisher.clone())));
        let instance = InstanceId::new();
        publisher.publish("not an instance id").await.unwrap();
        node_a.invalidate(instance);
        assert_eq!(*on_a.seen.lock().unwrap(), vec![instance.to_string()], "node A's own chain at once");
        on_b.wait_for(&instance.to_string(), 1).await;
        node_a.invalidate_all();
        on_b.wait_for(&ChainInvalidation::All.encode(), 2).await;
        assert_eq!(
            *on_b.seen.lock().unwrap(),
            vec![ChainInvalidation::All.encode(), instance.to_string(), ChainInvalidation::All.encode()],
            "node B: the initial reload, the instance, everything; the unreadable message changed nothing"
        );

        stop.send(true).unwrap();
        subscriber.await.unwrap();
    }
}
