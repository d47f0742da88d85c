//! Loops across instances and tenants: two automated parties answering each other over WhatsApp. The depth guard
//! cannot see them (each message arrives fresh from WhatsApp), so the chain bounds automated replies per chat
//! (rate and burst) and detects a ping-pong (prompt answers to automated replies, many in a row).
//!
//! WhatsApp is simulated by feeding each reply to the other instance as an inbound message from the replier.
#![allow(clippy::unwrap_used)]

mod common;

use std::{sync::Arc, time::Duration};

use common::{MemoryCatalog, binding, event_of};
use gw_core::{BindingDirection, Direction, FailurePolicy, InstanceId, MessagePipeline, SubscriptionId};
use gw_plugins::{HostSettings, PluginChain, PluginHost, ReplyGuardSettings};
use serde_json::json;

const A_JID: &str = "15550000001@s.whatsapp.net";
const B_JID: &str = "15550000002@s.whatsapp.net";

/// An auto-responder that answers "hi" with "hi": bound on two instances, it echoes forever.
fn echo(catalog: &MemoryCatalog) -> gw_core::BoundPlugin {
    binding(
        catalog,
        "keyword_responder",
        1,
        BindingDirection::Inbound,
        FailurePolicy::FailOpen,
        json!({"rules": [{"keywords": ["hi"], "reply": "hi"}]}),
    )
}

fn chain(catalog: Arc<MemoryCatalog>, reply_guard: ReplyGuardSettings) -> PluginChain {
    PluginHost::new(HostSettings { reply_guard, ..common::settings() }, catalog).unwrap().pipeline()
}

/// Plays the exchange: `a` receives "hi" from B's number, each reply goes to the other instance as an inbound
/// message, until one side stops replying (or 200 turns). Returns the replies each side sent.
async fn play(chain: &PluginChain, a: (SubscriptionId, InstanceId), b: (SubscriptionId, InstanceId)) -> (usize, usize) {
    let (mut by_a, mut by_b) = (0, 0);
    for turn in 0..200 {
        let a_turn = turn % 2 == 0;
        let ((subscription, instance), from) = if a_turn { (a, B_JID) } else { (b, A_JID) };
        let outcome = chain.process(event_of(subscription, instance, Direction::Inbound, from, "hi")).await;
        if outcome.replies.is_empty() {
            break;
        }
        *(if a_turn { &mut by_a } else { &mut by_b }) += outcome.replies.len();
    }
    (by_a, by_b)
}

fn ping_pong_only() -> ReplyGuardSettings {
    // A burst far above the exchanges, so only the ping-pong detection can end the exchange.
    ReplyGuardSettings {
        replies_per_chat_per_minute: 6_000,
        reply_burst_per_chat: 1_000,
        ping_pong_window: Duration::from_secs(60),
        ping_pong_exchanges: 8,
    }
}

async fn wait_for_log(catalog: &MemoryCatalog, binding: gw_core::PluginBindingId, needle: &str) -> String {
    common::wait_until(&format!("a log line with `{needle}`"), || {
        catalog.logs_of(binding).into_iter().find(|l| l.message.contains(needle)).map(|l| l.message)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_of_one_tenant_stop_echoing_each_other() {
    let catalog = Arc::new(MemoryCatalog::default());
    let tenant = SubscriptionId::new();
    let (a, b) = (InstanceId::new(), InstanceId::new());
    let (echo_a, echo_b) = (echo(&catalog), echo(&catalog));
    let echo_a_id = echo_a.binding_id;
    catalog.set_chain(a, vec![echo_a]);
    catalog.set_chain(b, vec![echo_b]);
    let chain = chain(catalog.clone(), ping_pong_only());

    let (by_a, by_b) = play(&chain, (tenant, a), (tenant, b)).await;
    // A's 8th prompt answer from B makes B's chat a ping-pong: A stops after 8 replies, B after its 8th.
    assert_eq!((by_a, by_b), (8, 8), "the exchange ended at the ping-pong threshold, not at 200 turns");
    let line = wait_for_log(&catalog, echo_a_id, "ping-pong").await;
    assert!(line.contains(B_JID) && line.contains("8 times in a row"), "{line}");
    assert_eq!(catalog.failures_of(echo_a_id), vec![], "a discarded reply is not a failure of the plugin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_echo_cannot_drive_another_tenants_responder() {
    let catalog = Arc::new(MemoryCatalog::default());
    let (attacker, victim) = ((SubscriptionId::new(), InstanceId::new()), (SubscriptionId::new(), InstanceId::new()));
    let echo_binding = echo(&catalog);
    let responder = binding(
        &catalog,
        "keyword_responder",
        1,
        BindingDirection::Inbound,
        FailurePolicy::FailOpen,
        json!({"rules": [{"keywords": ["hi"], "reply": "hi there, how can we help?"}]}),
    );
    let responder_id = responder.binding_id;
    catalog.set_chain(attacker.1, vec![echo_binding]);
    catalog.set_chain(victim.1, vec![responder]);
    let chain = chain(catalog.clone(), ping_pong_only());

    // The victim answers first: it is the one whose quota the loop would burn.
    let (by_victim, by_attacker) = play(&chain, victim, attacker).await;
    assert!(by_victim <= 8, "the victim's responder stopped at the threshold: {by_victim} replies");
    assert!(by_attacker <= 8, "{by_attacker}");
    wait_for_log(&catalog, responder_id, "ping-pong").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_to_one_chat_are_bounded_by_burst_and_rate() {
    let catalog = Arc::new(MemoryCatalog::default());
    let tenant = (SubscriptionId::new(), InstanceId::new());
    let responder = echo(&catalog);
    let responder_id = responder.binding_id;
    catalog.set_chain(tenant.1, vec![responder]);
    let guard = ReplyGuardSettings {
        replies_per_chat_per_minute: 1,
        reply_burst_per_chat: 3,
        ping_pong_exchanges: 0,
        ..ReplyGuardSettings::default()
    };
    let chain = chain(catalog.clone(), guard);

    let mut replied = 0;
    for _ in 0..10 {
        replied += chain.process(event_of(tenant.0, tenant.1, Direction::Inbound, B_JID, "hi")).await.replies.len();
    }
    assert_eq!(replied, 3, "the burst, then one a minute");
    let other = chain.process(event_of(tenant.0, tenant.1, Direction::Inbound, A_JID, "hi")).await;
    assert_eq!(other.replies.len(), 1, "another chat has a budget of its own");
    let line = wait_for_log(&catalog, responder_id, "limited to 1 per minute (burst 3)").await;
    assert!(line.contains(B_JID), "{line}");
}
