//! One tenant's plugins cannot starve another's: one fuel and time budget per event for the whole chain, host
//! calls charged to it and refused past a size before anything is copied, and a bounded number of chains per
//! subscription running at once. The attacker is `hostile_abuse`, which misbehaves only on a trigger in the text.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{MemoryCatalog, binding, event, event_of};
use gw_core::{
    BindingDirection, Direction, Disposition, FailurePolicy, InstanceId, MessagePipeline, PluginLimits, SubscriptionId,
};
use serde_json::json;

const CHAT: &str = "15550002222@s.whatsapp.net";

/// A chain of `copies` fail-open bindings of `hostile_abuse` under `limits` on a fresh instance.
fn abuse_chain(copies: i32, limits: PluginLimits) -> (Arc<MemoryCatalog>, InstanceId, Vec<gw_core::PluginBindingId>) {
    let catalog = Arc::new(MemoryCatalog::default());
    let instance = InstanceId::new();
    let bindings: Vec<_> = (1..=copies)
        .map(|position| {
            let mut bound = binding(
                &catalog,
                "hostile_abuse",
                position,
                BindingDirection::Both,
                FailurePolicy::FailOpen,
                json!({}),
            );
            bound.limits = limits;
            bound
        })
        .collect();
    let ids = bindings.iter().map(|b| b.binding_id).collect();
    catalog.set_chain(instance, bindings);
    (catalog, instance, ids)
}

/// Runs one event with `text` through a chain of one `hostile_abuse` binding and returns its recorded failure.
async fn abused(text: &str, limits: PluginLimits) -> gw_core::BindingFailure {
    let (catalog, instance, ids) = abuse_chain(1, limits);
    let chain = common::host(catalog.clone()).pipeline();
    let outcome = chain.process(event(instance, Direction::Inbound, CHAT, text)).await;
    assert!(
        matches!(&outcome.disposition, Disposition::Deliver(e) if e.text.as_deref() == Some(text)),
        "fail-open: the message passes unchanged: {outcome:?}"
    );
    catalog.wait_failures(ids[0], 1).await.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_on_the_clock_pays_fuel_for_every_host_call() {
    // The loop itself costs a few units per turn; each `clock::now` costs 1,000 more, so 5M fuel lasts about
    // 5,000 calls instead of a million.
    let failure = abused("spin", PluginLimits { fuel: 5_000_000, timeout_ms: 10_000, ..common::limits() }).await;
    assert_eq!(failure.kind, "fuel_exhausted", "{failure:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_on_host_calls_without_a_fuel_limit_meets_the_deadline() {
    let failure = abused("kvspin", PluginLimits { fuel: 0, timeout_ms: 30, ..common::limits() }).await;
    assert_eq!(failure.kind, "timeout", "{failure:?}");
    assert_eq!(failure.message, "timed out after 30 ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_log_line_is_refused_before_it_is_copied() {
    let limits = PluginLimits { memory_bytes: 64 << 20, ..common::limits() };
    let failure = abused("log 20000000", limits).await;
    assert_eq!(failure.kind, "trap", "{failure:?}");
    assert!(failure.message.contains("more than 131072 bytes to one host call"), "{}", failure.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_modification_is_refused_before_it_is_copied() {
    let limits = PluginLimits { memory_bytes: 64 << 20, ..common::limits() };
    let failure = abused("modify 20000000", limits).await;
    assert_eq!(failure.kind, "invalid_verdict", "{failure:?}");
    assert!(failure.message.contains("the verdict is larger than 131072 bytes"), "{}", failure.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_replies_are_refused_before_they_are_copied() {
    let failure = abused("replies 1000 1000", common::limits()).await;
    assert_eq!(failure.kind, "invalid_verdict", "{failure:?}");
    assert!(failure.message.contains("the verdict is larger than 131072 bytes"), "{}", failure.message);
    // Under the transfer cap, the contract's own limit answers.
    let failure = abused("replies 6 10", common::limits()).await;
    assert_eq!(failure.kind, "invalid_verdict", "{failure:?}");
    assert!(failure.message.contains("6 replies; at most 5"), "{}", failure.message);
}

/// Ten copies of a plugin that spins until its deadline share one deadline: the first uses it up, the other nine
/// are not run (and not blamed), where each used to get a deadline of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_budget_covers_the_whole_chain() {
    let (catalog, instance, ids) = abuse_chain(10, PluginLimits { fuel: 0, timeout_ms: 40, ..common::limits() });
    let chain = common::host(catalog.clone()).pipeline();
    let outcome = chain.process(event(instance, Direction::Inbound, CHAT, "spin")).await;
    assert!(matches!(&outcome.disposition, Disposition::Deliver(_)), "{outcome:?}");

    let first = catalog.wait_failures(ids[0], 1).await;
    assert_eq!(first[0].kind, "timeout", "{first:?}");
    let skipped = common::wait_until("the nine later bindings logged as not run", || {
        let logged: Vec<_> = ids[1..]
            .iter()
            .filter(|id| catalog.logs_of(**id).iter().any(|l| l.message.contains("used the event's whole budget")))
            .collect();
        (logged.len() == 9).then_some(logged)
    })
    .await;
    assert_eq!(skipped.len(), 9);
    for id in &ids[1..] {
        assert!(catalog.failures_of(*id).is_empty(), "a binding that did not run is not blamed");
    }
}

/// A subscription runs at most `chains_per_subscription` chains at once; its next event waits for its own
/// permit while another subscription's events go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_queues_for_its_own_permits_only() {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    let (catalog, attacker, _) = abuse_chain(1, common::limits());
    let victim = InstanceId::new();
    let responder = binding(
        &catalog,
        "keyword_responder",
        1,
        BindingDirection::Inbound,
        FailurePolicy::FailOpen,
        json!({"rules": [{"keywords": ["ping"], "reply": "pong"}]}),
    );
    catalog.set_chain(victim, vec![responder]);
    let settings = gw_plugins::HostSettings { chains_per_subscription: 1, ..common::settings() };
    let chain = gw_plugins::PluginHost::new(settings, catalog.clone()).unwrap().pipeline();

    // Every `kv::get` announces itself and then waits for a permit.
    let entered = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *catalog.kv_gate.lock().unwrap() = Some((entered.clone(), gate.clone()));
    let entries = Arc::new(AtomicU64::new(0));
    let tenant = SubscriptionId::new();
    let spawn_held = |text: &'static str| {
        let (chain, entries) = (chain.clone(), entries.clone());
        tokio::spawn(async move {
            let outcome = chain.process(event_of(tenant, attacker, Direction::Inbound, CHAT, text)).await;
            entries.fetch_add(1, SeqCst);
            outcome
        })
    };
    let first = spawn_held("kvget");
    entered.notified().await;
    let second = spawn_held("kvget");

    // The other tenant is not behind the held one.
    let other = chain.process(event_of(SubscriptionId::new(), victim, Direction::Inbound, CHAT, "ping")).await;
    assert_eq!(other.replies.len(), 1, "{other:?}");
    assert_eq!(other.replies[0].text, "pong");
    assert_eq!(entries.load(SeqCst), 0, "both of the held tenant's events are still waiting");
    assert_eq!(catalog.kv_gets.load(SeqCst), 1, "the second did not start: the first holds the only permit");

    // Releasing the first lets the second in, which then waits in the catalog in turn.
    gate.add_permits(1);
    first.await.unwrap();
    entered.notified().await;
    gate.add_permits(1);
    second.await.unwrap();
    assert_eq!(entries.load(SeqCst), 2);
}
