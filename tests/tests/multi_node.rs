//! Several nodes on one PostgreSQL database and one shared sandbox network (`TestCluster`): live events through any
//! node, and the ownership guarantees of the cluster (one owner per instance, sends and commands through any node,
//! failover after kill -9 and after a pause past the lease).
//!
//! Without ownership leases the ownership tests fail, and the sandbox's one-connection-per-device rule shows why:
//! two nodes resume one instance and it ends `replaced`.

use std::time::Duration;

use gw_e2e::{OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, TestCluster};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{As, GATEWAY, api_key, paired_instance, tenant, with_key};

/// One server-sent event: its `event:` and parsed `data:`.
#[derive(Debug, Clone)]
pub(super) struct Sse {
    pub(super) event: String,
    pub(super) data: Value,
}

/// Opens the instance's event stream on `app`; returns once the stream is established (the node subscribed).
pub(super) async fn events(app: &TestApp, token: &str, iid: &str) -> mpsc::UnboundedReceiver<Sse> {
    // No overall timeout: the stream is long-lived; each wait on it has its own deadline.
    let client = reqwest::Client::new();
    let mut response = client
        .get(app.url(&format!("/v1/instances/{iid}/events")))
        .bearer_auth(token)
        .send()
        .await
        .expect("event stream");
    assert_eq!(response.status(), StatusCode::OK);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut event = Sse { event: String::new(), data: Value::Null };
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event.event = name.trim().to_owned();
                    } else if let Some(data) = line.strip_prefix("data:") {
                        event.data = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                    }
                }
                if !event.event.is_empty() && tx.send(event).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Waits (at most ten seconds) for the first event that `matches`; returns it and every event before it.
pub(super) async fn next_matching(
    stream: &mut mpsc::UnboundedReceiver<Sse>,
    what: &str,
    matches: impl Fn(&Sse) -> bool,
) -> Vec<Sse> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = stream.recv().await {
            let done = matches(&event);
            seen.push(event);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "no {what} on the stream; saw {seen:?}");
    seen
}

fn status_is(status: &'static str) -> impl Fn(&Sse) -> bool {
    move |e| e.event == "connection.update" && e.data["data"]["status"] == status
}

/// The node whose listen address the instance's `owner_node` names, if the API says (ownership leases).
pub(super) async fn owner_of(cluster: &TestCluster, operator: &As<'_>, iid: &str) -> Option<usize> {
    let (_, instance) = operator.call(Method::GET, &format!("/v1/instances/{iid}"), None).await;
    let owner = instance["owner_node"].as_str()?.to_owned();
    let (_, nodes) = operator.call(Method::GET, "/v1/cluster/nodes", None).await;
    let nodes = nodes.as_array().or(nodes["items"].as_array())?.clone();
    let address = nodes.iter().find(|n| n["id"] == owner.as_str())?["address"].as_str()?.to_owned();
    cluster.live().find(|(_, app)| app.base.ends_with(&address)).map(|(i, _)| i)
}

/// SSE through a node that does not run the session shows the session's events, each once: the relay over
/// PostgreSQL LISTEN/NOTIFY. The sandbox controls answer the same through that node (shared sandbox network).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_through_another_node_shows_the_sessions_events() {
    let Some(cluster) = TestCluster::start(GATEWAY, 2).await else { return };
    let operator = As::login(cluster.node(0), OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Relay").await;
    let owner = As::login(cluster.node(0), &owner_email, "a long enough password").await;
    let (iid, _) = paired_instance(&owner, "relayed").await;
    // Without ownership leases the node that took the connect runs the session; with them, the lease says.
    let runner = owner_of(&cluster, &operator, &iid).await.unwrap_or(0);
    let other = As::login(cluster.node(1 - runner), &owner_email, "a long enough password").await;
    let token = other.token.clone().expect("token");
    let mut remote = events(other.app, &token, &iid).await;

    let text = "seen through the other node";
    let (status, injected) = other
        .call(
            Method::POST,
            &format!("/v1/sandbox/instances/{iid}/inbound"),
            Some(json!({"from": "+15550007777", "text": text})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{injected}");
    assert_eq!(injected["acknowledged"], true, "the session stored it");
    let seen = next_matching(&mut remote, "the message", |e| e.event == "message.received").await;
    let message = &seen.last().expect("message").data;
    assert_eq!(message["data"]["text"], text);
    assert_eq!(message["instance_id"], iid.as_str());

    // A blip through the other node's controls: its stream shows the drop and the reconnection, and the message
    // did not come a second time meanwhile.
    let (status, _) = other.call(Method::POST, &format!("/v1/sandbox/instances/{iid}/drop"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mut seen = next_matching(&mut remote, "disconnected", status_is("disconnected")).await;
    seen.extend(next_matching(&mut remote, "connected again", status_is("connected")).await);
    assert!(seen.iter().all(|e| e.event != "message.received"), "each event once: {seen:?}");

    // A message sent through the node that runs the session reached its recipient once, as the other node's
    // controls tell (one network).
    let runner_owner = As::login(cluster.node(runner), &owner_email, "a long enough password").await;
    let key = api_key(&runner_owner, &iid, &["messages:send"]).await;
    let path = format!("/v1/instances/{iid}/messages");
    let body = json!({"to": "+15550007777", "text": "one copy"});
    let (status, sent) = with_key(runner_owner.app, &key, Method::POST, &path, Some(body), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let deliveries = format!("/v1/sandbox/instances/{iid}/deliveries?to=%2B15550007777");
    let got = super::eventually("the delivery, seen through the other node", || async {
        let (status, got) = other.call(Method::GET, &deliveries, None).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        (!got.as_array().expect("list").is_empty()).then_some(got)
    })
    .await;
    assert_eq!(got, json!([{"wa_message_id": sent["wa_message_id"], "kind": "text", "text": "one copy", "copies": 1}]));
    cluster.shutdown().await;
}

/// A stream on the node that does not run the session, over HTTP: when that node's relay loses its PostgreSQL
/// connection (every connection to the database terminated), the stream is told `event: resync` with the reason,
/// and it then keeps showing the owner's events (each once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_on_another_node_is_told_resync_when_its_relay_reconnects_and_keeps_streaming() {
    let Some(cluster) = TestCluster::start(GATEWAY, 2).await else { return };
    let operator = As::login(cluster.node(0), OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Resync").await;
    let owner = As::login(cluster.node(0), &owner_email, "a long enough password").await;
    let (iid, _) = paired_instance(&owner, "resynced").await;
    let runner = owner_of(&cluster, &operator, &iid).await.expect("an owner");
    let other = As::login(cluster.node(1 - runner), &owner_email, "a long enough password").await;
    let mut remote = events(other.app, other.token.as_deref().expect("token"), &iid).await;
    let drop_path = format!("/v1/sandbox/instances/{iid}/drop");
    let (status, _) = other.call(Method::POST, &drop_path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let before = next_matching(&mut remote, "the owner's events before the gap", status_is("connected")).await;
    assert!(before.iter().all(|e| e.event != "resync"), "no resync without a gap: {before:?}");

    let database = cluster.database.postgres().expect("PostgreSQL");
    assert!(database.terminate_connections(None).await > 0, "the nodes' connections were there to drop");
    let seen = next_matching(&mut remote, "resync", |e| e.event == "resync").await;
    assert_eq!(seen.last().expect("resync").data, json!({"reason": "relay_reconnected"}));

    // Events the owner raised before the relay listened again are lost (that is what `resync` says), so blip until
    // one of its status changes shows here; the first control calls may meet the terminated connections (503).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no event of the owner after the resync");
        let (status, body) = other.call(Method::POST, &drop_path, None).await;
        assert!(matches!(status, StatusCode::NO_CONTENT | StatusCode::SERVICE_UNAVAILABLE), "{status}: {body}");
        let connected = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(event) = remote.recv().await {
                if status_is("connected")(&event) {
                    return true;
                }
            }
            panic!("the stream on the other node ended");
        })
        .await;
        if matches!(connected, Ok(true)) {
            break;
        }
    }
    let (_, body) = other.call(Method::GET, &format!("/v1/instances/{iid}"), None).await;
    assert_eq!(body["status"], "connected", "{body}");
    cluster.shutdown().await;
}

/// Pairs `count` instances, spreading the connect calls over the live nodes.
async fn paired_on_every_node(cluster: &TestCluster, owner_email: &str, count: usize) -> Vec<(String, String)> {
    let mut instances = Vec::new();
    for n in 0..count {
        let (i, app) = cluster.live().nth(n % cluster.live().count()).expect("a live node");
        let owner = As::login(app, owner_email, "a long enough password").await;
        instances.push(paired_instance(&owner, &format!("inst-{n}-via-{i}")).await);
    }
    instances
}

/// Polls every live node until each instance has one owner on a live node and is `connected`, within `limit`;
/// returns how long it took.
async fn all_owned_and_connected(cluster: &TestCluster, email: &str, iids: &[String], limit: Duration) -> Duration {
    let started = tokio::time::Instant::now();
    let mut last = String::new();
    loop {
        let mut ok = true;
        for (_, app) in cluster.live() {
            let operator = As::login(app, email, OPERATOR_PASSWORD).await;
            for iid in iids {
                let (_, body) = operator.call(Method::GET, &format!("/v1/instances/{iid}"), None).await;
                let owner = owner_of(cluster, &operator, iid).await;
                if body["status"] != "connected" || owner.is_none() {
                    ok = false;
                    last = format!("{iid}: status {}, owner {:?} (via {})", body["status"], owner, app.base);
                }
            }
        }
        if ok {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "not every instance connected with a live owner within {limit:?}: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn exactly_one_owner_each_and_no_replacement(nodes: usize) {
    let Some(mut cluster) = TestCluster::start(GATEWAY, nodes).await else { return };
    let operator = As::login(cluster.node(0), OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Owners").await;
    let instances = paired_on_every_node(&cluster, &owner_email, 2 * nodes).await;
    let iids: Vec<String> = instances.iter().map(|(iid, _)| iid.clone()).collect();
    // Every node restarted once: each resumes at start-up what placement gives it, never what another owns.
    for i in 0..nodes {
        cluster.restart(i).await;
    }
    all_owned_and_connected(&cluster, OPERATOR_EMAIL, &iids, Duration::from_secs(20)).await;
    let operator = As::login(cluster.node(0), OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    // A node's count is the unexpired leases it holds: on a starved machine a renewal can come late, the lease lapse
    // and the instance be claimed again, so the counts settle rather than hold at every instant.
    super::eventually("each instance counted on exactly one node", || async {
        let (status, listed) = operator.call(Method::GET, "/v1/cluster/nodes", None).await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        let listed = listed.as_array().or(listed["items"].as_array()).expect("nodes").clone();
        let running: i64 = listed.iter().filter_map(|n| n["instances"].as_i64()).sum();
        (running == iids.len() as i64).then_some(())
    })
    .await;
    for iid in &iids {
        // `replaced` never turns back into `connected`: a double connection fails here, however long it waits.
        super::eventually("connected, never replaced", || async {
            let (_, body) = operator.call(Method::GET, &format!("/v1/instances/{iid}"), None).await;
            assert_ne!(body["status"], "replaced", "never replaced: {body}");
            (body["status"] == "connected").then_some(())
        })
        .await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_one_owner_per_instance_and_no_replacement() {
    exactly_one_owner_each_and_no_replacement(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_one_owner_per_instance_and_no_replacement() {
    exactly_one_owner_each_and_no_replacement(3).await;
}

/// A send and commands through every node, whichever node owns the instance: executed by the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_and_commands_through_any_node_are_executed() {
    let Some(cluster) = TestCluster::start(GATEWAY, 3).await else { return };
    let operator = As::login(cluster.node(0), OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Anywhere").await;
    let owner = As::login(cluster.node(0), &owner_email, "a long enough password").await;
    let (iid, _) = paired_instance(&owner, "anywhere").await;
    let key = api_key(&owner, &iid, &["messages:send", "messages:read"]).await;
    let recipient = "+15550008888";
    let mut sent = Vec::new();
    for (i, app) in cluster.live() {
        let (status, body) = with_key(
            app,
            &key,
            Method::POST,
            &format!("/v1/instances/{iid}/messages"),
            Some(json!({"to": recipient, "text": format!("via node {i}")})),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        sent.push(body["id"].as_str().expect("id").to_owned());
    }
    for (i, app) in cluster.live() {
        for id in &sent {
            super::eventually("sent or delivered", || async {
                let (_, m) =
                    with_key(app, &key, Method::GET, &format!("/v1/instances/{iid}/messages/{id}"), None, None).await;
                matches!(m["status"].as_str(), Some("sent" | "delivered")).then_some(())
            })
            .await;
        }
        // Every node's controls show the same network: each message reached the recipient once.
        let node = As::login(app, &owner_email, "a long enough password").await;
        let (status, got) =
            node.call(Method::GET, &format!("/v1/sandbox/instances/{iid}/deliveries?to=%2B15550008888"), None).await;
        assert_eq!(status, StatusCode::OK, "node {i}: {got}");
        assert_eq!(got.as_array().expect("list").len(), sent.len(), "node {i}: each once: {got}");
    }
    // A restart asked of a non-owner node is carried out by the owner: the stream shows it reconnect.
    let runner = owner_of(&cluster, &operator, &iid).await.expect("an owner");
    let other = As::login(cluster.node((runner + 1) % cluster.len()), &owner_email, "a long enough password").await;
    let mut stream = events(other.app, other.token.as_deref().expect("token"), &iid).await;
    let (status, body) = other.call(Method::POST, &format!("/v1/instances/{iid}/restart"), None).await;
    assert!(status.is_success(), "{status} {body}");
    next_matching(&mut stream, "connected again", status_is("connected")).await;
    cluster.shutdown().await;
}

/// kill -9 of a node: its instances connect on the survivors within 15 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_instances_connect_on_the_survivors_within_15_s() {
    let Some(mut cluster) = TestCluster::start(GATEWAY, 3).await else { return };
    let operator = As::login(cluster.node(0), OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Failover").await;
    let instances = paired_on_every_node(&cluster, &owner_email, 6).await;
    let iids: Vec<String> = instances.iter().map(|(iid, _)| iid.clone()).collect();
    all_owned_and_connected(&cluster, OPERATOR_EMAIL, &iids, Duration::from_secs(10)).await;
    let victim = owner_of(&cluster, &operator, &iids[0]).await.expect("an owner");
    cluster.kill(victim).await;
    let took = all_owned_and_connected(&cluster, OPERATOR_EMAIL, &iids, Duration::from_secs(15)).await;
    eprintln!("every instance of the killed node connected again after {took:?}");
    cluster.shutdown().await;
}

/// A node paused (SIGSTOP) past its lease: another node takes its instances over; when it resumes, its stale
/// writes are refused, so the instance stays `connected` under its new owner (an accepted write of the old
/// session's `replaced` would show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_is_taken_over_and_its_stale_writes_are_refused() {
    let Some(cluster) = TestCluster::start(GATEWAY, 2).await else { return };
    let operator = As::login(cluster.node(0), OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Paused").await;
    let owner = As::login(cluster.node(0), &owner_email, "a long enough password").await;
    let (iid, _) = paired_instance(&owner, "paused").await;
    let first = owner_of(&cluster, &operator, &iid).await.expect("an owner");
    let survivor = 1 - first;
    let watcher = As::login(cluster.node(survivor), OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    cluster.pause(first);
    let started = tokio::time::Instant::now();
    loop {
        if owner_of(&cluster, &watcher, &iid).await == Some(survivor) {
            let (_, body) = watcher.call(Method::GET, &format!("/v1/instances/{iid}"), None).await;
            if body["status"] == "connected" {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no takeover within 30 s of the pause");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.resume(first);
    // The resumed node is live again once it answers; by then it has seen its lease gone and the network's
    // `replaced` for its old connection.
    let resumed = As::login(cluster.node(first), OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (status, _) = resumed.call(Method::GET, "/v1/cluster/nodes", None).await;
    assert_eq!(status, StatusCode::OK);
    let mut stream = events(watcher.app, watcher.token.as_deref().expect("token"), &iid).await;
    let (status, _) = watcher.call(Method::POST, &format!("/v1/sandbox/instances/{iid}/drop"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "the survivor's connection is the live one");
    next_matching(&mut stream, "connected again", status_is("connected")).await;
    let (_, body) = watcher.call(Method::GET, &format!("/v1/instances/{iid}"), None).await;
    assert_eq!(body["status"], "connected", "the paused node's stale writes were refused: {body}");
    assert_eq!(owner_of(&cluster, &watcher, &iid).await, Some(survivor));
    cluster.shutdown().await;
}
