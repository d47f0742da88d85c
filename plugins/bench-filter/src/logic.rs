//! The filter's logic, free of the SDK so the host's benchmark can run the very same code natively. It needs
//! only `core` and `alloc` (the crate that includes it declares `extern crate alloc`), so the `#![no_std]`
//! variant (`bench-filter-lean`) runs it too.

use alloc::string::String;

/// What the filter decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Pass,
    Drop(&'static str),
    Rewrite(String),
}

/// Drops obvious spam, upgrades `http://` links to `https://`, lets everything else pass.
pub fn decide(text: &str) -> Decision {
    let lower = text.to_ascii_lowercase();
    for word in ["viagra", "lottery winner", "crypto giveaway"] {
        if lower.contains(word) {
            return Decision::Drop("spam");
        }
    }
    if text.contains("http://") {
        return Decision::Rewrite(text.replace("http://", "https://"));
    }
    Decision::Pass
}
