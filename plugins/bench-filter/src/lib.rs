//! A small spam/link filter for the host's chain benchmark.

extern crate alloc;

mod logic;

use gateway_plugin_sdk::{Event, Plugin, Verdict, export_plugin};
use logic::Decision;

struct BenchFilter;

impl Plugin for BenchFilter {
    fn handle(event: Event) -> Verdict {
        match logic::decide(event.text_or_empty()) {
            Decision::Pass => Verdict::pass(),
            Decision::Drop(reason) => Verdict::drop(reason),
            Decision::Rewrite(text) => Verdict::modify(text),
        }
    }
}

export_plugin!(BenchFilter);
