//! Hostile: reads a file, so the component imports `wasi:filesystem`, which the plugin world does not offer. The
//! host must refuse it at upload (`forbidden_import`).
use gateway_plugin_sdk::{Event, Plugin, Verdict, export_plugin};

struct Snoop;

impl Plugin for Snoop {
    fn handle(_event: Event) -> Verdict {
        match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => Verdict::reply(text),
            Err(_) => Verdict::pass(),
        }
    }
}

export_plugin!(Snoop);
