//! Versions and caches: a swap takes effect for the next event while an in-flight event finishes on its version;
//! a restart loads compiled components from disk instead of compiling; the reply loop guard.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use common::{MemoryCatalog, binding, event};
use gw_core::{
    BindingDirection, Direction, Disposition, FailurePolicy, InstanceId, MessagePipeline, Origin, PluginRuntime,
};
use gw_plugins::{HostSettings, PluginHost};
use serde_json::json;

const CHAT: &str = "15550001111@s.whatsapp.net";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_swap_applies_to_the_next_event_while_the_in_flight_one_finishes_on_the_old() {
    let catalog = Arc::new(MemoryCatalog::default());
    let instance = InstanceId::new();
    // v1: the opt-out handler, which reads its key-value store on every event (held in flight below).
    let mut v1 = binding(&catalog, "opt_out", 1, BindingDirection::Both, FailurePolicy::FailClosed, json!({}));
    v1.limits.timeout_ms = 10_000;
    // v2: the redactor, which masks "hello".
    let v2 = binding(
        &catalog,
        "redactor",
        1,
        BindingDirection::Both,
        FailurePolicy::FailClosed,
        json!({"words": ["hello"]}),
    );
    catalog.set_chain(instance, vec![v1]);
    let host = common::host(catalog.clone());
    let chain = host.pipeline();
    // Warm: the chain is cached, both components compiled.
    host.load(&common::guest("redactor")).unwrap();
    let warm = chain.process(event(instance, Direction::Outbound, CHAT, "hello")).await;
    assert!(matches!(&warm.disposition, Disposition::Deliver(e) if e.text.as_deref() == Some("hello")));
    let loads = catalog.chain_loads.load(Ordering::SeqCst);

    let entered = Arc::new(tokio::sync::Notify::new());
    let permits = Arc::new(tokio::sync::Semaphore::new(0));
    *catalog.kv_gate.lock().unwrap() = Some((entered.clone(), permits.clone()));
    let in_flight = tokio::spawn({
        let chain = chain.clone();
        async move { chain.process(event(instance, Direction::Outbound, CHAT, "hello")).await }
    });
    tokio::time::timeout(Duration::from_secs(10), entered.notified()).await.expect("the v1 call reached its KV read");

    catalog.set_chain(instance, vec![v2]);
    host.invalidate(instance);
    let after = chain.process(event(instance, Direction::Outbound, CHAT, "hello there")).await;
    assert!(
        matches!(&after.disposition, Disposition::Deliver(e) if e.text.as_deref() == Some("***** there")),
        "the next event runs v2: {after:?}"
    );
    assert_eq!(catalog.chain_loads.load(Ordering::SeqCst), loads + 1, "invalidate made the chain load again");

    permits.add_permits(1);
    let finished = tokio::time::timeout(Duration::from_secs(10), in_flight).await.unwrap().unwrap();
    assert!(
        matches!(&finished.disposition, Disposition::Deliver(e) if e.text.as_deref() == Some("hello")),
        "the in-flight event finished on v1 (not redacted, not dropped): {finished:?}"
    );
    assert!(catalog.failures.lock().unwrap().is_empty(), "nothing failed during the swap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_loads_compiled_components_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let settings =
        HostSettings { cache_dir: Some(dir.path().to_owned()), instance_slots: 4, ..HostSettings::default() };
    let bytes = common::guest("keyword_responder");

    let first = PluginHost::standalone(settings.clone()).unwrap();
    first.load(&bytes).unwrap();
    first.load(&bytes).unwrap();
    assert_eq!(first.cache_counts().compiled, 1, "compiled once, then served from memory");
    assert_eq!(first.cache_counts().loaded_from_disk, 0);
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "one .cwasm written: {files:?}");
    assert!(files[0].to_string_lossy().starts_with(&gw_plugins::sha256_hex(&bytes)));

    let restarted = PluginHost::standalone(settings).unwrap();
    let compiled = restarted.load(&bytes).unwrap();
    assert_eq!(restarted.cache_counts().compiled, 0, "no compilation after a restart");
    assert_eq!(restarted.cache_counts().loaded_from_disk, 1);
    // And the deserialized component works.
    let report = gw_plugins::runner::run(
        &restarted,
        &bytes,
        &gw_plugins::runner::SampleEvent { text: Some("ping".into()), ..Default::default() },
        &json!({"rules": [{"keywords": ["ping"], "reply": "pong"}]}),
        gw_plugins::runner::default_limits(),
        Arc::default(),
    )
    .await
    .unwrap();
    assert_eq!(compiled.sha256, gw_plugins::sha256_hex(&bytes));
    assert_eq!(
        report.verdict,
        Some(gw_plugins::runner::VerdictReport::Continue { replies: vec!["pong".into()] }),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_to_a_plugin_reply_are_discarded_by_the_loop_guard() {
    let catalog = Arc::new(MemoryCatalog::default());
    let instance = InstanceId::new();
    let echo = binding(
        &catalog,
        "keyword_responder",
        1,
        BindingDirection::Both,
        FailurePolicy::FailOpen,
        json!({"rules": [{"keywords": ["ping"], "reply": "ping again"}], "reply_to_outbound": true}),
    );
    let id = echo.binding_id;
    catalog.set_chain(instance, vec![echo]);
    let chain = common::host(catalog.clone()).pipeline();

    let api = chain.process(event(instance, Direction::Outbound, CHAT, "ping")).await;
    assert_eq!(api.replies.len(), 1, "an API send may be answered");

    // The reply comes back through the outbound chain at depth 1 (the default limit): it is sent, but what the
    // plugin says to it is not.
    let mut reply = event(instance, Direction::Outbound, CHAT, &api.replies[0].text);
    reply.origin = Origin::PluginReply { depth: 1 };
    let outcome = chain.process(reply).await;
    assert!(matches!(outcome.disposition, Disposition::Deliver(_)));
    assert!(outcome.replies.is_empty(), "the loop guard discarded the reply to a reply");
    let logs = common::wait_until("the loop-guard log line", || {
        let logs: Vec<_> = catalog.logs_of(id).into_iter().filter(|l| l.message.contains("loop guard")).collect();
        (!logs.is_empty()).then_some(logs)
    })
    .await;
    assert_eq!(logs[0].level, "warn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_loaded_before_an_invalidation_does_not_stay_cached() {
    let catalog = Arc::new(MemoryCatalog::default());
    let instance = InstanceId::new();
    let v1 =
        binding(&catalog, "redactor", 1, BindingDirection::Both, FailurePolicy::FailOpen, json!({"words": ["one"]}));
    let v2 =
        binding(&catalog, "redactor", 1, BindingDirection::Both, FailurePolicy::FailOpen, json!({"words": ["two"]}));
    catalog.set_chain(instance, vec![v1]);
    let host = common::host(catalog.clone());
    let chain = host.pipeline();

    let entered = Arc::new(tokio::sync::Notify::new());
    let permits = Arc::new(tokio::sync::Semaphore::new(0));
    *catalog.chain_gate.lock().unwrap() = Some((entered.clone(), permits.clone()));
    let loading = tokio::spawn({
        let chain = chain.clone();
        async move { chain.process(event(instance, Direction::Outbound, CHAT, "one two")).await }
    });
    tokio::time::timeout(Duration::from_secs(10), entered.notified()).await.expect("the load read v1");
    catalog.set_chain(instance, vec![v2]);
    host.invalidate(instance);
    permits.add_permits(1);
    let first = tokio::time::timeout(Duration::from_secs(10), loading).await.unwrap().unwrap();
    assert!(matches!(&first.disposition, Disposition::Deliver(e) if e.text.as_deref() == Some("*** two")), "{first:?}");

    let next = chain.process(event(instance, Direction::Outbound, CHAT, "one two")).await;
    assert!(
        matches!(&next.disposition, Disposition::Deliver(e) if e.text.as_deref() == Some("one ***")),
        "the chain read before the invalidation was not kept: {next:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidating_all_chains_reloads_every_instance() {
    let catalog = Arc::new(MemoryCatalog::default());
    let (a, b) = (InstanceId::new(), InstanceId::new());
    let words = |word: &str| json!({ "words": [word] });
    let redactor = |config| binding(&catalog, "redactor", 1, BindingDirection::Both, FailurePolicy::FailOpen, config);
    catalog.set_chain(a, vec![redactor(words("one"))]);
    catalog.set_chain(b, vec![redactor(words("one"))]);
    let host = common::host(catalog.clone());
    let chain = host.pipeline();
    for instance in [a, b] {
        chain.process(event(instance, Direction::Outbound, CHAT, "one two")).await;
    }
    catalog.set_chain(a, vec![redactor(words("two"))]);
    catalog.set_chain(b, vec![redactor(words("two"))]);
    let cached = chain.process(event(a, Direction::Outbound, CHAT, "one two")).await;
    assert!(matches!(&cached.disposition, Disposition::Deliver(e) if e.text.as_deref() == Some("*** two")));

    host.invalidate_all();
    for instance in [a, b] {
        let next = chain.process(event(instance, Direction::Outbound, CHAT, "one two")).await;
        assert!(
            matches!(&next.disposition, Disposition::Deliver(e) if e.text.as_deref() == Some("one ***")),
            "{instance}: {next:?}"
        );
    }
}
