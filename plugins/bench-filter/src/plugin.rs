// The filter as a plugin: included by `bench-filter` (std) and `bench-filter-lean` (no_std), each with `logic`
// declared as a module, so both builds export exactly the same glue.

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
