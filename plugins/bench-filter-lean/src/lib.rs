//! The benchmark filter of `bench-filter` as a `#![no_std]` plugin: the very same logic (its `logic.rs`), built
//! on the SDK's `lean` runtime, so the component imports only the plugin world.
#![no_std]

extern crate alloc;

#[path = "../../bench-filter/src/logic.rs"]
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
