//! Plugins written in JavaScript (componentize-js) and Python (componentize-py), built from source by the SDKs'
//! scripts (gw-test-support's `polyglot` module), run through the same host as the Rust guests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use gw_core::PluginLimits;
use gw_plugins::{CallInput, CallOutput, Compiled, KvBackend, PluginHost, WitAction, WitDirection, sample_event};
use gw_test_support::polyglot::{self, Language};
use serde_json::json;

/// What a JavaScript or Python guest runs under here: the limits of the tiers that admit them (see the plugins
/// guide); the interpreters use far more fuel and memory than a Rust guest.
fn limits() -> PluginLimits {
    PluginLimits { fuel: 50_000_000, memory_bytes: 64 << 20, timeout_ms: 2_000, max_module_bytes: 32 << 20 }
}

fn load(host: &PluginHost, language: Language, name: &str) -> Option<std::sync::Arc<Compiled>> {
    let path = polyglot::guest(language, name)?;
    let bytes = std::fs::read(&path).unwrap();
    let started = Instant::now();
    let compiled = host.load(&bytes).unwrap_or_else(|e| panic!("{language:?} {name}: {e}"));
    eprintln!("{language:?} {name}: {} bytes, ready in {:?}", bytes.len(), started.elapsed());
    Some(compiled)
}

async fn call(host: &PluginHost, compiled: &Compiled, direction: WitDirection, text: &str, config: &str) -> CallOutput {
    let mut event = sample_event(config);
    event.direction = direction;
    event.text = Some(text.into());
    host.call(compiled, &CallInput::new(event, limits(), KvBackend::memory())).await
}

fn replies(output: &CallOutput) -> Vec<String> {
    let verdict = output.result.as_ref().unwrap_or_else(|e| panic!("the call failed: {e}"));
    assert!(matches!(verdict.action, WitAction::Continue), "the message itself passes");
    verdict.replies.iter().map(|reply| reply.text.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_and_python_keyword_responders_answer_like_the_rust_one() {
    let host = common::host(std::sync::Arc::default());
    let config = json!({"rules": [
        {"keywords": ["price", "cost"], "reply": "Our prices are on example.com/prices"},
        {"keywords": ["hours"], "reply": "We open at nine", "match": "contains"}
    ]})
    .to_string();
    let rust = host.load(&common::guest("keyword_responder")).unwrap();
    for language in [Language::JavaScript, Language::Python] {
        let Some(compiled) = load(&host, language, "keyword-responder") else { continue };
        // Built with every WASI feature disabled or stubbed: the component imports the plugin world only.
        assert!(
            compiled.imports.iter().all(|name| name.starts_with("gateway:plugin/")),
            "{language:?}: {:?}",
            compiled.imports
        );
        for (direction, text) in [
            (WitDirection::Inbound, "What is the PRICE?"),
            (WitDirection::Inbound, "priceless"),
            (WitDirection::Inbound, "opening hours?"),
            (WitDirection::Inbound, "¿Cuál es el price, señor?"),
            (WitDirection::Outbound, "the price is 5"),
        ] {
            let ported = call(&host, &compiled, direction, text, &config).await;
            let original = call(&host, &rust, direction, text, &config).await;
            assert_eq!(replies(&ported), replies(&original), "{language:?} on {text:?}");
            eprintln!("{language:?} {text:?}: fuel {} (Rust: {})", ported.fuel_used, original.fuel_used);
        }
        let asked = call(&host, &compiled, WitDirection::Inbound, "What is the PRICE?", &config).await;
        assert_eq!(replies(&asked), ["Our prices are on example.com/prices"]);
        assert_eq!(
            asked.logs.iter().map(|l| (l.level, l.message.as_str())).collect::<Vec<_>>(),
            [("info", "matched 1 rule(s)")]
        );
        let broken = call(&host, &compiled, WitDirection::Inbound, "price", "not json").await;
        assert!(replies(&broken).is_empty(), "a broken config passes the message");
        assert_eq!(broken.logs[0].level, "error", "{:?}", broken.logs);
    }
}

/// A JavaScript plugin sees time only through the world's `clock`: the engine's `Date` is the one frozen into
/// the component when it was built, `performance.now()` and `fetch` trap, and Node's `process`/`require` (files,
/// environment) do not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_plugin_sees_no_real_clock_no_network_and_no_files() {
    let host = common::host(std::sync::Arc::default());
    let Some(probe) = load(&host, Language::JavaScript, "sandbox-probe") else { return };
    // Taken after the load: on a fresh checkout the load builds the component, and `Date.now()` is that build's moment.
    let started_ms =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap();
    assert!(probe.imports.iter().all(|name| name.starts_with("gateway:plugin/")), "{:?}", probe.imports);
    let run = async |what: &str| {
        let output = call(&host, &probe, WitDirection::Inbound, "hi", &json!({"probe": what}).to_string()).await;
        output.result.map(|verdict| {
            let text = verdict.replies[0].text.clone();
            text.strip_prefix(&format!("{what}=")).unwrap_or_else(|| panic!("{text}")).to_owned()
        })
    };

    // The world's clock is the host's (the tests' host uses the system clock).
    let clock: i64 = run("clock").await.unwrap().parse().unwrap();
    assert!(clock >= started_ms, "clock.now() is the host's clock: {clock} < {started_ms}");
    // `Date.now()` is the build's moment, the same on every call, before this test began.
    let first: i64 = run("date").await.unwrap().parse().unwrap();
    let later = run("date").await.unwrap().parse::<i64>().unwrap();
    let clock_after: i64 = run("clock").await.unwrap().parse().unwrap();
    assert_eq!(first, later, "Date.now() does not move");
    assert!(first < started_ms && clock_after >= started_ms, "Date.now() {first} is not the real time");

    for trapping in ["performance", "fetch"] {
        let error = run(trapping).await.expect_err(trapping);
        assert_eq!(error.kind(), "trap", "{trapping}: {error}");
    }
    assert_eq!(run("process").await.unwrap(), "undefined");
    assert_eq!(run("require").await.unwrap(), "undefined");
    // Randomness is the seed baked in at build time: every event (a fresh instance) draws the same number.
    assert_eq!(run("random").await.unwrap(), run("random").await.unwrap());
}

/// A Python plugin built with `--stub-wasi` reaches WASI only through stubs that trap: Python's clock, the OS's
/// randomness, files and sockets fail (a trap, or an exception where Python refuses first); the world's clock
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_reaches_no_clock_no_randomness_no_files_and_no_sockets() {
    let host = common::host(std::sync::Arc::default());
    let Some(probe) = load(&host, Language::Python, "sandbox-probe") else { return };
    assert!(probe.imports.iter().all(|name| name.starts_with("gateway:plugin/")), "{:?}", probe.imports);
    let run = async |what: &str| {
        let output = call(&host, &probe, WitDirection::Inbound, "hi", &json!({"probe": what}).to_string()).await;
        output.result.map(|verdict| verdict.replies[0].text.clone())
    };
    let clock = run("clock").await.unwrap();
    assert!(clock.strip_prefix("clock=").and_then(|ms| ms.parse::<i64>().ok()).is_some_and(|ms| ms > 0), "{clock}");
    for denied in ["time", "urandom", "open", "socket"] {
        // Either the stub traps, or Python refuses before reaching it (an exception the probe caught).
        match run(denied).await {
            Err(error) => assert_eq!(error.kind(), "trap", "{denied}: {error}"),
            Ok(text) => assert!(text.starts_with(&format!("{denied}=raised ")), "{denied} got through: {text}"),
        }
    }
    // `random` replays the seed baked in at build time.
    assert_eq!(run("random").await.unwrap(), run("random").await.unwrap());
}
