//! Hostile: never returns. The host must stop it by fuel or by its epoch deadline.
use gateway_plugin_sdk::{Event, Plugin, Verdict, export_plugin};

struct Spin;

impl Plugin for Spin {
    fn handle(event: Event) -> Verdict {
        let mut n: u64 = event.text.map_or(0, |t| t.len() as u64);
        loop {
            n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

export_plugin!(Spin);
