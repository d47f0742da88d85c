//! [`Application`]: opens the store the URL names, creates the first operator on first run, wires the subsystems
//! and serves the HTTP API on the listener it is given until a shutdown future resolves, then drains in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use gw_accounts::{Accounts, PasswordHasherService};
use gw_store_sql::OpenOptions;

use crate::config::Settings;
use crate::{bootstrap, edge, media, serve, single_node};

fn open_options(settings: &Settings, migrate: bool) -> OpenOptions {
    OpenOptions { max_connections: settings.database.max_connections, migrate, ..OpenOptions::default() }
}

/// Applies pending database migrations (`gateway migrate`).
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    gw_store_sql::migrate(&settings.database.url, &open_options(&settings, true)).await?;
    println!("migrations applied to {}", gw_store_sql::redact_url(&settings.database.url));
    Ok(())
}

/// Fills the secrets that are not configured from the data directory (generating them on first run) and says what
/// it did. Configured secrets are used as they are.
fn secrets(settings: &mut Settings, backend: &str, existing_install: bool) -> anyhow::Result<()> {
    let report = bootstrap::ensure_secrets(settings).context("cannot set up the gateway's secrets")?;
    let dir = report.dir.display();
    if !report.generated.is_empty() {
        tracing::info!(dir = %dir, keys = ?report.generated, "generated secrets (kept with the data, mode 0600)");
        if existing_install {
            // Earlier versions used public defaults for unset secrets; what was made with them stops working.
            tracing::warn!(
                keys = ?report.generated,
                "generated new secrets for an existing installation: tokens must be signed in again; with a new \
                 auth.api_key_pepper every API key must be re-created, and with a new sessions.encryption_key every \
                 WhatsApp instance must be paired again"
            );
        }
        if backend == "postgres" {
            tracing::warn!(
                dir = %dir,
                "these generated secrets belong to this node: every node sharing the database must use the same \
                 ones (copy the files or configure them; production mode requires them configured)"
            );
        }
    }
    if !report.loaded.is_empty() {
        tracing::info!(dir = %dir, keys = ?report.loaded, "loaded the secrets generated on first run");
    }
    for key in settings.public_development_secrets() {
        tracing::warn!(key, "configured with a public development value: anyone can use it; allowed on loopback only");
    }
    Ok(())
}

/// Opens the store, bootstraps secrets and the first operator, starts the background work, resumes instances and
/// builds the router on `listener`.
async fn build(settings: Settings, listener: tokio::net::TcpListener) -> anyhow::Result<Application> {
    // Held until the application ends: a second process on the same SQLite file would run every session twice.
    let single_node = match single_node::sqlite_file(&settings.database.url) {
        Some(database) => Some(single_node::lock(&database)?),
        None => None,
    };
    let addr = listener.local_addr().context("cannot read the bound address")?;
    let store = gw_store_sql::open(&settings.database.url, &open_options(&settings, true)).await?;
    tracing::info!(database = %gw_store_sql::redact_url(&settings.database.url), backend = store.backend(), "store ready");
    let mut settings = settings;
    let existing_install = store.count_active_admins().await? > 0;
    secrets(&mut settings, store.backend(), existing_install)?;

    if let Some((email, password)) = bootstrap::ensure_operator(store.as_ref(), &settings.admin).await? {
        // Printed once, to the terminal, outside the log stream: it is never stored anywhere in clear.
        println!();
        println!("============================================================");
        println!(" First run: created the operator account");
        println!("   email:    {email}");
        println!("   password: {password}");
        println!(" This password is shown once. Change it after signing in.");
        println!("============================================================");
        println!();
    }

    let (stop_background, stopped) = tokio::sync::watch::channel(false);
    let mut accounts = Accounts::new(store.clone(), PasswordHasherService::owasp(), settings.accounts());
    let limiter: Arc<dyn gw_ratelimit::RateLimiter> = match edge::redis(&settings).await? {
        Some(redis) => {
            accounts = accounts.with_invalidation_publisher(Arc::new(redis.publisher.clone()));
            Arc::new(redis.limiter)
        }
        None => Arc::new(gw_ratelimit::LocalLimiter::new()),
    };
    let accounts = Arc::new(accounts);
    let subscriber = edge::subscribe_invalidations(&settings, accounts.clone(), stopped.clone());
    let background = spawn_background(accounts.clone(), limiter.clone(), stopped.clone());
    let metering = Arc::new(gw_metering::Metering::new(store.clone()));
    let flusher = metering.clone().spawn_flusher(Duration::from_secs(2), stopped.clone());
    let cipher = Arc::new(gw_sessions::SessionCipher::new(&settings.session_key()?));
    let meter = Arc::new(gw_metering::EngineMeter::new(metering.clone()));
    let mut engine_config = settings.engine();
    // The SQLite file lock makes this node the only one: an earlier process's leases are dead, not paused.
    engine_config.cluster.exclusive = single_node.is_some();
    if settings.cluster.node_address.is_empty() {
        // Operators see the address this node actually serves on (port 0 resolved).
        engine_config.cluster.node_address = addr.to_string();
    }
    let mut engine = gw_sessions::Engine::builder(store.clone(), meter, cipher).config(engine_config);
    let sandbox = crate::sandbox_network::sandbox(&settings)?;
    if let Some(sandbox) = &sandbox {
        engine = engine.driver(gw_core::DriverKind::Sandbox, sandbox.driver.clone());
    }
    let sandbox = sandbox.map(|sandbox| sandbox.control);
    if settings.whatsapp.enabled {
        let driver = gw_driver_whatsapp::WhatsAppDriver::new(settings.whatsapp()?, store.clone())
            .context("cannot configure the WhatsApp driver")?;
        engine = engine.driver(gw_core::DriverKind::Whatsapp, Arc::new(driver));
    }
    let mut plugin_subscriber = None;
    let plugins = if settings.plugins.enabled {
        let host = plugin_host(&settings, store.clone(), accounts.clone())?;
        // In-flight events keep the chain they loaded; a change made through the API invalidates an instance's
        // chain so the next event loads it afresh, on every node when Redis is configured.
        engine = engine.pipeline(Arc::new(host.pipeline()));
        let local = Arc::new(host) as Arc<dyn gw_core::PluginRuntime>;
        plugin_subscriber = edge::subscribe_plugin_invalidations(&settings, local.clone(), stopped.clone());
        Some(edge::cluster_plugins(&settings, local)?)
    } else {
        tracing::warn!("plugins are disabled: uploads are refused and messages pass unchanged");
        None
    };
    if settings.sessions.media_by_url {
        let client =
            gw_egress::GuardedClient::new(settings.media_egress()?).context("cannot build the media HTTP client")?;
        engine = engine.media_fetcher(Arc::new(media::EgressMediaFetcher::new(client)));
    }
    // Webhooks: the outbox sink is a durable sink of the engine, so an inbound message is acknowledged to WhatsApp
    // only once its deliveries are stored.
    let client = gw_egress::GuardedClient::new(settings.egress()?).context("cannot build the webhook HTTP client")?;
    let bus = Arc::new(BusSink::default());
    let dispatcher = settings
        .webhooks
        .enabled
        .then(|| gw_webhooks::Dispatcher::new(store.clone(), client, settings.dispatcher()).with_notifier(bus.clone()));
    if let Some(dispatcher) = &dispatcher {
        engine = engine.sink(Arc::new(dispatcher.sink()));
    }
    // After the durable sinks: an event reaches other nodes' live streams only once it is durable here.
    let relay = crate::live_events::relay(&settings).await?;
    if let Some((relay, _)) = &relay {
        engine = engine.sink(relay.clone());
    }
    let engine = engine.build();
    bus.attach(engine.clone(), relay.as_ref().map(|(relay, _)| relay.clone()));
    let relay_task = relay.and_then(|(relay, fanout)| relay.spawn(fanout, engine.clone(), stopped.clone()));
    let webhook_worker = dispatcher.as_ref().map(gw_webhooks::Dispatcher::spawn);
    // Only what this node holds a lease on runs here; the loops renew, take over orphans and drain at shutdown.
    let resumed = engine.resume_all().await.context("cannot resume instances")?;
    engine.run_cluster();
    tracing::info!(resumed, node = %engine.node_id(), "instances resumed");
    let access = gw_services::Access::new(store.clone(), accounts.clone());
    let state = gw_http::AppState::new(gw_http::AppContext {
        store: store.clone(),
        accounts: accounts.clone(),
        settings: Arc::new(settings.http()?),
        limiter,
        engine: engine.clone(),
        sandbox,
        messaging: gw_services::Messaging::new(
            access.clone(),
            engine.clone(),
            Duration::from_secs(settings.sessions.number_check_cache_secs),
        ),
        webhooks: gw_services::Webhooks::new(access.clone(), Arc::new(settings.egress()?), dispatcher),
        usage: gw_services::Usage::new(access.clone()),
        metering,
        metrics: Arc::new(gw_http::EdgeMetrics::default()),
        plugins: gw_services::Plugins::new(access, plugins, settings.plugins.timeout_ms),
    });
    let metrics_server = edge::serve_metrics(&settings, state.clone(), stopped.clone()).await?;
    let app = gw_http::router(state);
    Ok(Application {
        listener,
        addr,
        app,
        store,
        accounts,
        engine,
        webhook_worker,
        stop_background,
        background,
        flusher,
        subscribers: [subscriber, plugin_subscriber, metrics_server, relay_task].into_iter().flatten().collect(),
        single_node,
    })
}

/// The wired gateway, bound to its listener and not yet serving.
pub struct Application {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    app: axum::Router,
    store: Arc<dyn gw_store::Store>,
    accounts: Arc<Accounts>,
    engine: gw_sessions::Engine,
    webhook_worker: Option<gw_webhooks::DispatcherHandle>,
    stop_background: tokio::sync::watch::Sender<bool>,
    background: tokio::task::JoinHandle<()>,
    flusher: tokio::task::JoinHandle<()>,
    subscribers: Vec<tokio::task::JoinHandle<()>>,
    /// SQLite only: the lock that keeps a second process off the database file, released when the application ends.
    single_node: Option<single_node::SingleNodeLock>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Application {
    /// Opens the store, bootstraps secrets and the first operator, starts the background work, resumes instances
    /// and builds the router. Nothing is served until [`Application::run_until_stopped`].
    pub async fn build(settings: Settings, listener: tokio::net::TcpListener) -> anyhow::Result<Self> {
        build(settings, listener).await
    }

    /// The address the listener is bound to (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes the requests in flight, disconnects the
    /// instances, stops the background work and closes the store.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            listener,
            app,
            store,
            accounts,
            engine,
            webhook_worker,
            stop_background,
            background,
            flusher,
            subscribers,
            single_node,
            ..
        } = self;
        serve::serve(listener, app, shutdown).await;
        // Drain: instances disconnect cleanly (their sessions stay valid) and their leases are given up, so other
        // nodes take them over at once.
        engine.shutdown().await;
        // Attempts in flight finish and are recorded; what is still queued stays in the outbox for the next start.
        if let Some(worker) = webhook_worker {
            worker.stop().await;
        }
        // Not aborted: a flush in progress must finish, or the uses it drained would be lost. The metering flusher
        // writes what the last requests and the engine's last events counted.
        let _ = stop_background.send(true);
        for (name, task) in [("background", background), ("usage flusher", flusher)] {
            if let Err(err) = task.await {
                tracing::error!(%err, task = name, "task failed");
            }
        }
        for task in subscribers {
            let _ = task.await;
        }
        // Uses counted after the last periodic flush are written before the store closes.
        match accounts.flush_key_usage().await {
            Ok(keys) => tracing::info!(keys, "API key usage flushed"),
            Err(err) => tracing::error!(%err, "could not flush API key usage at shutdown"),
        }
        tracing::info!("draining finished; closing the database");
        if tokio::time::timeout(Duration::from_secs(5), store.close()).await.is_err() {
            tracing::warn!("the database pool did not close within 5 s");
        }
        drop(single_node);
        tracing::info!("stopped");
        Ok(())
    }
}

/// Puts events the dispatcher raises (`webhook.disabled`) on the engine's live bus, so the SSE stream shows them,
/// and on the other nodes' through the relay.
#[derive(Debug, Default)]
struct BusSink(std::sync::OnceLock<(gw_sessions::Engine, Option<Arc<gw_sessions::EventRelay>>)>);

impl BusSink {
    fn attach(&self, engine: gw_sessions::Engine, relay: Option<Arc<gw_sessions::EventRelay>>) {
        let _ = self.0.set((engine, relay));
    }
}

#[async_trait::async_trait]
impl gw_core::EventSink for BusSink {
    async fn publish(&self, event: &gw_core::GatewayEvent) -> Result<(), gw_core::EventSinkError> {
        if let Some((engine, relay)) = self.0.get() {
            engine.broadcast(event.clone());
            if let Some(relay) = relay {
                gw_core::EventSink::publish(relay.as_ref(), event).await?;
            }
        }
        Ok(())
    }
}

/// The WebAssembly host over the store: chains, components, failures, logs and plugin state come from the store,
/// limits from each subscription's tier and overrides.
fn plugin_host(
    settings: &Settings,
    store: Arc<dyn gw_store::Store>,
    accounts: Arc<Accounts>,
) -> anyhow::Result<gw_plugins::PluginHost> {
    let timeout_ms = settings.plugins.timeout_ms;
    let limits: gw_store::PluginLimitsFn =
        Arc::new(move |subscription| accounts.effective_limits(subscription).plugin_limits(timeout_ms));
    let catalog = Arc::new(gw_store::StoreCatalog::new(store, limits));
    let cache_dir = settings.plugin_cache_dir();
    let host_settings = gw_plugins::HostSettings {
        cache_dir: Some(cache_dir.clone()),
        max_reply_depth: settings.sessions.max_reply_depth,
        chains_per_subscription: settings.plugins.chains_per_subscription,
        reply_guard: gw_plugins::ReplyGuardSettings {
            replies_per_chat_per_minute: settings.plugins.replies_per_chat_per_minute,
            reply_burst_per_chat: settings.plugins.reply_burst_per_chat,
            ping_pong_window: Duration::from_millis(settings.plugins.ping_pong_window_ms),
            ping_pong_exchanges: settings.plugins.ping_pong_exchanges,
        },
        ..gw_plugins::HostSettings::default()
    };
    let host = gw_plugins::PluginHost::new(host_settings, catalog)
        .with_context(|| format!("cannot start the plugin host (cache {})", cache_dir.display()))?;
    tracing::info!(cache = %cache_dir.display(), timeout_ms, "plugin host ready");
    Ok(host)
}

/// Periodic work: flush API key usage every 2 s, and let the local limiter forget idle keys every minute.
fn spawn_background(
    accounts: Arc<Accounts>,
    limiter: Arc<dyn gw_ratelimit::RateLimiter>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut flush = tokio::time::interval(Duration::from_secs(2));
        let mut prune = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = flush.tick() => {
                    if let Err(err) = accounts.flush_key_usage().await {
                        tracing::warn!(%err, "API key usage flush failed; will retry");
                    }
                }
                _ = prune.tick() => limiter.retain_recent(),
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM; axum then stops accepting and finishes in-flight requests.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}
