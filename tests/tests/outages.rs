//! End-to-end: the send path under faults. PostgreSQL connections terminated under load answer 503, never 500; a
//! send that times out on a locked table costs nothing, and its retry costs one unit; kill -9 under send load
//! loses no accepted message, delivers none twice, and leaves the quota equal to what was stored.

use std::collections::HashMap;
use std::time::Duration;

use gw_e2e::{Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, gateway_command};
use gw_store_sql::testing::LockMode;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{As, GATEWAY, api_key, eventually, paired_instance, problem_type, tenant, with_key};

on_both_backends!(kill_9_under_send_load_loses_nothing_duplicates_nothing_and_charges_what_was_stored);

on_postgres!(
    terminated_database_connections_answer_503_never_500,
    a_send_that_timed_out_costs_nothing_and_its_retry_costs_one,
);

const DEADLINE: Duration = Duration::from_secs(15);

async fn messages_used(owner: &As<'_>, sid: &str) -> i64 {
    let (status, sub) = owner.call(Method::GET, &format!("/v1/subscriptions/{sid}"), None).await;
    assert_eq!(status, StatusCode::OK, "{sub}");
    sub["messages_used"].as_i64().expect("messages_used")
}

/// Every message of an instance, all pages.
async fn all_messages(app: &TestApp, key: &str, iid: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/instances/{iid}/messages?limit=100&cursor={c}"),
            None => format!("/v1/instances/{iid}/messages?limit=100"),
        };
        let (status, page) = with_key(app, key, Method::GET, &path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

/// One request's outcome: status, `Retry-After`, body.
type Outcome = (StatusCode, Option<String>, Value);

async fn request(request: reqwest::RequestBuilder) -> Option<Outcome> {
    let response = request.send().await.ok()?;
    let status = response.status();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = response.text().await.ok()?;
    Some((status, retry_after, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// An outage answer is a 503 `unavailable` problem with `Retry-After`; anything else must not be a server error.
fn assert_not_a_server_error(what: &str, (status, retry_after, body): &Outcome) {
    if *status == StatusCode::SERVICE_UNAVAILABLE {
        assert_eq!(problem_type(body), "/problems/unavailable", "{what}: {body}");
        assert!(retry_after.is_some(), "{what}: 503 without Retry-After");
    } else {
        assert!(!status.is_server_error(), "{what}: {status} {body}");
    }
}

/// A PostgreSQL connection terminated mid-query (SQLSTATE 57P01, as `pg_terminate_backend` or a fast shutdown
/// does) is an outage: `503 /problems/unavailable` with `Retry-After`, on the signed-in path, the API-key path and
/// the send path alike; and the gateway serves again without a restart.
async fn terminated_database_connections_answer_503_never_500(database: &Database) {
    let pg = database.postgres().expect("a PostgreSQL database");
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (sid, owner_email, _) = tenant(&operator, "Outage").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (iid, _) = paired_instance(&owner, "shop").await;
    let key = api_key(&owner, &iid, &["messages:send", "messages:read"]).await;
    let token = owner.token.clone().expect("token");

    // Mid-query: with the subscriptions table locked, every request below waits inside PostgreSQL (sign-in
    // re-reads the subscription, a key's first use joins it, a send charges it); then its connection is cut.
    let lock = pg.lock_table("subscriptions", LockMode::AccessExclusive).await;
    let client = app.client.clone();
    let calls: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("list instances", client.get(app.url("/v1/instances")).bearer_auth(&token)),
        ("read subscription", client.get(app.url(&format!("/v1/subscriptions/{sid}"))).bearer_auth(&token)),
        (
            "send with a key",
            client
                .post(app.url(&format!("/v1/instances/{iid}/messages")))
                .header("x-api-key", &key)
                .json(&json!({"to": "+15550004242", "text": "during the outage"})),
        ),
    ];
    let waiting: Vec<_> = calls.into_iter().map(|(what, call)| (what, tokio::spawn(request(call)))).collect();
    gw_test_support::until_within(DEADLINE, "the requests to reach the locked table", async || {
        pg.sessions_waiting_on_locks().await >= 3
    })
    .await;
    assert!(pg.terminate_connections(Some(&lock)).await >= 3);
    lock.release().await;
    for (what, task) in waiting {
        let outcome = task.await.expect("task").expect("an answer");
        assert_eq!(outcome.0, StatusCode::SERVICE_UNAVAILABLE, "{what}: {}", outcome.2);
        assert_not_a_server_error(what, &outcome);
    }

    // Under load: ten rounds of terminating every connection of the gateway while requests run.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|n| {
            let (client, stop, token, key) = (client.clone(), stop.clone(), token.clone(), key.clone());
            let (instances, send) = (app.url("/v1/instances"), app.url(&format!("/v1/instances/{iid}/messages")));
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let call = if n == 0 {
                        client
                            .post(&send)
                            .header("x-api-key", &key)
                            .json(&json!({"to": "+15550004242", "text": format!("load {i}")}))
                    } else {
                        client.get(&instances).bearer_auth(&token)
                    };
                    if let Some(outcome) = request(call).await {
                        outcomes.push(outcome);
                    }
                }
                outcomes
            })
        })
        .collect();
    let mut terminated = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        terminated += pg.terminate_connections(None).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for task in load {
        for outcome in task.await.expect("load task") {
            assert_not_a_server_error("under termination", &outcome);
            *by_status.entry(outcome.0.as_u16()).or_default() += 1;
        }
    }
    assert!(terminated > 0, "connections were terminated");
    eprintln!("statuses while terminating {terminated} connections in 10 rounds: {by_status:?}");

    // No restart needed.
    eventually("the gateway serves again", || async {
        let (status, _) = owner.call(Method::GET, "/v1/instances", None).await;
        (status == StatusCode::OK).then_some(())
    })
    .await;
    app.terminate().await;
}

/// A send that waits on a locked `messages` table until the request timeout (408) stored nothing and costs nothing;
/// its retry with the same `Idempotency-Key` costs one unit, and a replay nothing more.
async fn a_send_that_timed_out_costs_nothing_and_its_retry_costs_one(database: &Database) {
    let pg = database.postgres().expect("a PostgreSQL database");
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command.env("GATEWAY_SERVER_REQUEST_TIMEOUT_SECS", "1");
    let app = TestApp::spawn_with(command).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (sid, owner_email, _) = tenant(&operator, "Timeout").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (iid, _) = paired_instance(&owner, "shop").await;
    let key = api_key(&owner, &iid, &["messages:send", "messages:read"]).await;
    let path = format!("/v1/instances/{iid}/messages");
    let order = json!({"to": "+1 555 000 4242", "text": "Your order shipped"});
    let used_before = messages_used(&owner, &sid).await;

    // Reads go on; the insert waits for the lock until the request times out.
    let lock = pg.lock_table("messages", LockMode::Share).await;
    let (status, body) = with_key(&app, &key, Method::POST, &path, Some(order.clone()), Some("order-7")).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert_eq!(messages_used(&owner, &sid).await, used_before, "a send that was not stored costs nothing");
    lock.release().await;

    let (status, first) = with_key(&app, &key, Method::POST, &path, Some(order.clone()), Some("order-7")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, replay) = with_key(&app, &key, Method::POST, &path, Some(order), Some("order-7")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replay}");
    assert_eq!(replay["id"], first["id"]);
    assert_eq!(messages_used(&owner, &sid).await, used_before + 1, "one accepted message, one unit");
    let stored = all_messages(&app, &key, &iid).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    app.terminate().await;
}

/// Sends from alice to bob (both sandbox instances of one tenant) while the gateway is killed with SIGKILL, for
/// several cycles; after each restart the sends whose answer was lost are retried with their Idempotency-Key.
/// Then: every accepted message is stored, bob got none twice, and `messages_used` equals the stored messages.
async fn kill_9_under_send_load_loses_nothing_duplicates_nothing_and_charges_what_was_stored(database: &Database) {
    const CYCLES: usize = 20;
    let mut app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (sid, owner_email, _) = tenant(&operator, "Crash").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (alice, _) = paired_instance(&owner, "alice").await;
    let (bob, bob_jid) = paired_instance(&owner, "bob").await;
    let alice_key = api_key(&owner, &alice, &["messages:send", "messages:read"]).await;
    let bob_key = api_key(&owner, &bob, &["messages:read"]).await;
    drop(owner);
    drop(operator);
    let to = format!("+{}", bob_jid.trim_end_matches("@s.whatsapp.net"));

    // Accepted sends: Idempotency-Key -> message id. In doubt: sends whose answer never came (killed mid-request).
    let mut accepted: HashMap<String, String> = HashMap::new();
    let mut in_doubt: Vec<String> = Vec::new();
    let mut next = 0;
    let mut retried = 0;
    for cycle in 0..=CYCLES {
        // Retry what is in doubt: the same key is either the stored message (no new charge) or a first send.
        retried += in_doubt.len();
        for key in std::mem::take(&mut in_doubt) {
            let body = json!({"to": to, "text": key});
            let path = format!("/v1/instances/{alice}/messages");
            let (status, message) = with_key(&app, &alice_key, Method::POST, &path, Some(body), Some(&key)).await;
            assert_eq!(status, StatusCode::ACCEPTED, "retry of {key}: {message}");
            accepted.insert(key, message["id"].as_str().expect("id").to_owned());
        }
        if cycle == CYCLES {
            break;
        }
        // Four concurrent senders; the process is killed once a few sends of this cycle were accepted.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Option<String>)>();
        let senders: Vec<_> = (0..4)
            .map(|s| {
                let (client, tx, key) = (app.client.clone(), tx.clone(), alice_key.clone());
                let url = app.url(&format!("/v1/instances/{alice}/messages"));
                let to = to.clone();
                let first = next + s * 1000;
                tokio::spawn(async move {
                    for n in first.. {
                        let idem = format!("c{cycle}-m{n}");
                        let call = client
                            .post(&url)
                            .header("x-api-key", &key)
                            .header("idempotency-key", &idem)
                            .json(&json!({"to": to, "text": idem}));
                        let outcome = call.send().await;
                        let id = match outcome {
                            Ok(response) if response.status() == StatusCode::ACCEPTED => {
                                let body: Value = response.json().await.unwrap_or(Value::Null);
                                body["id"].as_str().map(str::to_owned)
                            }
                            Ok(response) => panic!("send {idem}: {}", response.status()),
                            Err(_) => None,
                        };
                        let dead = id.is_none();
                        if tx.send((idem, id)).is_err() || dead {
                            return;
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        next += 4 * 1000;
        let mut this_cycle = 0;
        while this_cycle < 6 {
            match tokio::time::timeout(DEADLINE, rx.recv()).await.expect("sends are answered") {
                Some((idem, Some(id))) => {
                    accepted.insert(idem, id);
                    this_cycle += 1;
                }
                Some((idem, None)) => in_doubt.push(idem),
                None => panic!("every sender stopped before the crash"),
            }
        }
        app.kill().await;
        for sender in senders {
            sender.await.expect("sender");
        }
        while let Some((idem, id)) = rx.recv().await {
            match id {
                Some(id) => {
                    accepted.insert(idem, id);
                }
                None => in_doubt.push(idem),
            }
        }
        app = TestApp::spawn(GATEWAY, database).await;
    }

    // The outbox drains after the last restart.
    let outbound = eventually("alice's outbox drained", || async {
        let all = all_messages(&app, &alice_key, &alice).await;
        all.iter().all(|m| m["status"] != "queued").then_some(all)
    })
    .await;
    let stored: HashMap<&str, &Value> = outbound.iter().map(|m| (m["id"].as_str().expect("id"), m)).collect();
    let lost: Vec<_> = accepted.iter().filter(|(_, id)| !stored.contains_key(id.as_str())).collect();
    assert!(lost.is_empty(), "accepted but not stored: {lost:?}");

    let owner = As::login(&app, &owner_email, "a long enough password").await;
    assert_eq!(messages_used(&owner, &sid).await, outbound.len() as i64, "the quota counts what was stored");

    let inbound = all_messages(&app, &bob_key, &bob).await;
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for message in &inbound {
        *copies.entry(message["text"].as_str().unwrap_or_default()).or_default() += 1;
    }
    let duplicated: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "delivered twice: {duplicated:?}");
    eprintln!(
        "{CYCLES} kill -9 cycles: {} accepted ({retried} retried after a lost answer), {} stored, {} received by \
         bob, 0 duplicates",
        accepted.len(),
        outbound.len(),
        inbound.len()
    );
    app.terminate().await;
}
