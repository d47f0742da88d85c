//! The benchmark filter of `bench-filter` as a `#![no_std]` plugin: the very same logic and glue (its `logic.rs`
//! and `plugin.rs`), built on the SDK's `lean` runtime, so the component imports only the plugin world.
#![no_std]

extern crate alloc;

#[path = "../../bench-filter/src/logic.rs"]
mod logic;

include!("../../bench-filter/src/plugin.rs");
