//! Hostile: allocates until something stops it. The host's memory limit must refuse the growth.
use gateway_plugin_sdk::{Event, Plugin, Verdict, export_plugin};

struct Bomb;

impl Plugin for Bomb {
    fn handle(_event: Event) -> Verdict {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
            if hoard.len() == usize::MAX {
                break;
            }
        }
        Verdict::pass()
    }
}

export_plugin!(Bomb);
