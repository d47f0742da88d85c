//! The limiters against a real Redis (`GW_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`). Keys carry a random
//! prefix per test and expire by themselves. With `CI` set an unreachable Redis fails the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gw_ratelimit::{FallbackLimiter, LocalLimiter, Quota, RateLimiter, RedisLimiter};
use gw_test_support::until_within;

fn redis_url() -> String {
    std::env::var("GW_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

async fn limiter(prefix: &str) -> Option<RedisLimiter> {
    match RedisLimiter::connect(&redis_url(), prefix).await {
        Ok(limiter) if limiter.try_check("probe", Quota::per_minute(60)).await.is_ok() => Some(limiter),
        outcome if !required() => {
            eprintln!("\n*** SKIPPED: Redis at {} is unreachable ({:?}) ***\n", redis_url(), outcome.err());
            None
        }
        outcome => panic!("Redis at {} is unreachable and required in CI: {:?}", redis_url(), outcome.err()),
    }
}

fn prefix() -> String {
    format!("gw-test:{}:", uuid::Uuid::now_v7().simple())
}

#[tokio::test]
async fn gcra_allows_the_burst_then_refuses_with_retry_after() {
    let Some(limiter) = limiter(&prefix()).await else { return };
    let quota = Quota::per_minute(60).with_burst(3);
    for expected_remaining in [2, 1, 0] {
        let decision = limiter.try_check("key", quota).await.expect("decision");
        assert!(decision.allowed, "{decision:?}");
        assert_eq!(decision.remaining, expected_remaining);
    }
    let refused = limiter.try_check("key", quota).await.expect("decision");
    assert!(!refused.allowed);
    let retry = refused.retry_after.expect("retry after");
    assert!(retry > Duration::from_millis(900) && retry <= Duration::from_secs(1), "{retry:?}");
    assert!(limiter.try_check("other", quota).await.expect("decision").allowed, "keys are independent");
}

/// Three independent limiter stacks (own connections) share one key in Redis and offer 100 requests per second
/// each for 10 seconds against a limit of 60 per second: together they accept within 5% of the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_clients_stay_within_five_percent_of_the_rate() {
    let prefix = prefix();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let Some(limiter) = limiter(&prefix).await else { return };
        clients.push(limiter);
    }
    let quota = Quota::per_minute(3600).with_burst(10);
    let accepted = Arc::new(AtomicU32::new(0));
    let run_for = Duration::from_secs(10);
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|limiter| {
            let accepted = accepted.clone();
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(Duration::from_millis(10));
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let started = tokio::time::Instant::now();
                while started.elapsed() < run_for {
                    ticker.tick().await;
                    if limiter.try_check("shared", quota).await.expect("decision").allowed {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client");
    }
    let accepted = f64::from(accepted.load(Ordering::Relaxed));
    let expected = 60.0 * run_for.as_secs_f64() + f64::from(quota.burst);
    let error = (accepted - expected).abs() / expected;
    eprintln!("accepted {accepted} of 3000 offered; expected {expected}; error {:.2}%", error * 100.0);
    assert!(error <= 0.05, "accepted {accepted}, expected {expected} (error {:.1}%)", error * 100.0);
}

/// A TCP proxy in front of Redis that a test can cut (dropping every connection) and restore on the same port.
struct Proxy {
    addr: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(addr: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let upstream = redis_url().trim_start_matches("redis://").trim_end_matches('/').to_owned();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, task: Some(task) }
    }

    /// Stops listening and drops every proxied connection (the JoinSet aborts its tasks when dropped).
    async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_limits_locally_during_an_outage_and_returns_to_redis() {
    if limiter(&prefix()).await.is_none() {
        return;
    }
    let mut proxy = Proxy::start("127.0.0.1:0".parse().expect("addr")).await;
    let through_proxy = RedisLimiter::connect(&format!("redis://{}", proxy.addr), prefix()).await.expect("connect");
    let fallback = FallbackLimiter::new(through_proxy, LocalLimiter::new(), Duration::from_millis(300));
    let quota = Quota::per_minute(60).with_burst(2);
    assert!(fallback.check("redis-key", quota).await.allowed);
    assert!(!fallback.is_degraded());

    proxy.cut().await;
    // Redis is gone: decisions are made locally, and still limit (burst of 2, then refused), never an error.
    let decisions: Vec<bool> = {
        let mut d = Vec::new();
        for _ in 0..3 {
            d.push(fallback.check("outage-key", quota).await.allowed);
        }
        d
    };
    assert_eq!(decisions, [true, true, false]);
    assert!(fallback.is_degraded());
    assert_eq!(fallback.fallback_decisions(), 3);

    let _restored = Proxy::start(proxy.addr).await;
    redis_decides_again(&fallback, quota).await;
}

/// Asks (polling, with a deadline) until a decision is made by Redis again, then shows that the next one is too:
/// the fallback went back to Redis by itself, without a restart.
async fn redis_decides_again(fallback: &FallbackLimiter, quota: Quota) {
    until_within(Duration::from_secs(15), "the fallback to go back to Redis", async || {
        fallback.check("probe-key", quota).await;
        !fallback.is_degraded()
    })
    .await;
    let fallbacks = fallback.fallback_decisions();
    assert!(fallback.check("fresh-key", quota).await.allowed);
    assert_eq!(fallback.fallback_decisions(), fallbacks, "decided by Redis, without a restart");
}

/// A node that starts while Redis is down does not fail: it limits locally, and uses Redis once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limiter_started_during_an_outage_limits_locally_then_uses_redis() {
    if limiter(&prefix()).await.is_none() {
        return;
    }
    // A loopback port with nothing listening on it, which the proxy takes later.
    let mut proxy = Proxy::start("127.0.0.1:0".parse().expect("addr")).await;
    proxy.cut().await;
    let url = format!("redis://{}", proxy.addr);
    assert!(RedisLimiter::connect(&url, prefix()).await.is_err(), "nothing answers there yet");
    let lazy = RedisLimiter::connect_lazy(&url, prefix()).expect("a well-formed url");
    let unreachable = lazy.ping(Duration::from_secs(2)).await.expect_err("down");
    let fallback = FallbackLimiter::new(lazy, LocalLimiter::new(), Duration::from_millis(300));
    fallback.mark_unreachable(&unreachable);
    assert!(fallback.is_degraded());
    assert_eq!(fallback.fallback_decisions(), 0, "marking decides nothing");
    let quota = Quota::per_minute(60).with_burst(1);
    assert!(fallback.check("start-key", quota).await.allowed);
    assert!(!fallback.check("start-key", quota).await.allowed, "limited locally meanwhile");
    assert_eq!(fallback.fallback_decisions(), 2);

    let _up = Proxy::start(proxy.addr).await;
    redis_decides_again(&fallback, quota).await;
    assert!(RedisLimiter::connect_lazy("not a url", prefix()).is_err(), "a malformed url is still refused at once");
}

/// A key's limit and its subscription's in one script run: the tighter decides, and a request refused by one limit
/// does not use up the other.
#[tokio::test]
async fn key_and_subscription_limits_are_decided_together_all_or_nothing() {
    let Some(limiter) = limiter(&prefix()).await else { return };
    let roomy = Quota::per_minute(600).with_burst(10);
    let tight = Quota::per_minute(60).with_burst(2);
    // Key A (roomy) under a tight subscription: the subscription decides and refuses the third request.
    for expected_remaining in [1, 0] {
        let (index, decision) = limiter.try_check_all(&[("key-a", roomy), ("sub", tight)]).await.expect("decision");
        assert!(decision.allowed);
        assert_eq!((index, decision.remaining, decision.quota), (1, expected_remaining, tight), "the tighter one");
    }
    let (index, refused) = limiter.try_check_all(&[("key-a", roomy), ("sub", tight)]).await.expect("decision");
    assert_eq!((index, refused.allowed), (1, false));
    assert!(refused.retry_after.is_some());
    // Refused by the subscription, key A was not charged: it still has 10 - 2 = 8 of its burst.
    let (_, alone) = limiter.try_check_all(&[("key-a", roomy)]).await.expect("decision");
    assert_eq!(alone.remaining, 7, "two charged before, this one now; the refused one was not");
}

/// On a healthy Redis, light load never falls back: the limiter wired as the binary wires it (a lazy connection,
/// warmed up at start, the default deadline) makes 20 s of decisions at 50 a second, a few at once, and every one
/// is Redis's. With the old 20 ms deadline a busy 2-core machine's scheduling stalls (20-100 ms) moved some of them
/// to local limits. A count, not a timing: it fails only if a decision falls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn light_load_on_a_healthy_redis_never_falls_back() {
    if limiter(&prefix()).await.is_none() {
        return;
    }
    let lazy = RedisLimiter::connect_lazy(&redis_url(), prefix()).expect("a well-formed url");
    let fallback = Arc::new(FallbackLimiter::new(lazy, LocalLimiter::new(), gw_ratelimit::DEFAULT_REDIS_TIMEOUT));
    fallback.warm_up(Duration::from_secs(2)).await.expect("Redis answers");
    let quota = Quota::per_minute(60_000).with_burst(100);
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let mut decisions = tokio::task::JoinSet::new();
    for n in 0..1000u32 {
        ticker.tick().await;
        let fallback = fallback.clone();
        decisions.spawn(async move {
            let key = format!("key-{}", n % 10);
            fallback.check_all(&[(key.as_str(), quota), ("subscription", quota)]).await.1.allowed
        });
    }
    let mut allowed = 0;
    while let Some(decision) = decisions.join_next().await {
        allowed += u32::from(decision.expect("decision"));
    }
    assert_eq!(fallback.fallback_decisions(), 0, "decisions made locally on a healthy Redis");
    assert!(!fallback.is_degraded());
    assert_eq!(allowed, 1000, "all within the quota");
}

/// A proxy in front of Redis that can start swallowing what clients send (a Redis that hangs: the connection stays
/// open and nothing is answered), counting the rate-limit scripts it is sent.
struct HangingProxy {
    addr: std::net::SocketAddr,
    hang: Arc<std::sync::atomic::AtomicBool>,
    scripts: Arc<AtomicU32>,
}

impl HangingProxy {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let (hang, scripts) = (Arc::new(std::sync::atomic::AtomicBool::new(false)), Arc::new(AtomicU32::new(0)));
        let upstream = redis_url().trim_start_matches("redis://").trim_end_matches('/').to_owned();
        let (hanging, counted) = (hang.clone(), scripts.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (hang, scripts, upstream) = (hanging.clone(), counted.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(upstream).await else { return };
                    let (mut from_client, mut to_client) = inbound.into_split();
                    let (mut from_redis, mut to_redis) = outbound.into_split();
                    tokio::spawn(async move { tokio::io::copy(&mut from_redis, &mut to_client).await });
                    let (mut buffer, mut seen) = (vec![0u8; 64 * 1024], Vec::new());
                    loop {
                        let read = match from_client.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => read,
                        };
                        // Counted over everything received, so a command split across reads counts once.
                        seen.extend_from_slice(&buffer[..read]);
                        let total = seen.windows(7).filter(|w| w == b"EVALSHA").count() as u32;
                        scripts.fetch_max(total, Ordering::SeqCst);
                        if !hang.load(Ordering::SeqCst) && to_redis.write_all(&buffer[..read]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, hang, scripts }
    }
}

/// While Redis hangs, one decision at a time asks it and the others are made locally at once, so an outage does
/// not make every request wait out the deadline: 20 concurrent decisions send one script to the hung Redis (20
/// without the probe slot). Counted at the proxy, not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_is_asked_by_one_decision_at_a_time() {
    if limiter(&prefix()).await.is_none() {
        return;
    }
    let proxy = HangingProxy::start().await;
    let redis = RedisLimiter::connect(&format!("redis://{}", proxy.addr), prefix()).await.expect("connect");
    let fallback = Arc::new(FallbackLimiter::new(redis, LocalLimiter::new(), Duration::from_secs(1)));
    fallback.warm_up(Duration::from_secs(2)).await.expect("warm up through the proxy");
    let quota = Quota::per_minute(6000).with_burst(100);
    assert!(fallback.check("key", quota).await.allowed);
    assert_eq!((fallback.fallback_decisions(), proxy.scripts.load(Ordering::SeqCst)), (0, 1), "decided by Redis");

    proxy.hang.store(true, Ordering::SeqCst);
    assert!(fallback.check("key", quota).await.allowed, "decided locally once the deadline passed");
    assert!(fallback.is_degraded());
    let before = proxy.scripts.load(Ordering::SeqCst);
    assert_eq!(before, 2, "the timed-out script reached the proxy");
    let decisions: Vec<_> = (0..20)
        .map(|_| {
            let fallback = fallback.clone();
            tokio::spawn(async move { fallback.check("key", quota).await.allowed })
        })
        .collect();
    for decision in decisions {
        assert!(decision.await.expect("decision"), "limited locally, within the burst");
    }
    assert_eq!(fallback.fallback_decisions(), 21);
    assert_eq!(proxy.scripts.load(Ordering::SeqCst) - before, 1, "only the probe was sent to the hung Redis");
}

/// A limiter stack as the binary builds it (local-first, its own connection), on a shared prefix.
async fn node(prefix: &str) -> Arc<FallbackLimiter> {
    let redis = RedisLimiter::connect(&redis_url(), prefix).await.expect("connect");
    let node = FallbackLimiter::new(redis, LocalLimiter::new(), gw_ratelimit::DEFAULT_REDIS_TIMEOUT);
    node.warm_up(Duration::from_secs(2)).await.expect("warm up");
    Arc::new(node)
}

/// What the edge does: the synchronous answer when there is one, else the asynchronous path.
async fn decide(limiter: &FallbackLimiter, checks: &[(&str, Quota)]) -> bool {
    match limiter.check_all_now(checks) {
        Some((_, decision)) => decision.allowed,
        None => limiter.check_all(checks).await.1.allowed,
    }
}

/// Three local-first nodes (own connections, own token batches) share a key and a subscription limit in Redis and
/// offer 800 requests per second each for 10 seconds against a limit of 100 per second: together they admit
/// within 5% of the limit (its rate over the window plus its burst), and spend far fewer Redis round trips than
/// decisions (remembered refusals and batches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_local_first_nodes_stay_within_five_percent_of_the_rate() {
    if limiter(&prefix()).await.is_none() {
        return;
    }
    let prefix = prefix();
    let nodes = [node(&prefix).await, node(&prefix).await, node(&prefix).await];
    let quota = Quota::per_minute(6000).with_burst(100);
    let roomy = Quota::per_minute(6_000_000).with_burst(1_000_000);
    let (accepted, offered) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let run_for = Duration::from_secs(10);
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for node in &nodes {
        for _ in 0..4 {
            let (node, accepted, offered) = (node.clone(), accepted.clone(), offered.clone());
            tasks.spawn(async move {
                let mut ticker = tokio::time::interval(Duration::from_millis(5));
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                while started.elapsed() < run_for {
                    ticker.tick().await;
                    offered.fetch_add(1, Ordering::Relaxed);
                    if decide(&node, &[("key", quota), ("subscription", roomy)]).await {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    }
    while let Some(task) = tasks.join_next().await {
        task.expect("client");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = f64::from(accepted.load(Ordering::Relaxed));
    let offered = offered.load(Ordering::Relaxed);
    let expected = 100.0 * elapsed + f64::from(quota.burst);
    let error = (accepted - expected).abs() / expected;
    let trips: u64 = nodes.iter().map(|n| n.round_trips()).sum();
    eprintln!(
        "accepted {accepted} of {offered} offered in {elapsed:.2} s; expected {expected:.0}; error {:.2}%; \
         {trips} Redis round trips",
        error * 100.0
    );
    assert!(error <= 0.05, "accepted {accepted}, expected {expected:.0} (error {:.1}%)", error * 100.0);
    assert!(nodes.iter().all(|n| n.fallback_decisions() == 0), "Redis decided throughout");
    assert!(trips < u64::from(offered) / 4, "{trips} round trips for {offered} decisions");
}

/// Light load is as exact as one round trip per request: three nodes taking turns, one request at a time, admit
/// exactly the burst (30; at most one more if a second passes), then refuse on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn light_load_across_three_nodes_admits_exactly_the_burst() {
    if limiter(&prefix()).await.is_none() {
        return;
    }
    let prefix = prefix();
    let nodes = [node(&prefix).await, node(&prefix).await, node(&prefix).await];
    let quota = Quota::per_minute(60).with_burst(30);
    let mut admitted = 0;
    for n in 0..90 {
        admitted += u32::from(decide(&nodes[n % 3], &[("key", quota)]).await);
    }
    assert!((30..=31).contains(&admitted), "admitted {admitted}");
    for node in &nodes {
        assert!(!decide(node, &[("key", quota)]).await, "every node refuses once the burst is spent");
    }
}

/// A busy key under a roomy limit is decided locally: 20,000 decisions on one node cost a few dozen round trips
/// (batches sized to the demand, refilled in the background), where the exact mode costs one per decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_key_costs_a_round_trip_per_batch_not_per_request() {
    if limiter(&prefix()).await.is_none() {
        return;
    }
    let node = node(&prefix()).await;
    let quota = Quota::per_minute(60_000_000).with_burst(10_000_000);
    let mut allowed = 0u32;
    for _ in 0..20_000 {
        allowed += u32::from(decide(&node, &[("key", quota), ("subscription", quota)]).await);
    }
    assert_eq!(allowed, 20_000);
    assert_eq!(node.fallback_decisions(), 0);
    assert!(node.round_trips() < 2_000, "{} round trips for 20,000 decisions", node.round_trips());
    eprintln!("{} round trips for 20,000 decisions", node.round_trips());

    let exact = FallbackLimiter::exact(
        RedisLimiter::connect(&redis_url(), prefix()).await.expect("connect"),
        LocalLimiter::new(),
        gw_ratelimit::DEFAULT_REDIS_TIMEOUT,
    );
    for _ in 0..100 {
        assert!(decide(&exact, &[("key", quota)]).await);
    }
    assert_eq!(exact.round_trips(), 100, "the exact mode: one per decision");
}
