//! Hostile: unbounded recursion. Either the wasm call stack or the shadow stack in linear memory runs out; the
//! host must report a trap and stay up.
use gateway_plugin_sdk::{Event, Plugin, Verdict, export_plugin};

#[inline(never)]
#[allow(unconditional_recursion)] // the point of this plugin
fn dive(depth: u64, pad: [u64; 16]) -> u64 {
    let pad = std::hint::black_box(pad);
    std::hint::black_box(dive(depth + 1, pad)) + pad[(depth % 16) as usize]
}

struct Recurse;

impl Plugin for Recurse {
    fn handle(_event: Event) -> Verdict {
        let n = dive(0, [7; 16]);
        Verdict::modify(n.to_string())
    }
}

export_plugin!(Recurse);
