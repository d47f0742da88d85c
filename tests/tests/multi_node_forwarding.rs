//! Read receipts, presence, blocking and number checks through the node that does not run the instance's session (two gateway
//! processes, one PostgreSQL database, one shared sandbox network): the owner executes them, and the shared
//! sandbox shows their effect through either node.

use gw_e2e::{OPERATOR_EMAIL, OPERATOR_PASSWORD, TestCluster};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::multi_node::{events, next_matching, owner_of};
use super::{As, GATEWAY, api_key, paired_instance, tenant, with_key};

/// `+digits` of a `digits@s.whatsapp.net` JID.
fn phone(jid: &str) -> String {
    format!("+{}", jid.trim_end_matches("@s.whatsapp.net"))
}

/// Sends `text` from `iid` to `to` with `key` through `app` and waits until the message is `status`.
async fn sent(app: &gw_e2e::TestApp, key: &str, iid: &str, to: &str, text: &str, status: &str) -> Value {
    let path = format!("/v1/instances/{iid}/messages");
    let (code, body) = with_key(app, key, Method::POST, &path, Some(json!({"to": to, "text": text})), None).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    super::eventually(&format!("{text:?} {status}"), || async {
        let (_, m) = with_key(app, key, Method::GET, &format!("{path}/{id}"), None, None).await;
        (m["status"] == status).then_some(m)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_presence_and_block_through_a_non_owner_are_executed_by_the_owner() {
    let Some(cluster) = TestCluster::start(GATEWAY, 2).await else { return };
    let operator = As::login(cluster.node(0), OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Forwarded").await;
    let owner = As::login(cluster.node(0), &owner_email, "a long enough password").await;
    let (alice, alice_jid) = paired_instance(&owner, "alice").await;
    let (bob, bob_jid) = paired_instance(&owner, "bob").await;
    let runner = owner_of(&cluster, &operator, &alice).await.expect("alice has an owner");
    let other = As::login(cluster.node(1 - runner), &owner_email, "a long enough password").await;
    let bob_key = api_key(&owner, &bob, &["messages:send", "messages:read"]).await;
    let (alice_phone, bob_phone) = (phone(&alice_jid), phone(&bob_jid));

    // Read: bob's message to alice turns `read` once alice's read receipt is asked of the non-owner.
    let to_alice = sent(other.app, &bob_key, &bob, &alice_phone, "read me", "delivered").await;
    let wa_id = to_alice["wa_message_id"].as_str().expect("wa id").to_owned();
    let (status, body) = other
        .call(
            Method::POST,
            &format!("/v1/instances/{alice}/chats/{bob_phone}/read"),
            Some(json!({"message_ids": [wa_id]})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let message_path = format!("/v1/instances/{bob}/messages/{}", to_alice["id"].as_str().expect("id"));
    super::eventually("bob's message read", || async {
        let (_, m) = with_key(other.app, &bob_key, Method::GET, &message_path, None, None).await;
        (m["status"] == "read").then_some(())
    })
    .await;

    // Presence: alice typing in bob's chat, asked of the non-owner, shows on bob's stream (any node's).
    let mut bob_events = events(other.app, other.token.as_deref().expect("token"), &bob).await;
    let (status, body) = other
        .call(
            Method::POST,
            &format!("/v1/instances/{alice}/chats/{bob_phone}/presence"),
            Some(json!({"presence": "composing"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let seen = next_matching(&mut bob_events, "alice's presence", |e| e.event == "presence.updated").await;
    let shown = &seen.last().expect("presence").data["data"];
    assert_eq!((shown["jid"].as_str(), shown["presence"].as_str()), (Some(alice_jid.as_str()), Some("composing")));

    // Block: while alice blocks bob (through the non-owner), bob's message does not reach her; after the unblock
    // the next one does, and the sandbox shows exactly the two that arrived.
    let (_, contacts) = other.call(Method::GET, &format!("/v1/instances/{alice}/contacts"), None).await;
    let contact = contacts["items"]
        .as_array()
        .expect("contacts")
        .iter()
        .find(|c| c["jid"] == bob_jid.as_str())
        .unwrap_or_else(|| panic!("bob among alice's contacts: {contacts}"))["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let block = |verb: &'static str| {
        let path = format!("/v1/instances/{alice}/contacts/{contact}/{verb}");
        let other = &other;
        async move { other.call(Method::POST, &path, None).await }
    };
    let (status, body) = block("block").await;
    assert_eq!((status, body["is_blocked"].as_bool()), (StatusCode::OK, Some(true)), "{body}");
    let path = format!("/v1/instances/{bob}/messages");
    let (code, blocked) =
        with_key(other.app, &bob_key, Method::POST, &path, Some(json!({"to": alice_phone, "text": "blocked"})), None)
            .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{blocked}");
    // Sent (WhatsApp accepted it), never delivered: the blocker's phone does not take it.
    let blocked_path = format!("{path}/{}", blocked["id"].as_str().expect("id"));
    super::eventually("the blocked message sent", || async {
        let (_, m) = with_key(other.app, &bob_key, Method::GET, &blocked_path, None, None).await;
        (m["status"] == "sent").then_some(())
    })
    .await;
    let (status, body) = block("unblock").await;
    assert_eq!((status, body["is_blocked"].as_bool()), (StatusCode::OK, Some(false)), "{body}");
    sent(other.app, &bob_key, &bob, &alice_phone, "after unblocking", "delivered").await;
    let deliveries = format!("/v1/sandbox/instances/{bob}/deliveries?to=%2B{}", &alice_phone[1..]);
    let (status, got) = other.call(Method::GET, &deliveries, None).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let texts: Vec<&str> = got.as_array().expect("list").iter().filter_map(|d| d["text"].as_str()).collect();
    assert_eq!(texts, vec!["read me", "after unblocking"]);
    let (_, m) = with_key(other.app, &bob_key, Method::GET, &blocked_path, None, None).await;
    assert_eq!(m["status"], "sent", "never delivered: {m}");

    // Number check: asked of the non-owner, answered by the owner's session on the shared network.
    let (status, body) = other
        .call(Method::POST, "/v1/sandbox/numbers", Some(json!({"numbers": ["+15550004444"], "on_whatsapp": false})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, checked) = other
        .call(
            Method::POST,
            &format!("/v1/instances/{alice}/contacts/check"),
            Some(json!({"numbers": [bob_phone, "+15550004444"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{checked}");
    let results = checked["results"].as_array().expect("results");
    assert_eq!((results[0]["jid"].as_str(), results[0]["on_whatsapp"].as_bool()), (Some(bob_jid.as_str()), Some(true)));
    assert_eq!(results[1]["on_whatsapp"], false, "{checked}");
    assert_eq!(owner_of(&cluster, &operator, &alice).await, Some(runner), "the owner did not change meanwhile");
    cluster.shutdown().await;
}
