//! Hostile, on the SDK's `lean` runtime: panics. A `#![no_std]` plugin has no stderr; its panic handler logs the
//! message (which the host puts in the failure) and traps.
#![no_std]

use gateway_plugin_sdk::{Event, Plugin, Verdict, export_plugin};

struct Panic;

impl Plugin for Panic {
    fn handle(event: Event) -> Verdict {
        panic!("deliberate lean panic on message {}", event.message_id);
    }
}

export_plugin!(Panic);
