//! Hostile: panics. With `panic = "abort"` the panic message goes to stderr (which the host captures) and the
//! instance traps.
use gateway_plugin_sdk::{Event, Plugin, Verdict, export_plugin};

struct Panic;

impl Plugin for Panic {
    fn handle(event: Event) -> Verdict {
        panic!("deliberate panic on message {}", event.message_id);
    }
}

export_plugin!(Panic);
