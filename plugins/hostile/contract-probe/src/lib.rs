//! Hostile: probes the edges of the plugin contract, on a trigger in the message text (anything else passes, so it
//! passes the upload smoke test):
//! - `reply N`: replies with N characters (`x`), to test the reply limit against the send path.
//! - `kv N`: sets an oversized key, an oversized value, then N fresh keys (named after the message id), and replies
//!   with what each `kv::set` returned, so a test sees whether the host returned `err` or trapped.
//! - `exit N`: calls `exit(N)` (WASI), as a careless plugin might.
use gateway_plugin_sdk::{Event, Plugin, Verdict, export_plugin, kv};

struct Probe;

/// One past the contract's limits (gw-core: 256-byte keys, 4096-byte values).
const OVERSIZED_KEY_BYTES: usize = 257;
const OVERSIZED_VALUE_BYTES: usize = 4097;

fn outcome(result: Result<(), String>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(reason) => format!("err({reason})"),
    }
}

impl Plugin for Probe {
    fn handle(event: Event) -> Verdict {
        let text = event.text_or_empty().trim().to_owned();
        let (command, argument) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        let n: usize = argument.trim().parse().unwrap_or(0);
        match command {
            "reply" => Verdict::reply("x".repeat(n)),
            "kv" => {
                let key = outcome(kv::set(&"k".repeat(OVERSIZED_KEY_BYTES), b"v"));
                let value = outcome(kv::set("big", &vec![0; OVERSIZED_VALUE_BYTES]));
                let mut fill = Vec::new();
                for i in 0..n {
                    fill.push(outcome(kv::set(&format!("{}-{i}", event.message_id), b"v")));
                }
                Verdict::reply(format!("key={key} value={value} fill=[{}]", fill.join(",")))
            }
            "exit" => std::process::exit(i32::try_from(n).unwrap_or(1)),
            _ => Verdict::pass(),
        }
    }
}

export_plugin!(Probe);
