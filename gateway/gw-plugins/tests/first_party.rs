//! The first-party plugins, run through the real host and a chain over an in-memory catalog.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use common::{MemoryCatalog, binding, event};
use gw_core::{
    BindingDirection, Direction, Disposition, FailurePolicy, InstanceId, MessagePipeline, Origin, PluginRuntime,
};
use gw_plugins::PluginHost;
use serde_json::json;

const CHAT: &str = "15550001111@s.whatsapp.net";

fn text_of(disposition: &Disposition) -> Option<&str> {
    match disposition {
        Disposition::Deliver(event) => event.text.as_deref(),
        Disposition::Drop { .. } => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_responder_replies_to_a_matching_inbound_message_only() {
    let catalog = Arc::new(MemoryCatalog::default());
    let instance = InstanceId::new();
    let config = json!({"rules": [
        {"keywords": ["price", "cost"], "reply": "Our prices are on example.com/prices"},
        {"keywords": ["hours"], "reply": "We open at nine", "match": "contains"}
    ]});
    let bound = binding(&catalog, "keyword_responder", 1, BindingDirection::Both, FailurePolicy::FailOpen, config);
    catalog.set_chain(instance, vec![bound]);
    let chain = common::host(catalog.clone()).pipeline();

    let outcome = chain.process(event(instance, Direction::Inbound, CHAT, "What is the PRICE?")).await;
    assert_eq!(text_of(&outcome.disposition), Some("What is the PRICE?"), "the message itself passes unchanged");
    assert_eq!(outcome.replies.len(), 1);
    assert_eq!(outcome.replies[0].text, "Our prices are on example.com/prices");
    assert_eq!(outcome.replies[0].chat_jid, CHAT);

    let outcome = chain.process(event(instance, Direction::Inbound, CHAT, "priceless")).await;
    assert!(outcome.replies.is_empty(), "`word` matching does not fire inside another word");

    let outcome = chain.process(event(instance, Direction::Inbound, CHAT, "opening hours?")).await;
    assert_eq!(outcome.replies[0].text, "We open at nine");

    let outcome = chain.process(event(instance, Direction::Outbound, CHAT, "the price is 5")).await;
    assert!(outcome.replies.is_empty(), "outbound messages never trigger a reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redactor_masks_cards_emails_and_words() {
    let catalog = Arc::new(MemoryCatalog::default());
    let instance = InstanceId::new();
    let config = json!({"words": ["secret"]});
    let bound = binding(&catalog, "redactor", 1, BindingDirection::Both, FailurePolicy::FailOpen, config);
    let binding_id = bound.binding_id;
    catalog.set_chain(instance, vec![bound]);
    let chain = common::host(catalog.clone()).pipeline();

    let text = "Card 4111 1111 1111 1111, mail jane.doe@example.com, the Secret is out. Order 1234567890123.";
    let outcome = chain.process(event(instance, Direction::Outbound, CHAT, text)).await;
    assert_eq!(
        text_of(&outcome.disposition),
        Some("Card **** **** **** 1111, mail ****.***@*******.***, the ****** is out. Order 1234567890123."),
        "a Luhn-valid card keeps its last four digits; a number that fails Luhn is left alone"
    );
    let outcome = chain.process(event(instance, Direction::Inbound, CHAT, "nothing to hide")).await;
    assert_eq!(text_of(&outcome.disposition), Some("nothing to hide"));
    let logs = common::wait_until("the redactor's log line", || {
        let logs = catalog.logs_of(binding_id);
        (!logs.is_empty()).then_some(logs)
    })
    .await;
    assert_eq!(logs[0].level, "info");
    assert_eq!(logs[0].message, "masked 3 item(s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_out_confirms_once_then_drops_outbound_until_start() {
    let catalog = Arc::new(MemoryCatalog::default());
    let instance = InstanceId::new();
    let bound = binding(&catalog, "opt_out", 1, BindingDirection::Both, FailurePolicy::FailOpen, json!({}));
    catalog.set_chain(instance, vec![bound]);
    let chain = common::host(catalog.clone()).pipeline();
    let other_chat = "15550002222@s.whatsapp.net";

    let stop = chain.process(event(instance, Direction::Inbound, CHAT, " stop ")).await;
    assert!(matches!(stop.disposition, Disposition::Deliver(_)), "the STOP itself still reaches the tenant");
    assert_eq!(stop.replies.len(), 1, "one confirmation");
    let confirmation = stop.replies[0].text.clone();
    assert!(confirmation.contains("unsubscribed"));

    // The confirmation goes out through the outbound chain as a plugin reply and must pass.
    let mut reply = event(instance, Direction::Outbound, CHAT, &confirmation);
    reply.origin = Origin::PluginReply { depth: 1 };
    let sent = chain.process(reply.clone()).await;
    assert!(matches!(sent.disposition, Disposition::Deliver(_)), "the confirmation is sent: {sent:?}");

    // A second STOP is not confirmed again, and the same text cannot sneak through a second time.
    let again = chain.process(event(instance, Direction::Inbound, CHAT, "UNSUBSCRIBE")).await;
    assert!(again.replies.is_empty(), "confirmed only once");
    let resent = chain.process(reply).await;
    assert!(matches!(resent.disposition, Disposition::Drop { .. }));

    let api_send = chain.process(event(instance, Direction::Outbound, CHAT, "Our new offer!")).await;
    match api_send.disposition {
        Disposition::Drop { reason, by } => {
            assert!(reason.contains("opted out"), "{reason}");
            assert_eq!(by.as_deref(), Some("opt_out"));
        }
        other => panic!("expected a drop, got {other:?}"),
    }
    let other = chain.process(event(instance, Direction::Outbound, other_chat, "Our new offer!")).await;
    assert!(matches!(other.disposition, Disposition::Deliver(_)), "other chats are unaffected");

    let start = chain.process(event(instance, Direction::Inbound, CHAT, "Start")).await;
    assert_eq!(start.replies.len(), 1, "resumed note");
    let after = chain.process(event(instance, Direction::Outbound, CHAT, "Welcome back")).await;
    assert!(matches!(after.disposition, Disposition::Deliver(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_hours_replies_once_per_chat_per_closed_period() {
    let catalog = Arc::new(MemoryCatalog::default());
    let instance = InstanceId::new();
    // Mon-Fri 09:00-17:00 at UTC+2.
    let config = json!({"utc_offset_minutes": 120, "days": [1, 2, 3, 4, 5], "open": "09:00", "close": "17:00",
                        "reply": "We are closed"});
    let bound = binding(&catalog, "business_hours", 1, BindingDirection::Inbound, FailurePolicy::FailOpen, config);
    catalog.set_chain(instance, vec![bound]);
    // 2026-11-27 is a Friday. 18:00 UTC = 20:00 local: closed.
    let now = Arc::new(AtomicI64::new(1_795_802_400_000));
    let clock_now = now.clone();
    let host =
        PluginHost::with_clock(common::settings(), catalog.clone(), Arc::new(move || clock_now.load(Ordering::SeqCst)))
            .unwrap();
    let chain = host.pipeline();
    let other_chat = "15550003333@s.whatsapp.net";

    let first = chain.process(event(instance, Direction::Inbound, CHAT, "hello?")).await;
    assert_eq!(first.replies.len(), 1);
    assert_eq!(first.replies[0].text, "We are closed");
    let second = chain.process(event(instance, Direction::Inbound, CHAT, "anyone?")).await;
    assert!(second.replies.is_empty(), "one reply per chat per closed period");
    let other = chain.process(event(instance, Direction::Inbound, other_chat, "hi")).await;
    assert_eq!(other.replies.len(), 1, "each chat gets its own reply");

    // Saturday noon local: still the same closed period (it runs until Monday 09:00).
    now.store(1_795_802_400_000 + 16 * 3_600_000, Ordering::SeqCst);
    let saturday = chain.process(event(instance, Direction::Inbound, CHAT, "weekend?")).await;
    assert!(saturday.replies.is_empty());

    // Monday 10:00 local (08:00 UTC): open, no reply.
    let monday_open = 1_795_802_400_000 + (2 * 24 + 14) * 3_600_000;
    now.store(monday_open, Ordering::SeqCst);
    let open = chain.process(event(instance, Direction::Inbound, CHAT, "now?")).await;
    assert!(open.replies.is_empty(), "no reply during business hours");

    // Monday 18:00 local: a new closed period, a new reply.
    now.store(monday_open + 8 * 3_600_000, Ordering::SeqCst);
    let evening = chain.process(event(instance, Direction::Inbound, CHAT, "still there?")).await;
    assert_eq!(evening.replies.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_party_plugins_pass_the_upload_checks() {
    let catalog = Arc::new(MemoryCatalog::default());
    let host = common::host(catalog);
    for name in ["keyword_responder", "redactor", "opt_out", "business_hours"] {
        let bytes = common::guest(name);
        let prepared = host.prepare(&bytes, &common::limits()).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(prepared.sha256, gw_plugins::sha256_hex(&bytes));
        assert_eq!(prepared.size_bytes, bytes.len() as u64);
    }
}

/// The benchmark filter built twice from the same logic: with Rust's standard library (which links the WASI
/// adapter for panic output) and on the SDK's `lean` (`#![no_std]`) runtime, which imports only the plugin world.
/// Both pass the upload checks and decide alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_std_plugin_imports_only_the_plugin_world_and_behaves_like_its_std_twin() {
    let catalog = Arc::new(MemoryCatalog::default());
    let host = common::host(catalog.clone());
    let std_imports = host.load(&common::guest("bench_filter")).unwrap().imports.clone();
    let lean_imports = host.load(&common::guest("bench_filter_lean")).unwrap().imports.clone();
    assert!(std_imports.iter().any(|name| name.starts_with("wasi:")), "{std_imports:?}");
    assert!(lean_imports.iter().all(|name| name.starts_with("gateway:plugin/")), "{lean_imports:?}");
    host.prepare(&common::guest("bench_filter_lean"), &common::limits()).await.unwrap();

    let cases = [
        ("hello there", None),
        ("see http://example.com now", Some("see https://example.com now")),
        ("You are a LOTTERY WINNER", None),
    ];
    for name in ["bench_filter", "bench_filter_lean"] {
        let instance = InstanceId::new();
        let bound =
            binding(&catalog, name, 1, BindingDirection::Both, FailurePolicy::FailClosed, serde_json::json!({}));
        catalog.set_chain(instance, vec![bound]);
        let chain = host.pipeline();
        for (text, rewritten) in cases {
            let outcome = chain.process(event(instance, Direction::Inbound, "1@s.whatsapp.net", text)).await;
            match (&outcome.disposition, rewritten) {
                (Disposition::Deliver(e), Some(expected)) => assert_eq!(e.text.as_deref(), Some(expected), "{name}"),
                (Disposition::Deliver(e), None) if !text.contains("LOTTERY") => {
                    assert_eq!(e.text.as_deref(), Some(text), "{name}")
                }
                (Disposition::Drop { reason, .. }, None) if text.contains("LOTTERY") => {
                    assert_eq!(reason, "spam", "{name}")
                }
                other => panic!("{name} on {text:?}: {other:?}"),
            }
        }
    }
}
