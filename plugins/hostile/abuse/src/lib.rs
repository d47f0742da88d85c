//! Hostile: passes the upload smoke test and misbehaves only on a trigger in the message text, as a malicious
//! tenant would (the fairness tests and the attacker benchmark use it):
//! - `spin`: calls `clock::now` in a loop, forever (only the deadline stops it).
//! - `kvspin`: calls `kv::get` in a loop, forever (host calls; little guest fuel per iteration).
//! - `kvget`: calls `kv::get` once, then passes (a test can hold the call in the catalog).
//! - `touch`: allocates 1 MiB blocks and writes every page, forever (the memory limit or fuel stops it).
//! - `log N`: writes one log line of N bytes.
//! - `modify N`: modifies the text to N characters.
//! - `replies N K`: N replies of K characters each.
//!
//! Anything else passes.
use gateway_plugin_sdk::{Event, Plugin, Verdict, clock, export_plugin, kv, log};

struct Abuse;

impl Plugin for Abuse {
    fn handle(event: Event) -> Verdict {
        let text = event.text_or_empty().trim().to_owned();
        let mut words = text.split_whitespace();
        let command = words.next().unwrap_or("");
        let mut number = || words.next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
        match command {
            "spin" => {
                let mut last = 0;
                loop {
                    last = std::hint::black_box(clock::now_ms().max(last));
                }
            }
            "kvspin" => loop {
                std::hint::black_box(kv::get("spin"));
            },
            "kvget" => {
                std::hint::black_box(kv::get("once"));
                Verdict::pass()
            }
            "touch" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut block = vec![0u8; 1 << 20];
                    for page in block.chunks_mut(4096) {
                        page[0] = 1;
                    }
                    hoard.push(std::hint::black_box(block));
                }
            }
            "log" => {
                log::info(&"x".repeat(number()));
                Verdict::pass()
            }
            "modify" => Verdict::modify("x".repeat(number())),
            "replies" => {
                let (count, chars) = (number(), number());
                let mut verdict = Verdict::pass();
                for _ in 0..count {
                    verdict = verdict.with_reply("x".repeat(chars));
                }
                verdict
            }
            _ => Verdict::pass(),
        }
    }
}

export_plugin!(Abuse);
