//! A small spam/link filter for the host's chain benchmark.

extern crate alloc;

mod logic;

include!("plugin.rs");
