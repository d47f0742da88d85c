//! Write a gateway plugin in Rust.
//!
//! A plugin is a WebAssembly component of the `gateway:plugin/plugin` world (`wit/plugin.wit`): the host hands it
//! one [`Event`] per message and it returns a [`Verdict`]. Implement [`Plugin`] and export it:
//!
//! ```ignore
//! use gateway_plugin_sdk::{export_plugin, Event, Plugin, Verdict};
//!
//! struct Shout;
//! impl Plugin for Shout {
//!     fn handle(event: Event) -> Verdict {
//!         match event.text {
//!             Some(text) => Verdict::modify(text.to_uppercase()),
//!             None => Verdict::pass(),
//!         }
//!     }
//! }
//! export_plugin!(Shout);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` in `target/wasm32-wasip2/release/` is
//! the component to upload. Run it locally with `gateway plugin run <file.wasm> --event event.json`.
//!
//! The SDK itself needs only `core` and `alloc`. A `#![no_std]` plugin turns on the `lean` feature (and leaves
//! out `json`) to get an allocator and a panic handler; see the crate's README.

#![no_std]

extern crate alloc;

use alloc::{string::String, vec::Vec};

#[cfg(feature = "lean")]
mod lean;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_gateway_plugin",
        default_bindings_module: "gateway_plugin_sdk::bindings",
    });
}

use bindings::gateway::plugin::types;

pub use types::{Action, Direction, Media, MessageEvent as Event, Origin, Reply, Verdict};

/// What a plugin implements: one call per message event, a fresh instance each time (so keep state in [`kv`],
/// not in statics).
pub trait Plugin {
    fn handle(event: Event) -> Verdict;
}

impl Verdict {
    /// Let the message go on unchanged.
    pub fn pass() -> Self {
        Self { action: Action::Continue, replies: Vec::new() }
    }

    /// Do not deliver the message; `reason` is recorded.
    pub fn drop(reason: impl Into<String>) -> Self {
        Self { action: Action::Drop(reason.into()), replies: Vec::new() }
    }

    /// Let the message go on with `text` as its text (or caption).
    pub fn modify(text: impl Into<String>) -> Self {
        Self { action: Action::Modify(text.into()), replies: Vec::new() }
    }

    /// Pass the message on and send `text` to its chat.
    pub fn reply(text: impl Into<String>) -> Self {
        Self::pass().with_reply(text)
    }

    /// Also send `text` to the event's chat (through the same outbound path, limits and quota as an API send). A
    /// reply is a text message: 1 to 4,096 characters, not blank; at most 5 per verdict (see the README's limits).
    pub fn with_reply(mut self, text: impl Into<String>) -> Self {
        self.replies.push(Reply { text: text.into() });
        self
    }
}

impl Event {
    /// The text or caption, or `""`.
    pub fn text_or_empty(&self) -> &str {
        self.text.as_deref().unwrap_or("")
    }

    pub fn is_inbound(&self) -> bool {
        self.direction == Direction::Inbound
    }

    pub fn is_outbound(&self) -> bool {
        self.direction == Direction::Outbound
    }
}

/// Structured logging, captured by the host (bounded per call and rate-limited per binding).
pub mod log {
    use crate::bindings::gateway::plugin::log::{Level, write};

    pub fn trace(message: &str) {
        write(Level::Trace, message);
    }
    pub fn debug(message: &str) {
        write(Level::Debug, message);
    }
    pub fn info(message: &str) {
        write(Level::Info, message);
    }
    pub fn warn(message: &str) {
        write(Level::Warn, message);
    }
    pub fn error(message: &str) {
        write(Level::Error, message);
    }
}

/// The plugin's private key-value store on this instance (the host limits key and value sizes and key count).
pub mod kv {
    use crate::bindings::gateway::plugin::kv;
    use alloc::{string::String, vec::Vec};

    pub fn get(key: &str) -> Option<Vec<u8>> {
        kv::get(key)
    }

    pub fn get_string(key: &str) -> Option<String> {
        kv::get(key).and_then(|bytes| String::from_utf8(bytes).ok())
    }

    /// `Err(reason)` when the write would break a limit (key over 256 bytes, value over 4,096 bytes, 1,000 keys,
    /// 16 writes per call); the plugin goes on.
    pub fn set(key: &str, value: &[u8]) -> Result<(), String> {
        kv::set(key, value)
    }

    pub fn set_string(key: &str, value: &str) -> Result<(), String> {
        kv::set(key, value.as_bytes())
    }

    pub fn delete(key: &str) {
        kv::delete(key)
    }
}

/// The binding's config, read-only.
pub mod config {
    use alloc::string::String;

    /// The raw config JSON (`{}` when the binding has none).
    pub fn raw() -> String {
        crate::bindings::gateway::plugin::config::get()
    }

    /// The config parsed into `T`.
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>() -> Result<T, String> {
        serde_json::from_str(&raw()).map_err(|e| alloc::format!("invalid config: {e}"))
    }
}

/// The only clock a plugin sees (the host's; tests may fix it).
pub mod clock {
    /// Unix milliseconds.
    pub fn now_ms() -> i64 {
        crate::bindings::gateway::plugin::clock::now()
    }
}

#[cfg(feature = "json")]
#[doc(hidden)]
pub use serde;

/// Export a [`Plugin`] implementation as the component's `handle` function.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __GatewayPluginExport;

        impl $crate::bindings::Guest for __GatewayPluginExport {
            fn handle(event: $crate::Event) -> $crate::Verdict {
                <$plugin as $crate::Plugin>::handle(event)
            }
        }

        $crate::bindings::__export_gateway_plugin!(__GatewayPluginExport with_types_in $crate::bindings);
    };
}
