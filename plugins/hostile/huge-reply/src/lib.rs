//! Hostile: asks the host to send far more than any chat should get (many replies, one of them 1 MiB). The host
//! must refuse the verdict as invalid rather than send it.
use gateway_plugin_sdk::{Event, Plugin, Verdict, export_plugin};

struct Flood;

impl Plugin for Flood {
    fn handle(_event: Event) -> Verdict {
        let mut verdict = Verdict::reply("x".repeat(1 << 20));
        for i in 0..1000 {
            verdict = verdict.with_reply(format!("spam {i}"));
        }
        verdict
    }
}

export_plugin!(Flood);
