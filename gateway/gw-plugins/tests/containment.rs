//! Hostile plugins are contained: each fails with a clear error of the right kind, recorded on its binding, while
//! a well-behaved plugin on another instance keeps working. Upload checks refuse what can be refused up front.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{MemoryCatalog, binding, event};
use gw_core::{
    BindingDirection, Direction, Disposition, FailurePolicy, InstanceId, MessagePipeline, PluginLimits, PluginRuntime,
};
use serde_json::json;

const CHAT: &str = "15550001111@s.whatsapp.net";

/// Binds `hostile` (fail-open) on one instance and the keyword responder on another, sends an event to each at
/// the same time, and returns the failure recorded for the hostile binding.
async fn contained(hostile: &str, limits: PluginLimits) -> gw_core::BindingFailure {
    let catalog = Arc::new(MemoryCatalog::default());
    let (bad, good) = (InstanceId::new(), InstanceId::new());
    let mut bound = binding(&catalog, hostile, 1, BindingDirection::Both, FailurePolicy::FailOpen, json!({}));
    bound.limits = limits;
    let hostile_binding = bound.binding_id;
    catalog.set_chain(bad, vec![bound]);
    let responder = binding(
        &catalog,
        "keyword_responder",
        1,
        BindingDirection::Inbound,
        FailurePolicy::FailOpen,
        json!({"rules": [{"keywords": ["ping"], "reply": "pong"}]}),
    );
    catalog.set_chain(good, vec![responder]);
    let chain = common::host(catalog.clone()).pipeline();

    let (bad_outcome, good_outcome) = tokio::join!(
        chain.process(event(bad, Direction::Inbound, CHAT, "hello")),
        chain.process(event(good, Direction::Inbound, CHAT, "ping")),
    );
    assert!(
        matches!(&bad_outcome.disposition, Disposition::Deliver(e) if e.text.as_deref() == Some("hello")),
        "fail-open: the message passes unchanged despite the failure: {bad_outcome:?}"
    );
    assert!(bad_outcome.replies.is_empty());
    assert_eq!(good_outcome.replies.len(), 1, "the other tenant's plugin kept working");
    assert_eq!(good_outcome.replies[0].text, "pong");
    // And the node keeps serving afterwards.
    let again = chain.process(event(good, Direction::Inbound, CHAT, "ping")).await;
    assert_eq!(again.replies.len(), 1);

    let failures = catalog.wait_failures(hostile_binding, 1).await;
    failures[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_runs_out_of_fuel() {
    let failure = contained("hostile_infinite_loop", common::limits()).await;
    assert_eq!(failure.kind, "fuel_exhausted", "{failure:?}");
    assert!(failure.message.contains("fuel"), "{}", failure.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_without_a_fuel_limit_hits_the_deadline() {
    let limits = PluginLimits { fuel: 0, timeout_ms: 30, ..common::limits() };
    let failure = contained("hostile_infinite_loop", limits).await;
    assert_eq!(failure.kind, "timeout", "{failure:?}");
    assert_eq!(failure.message, "timed out after 30 ms");
}

/// Calls run on the event's own task: a plugin that computes until its deadline must hand the thread back in
/// slices. On a one-thread runtime another task runs while the call does; it could not if the call held the
/// thread for its whole deadline.
#[tokio::test(flavor = "current_thread")]
async fn a_plugin_computing_until_its_deadline_does_not_hold_the_thread() {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    let catalog = Arc::new(MemoryCatalog::default());
    let bad = InstanceId::new();
    let mut bound =
        binding(&catalog, "hostile_infinite_loop", 1, BindingDirection::Both, FailurePolicy::FailOpen, json!({}));
    bound.limits = PluginLimits { fuel: 0, timeout_ms: 100, ..common::limits() };
    let hostile_binding = bound.binding_id;
    catalog.set_chain(bad, vec![bound]);
    let chain = common::host(catalog.clone()).pipeline();
    // The first event loads and compiles the chain (which awaits a blocking thread); only the second is measured.
    chain.process(event(bad, Direction::Inbound, CHAT, "warm up")).await;

    let beats = Arc::new(AtomicU64::new(0));
    let heartbeat = tokio::spawn({
        let beats = beats.clone();
        async move {
            loop {
                beats.fetch_add(1, SeqCst);
                tokio::task::yield_now().await;
            }
        }
    });
    let outcome = chain.process(event(bad, Direction::Inbound, CHAT, "hello")).await;
    let beats_during_call = beats.load(SeqCst);
    heartbeat.abort();

    assert!(matches!(&outcome.disposition, Disposition::Deliver(e) if e.text.as_deref() == Some("hello")));
    assert!(beats_during_call > 10, "another task ran only {beats_during_call} times during a 100 ms call");
    let failures = catalog.wait_failures(hostile_binding, 2).await;
    assert!(failures.iter().all(|f| f.kind == "timeout"), "{failures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_hits_the_memory_limit() {
    let failure = contained("hostile_memory_bomb", common::limits()).await;
    // Touching 32 MiB page by page takes long on a loaded machine: the deadline may trip first, which contains
    // it as well. Any other kind (a trap, say) would mean the limit did not hold.
    match failure.kind.as_str() {
        "memory_limit" => assert!(failure.message.contains("its limit is 33554432 bytes"), "{}", failure.message),
        "timeout" | "fuel_exhausted" => {}
        other => panic!("the memory bomb ended as {other}: {failure:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_traps() {
    let failure = contained("hostile_deep_recursion", common::limits()).await;
    assert_eq!(failure.kind, "trap", "{failure:?}");
    assert!(failure.message.contains("hostile_deep_recursion::dive"), "names the function: {}", failure.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_reply_is_an_invalid_verdict() {
    let failure = contained("hostile_huge_reply", common::limits()).await;
    assert_eq!(failure.kind, "invalid_verdict", "{failure:?}");
    // 1,001 replies, one of 1 MiB: refused on its size before it is copied out of the guest.
    assert!(failure.message.contains("the verdict is larger than 131072 bytes"), "{}", failure.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_traps_with_its_message_and_function_names() {
    let failure = contained("hostile_trap", common::limits()).await;
    assert_eq!(failure.kind, "trap", "{failure:?}");
    assert!(failure.message.contains("deliberate panic on message"), "the panic text is shown: {}", failure.message);
    assert!(failure.message.contains("  at handle"), "the guest frames are named: {}", failure.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_no_std_plugin_is_reported_from_its_log() {
    // The SDK's `lean` runtime has no stderr: its panic handler logs the message, and the host shows that.
    let failure = contained("hostile_lean_panic", common::limits()).await;
    assert_eq!(failure.kind, "trap", "{failure:?}");
    assert!(failure.message.contains("deliberate lean panic on message"), "the panic text: {}", failure.message);
    assert!(failure.message.contains("unreachable"), "then the trap: {}", failure.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_drops_the_message_and_later_plugins_do_not_run() {
    let catalog = Arc::new(MemoryCatalog::default());
    let instance = InstanceId::new();
    let trap = binding(&catalog, "hostile_trap", 1, BindingDirection::Both, FailurePolicy::FailClosed, json!({}));
    let responder = binding(
        &catalog,
        "keyword_responder",
        2,
        BindingDirection::Both,
        FailurePolicy::FailOpen,
        json!({"rules": [{"keywords": ["ping"], "reply": "pong"}]}),
    );
    let trap_binding = trap.binding_id;
    catalog.set_chain(instance, vec![trap, responder]);
    let chain = common::host(catalog.clone()).pipeline();
    let outcome = chain.process(event(instance, Direction::Inbound, CHAT, "ping")).await;
    match outcome.disposition {
        Disposition::Drop { reason, by } => {
            assert_eq!(reason, "the plugin failed (trap) and its binding is fail-closed");
            assert_eq!(by.as_deref(), Some("hostile_trap"));
        }
        other => panic!("expected a drop, got {other:?}"),
    }
    assert!(outcome.replies.is_empty(), "the chain stopped at the failed plugin");
    assert_eq!(catalog.wait_failures(trap_binding, 1).await[0].kind, "trap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_skips_the_failed_plugin_and_runs_the_next() {
    let catalog = Arc::new(MemoryCatalog::default());
    let instance = InstanceId::new();
    let trap = binding(&catalog, "hostile_trap", 1, BindingDirection::Both, FailurePolicy::FailOpen, json!({}));
    let responder = binding(
        &catalog,
        "keyword_responder",
        2,
        BindingDirection::Both,
        FailurePolicy::FailOpen,
        json!({"rules": [{"keywords": ["ping"], "reply": "pong"}]}),
    );
    catalog.set_chain(instance, vec![trap, responder]);
    let chain = common::host(catalog.clone()).pipeline();
    let outcome = chain.process(event(instance, Direction::Inbound, CHAT, "ping")).await;
    assert!(matches!(outcome.disposition, Disposition::Deliver(_)));
    assert_eq!(outcome.replies.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_component_is_a_load_failure_under_the_policy() {
    let catalog = Arc::new(MemoryCatalog::default());
    let instance = InstanceId::new();
    let mut bound = binding(&catalog, "redactor", 1, BindingDirection::Both, FailurePolicy::FailClosed, json!({}));
    bound.sha256 = "0".repeat(64);
    let id = bound.binding_id;
    catalog.set_chain(instance, vec![bound]);
    let chain = common::host(catalog.clone()).pipeline();
    let outcome = chain.process(event(instance, Direction::Outbound, CHAT, "hi")).await;
    assert!(matches!(outcome.disposition, Disposition::Drop { .. }));
    let failure = &catalog.wait_failures(id, 1).await[0];
    assert_eq!(failure.kind, "load_failed");
    assert!(failure.message.contains("is not stored"), "{}", failure.message);
}

async fn refused(bytes: &[u8], limits: PluginLimits) -> gw_core::PluginRejection {
    let host = common::host(Arc::new(MemoryCatalog::default()));
    host.prepare(bytes, &limits).await.expect_err("the upload must be refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_refused_with_a_clear_kind() {
    let rejection = refused(b"\0asm\x0d\0\x01\0garbage", common::limits()).await;
    assert_eq!(rejection.kind, gw_core::RejectionKind::InvalidComponent, "{rejection}");
    let rejection = refused(b"definitely not wasm", common::limits()).await;
    assert_eq!(rejection.kind, gw_core::RejectionKind::InvalidComponent, "{rejection}");

    let forbidden = refused(&common::guest("hostile_forbidden_import"), common::limits()).await;
    assert_eq!(forbidden.kind, gw_core::RejectionKind::ForbiddenImport, "{forbidden}");
    assert!(forbidden.message.contains("wasi:filesystem/"), "names the import: {forbidden}");

    let oversized = vec![0u8; (common::limits().max_module_bytes + 1) as usize];
    let rejection = refused(&oversized, common::limits()).await;
    assert_eq!(rejection.kind, gw_core::RejectionKind::TooLarge, "{rejection}");
    assert!(rejection.message.contains("at most 4194304 bytes"), "{rejection}");

    // A core module (not a component) is not of the plugin world.
    let core_module = b"\0asm\x01\0\0\0";
    let rejection = refused(core_module, common::limits()).await;
    assert!(matches!(rejection.kind.as_str(), "invalid_component" | "wrong_world"), "{rejection}");

    for (name, kind) in [
        ("hostile_infinite_loop", "fuel_exhausted"),
        ("hostile_memory_bomb", "memory_limit"),
        ("hostile_trap", "trap"),
        ("hostile_huge_reply", "invalid verdict"),
    ] {
        let rejection = refused(&common::guest(name), common::limits()).await;
        assert_eq!(rejection.kind, gw_core::RejectionKind::SmokeTestFailed, "{name}: {rejection}");
        assert!(rejection.message.contains(kind), "{name}: {rejection}");
    }
}

/// A chain of one `hostile_contract_probe` binding under `policy` on a fresh instance.
fn probe(policy: FailurePolicy) -> (Arc<MemoryCatalog>, InstanceId, gw_core::PluginBindingId) {
    let catalog = Arc::new(MemoryCatalog::default());
    let instance = InstanceId::new();
    let bound = binding(&catalog, "hostile_contract_probe", 1, BindingDirection::Both, policy, json!({}));
    let id = bound.binding_id;
    catalog.set_chain(instance, vec![bound]);
    (catalog, instance, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_the_send_paths_text_limit_is_an_error_on_the_binding_under_its_policy() {
    // The limit is the send path's own (gw-core's `MAX_TEXT_CHARS`): a longer reply fails here, visibly, instead of
    // being accepted by the chain and then dropped by the send path with only a server log line.
    assert_eq!(gw_plugins::MAX_REPLY_CHARS, gw_core::MAX_TEXT_CHARS);
    let (catalog, instance, id) = probe(FailurePolicy::FailOpen);
    let chain = common::host(catalog.clone()).pipeline();
    let outcome = chain.process(event(instance, Direction::Inbound, CHAT, "reply 5000")).await;
    assert!(outcome.replies.is_empty(), "the reply is not sent");
    assert!(
        matches!(&outcome.disposition, Disposition::Deliver(e) if e.text.as_deref() == Some("reply 5000")),
        "fail-open: the message itself goes on: {outcome:?}"
    );
    let failure = catalog.wait_failures(id, 1).await.remove(0);
    assert_eq!(failure.kind, "invalid_verdict", "{failure:?}");
    assert!(failure.message.contains("reply 1: 5000 characters; at most 4096"), "{}", failure.message);

    // At the limit, the reply is sent.
    let at_limit = chain.process(event(instance, Direction::Inbound, CHAT, "reply 4096")).await;
    assert_eq!(at_limit.replies.len(), 1, "{at_limit:?}");
    assert_eq!(at_limit.replies[0].text.chars().count(), gw_core::MAX_TEXT_CHARS);
    assert_eq!(at_limit.replies[0].binding_id, Some(id), "a reply names its binding, for the send path's errors");

    // Fail-closed: the message is dropped too.
    let (catalog, instance, id) = probe(FailurePolicy::FailClosed);
    let chain = common::host(catalog.clone()).pipeline();
    let outcome = chain.process(event(instance, Direction::Inbound, CHAT, "reply 5000")).await;
    assert!(outcome.replies.is_empty());
    assert!(matches!(outcome.disposition, Disposition::Drop { .. }), "fail-closed drops it: {outcome:?}");
    assert_eq!(catalog.wait_failures(id, 1).await[0].kind, "invalid_verdict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_set_past_a_limit_returns_err_to_the_plugin_instead_of_failing_the_call() {
    let (catalog, instance, id) = probe(FailurePolicy::FailClosed);
    // The store refuses a third key (as the real store does past `PLUGIN_KV_MAX_KEYS`; its contract suite checks
    // that the store catalog reports that as a refusal).
    catalog.max_keys.store(2, std::sync::atomic::Ordering::SeqCst);
    let chain = common::host(catalog.clone()).pipeline();
    let outcome = chain.process(event(instance, Direction::Inbound, CHAT, "kv 3")).await;
    assert!(matches!(outcome.disposition, Disposition::Deliver(_)), "the call did not fail: {outcome:?}");
    assert_eq!(outcome.replies.len(), 1, "{outcome:?}");
    assert_eq!(
        outcome.replies[0].text,
        "key=err(key longer than 256 bytes) value=err(value of 4097 bytes; at most 4096 allowed) \
         fill=[ok,ok,err(keys limit reached (at most 2))]"
    );
    assert!(catalog.failures_of(id).is_empty(), "nothing is recorded as a failure: {:?}", catalog.failures_of(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_calling_exit_is_a_trap_with_a_clean_message() {
    let (catalog, instance, id) = probe(FailurePolicy::FailOpen);
    let chain = common::host(catalog.clone()).pipeline();
    // WASI 0.2's `exit` carries success or failure only: `exit(3)` reaches the host as a failure, code 1.
    chain.process(event(instance, Direction::Inbound, CHAT, "exit 3")).await;
    let failure = catalog.wait_failures(id, 1).await.remove(0);
    assert_eq!(failure.kind, "trap", "{failure:?}");
    assert_eq!(failure.message, "trapped: the plugin called exit(1) instead of returning a verdict");
    // A successful exit is no verdict either.
    chain.process(event(instance, Direction::Inbound, CHAT, "exit 0")).await;
    let failure = catalog.wait_failures(id, 2).await.remove(1);
    assert_eq!(failure.message, "trapped: the plugin called exit(0) instead of returning a verdict");
}
