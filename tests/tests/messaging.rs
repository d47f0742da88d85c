//! End-to-end: messaging breadth (issue 20) through the real binary on the sandbox. Number checks: one answer per
//! number with its JIDs, numbers the sandbox says are not on WhatsApp (and sends to them failing), the cache that
//! reuses answers for `sessions.number_check_cache_secs` and then asks again, scopes and bad input.

use gw_e2e::{Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, gateway_command};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{As, GATEWAY, api_key, eventually, paired_instance, problem_type, tenant, with_key};

on_both_backends!(numbers_are_checked_with_their_jids_cached_for_a_while_and_refused_when_malformed);

/// How long the test's gateway reuses a number check's answer: long enough for the few calls that expect the
/// cached answer, short enough to watch it expire.
const CACHE_SECS: &str = "4";

/// The results of checking `numbers` on `iid` with `key`.
async fn check(app: &TestApp, key: &str, iid: &str, numbers: &[&str]) -> Vec<Value> {
    let path = format!("/v1/instances/{iid}/contacts/check");
    let (status, body) = with_key(app, key, Method::POST, &path, Some(json!({"numbers": numbers})), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["results"].as_array().expect("results").clone()
}

async fn numbers_are_checked_with_their_jids_cached_for_a_while_and_refused_when_malformed(database: &Database) {
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command.env("GATEWAY_SESSIONS_NUMBER_CHECK_CACHE_SECS", CACHE_SECS);
    let app = TestApp::spawn_with(command).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Checker").await;
    let owner = As::login(&app, &owner_email, "a long enough password").await;
    let (alice, _) = paired_instance(&owner, "alice").await;
    let (_, bob_jid) = paired_instance(&owner, "bob").await;
    let key = api_key(&owner, &alice, &["contacts:read", "messages:send", "messages:read"]).await;
    let bob_phone = format!("+{}", bob_jid.trim_end_matches("@s.whatsapp.net"));

    // A number the sandbox says is not on WhatsApp, and a contact known by its LID since it wrote under one.
    let (status, body) = owner
        .call(Method::POST, "/v1/sandbox/numbers", Some(json!({"numbers": ["+1 555 000 9999"], "on_whatsapp": false})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = owner
        .call(
            Method::POST,
            &format!("/v1/sandbox/instances/{alice}/inbound"),
            Some(json!({"from": "+15550007777", "from_lid": "246813579@lid", "text": "hi"})),
        )
        .await;
    assert_eq!((status, body["acknowledged"].as_bool()), (StatusCode::ACCEPTED, Some(true)), "{body}");

    let results = check(&app, &key, &alice, &[&bob_phone, "+1 555 000 9999", "15550007777@s.whatsapp.net"]).await;
    let summary: Vec<(&str, bool, Option<&str>, Option<&str>)> = results
        .iter()
        .map(|r| (r["phone"].as_str().expect("phone"), r["on_whatsapp"] == true, r["jid"].as_str(), r["lid"].as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (bob_phone.as_str(), true, Some(bob_jid.as_str()), None),
            ("+15550009999", false, None, None),
            ("+15550007777", true, Some("15550007777@s.whatsapp.net"), Some("246813579@lid")),
        ],
        "{results:?}"
    );
    assert_eq!(results[1]["number"], "+1 555 000 9999", "each answer names the number as given");

    // Reused: the sandbox now says bob's number is gone, but the answer is recent; a number never checked is asked.
    let (status, _) = owner
        .call(Method::POST, "/v1/sandbox/numbers", Some(json!({"numbers": [bob_phone], "on_whatsapp": false})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let again = check(&app, &key, &alice, &[&bob_phone, "+15550006666"]).await;
    assert_eq!((again[0]["on_whatsapp"].as_bool(), again[1]["on_whatsapp"].as_bool()), (Some(true), Some(true)));
    // ... until the cache lets it go and WhatsApp (the sandbox) is asked again.
    eventually("the cached answer expires", || async {
        let now = check(&app, &key, &alice, &[&bob_phone]).await;
        (now[0]["on_whatsapp"] == false).then_some(())
    })
    .await;

    // As on WhatsApp, a message to a number that is not on it fails.
    let messages = format!("/v1/instances/{alice}/messages");
    let (status, accepted) =
        with_key(&app, &key, Method::POST, &messages, Some(json!({"to": "+15550009999", "text": "anyone?"})), None)
            .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["id"].as_str().expect("id");
    eventually("the send to a number not on WhatsApp fails", || async {
        let (_, m) = with_key(&app, &key, Method::GET, &format!("{messages}/{id}"), None, None).await;
        (m["status"] == "failed").then_some(())
    })
    .await;

    // Malformed lists are refused naming the field; a key without contacts:read may not check.
    let path = format!("/v1/instances/{alice}/contacts/check");
    let too_many: Vec<String> = (0..501).map(|i| format!("+1555100{i:04}")).collect();
    for numbers in [json!([]), json!(too_many), json!(["246813579@lid"]), json!(["not a number"])] {
        let (status, problem) =
            with_key(&app, &key, Method::POST, &path, Some(json!({"numbers": numbers})), None).await;
        assert_eq!((status, problem_type(&problem)), (StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation"));
        assert_eq!(problem["errors"][0]["field"], "numbers", "{problem}");
    }
    let sender = api_key(&owner, &alice, &["messages:send"]).await;
    let (status, problem) =
        with_key(&app, &sender, Method::POST, &path, Some(json!({"numbers": ["+15550001111"]})), None).await;
    assert_eq!((status, problem_type(&problem)), (StatusCode::FORBIDDEN, "/problems/insufficient-scope"));

    // An instance that is not connected cannot ask.
    let (_, idle) = owner.call(Method::POST, "/v1/instances", Some(json!({"name": "idle"}))).await;
    let idle_path = format!("/v1/instances/{}/contacts/check", idle["id"].as_str().expect("id"));
    let (status, problem) = owner.call(Method::POST, &idle_path, Some(json!({"numbers": ["+15550001111"]}))).await;
    assert_eq!((status, problem_type(&problem)), (StatusCode::CONFLICT, "/problems/instance-not-connected"));
}
