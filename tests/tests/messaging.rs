//! End-to-end: instances pairing and messaging each other on the sandbox, idempotent sends, resumption after a
//! restart, a whatsapp instance that cannot connect, and media fetched by URL under the egress rules.

use gw_e2e::{Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, gateway_command};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{As, GATEWAY, api_key, eventually, paired_instance, problem_type, tenant, with_key};

on_both_backends!(
    sandbox_instances_pair_and_message_each_other_with_receipts,
    sends_are_idempotent_and_bad_sends_write_nothing,
    a_restarted_server_resumes_connected_instances_without_pairing,
    a_whatsapp_instance_that_cannot_connect_backs_off_with_a_clear_error,
    media_by_url_is_fetched_under_the_egress_rules,
);

async fn sandbox_instances_pair_and_message_each_other_with_receipts(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Chat").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (alice, alice_jid) = paired_instance(&owner, "alice").await;
    let (bob, bob_jid) = paired_instance(&owner, "bob").await;
    let alice_key = api_key(&owner, &alice, &["messages:send", "messages:read", "contacts:read"]).await;
    let bob_key = api_key(&owner, &bob, &["messages:send", "messages:read"]).await;

    // Alice -> Bob: five messages, in order.
    let mut ids = Vec::new();
    for n in 0..5 {
        let (status, body) = with_key(
            &app,
            &alice_key,
            Method::POST,
            &format!("/v1/instances/{alice}/messages"),
            Some(json!({"to": bob_jid, "text": format!("hello {n}")})),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["status"], "queued");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    let inbound = eventually("Bob's five messages", || async {
        let (_, page) =
            with_key(&app, &bob_key, Method::GET, &format!("/v1/instances/{bob}/messages"), None, None).await;
        let items: Vec<Value> = page["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m["direction"] == "inbound")
            .collect();
        (items.len() == 5).then_some(items)
    })
    .await;
    let texts: Vec<&str> = inbound.iter().map(|m| m["text"].as_str().expect("text")).collect();
    assert_eq!(texts, ["hello 0", "hello 1", "hello 2", "hello 3", "hello 4"]);
    assert!(inbound.iter().all(|m| m["from"] == alice_jid.as_str() && m["status"] == "received"));

    // Delivered once Bob's gateway stored it; read once Bob marks it read.
    let last = ids.last().expect("ids").clone();
    let sent = eventually("delivered", || async {
        let (_, m) =
            with_key(&app, &alice_key, Method::GET, &format!("/v1/instances/{alice}/messages/{last}"), None, None)
                .await;
        (m["status"] == "delivered").then_some(m)
    })
    .await;
    let wa_id = sent["wa_message_id"].as_str().expect("wa id").to_owned();
    let (status, body) = with_key(
        &app,
        &bob_key,
        Method::POST,
        &format!("/v1/instances/{bob}/chats/{alice_jid}/read"),
        Some(json!({"message_ids": [wa_id]})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    eventually("read", || async {
        let (_, m) =
            with_key(&app, &alice_key, Method::GET, &format!("/v1/instances/{alice}/messages/{last}"), None, None)
                .await;
        (m["status"] == "read").then_some(())
    })
    .await;

    // Bob -> Alice, and a simulated external contact writing to Alice under a LID.
    let (status, _) = with_key(
        &app,
        &bob_key,
        Method::POST,
        &format!("/v1/instances/{bob}/messages"),
        Some(json!({"to": alice_jid, "text": "hi Alice"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, injected) = owner
        .call(
            Method::POST,
            &format!("/v1/sandbox/instances/{alice}/inbound"),
            Some(json!({"from": "+1 555 777 0001", "from_lid": "987654321@lid", "push_name": "Zoe", "text": "hello"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{injected}");
    assert_eq!(injected["acknowledged"], true);
    let (_, contacts) =
        with_key(&app, &alice_key, Method::GET, &format!("/v1/instances/{alice}/contacts?search=zoe"), None, None)
            .await;
    let zoe = &contacts["items"][0];
    assert_eq!(
        (zoe["jid"].as_str(), zoe["lid"].as_str(), zoe["phone"].as_str()),
        (Some("15557770001@s.whatsapp.net"), Some("987654321@lid"), Some("+15557770001"))
    );
    eventually("Bob's message at Alice", || async {
        let (_, page) = with_key(
            &app,
            &alice_key,
            Method::GET,
            &format!("/v1/instances/{alice}/messages?chat={bob_jid}"),
            None,
            None,
        )
        .await;
        page["items"].as_array().is_some_and(|i| i.iter().any(|m| m["text"] == "hi Alice")).then_some(())
    })
    .await;

    // The live stream: an event published after subscribing arrives as SSE with its type and stable id.
    let mut stream = app
        .client
        .get(app.url(&format!("/v1/instances/{alice}/events")))
        .header("x-api-key", &alice_key)
        .send()
        .await
        .expect("events");
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(stream.headers()["content-type"].to_str().expect("ct").starts_with("text/event-stream"));
    let (status, _) = owner
        .call(
            Method::POST,
            &format!("/v1/sandbox/instances/{alice}/inbound"),
            Some(json!({"from": "+1 555 777 0002", "text": "live"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mut seen = String::new();
    let wait = async {
        while !(seen.contains("event: message.received") && seen.contains("\"live\"")) {
            let chunk = stream.chunk().await.expect("chunk").expect("stream open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), wait).await.expect("the event in time");
    assert!(seen.contains("\nid: "), "{seen}");
    drop(stream);

    // A group: Alice writes to a sandbox group with Bob; Bob receives it in the group chat.
    let (status, group) = owner
        .call(
            Method::POST,
            "/v1/sandbox/groups",
            Some(json!({"subject": "Team", "participants": [alice_jid, bob_jid]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let group_jid = group["jid"].as_str().expect("jid").to_owned();
    let (_, groups) =
        with_key(&app, &alice_key, Method::GET, &format!("/v1/instances/{alice}/groups"), None, None).await;
    assert_eq!(groups[0]["jid"], group_jid.as_str(), "{groups}");
    let (status, _) = with_key(
        &app,
        &alice_key,
        Method::POST,
        &format!("/v1/instances/{alice}/messages"),
        Some(json!({"to": group_jid, "text": "hello team"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually("the group message at Bob", || async {
        let (_, page) = with_key(
            &app,
            &bob_key,
            Method::GET,
            &format!("/v1/instances/{bob}/messages?chat={group_jid}"),
            None,
            None,
        )
        .await;
        page["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|m| m["text"] == "hello team" && m["from"] == alice_jid.as_str()))
            .then_some(())
    })
    .await;

    // A key of another instance does not reach this one; a key without the scope is refused.
    let (status, _) =
        with_key(&app, &bob_key, Method::GET, &format!("/v1/instances/{alice}/messages"), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) =
        with_key(&app, &bob_key, Method::GET, &format!("/v1/instances/{bob}/contacts"), None, None).await;
    assert_eq!((status, problem_type(&body)), (StatusCode::FORBIDDEN, "/problems/insufficient-scope"));
    app.terminate().await;
}

async fn sends_are_idempotent_and_bad_sends_write_nothing(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Idem").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (iid, _) = paired_instance(&owner, "shop").await;
    let key = api_key(&owner, &iid, &["messages:send", "messages:read"]).await;
    let path = format!("/v1/instances/{iid}/messages");
    let order = json!({"to": "+1 555 000 4242", "text": "Your order shipped"});

    let (status, first) = with_key(&app, &key, Method::POST, &path, Some(order.clone()), Some("order-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, retry) = with_key(&app, &key, Method::POST, &path, Some(order.clone()), Some("order-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(retry["id"], first["id"], "a retry returns the first result");
    let (status, body) = with_key(
        &app,
        &key,
        Method::POST,
        &path,
        Some(json!({"to": "+1 555 000 4242", "text": "something else"})),
        Some("order-1"),
    )
    .await;
    assert_eq!((status, problem_type(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "/problems/idempotency-key-reused"));

    let png = base64_of(&vec![0u8; 6 * 1024 * 1024]);
    let refused = [
        (json!({"to": "not a number", "text": "x"}), StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation"),
        (
            json!({"to": "+15550004242", "type": "image", "media": {"data": png, "mime_type": "image/png"}}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "/problems/media-too-large",
        ),
        (
            json!({"to": "+15550004242", "type": "image", "media": {"data": "AAAA", "mime_type": "application/x-msdownload"}}),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "/problems/unsupported-media",
        ),
        (
            json!({"to": "+15550004242", "type": "location", "location": {"latitude": 123.0, "longitude": 0.0}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation",
        ),
    ];
    for (body, want_status, want_type) in refused {
        let (status, problem) = with_key(&app, &key, Method::POST, &path, Some(body.clone()), None).await;
        assert_eq!((status, problem_type(&problem)), (want_status, want_type), "{body}: {problem}");
    }
    let (status, problem) =
        with_key(&app, &key, Method::POST, &path, Some(json!({"to": "abc", "text": "x"})), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "to", "{problem}");

    // An instance that is not connected: 409 naming its status.
    let (_, fresh) = owner.call(Method::POST, "/v1/instances", Some(json!({"name": "fresh"}))).await;
    let fresh_id = fresh["id"].as_str().expect("id");
    let (status, problem) = owner
        .call(
            Method::POST,
            &format!("/v1/instances/{fresh_id}/messages"),
            Some(json!({"to": "+15550004242", "text": "x"})),
        )
        .await;
    assert_eq!((status, problem_type(&problem)), (StatusCode::CONFLICT, "/problems/instance-not-connected"));
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("created")), "{problem}");
    let (status, _) = owner
        .call(
            Method::POST,
            &format!("/v1/instances/{}/messages", gw_core_like_id()),
            Some(json!({"to": "+15550004242", "text": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Only the one accepted message exists.
    let (_, page) = with_key(&app, &key, Method::GET, &path, None, None).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    let (_, page) = owner.call(Method::GET, &format!("/v1/instances/{fresh_id}/messages"), None).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(0));
    app.terminate().await;
}

fn gw_core_like_id() -> &'static str {
    "0190b1a2-0000-7000-8000-000000000000"
}

fn base64_of(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn a_restarted_server_resumes_connected_instances_without_pairing(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Resume").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (iid, jid) = paired_instance(&owner, "resumed").await;
    // A network blip is not a logout: the instance reconnects by itself.
    let (status, _) = owner.call(Method::POST, &format!("/v1/sandbox/instances/{iid}/drop"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    eventually("reconnected after the blip", || async {
        let (_, body) = owner.call(Method::GET, &format!("/v1/instances/{iid}/status"), None).await;
        (body["status"] == "connected" && body["last_disconnected_at"].is_string()).then_some(())
    })
    .await;
    let (_, before) = owner.call(Method::GET, &format!("/v1/instances/{iid}"), None).await;
    assert!(app.terminate().await.success());

    let app = TestApp::spawn(GATEWAY, database).await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let after = eventually("resumed", || async {
        let (_, body) = owner.call(Method::GET, &format!("/v1/instances/{iid}"), None).await;
        (body["status"] == "connected" && body["last_connected_at"] != before["last_connected_at"]).then_some(body)
    })
    .await;
    assert_eq!(after["phone"], before["phone"], "same account, no new pairing");
    let key = api_key(&owner, &iid, &["messages:send"]).await;
    let (status, body) = with_key(
        &app,
        &key,
        Method::POST,
        &format!("/v1/instances/{iid}/messages"),
        Some(json!({"to": "+15550001111", "text": "back online"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(jid.ends_with("@s.whatsapp.net"));
    app.terminate().await;
}

async fn a_whatsapp_instance_that_cannot_connect_backs_off_with_a_clear_error(database: &Database) {
    // WhatsApp cannot be reached from here: point the real driver at a closed loopback port, with a pinned
    // client version so nothing leaves the machine.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command
        .env("GATEWAY_WHATSAPP_WS_URL", format!("ws://127.0.0.1:{port}/ws/chat"))
        .env("GATEWAY_WHATSAPP_VERSION", "2.3000.1020608496")
        .env("GATEWAY_SESSIONS_BACKOFF_INITIAL_MS", "50")
        .env("GATEWAY_SESSIONS_BACKOFF_MAX_SECS", "1");
    let app = TestApp::spawn_with(command).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Real").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (status, instance) =
        owner.call(Method::POST, "/v1/instances", Some(json!({"name": "real", "driver": "whatsapp"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{instance}");
    let iid = instance["id"].as_str().expect("id").to_owned();
    let (status, _) = owner.call(Method::POST, &format!("/v1/instances/{iid}/connect"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let failing = eventually("repeated failed attempts", || async {
        let (_, body) = owner.call(Method::GET, &format!("/v1/instances/{iid}/status"), None).await;
        (body["connection_attempts"].as_i64().unwrap_or(0) >= 2 && body["last_error"].is_string()).then_some(body)
    })
    .await;
    assert!(["disconnected", "connecting"].contains(&failing["status"].as_str().unwrap_or("")), "{failing}");
    assert!(failing["last_error_at"].is_string());
    // The node keeps serving, and the instance can be logged out like any other.
    let (status, _) = owner.call(Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = owner.call(Method::POST, &format!("/v1/instances/{iid}/logout"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "logged_out");
    assert!(app.terminate().await.success());
}

/// A loopback file server for media-by-URL tests: `/cat.png` (a small PNG), `/big.png` (declares 6 MiB),
/// `/moved` (a redirect), anything else 404. One request per connection.
async fn media_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request).lines().next().unwrap_or_default().to_owned();
                let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
                let png: &[u8] = b"\x89PNG\r\n\x1a\nnot really a picture";
                let response: Vec<u8> = match path.as_str() {
                    "/cat.png" => [
                        format!("HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", png.len()).as_bytes(),
                        png,
                    ]
                    .concat(),
                    "/big.png" => b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: 6291456\r\nconnection: close\r\n\r\n".to_vec(),
                    "/moved" => format!("HTTP/1.1 302 Found\r\nlocation: http://{addr}/cat.png\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").into_bytes(),
                    _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
                };
                let _ = socket.write_all(&response).await;
            });
        }
    });
    format!("http://{addr}")
}

async fn media_by_url_is_fetched_under_the_egress_rules(database: &Database) {
    let media = media_server().await;
    // Loopback is private: allowed here only because the operator allow-lists it, as the README documents.
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command.env("GATEWAY_WEBHOOKS_ALLOW_HTTP", "true").env("GATEWAY_WEBHOOKS_ALLOW_PRIVATE_CIDRS", "[\"127.0.0.0/8\"]");
    let app = TestApp::spawn_with(command).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Media").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (iid, _) = paired_instance(&owner, "pictures").await;
    let key = api_key(&owner, &iid, &["messages:send", "messages:read"]).await;
    let path = format!("/v1/instances/{iid}/messages");
    let image = |url: String| json!({"to": "+15550004242", "type": "image", "text": "a cat", "media": {"url": url}});

    let (status, accepted) =
        with_key(&app, &key, Method::POST, &path, Some(image(format!("{media}/cat.png"))), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["content"]["media"]["mime_type"], "image/png", "{accepted}");
    assert_eq!(accepted["content"]["media"]["size_bytes"], 28, "{accepted}");
    let mid = accepted["id"].as_str().expect("id");
    eventually("the fetched image sent", || async {
        let (_, message) = with_key(&app, &key, Method::GET, &format!("{path}/{mid}"), None, None).await;
        (message["status"] != "queued").then_some(())
    })
    .await;

    let refused = [
        (image(format!("{media}/big.png")), StatusCode::PAYLOAD_TOO_LARGE, "/problems/media-too-large"),
        (image(format!("{media}/moved")), StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation"),
        (image(format!("{media}/missing.png")), StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation"),
        // Not on the allow-list: the metadata address and other private ranges stay refused.
        (
            image("http://169.254.169.254/latest/meta-data".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation",
        ),
        (image("http://10.0.0.1/cat.png".into()), StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation"),
        (
            json!({"to": "+15550004242", "type": "image", "media": {"url": format!("{media}/cat.png"), "data": "AAAA"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation",
        ),
    ];
    for (body, want_status, want_type) in refused {
        let (status, problem) = with_key(&app, &key, Method::POST, &path, Some(body.clone()), None).await;
        assert_eq!((status, problem_type(&problem)), (want_status, want_type), "{body}: {problem}");
    }
    let (_, page) = with_key(&app, &key, Method::GET, &path, None, None).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "refused sends leave no row: {page}");
    app.terminate().await;
}
