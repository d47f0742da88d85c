//! Failover under send load (issue #14), on three nodes sharing PostgreSQL and one sandbox network: senders keep
//! sending through every live node with unique `Idempotency-Key`s while a node is killed (`kill -9`), or while
//! every node in turn is drained (SIGTERM) and started again. Afterwards every accepted message reached its
//! recipient exactly once (as the shared network tells), every response was 2xx or 503 with `Retry-After`
//! (connections refused by a stopped node are counted apart: the client retries them on another node), and every
//! instance is `connected` with exactly one live owner.
//!
//! A PostgreSQL outage longer than the lease runs on a server of the test's own (`PrivatePostgres`), stopped and
//! started again under the same load.
//!
//! The same scenarios at full scale (1,000 instances, the default lease) are `failover_benchmark`, ignored here and
//! run by `benches/failover.sh`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gw_e2e::load::{self, Api, DeliveryCheck, LiveNodes, Load, Tally};
use gw_e2e::{Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, PrivatePostgres, TestCluster};
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::GATEWAY;

const PASSWORD: &str = "a long enough password";

/// A cluster with paired instances of one subscription whose limits are out of the way.
struct Fleet {
    cluster: TestCluster,
    operator: Api,
    owner: Api,
    instances: Vec<String>,
    nodes: LiveNodes,
}

impl Fleet {
    async fn start(binary: &str, nodes: usize, instances: usize, env: Vec<(String, String)>) -> Option<Self> {
        let cluster = TestCluster::start_with(binary, nodes, env).await?;
        Some(Self::on(cluster, instances).await)
    }

    async fn on(cluster: TestCluster, instances: usize) -> Self {
        let bases: Vec<String> = cluster.live().map(|(_, app)| app.base.clone()).collect();
        let operator = Api::login(&bases[0], OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
        let limits = json!({"max_instances": instances + 10, "monthly_messages": 100_000_000});
        let (status, subscription) = operator
            .call(
                &bases[0],
                Method::POST,
                "/v1/subscriptions",
                Some(json!({"name": "Failover", "tier": "enterprise", "limit_overrides": limits})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{subscription}");
        let sid = subscription["id"].as_str().expect("id");
        let email = "owner@failover.test";
        let user = json!({"email": email, "password": PASSWORD, "name": "owner", "role": "owner"});
        let (status, body) =
            operator.call(&bases[0], Method::POST, &format!("/v1/subscriptions/{sid}/users"), Some(user)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let owner = Api::login(&bases[0], email, PASSWORD).await;
        let parallel = std::env::var("BENCH_PAIR_PARALLEL").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
        let instances = load::pair_many(&owner, &bases, "fleet", instances, parallel).await;
        load::until_one_owner_each(&operator, &bases, &instances, Duration::from_secs(120)).await;
        Self { cluster, operator, owner, instances, nodes: LiveNodes::new(bases) }
    }

    fn base(&self, i: usize) -> String {
        self.cluster.node(i).base.clone()
    }

    /// The node index running `instance`, and the instances that node runs.
    async fn owner_and_its_instances(&self, instance: &str) -> (usize, Vec<String>) {
        let live = self.nodes.all();
        let nodes = load::cluster_nodes(&self.operator, &live[0]).await;
        let owners = load::owners(&self.operator, &live[0], &self.instances).await;
        let position = self.instances.iter().position(|i| i == instance).expect("one of the fleet");
        let node_id = owners[position].1.clone().expect("an owner");
        let address = &nodes[&node_id].0;
        let index = self.cluster.live().find(|(_, app)| app.base.ends_with(address.as_str())).expect("live").0;
        let held = self.instances.iter().zip(&owners).filter(|(_, o)| o.1.as_ref() == Some(&node_id));
        (index, held.map(|(i, _)| i.clone()).collect())
    }

    async fn deliveries(&self, tally: &Tally, limit: Duration) -> DeliveryCheck {
        load::check_deliveries(&self.owner, &self.nodes.all()[0], &self.instances, tally, limit).await
    }
}

/// The checks both scenarios end with (each list shown by its first ten).
fn assert_clean(tally: &Tally, check: &DeliveryCheck, stopped: &[String]) {
    let first = |list: &[String]| list.iter().take(10).cloned().collect::<Vec<_>>();
    assert!(
        tally.bad.is_empty(),
        "{} answers other than 2xx or 503 with Retry-After: {:?}",
        tally.bad.len(),
        first(&tally.bad)
    );
    assert!(tally.abandoned.is_empty(), "sends left without an answer: {:?}", first(&tally.abandoned));
    let elsewhere: Vec<_> = tally.connection_errors.keys().filter(|base| !stopped.contains(base)).collect();
    assert!(elsewhere.is_empty(), "connections refused by nodes that were not stopped: {elsewhere:?}");
    assert!(check.lost.is_empty(), "{} accepted but never delivered: {:?}", check.lost.len(), first(&check.lost));
    assert!(
        check.duplicated.is_empty(),
        "{} delivered more than once: {:?}",
        check.duplicated.len(),
        first(&check.duplicated)
    );
    assert!(
        check.unexpected.is_empty(),
        "{} delivered but never accepted: {:?}",
        check.unexpected.len(),
        first(&check.unexpected)
    );
    assert_eq!(check.delivered, tally.accepted.len(), "each accepted message delivered once");
}

/// The lease of the CI-scale runs: longer than the harness's 2 s, so a node starved of CPU by the other tests
/// running at once does not miss its renewals (the watchdog stops sessions after two thirds of it), and still short
/// enough that failover takes a few seconds.
fn ci_lease() -> Vec<(String, String)> {
    vec![("GATEWAY_CLUSTER_LEASE_TTL_MS".to_owned(), "4000".to_owned())]
}

/// kill -9 of the node running an instance, under send load: its instances connect on the survivors within 15 s,
/// nothing accepted is lost or delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_send_load_loses_nothing_and_sends_nothing_twice() {
    let Some(mut fleet) = Fleet::start(GATEWAY, 3, 30, ci_lease()).await else { return };
    let load = Load::start(&fleet.owner, &fleet.instances, &fleet.nodes, 4);
    load.until_accepted_more(60, Duration::from_secs(60)).await;
    let (victim, victims) = fleet.owner_and_its_instances(&fleet.instances[0]).await;
    let victim_base = fleet.base(victim);
    let killed = tokio::time::Instant::now();
    fleet.cluster.kill(victim).await;
    // The client keeps trying the dead node until its load balancer would notice: those connections are refused
    // and the sends go to another node under the same key.
    load.until_accepted_more(10, Duration::from_secs(10)).await;
    fleet.nodes.remove(&victim_base);
    let live = fleet.nodes.all();
    let limit = Duration::from_secs(15).saturating_sub(killed.elapsed());
    load::until_one_owner_each(&fleet.operator, &live, &fleet.instances, limit).await;
    let took = killed.elapsed();
    load.until_accepted_more(60, Duration::from_secs(60)).await;
    let tally = load.stop().await;
    let check = fleet.deliveries(&tally, Duration::from_secs(60)).await;
    eprintln!(
        "kill -9 of a node running {} of {} instances: all connected with one live owner {took:?} after the \
         kill; {}; {}",
        victims.len(),
        fleet.instances.len(),
        tally.summary(),
        check.summary()
    );
    assert!(!victims.is_empty(), "the killed node ran instances");
    assert!(tally.connection_errors.get(&victim_base).is_some_and(|n| *n > 0), "the client met the dead node");
    assert_clean(&tally, &check, &[victim_base]);
    fleet.cluster.shutdown().await;
}

/// A rolling restart of three nodes under send load (each drained with SIGTERM and started again, the next only
/// once it is ready): nothing accepted is lost or delivered twice, every answer is 2xx or 503 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_send_load_loses_nothing_and_answers_only_2xx_or_503() {
    let Some(mut fleet) = Fleet::start(GATEWAY, 3, 30, ci_lease()).await else { return };
    let load = Load::start(&fleet.owner, &fleet.instances, &fleet.nodes, 4);
    load.until_accepted_more(40, Duration::from_secs(60)).await;
    let mut stopped = Vec::new();
    for i in 0..fleet.cluster.len() {
        let base = fleet.base(i);
        // Out of the balancer first, as a deployment does; requests already on their way are still answered.
        fleet.nodes.remove(&base);
        let status = fleet.cluster.stop(i).await;
        assert!(status.success(), "node {i} drained and exited cleanly: {status}");
        stopped.push(base);
        fleet.cluster.start_node(i).await;
        fleet.nodes.add(fleet.base(i));
        load.until_accepted_more(40, Duration::from_secs(60)).await;
    }
    let live = fleet.nodes.all();
    let took = load::until_one_owner_each(&fleet.operator, &live, &fleet.instances, Duration::from_secs(30)).await;
    let tally = load.stop().await;
    let check = fleet.deliveries(&tally, Duration::from_secs(60)).await;
    eprintln!(
        "rolling restart of 3 nodes, {} instances: all connected with one live owner {took:?} after the last \
         restart's sends; {}; {}",
        fleet.instances.len(),
        tally.summary(),
        check.summary()
    );
    assert_clean(&tally, &check, &stopped);
    fleet.cluster.shutdown().await;
}

/// What the watchdog logs when it stops a session whose lease it could not renew in time.
const WATCHDOG_STOP: &str = "lease not renewed in time; stopping the session before it can pass on";

/// PostgreSQL stopped (`pg_ctl stop -m fast`) for longer than the lease under send load, then started again, with
/// two nodes on it. During the outage every answer is 503 with `Retry-After` (sends, and reads of an instance
/// through either node), never a 500 or a dropped connection, and every node's watchdog stops every session it ran
/// within the lease of the stop, so no lease can pass while an old session still runs. Afterwards every instance
/// is `connected` with exactly one live owner (a double owner would show as `replaced` on the shared network) and
/// every accepted send, before, during or after the outage, was delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_longer_than_the_lease_stops_every_session_and_recovers_with_one_owner_each() {
    let Some(postgres) = PrivatePostgres::start_new().await else { return };
    let database = Database::create_postgres_on(&postgres.admin_url()).await.expect("a database on the private server");
    let ttl = Duration::from_secs(4);
    let cluster = TestCluster::start_on(GATEWAY, 2, database, ci_lease()).await;
    let fleet = Fleet::on(cluster, 6).await;
    let load = Load::start(&fleet.owner, &fleet.instances, &fleet.nodes, 2);
    load.until_accepted_more(20, Duration::from_secs(60)).await;
    let stops_before: Vec<usize> =
        fleet.cluster.live().map(|(_, node)| node.stderr.text().matches(WATCHDOG_STOP).count()).collect();

    postgres.stop().await;
    let stopped = tokio::time::Instant::now();
    // Reads through both nodes, round after round, for as long as the outage lasts.
    let probes: Vec<(String, String)> = fleet
        .cluster
        .live()
        .flat_map(|(_, node)| fleet.instances.iter().map(|iid| (node.base.clone(), iid.clone())))
        .collect();
    let outage_over = Arc::new(AtomicBool::new(false));
    let reads = tokio::spawn(reads_during_the_outage(fleet.operator.clone(), probes, outage_over.clone()));
    let stops = || -> usize {
        let now = fleet.cluster.live().map(|(_, node)| node.stderr.text().matches(WATCHDOG_STOP).count());
        now.zip(&stops_before).map(|(now, before)| now - before).sum()
    };
    gw_test_support::until_within(ttl, "every session stopped by its node's watchdog within the lease", || async {
        stops() >= fleet.instances.len()
    })
    .await;
    // The outage lasts past every lease (their expiry is at most one TTL after the stop), however fast the above.
    tokio::time::sleep_until(stopped + ttl * 3 / 2).await;
    assert_eq!(stops(), fleet.instances.len(), "each session stopped once");
    outage_over.store(true, Ordering::Relaxed);
    let (answered_503, slowest) = reads.await.expect("every read during the outage answered 503 with Retry-After");
    assert!(answered_503 > 0);
    // The store fails fast once it knows the database is down (gw-store-sql's health gate): no read waits the
    // pool's 5 s acquire timeout for its 503. A generous bound: this checks the fast path, not its speed.
    assert!(slowest < Duration::from_secs(2), "a 503 during the outage took {slowest:?}");
    let outage = stopped.elapsed();
    postgres.start().await;
    // Each node's store notices on its own (a background probe, at most a second apart) that the database is back;
    // until then it answers 503 at once, as during the outage.
    let live = fleet.nodes.all();
    gw_test_support::until_within(Duration::from_secs(30), "every node ready again after the restart", || async {
        for base in &live {
            let ready = fleet.operator.client.get(format!("{base}/readyz")).send().await;
            if !ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                return false;
            }
        }
        true
    })
    .await;

    let took = load::until_one_owner_each(&fleet.operator, &live, &fleet.instances, Duration::from_secs(60)).await;
    load.until_accepted_more(20, Duration::from_secs(60)).await;
    let tally = load.stop().await;
    let check = fleet.deliveries(&tally, Duration::from_secs(60)).await;
    eprintln!(
        "PostgreSQL down for {outage:?} (lease {ttl:?}): {answered_503} reads answered 503 (slowest after \
         {slowest:?}); every instance \
         connected with one live owner {took:?} after the restart; {}; {}",
        tally.summary(),
        check.summary()
    );
    assert!(tally.statuses.get(&503).is_some_and(|n| *n > 0), "sends met the outage: {}", tally.summary());
    assert_clean(&tally, &check, &[]);
    fleet.cluster.shutdown().await;
}

/// Reads each instance through each node, all at once, round after round until `over`: every answer must be
/// `503 /problems/unavailable` with `Retry-After`. Returns how many were answered and the slowest answer.
async fn reads_during_the_outage(api: Api, probes: Vec<(String, String)>, over: Arc<AtomicBool>) -> (usize, Duration) {
    let (mut answered, mut slowest) = (0, Duration::ZERO);
    while !over.load(Ordering::Relaxed) {
        let mut round = tokio::task::JoinSet::new();
        for (base, iid) in &probes {
            let request = api.client.get(format!("{base}/v1/instances/{iid}")).bearer_auth(&api.token);
            let base = base.clone();
            round.spawn(async move {
                let sent = tokio::time::Instant::now();
                let response = request.send().await;
                let response = response.unwrap_or_else(|e| panic!("a read through {base} during the outage: {e}"));
                let status = response.status();
                let retry_after = response.headers().get(reqwest::header::RETRY_AFTER).cloned();
                let body = response.text().await.unwrap_or_else(|e| panic!("an answer cut off by {base}: {e}"));
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a read through {base} during the outage: {body}");
                assert!(body.contains("/problems/unavailable"), "{body}");
                assert!(retry_after.is_some(), "503 without Retry-After through {base}");
                sent.elapsed()
            });
        }
        while let Some(took) = round.join_next().await {
            slowest = slowest.max(took.expect("a read"));
            answered += 1;
        }
    }
    (answered, slowest)
}

/// The full-scale measurement behind `benches/failover.sh` (see BENCHMARKS.md): `BENCH_INSTANCES` (1,000) sandbox
/// instances on 3 nodes of `BENCH_GATEWAY_BIN` with the default lease (`BENCH_LEASE_TTL_MS`, 10 s), kill -9 of the
/// node running the first instance under send load, then the killed node started again and a rolling restart.
/// Prints the figures; fails on a lost, duplicated or refused message like the tests above.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run by benches/failover.sh"]
async fn failover_benchmark() {
    let var = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let binary = std::env::var("BENCH_GATEWAY_BIN").unwrap_or_else(|_| GATEWAY.to_owned());
    let instances = var("BENCH_INSTANCES", 1000);
    let senders = var("BENCH_SENDERS", 8);
    let sends = var("BENCH_SENDS", 1000);
    let ttl = var("BENCH_LEASE_TTL_MS", 10_000);
    let env = vec![("GATEWAY_CLUSTER_LEASE_TTL_MS".to_owned(), ttl.to_string())];
    let started = tokio::time::Instant::now();
    let Some(mut fleet) = Fleet::start(&binary, 3, instances, env).await else {
        panic!("the benchmark needs PostgreSQL (GW_TEST_POSTGRES_URL)")
    };
    println!("binary {binary}; {instances} instances paired on 3 nodes in {:?}; lease TTL {ttl} ms", started.elapsed());

    // kill -9 under load.
    let load = Load::start(&fleet.owner, &fleet.instances, &fleet.nodes, senders);
    load.until_accepted_more(sends, Duration::from_secs(600)).await;
    let (victim, victims) = fleet.owner_and_its_instances(&fleet.instances[0]).await;
    let victim_base = fleet.base(victim);
    let killed_at = chrono::Utc::now();
    fleet.cluster.kill(victim).await;
    fleet.nodes.remove(&victim_base);
    let live = fleet.nodes.all();
    let times = load::reconnected_after(&fleet.owner, &live[0], &victims, killed_at, Duration::from_secs(300)).await;
    load.until_accepted_more(sends, Duration::from_secs(600)).await;
    let tally = load.stop().await;
    let check = fleet.deliveries(&tally, Duration::from_secs(300)).await;
    let connected: Vec<Duration> = times.iter().map(|t| t.0).collect();
    let seen: Vec<Duration> = times.iter().map(|t| t.1).collect();
    println!("kill -9: the killed node ran {} of {} instances", victims.len(), fleet.instances.len());
    println!(
        "kill -9: kill -> connected on a survivor (last_connected_at): p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        load::quantile(&connected, 0.5).as_secs_f64(),
        load::quantile(&connected, 0.99).as_secs_f64(),
        load::quantile(&connected, 1.0).as_secs_f64()
    );
    println!(
        "kill -9: kill -> seen connected by the 200 ms poll: p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        load::quantile(&seen, 0.5).as_secs_f64(),
        load::quantile(&seen, 0.99).as_secs_f64(),
        load::quantile(&seen, 1.0).as_secs_f64()
    );
    println!("kill -9: {}", tally.summary());
    println!("kill -9: {}", check.summary());
    load::until_one_owner_each(&fleet.operator, &live, &fleet.instances, Duration::from_secs(120)).await;
    assert_clean(&tally, &check, std::slice::from_ref(&victim_base));

    // The killed node back, then a rolling restart under load.
    fleet.cluster.start_node(victim).await;
    fleet.nodes.add(fleet.base(victim));
    let load = Load::start(&fleet.owner, &fleet.instances, &fleet.nodes, senders);
    load.until_accepted_more(sends / 3, Duration::from_secs(600)).await;
    let mut stopped = Vec::new();
    let rolling = tokio::time::Instant::now();
    for i in 0..fleet.cluster.len() {
        let base = fleet.base(i);
        fleet.nodes.remove(&base);
        let status = fleet.cluster.stop(i).await;
        assert!(status.success(), "node {i} drained and exited cleanly: {status}");
        stopped.push(base);
        fleet.cluster.start_node(i).await;
        fleet.nodes.add(fleet.base(i));
        load.until_accepted_more(sends / 3, Duration::from_secs(600)).await;
    }
    let live = fleet.nodes.all();
    let took = load::until_one_owner_each(&fleet.operator, &live, &fleet.instances, Duration::from_secs(300)).await;
    let tally = load.stop().await;
    let check = fleet.deliveries(&tally, Duration::from_secs(300)).await;
    let (ok, unavailable, other) = tally.by_class();
    println!(
        "rolling restart: 3 nodes in {:.1} s; every instance connected with one live owner {:.1} s after the last \
         step's sends",
        rolling.elapsed().as_secs_f64(),
        took.as_secs_f64()
    );
    println!("rolling restart: requests {}: 2xx {ok}, 503 {unavailable}, other {other}", tally.requests());
    println!("rolling restart: {}", tally.summary());
    println!("rolling restart: {}", check.summary());
    let nodes = load::cluster_nodes(&fleet.operator, &live[0]).await;
    let spread: Vec<i64> = nodes.values().map(|(_, n)| *n).collect();
    println!("rolling restart: instances per node afterwards {spread:?}");
    assert_clean(&tally, &check, &stopped);
    fleet.cluster.shutdown().await;
}
