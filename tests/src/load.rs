//! Send load through every live node of a cluster, recorded so a fault can be judged afterwards: which sends were
//! accepted (and under which ids), what every response was, which connections a stopped node refused, and then
//! what each recipient received on the shared sandbox network. Used by the failover tests at CI scale and by
//! `benches/failover.sh` at full scale (the `failover_benchmark` test, ignored by default).
//!
//! A client of a real cluster behind a load balancer does what the senders here do: a refused connection or a
//! `503` with `Retry-After` is retried against another node under the same `Idempotency-Key`, so a send whose
//! answer was lost is never accepted twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// A sender gives up on one message after this long of refused connections and 503s (a failure of the run).
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
/// The longest pause a sender honours from `Retry-After` (the answer's value, capped, so a run keeps moving).
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// One signed-in caller (a JWT works on every node: they share the signing secret) of whichever node it is given.
#[derive(Debug, Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub token: String,
}

impl Api {
    pub fn new(token: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()
            .expect("client");
        Self { client, token }
    }

    /// Signs in on `base` and returns a caller with the token.
    pub async fn login(base: &str, email: &str, password: &str) -> Self {
        let anonymous = Self::new(String::new());
        let (status, body) = anonymous
            .call(base, Method::POST, "/v1/auth/login", Some(json!({"email": email, "password": password})))
            .await;
        assert_eq!(status, StatusCode::OK, "login {email}: {body}");
        Self { token: body["access_token"].as_str().expect("access token").to_owned(), ..anonymous }
    }

    pub async fn call(&self, base: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{base}{path}"));
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{base}{path}: {e}"));
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Every item of a paginated list, 200 a page.
    pub async fn list_all(&self, base: &str, path: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = match &cursor {
                Some(c) => format!("{path}?limit=200&cursor={c}"),
                None => format!("{path}?limit=200"),
            };
            let (status, body) = self.call(base, Method::GET, &page, None).await;
            assert_eq!(status, StatusCode::OK, "{page}: {body}");
            items.extend(body["items"].as_array().cloned().unwrap_or_default());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
    }
}

/// The base URLs a client may send to; a node is taken out before it is stopped and put back once it is ready
/// again, as a load balancer's health checks do.
#[derive(Debug, Clone, Default)]
pub struct LiveNodes(Arc<RwLock<Vec<String>>>);

impl LiveNodes {
    pub fn new(bases: impl IntoIterator<Item = String>) -> Self {
        Self(Arc::new(RwLock::new(bases.into_iter().collect())))
    }

    pub fn remove(&self, base: &str) {
        self.0.write().expect("nodes").retain(|b| b != base);
    }

    pub fn add(&self, base: String) {
        self.0.write().expect("nodes").push(base);
    }

    pub fn all(&self) -> Vec<String> {
        self.0.read().expect("nodes").clone()
    }

    fn pick(&self, n: u64) -> Option<String> {
        let nodes = self.0.read().expect("nodes");
        (!nodes.is_empty()).then(|| nodes[(n % nodes.len() as u64) as usize].clone())
    }
}

/// The simulated contact instance number `i` of a run sends to (one per instance, so its deliveries are exactly
/// that instance's accepted messages).
pub fn recipient(i: usize) -> String {
    format!("+1555{:07}", 7_000_000 + i)
}

/// An accepted send.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub instance: String,
    pub recipient: String,
    pub text: String,
    pub message_id: String,
    pub wa_message_id: String,
}

/// Everything the senders saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// This load's run: every text it sends starts with `load <run> `, so an earlier run's deliveries are told apart.
    pub run: String,
    pub accepted: Vec<Accepted>,
    /// Responses by status code (every attempt, retries included).
    pub statuses: BTreeMap<u16, u64>,
    /// Responses that were neither 2xx nor 503 with `Retry-After`: the run failed.
    pub bad: Vec<String>,
    /// Refused or broken connections, by the node's base URL (retried on another node).
    pub connection_errors: BTreeMap<String, u64>,
    /// Accepted sends whose answer was a replay (`Idempotent-Replayed: true`): a first attempt was accepted but
    /// its answer was lost with a node.
    pub replayed: u64,
    /// Sends given up after [`GIVE_UP_AFTER`] without an answer: their fate is unknown.
    pub abandoned: Vec<String>,
}

impl Tally {
    pub fn requests(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// `2xx`, `503` and all others, counted by class.
    pub fn by_class(&self) -> (u64, u64, u64) {
        let ok = self.statuses.iter().filter(|(s, _)| (200..300).contains(*s)).map(|(_, n)| n).sum();
        let unavailable = self.statuses.get(&503).copied().unwrap_or(0);
        (ok, unavailable, self.requests() - ok - unavailable)
    }

    pub fn summary(&self) -> String {
        let (ok, unavailable, other) = self.by_class();
        let refused: u64 = self.connection_errors.values().sum();
        format!(
            "{} accepted; {} responses: {ok} 2xx, {unavailable} 503 with Retry-After, {other} other; {refused} \
             connections refused or broken by stopped nodes; {} replayed; {} abandoned",
            self.accepted.len(),
            self.requests(),
            self.replayed,
            self.abandoned.len()
        )
    }
}

/// Senders running until [`Load::stop`].
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    tasks: JoinSet<()>,
}

impl Load {
    /// `senders` concurrent senders, each sending one message at a time to the instances in turn (text and
    /// `Idempotency-Key` unique in the run), through the live nodes in turn.
    pub fn start(api: &Api, instances: &[String], nodes: &LiveNodes, senders: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let run = uuid::Uuid::now_v7().simple().to_string();
        let tally = Arc::new(Mutex::new(Tally { run: run.clone(), ..Tally::default() }));
        let next = Arc::new(AtomicU64::new(0));
        let instances: Arc<Vec<String>> = Arc::new(instances.to_vec());
        let mut tasks = JoinSet::new();
        for _ in 0..senders {
            let sender = Sender {
                api: api.clone(),
                nodes: nodes.clone(),
                instances: instances.clone(),
                tally: tally.clone(),
                run: run.clone(),
            };
            let (stop, next) = (stop.clone(), next.clone());
            tasks.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    sender.send_one(next.fetch_add(1, Ordering::Relaxed)).await;
                }
            });
        }
        Self { stop, tally, tasks }
    }

    pub fn accepted(&self) -> usize {
        self.tally.lock().expect("tally").accepted.len()
    }

    /// Waits until `n` more sends than now were accepted, at most `limit`.
    pub async fn until_accepted_more(&self, n: usize, limit: Duration) {
        let target = self.accepted() + n;
        gw_test_support::eventually_within(limit, &format!("{target} accepted sends"), || async {
            (self.accepted() >= target).then_some(())
        })
        .await;
    }

    /// Stops the senders after the message each is on, and returns what they saw.
    pub async fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(done) = self.tasks.join_next().await {
            done.expect("sender");
        }
        std::mem::take(&mut *self.tally.lock().expect("tally"))
    }
}

struct Sender {
    api: Api,
    nodes: LiveNodes,
    instances: Arc<Vec<String>>,
    tally: Arc<Mutex<Tally>>,
    run: String,
}

impl Sender {
    /// Sends message `k` until it is accepted, refused for a reason that is not an outage (recorded as bad), or
    /// given up.
    async fn send_one(&self, k: u64) {
        let i = (k % self.instances.len() as u64) as usize;
        let instance = &self.instances[i];
        let to = recipient(i);
        let text = format!("load {} #{k}", self.run);
        let key = format!("{}-{k}", self.run);
        let path = format!("/v1/instances/{instance}/messages");
        let started = tokio::time::Instant::now();
        let mut attempt = k;
        loop {
            if started.elapsed() > GIVE_UP_AFTER {
                self.tally.lock().expect("tally").abandoned.push(key);
                return;
            }
            attempt += 1;
            let Some(base) = self.nodes.pick(attempt) else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let response = self
                .api
                .client
                .post(format!("{base}{path}"))
                .bearer_auth(&self.api.token)
                .header("idempotency-key", &key)
                .json(&json!({"to": to, "text": text}))
                .send()
                .await;
            let response = match response {
                Ok(response) => response,
                Err(_) => {
                    *self.tally.lock().expect("tally").connection_errors.entry(base).or_default() += 1;
                    continue;
                }
            };
            let status = response.status();
            let replayed = response.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = match response.text().await {
                Ok(body) => body,
                Err(_) => {
                    // The node went away mid-answer: as a refused connection, retried elsewhere.
                    *self.tally.lock().expect("tally").connection_errors.entry(base).or_default() += 1;
                    continue;
                }
            };
            if let Some(pause) = self.record(status, retry_after, replayed, &base, body, instance, &to, &text) {
                tokio::time::sleep(pause).await;
                continue;
            }
            return;
        }
    }

    /// Records one answer; `Some(pause)` when the send is to be retried after it (503 with `Retry-After`).
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        status: StatusCode,
        retry_after: Option<u64>,
        replayed: bool,
        base: &str,
        body: String,
        instance: &str,
        to: &str,
        text: &str,
    ) -> Option<Duration> {
        let mut tally = self.tally.lock().expect("tally");
        *tally.statuses.entry(status.as_u16()).or_default() += 1;
        match (status, retry_after) {
            (StatusCode::ACCEPTED, _) => {
                let body: Value = serde_json::from_str(&body).unwrap_or_default();
                let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
                tally.replayed += u64::from(replayed);
                tally.accepted.push(Accepted {
                    instance: instance.to_owned(),
                    recipient: to.to_owned(),
                    text: text.to_owned(),
                    message_id: field("id"),
                    wa_message_id: field("wa_message_id"),
                });
                None
            }
            (StatusCode::SERVICE_UNAVAILABLE, Some(seconds)) => Some(Duration::from_secs(seconds).min(MAX_RETRY_PAUSE)),
            _ => {
                tally.bad.push(format!("{status} via {base}: {body}"));
                None
            }
        }
    }
}

/// What the recipients got compared with what was accepted.
#[derive(Debug, Default)]
pub struct DeliveryCheck {
    pub accepted: usize,
    pub delivered: usize,
    /// Accepted, never delivered.
    pub lost: Vec<String>,
    /// Delivered more than once (the same text, under one id or several).
    pub duplicated: Vec<String>,
    /// Delivered, never accepted (a send whose acceptance the client did not see).
    pub unexpected: Vec<String>,
    /// Sent again under the same WhatsApp id and delivered once all the same (the network's `copies` beyond the
    /// first): a node died between sending a message and recording it, and its successor sent it again.
    pub resent: u64,
}

impl DeliveryCheck {
    pub fn summary(&self) -> String {
        format!(
            "{} accepted, {} delivered, {} lost, {} duplicated, {} delivered but never accepted; {} resent under \
             the same id (dropped by the network as WhatsApp does)",
            self.accepted,
            self.delivered,
            self.lost.len(),
            self.duplicated.len(),
            self.unexpected.len(),
            self.resent
        )
    }
}

/// Reads every instance's deliveries to its recipient through `base` until each accepted message arrived (or
/// `limit` passed), then compares (deliveries of earlier runs to the same recipients left aside).
pub async fn check_deliveries(
    api: &Api,
    base: &str,
    instances: &[String],
    tally: &Tally,
    limit: Duration,
) -> DeliveryCheck {
    let mut wanted: HashMap<&str, Vec<&Accepted>> = HashMap::new();
    for accepted in &tally.accepted {
        wanted.entry(accepted.instance.as_str()).or_default().push(accepted);
    }
    let started = tokio::time::Instant::now();
    let mut got: HashMap<String, Vec<Value>> = HashMap::new();
    let mut pending: Vec<usize> = (0..instances.len()).collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for i in pending {
            let instance = &instances[i];
            let path = format!("/v1/sandbox/instances/{instance}/deliveries?to={}", recipient(i).replace('+', "%2B"));
            let (status, list) = api.call(base, Method::GET, &path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {list}");
            let mine = format!("load {} ", tally.run);
            let list: Vec<Value> = list
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|d| d["text"].as_str().is_some_and(|t| t.starts_with(&mine)))
                .collect();
            let want = wanted.get(instance.as_str()).map_or(0, Vec::len);
            if list.len() < want {
                still.push(i);
            }
            got.insert(instance.clone(), list);
        }
        pending = still;
        if pending.is_empty() || started.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut check = DeliveryCheck { accepted: tally.accepted.len(), ..Default::default() };
    for instance in instances {
        let delivered = got.remove(instance).unwrap_or_default();
        check.delivered += delivered.len();
        let mut count: HashMap<&str, usize> = HashMap::new();
        for d in &delivered {
            *count.entry(d["text"].as_str().unwrap_or_default()).or_default() += 1;
            check.resent += d["copies"].as_u64().unwrap_or(1).saturating_sub(1);
        }
        let accepted = wanted.get(instance.as_str()).cloned().unwrap_or_default();
        for a in &accepted {
            match count.get(a.text.as_str()).copied().unwrap_or(0) {
                0 => check.lost.push(format!("{} ({}) of {instance}", a.text, a.message_id)),
                1 => {}
                n => check.duplicated.push(format!("{} ({}) of {instance}, {n} times", a.text, a.message_id)),
            }
        }
        for (text, _) in count {
            if !accepted.iter().any(|a| a.text == text) {
                check.unexpected.push(format!("{text} of {instance}"));
            }
        }
    }
    check
}

/// Creates, connects and pairs `count` sandbox instances through the nodes in turn, `parallel` at a time (the
/// connect's node takes the lease, so they spread evenly); returns their ids in order.
pub async fn pair_many(api: &Api, nodes: &[String], prefix: &str, count: usize, parallel: usize) -> Vec<String> {
    let gate = Arc::new(Semaphore::new(parallel.max(1)));
    let mut tasks = JoinSet::new();
    for n in 0..count {
        let (api, base, gate) = (api.clone(), nodes[n % nodes.len()].clone(), gate.clone());
        let name = format!("{prefix}-{n}");
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("gate");
            (n, pair(&api, &base, &name).await)
        });
    }
    let mut paired = vec![String::new(); count];
    while let Some(done) = tasks.join_next().await {
        let (n, iid) = done.expect("pairing");
        paired[n] = iid;
    }
    paired
}

/// How long a pairing waits for its QR code before it connects again.
const QR_WAIT: Duration = Duration::from_secs(15);

/// Creates, connects and pairs one sandbox instance through `base`. A session that stopped before the phone
/// scanned (no QR code within [`QR_WAIT`], or the scan answers 409 not-pairing) is connected again, as a person
/// would, at most three times; each time is reported on stderr. On an overloaded machine with the tests' short
/// lease, the watchdog stops a pairing session whose lease renewal came late, and an instance that was never
/// paired is not an orphan any node resumes: its owner must connect it again.
pub async fn pair(api: &Api, base: &str, name: &str) -> String {
    let (status, instance) = api.call(base, Method::POST, "/v1/instances", Some(json!({"name": name}))).await;
    assert_eq!(status, StatusCode::CREATED, "{instance}");
    let iid = instance["id"].as_str().expect("id").to_owned();
    let limit = Duration::from_secs(60);
    for attempt in 1.. {
        let (status, body) = api.call(base, Method::POST, &format!("/v1/instances/{iid}/connect"), None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let started = tokio::time::Instant::now();
        let mut shown = true;
        while api.call(base, Method::GET, &format!("/v1/instances/{iid}/qr"), None).await.0 != StatusCode::OK {
            if started.elapsed() > QR_WAIT {
                shown = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, scanned) = if shown {
            let scan = json!({"display_name": name});
            api.call(base, Method::POST, &format!("/v1/sandbox/instances/{iid}/scan"), Some(scan)).await
        } else {
            (StatusCode::CONFLICT, json!("no QR code"))
        };
        if status == StatusCode::CONFLICT && attempt < 3 {
            let (_, now) = api.call(base, Method::GET, &format!("/v1/instances/{iid}"), None).await;
            eprintln!(
                "pairing {iid}: the session stopped before the scan ({scanned}; status {}, owner {}); connecting \
                 again",
                now["status"], now["owner_node"]
            );
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{scanned}");
        break;
    }
    // A loop of its own rather than `gw_test_support::eventually_within`: pairing runs in spawned tasks, and the
    // future of an `AsyncFnMut` closure cannot be shown to be `Send`.
    let until = tokio::time::Instant::now() + limit;
    loop {
        let (_, body) = api.call(base, Method::GET, &format!("/v1/instances/{iid}/status"), None).await;
        if body["status"] == "connected" {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "timed out after {limit:?} waiting for {iid} to be connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    iid
}

/// The live nodes as the cluster lists them: id -> (address, instances held).
pub async fn cluster_nodes(operator: &Api, base: &str) -> HashMap<String, (String, i64)> {
    let (status, body) = operator.call(base, Method::GET, "/v1/cluster/nodes", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| {
            let id = n["id"].as_str().expect("id").to_owned();
            (id, (n["address"].as_str().unwrap_or_default().to_owned(), n["instances"].as_i64().unwrap_or(0)))
        })
        .collect()
}

/// Each instance's status and owner node, as `GET /v1/instances/{id}` says through `base`.
pub async fn owners(operator: &Api, base: &str, instances: &[String]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::with_capacity(instances.len());
    for iid in instances {
        let (status, body) = operator.call(base, Method::GET, &format!("/v1/instances/{iid}"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        out.push((
            body["status"].as_str().unwrap_or_default().to_owned(),
            body["owner_node"].as_str().map(str::to_owned),
        ));
    }
    out
}

/// Waits until every instance is `connected` and owned by a node the cluster lists as live whose address is one of
/// `live`, and the live nodes' lease counts add up to the number of instances (one owner each); at most `limit`.
pub async fn until_one_owner_each(operator: &Api, live: &[String], instances: &[String], limit: Duration) -> Duration {
    let started = tokio::time::Instant::now();
    let base = &live[0];
    gw_test_support::eventually_within(limit, "every instance connected with exactly one live owner", || async {
        let nodes = cluster_nodes(operator, base).await;
        let live_ids: Vec<&String> = nodes
            .iter()
            .filter(|(_, (address, _))| live.iter().any(|b| b.ends_with(address.as_str())))
            .map(|(id, _)| id)
            .collect();
        let held: i64 = nodes.values().map(|(_, n)| n).sum();
        if held != instances.len() as i64 {
            return None;
        }
        let all = owners(operator, base, instances).await;
        all.iter()
            .all(|(status, owner)| status == "connected" && owner.as_ref().is_some_and(|o| live_ids.contains(&o)))
            .then_some(())
    })
    .await;
    started.elapsed()
}

/// For each of `instances` (that were running on a node killed at `killed_at`), how long after the kill it was
/// `connected` again, measured by the instance's own `last_connected_at` (the new owner's clock; all processes run
/// on this machine), read by listing every instance through `base` until each was connected after the kill. The
/// second value is when the poll first saw it (an upper bound, at the poll's resolution).
pub async fn reconnected_after(
    api: &Api,
    base: &str,
    instances: &[String],
    killed_at: chrono::DateTime<chrono::Utc>,
    limit: Duration,
) -> Vec<(Duration, Duration)> {
    let watch: std::collections::HashSet<&str> = instances.iter().map(String::as_str).collect();
    let started = tokio::time::Instant::now();
    let mut found: HashMap<String, (Duration, Duration)> = HashMap::new();
    while found.len() < watch.len() {
        assert!(
            started.elapsed() < limit,
            "{} of {} instances not connected again within {limit:?}",
            watch.len() - found.len(),
            watch.len()
        );
        for item in api.list_all(base, "/v1/instances").await {
            let Some(id) = item["id"].as_str().filter(|id| watch.contains(id) && !found.contains_key(*id)) else {
                continue;
            };
            let connected_at = item["last_connected_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc));
            if item["status"] == "connected"
                && let Some(at) = connected_at.filter(|at| *at > killed_at)
            {
                let took = (at - killed_at).to_std().unwrap_or_default();
                let seen = (chrono::Utc::now() - killed_at).to_std().unwrap_or_default();
                found.insert(id.to_owned(), (took, seen));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    found.into_values().collect()
}

/// The `q` quantile (0..=1) of `values` (nearest rank); zero for none.
pub fn quantile(values: &[Duration], q: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
