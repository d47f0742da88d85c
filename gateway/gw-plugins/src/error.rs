//! What can go wrong with one plugin call, as a small enum callers branch on. Each variant has a stable `kind`
//! that is recorded on the binding ([`gw_core::BindingFailure`]) and shown to the tenant.

/// Why one plugin call produced no verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error("ran out of fuel (limit {limit} units)")]
    OutOfFuel { limit: u64 },
    #[error("timed out after {timeout_ms} ms")]
    Timeout { timeout_ms: u32 },
    #[error("{0}")]
    MemoryLimit(String),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("invalid verdict: {0}")]
    InvalidVerdict(String),
    #[error("could not load the component: {0}")]
    Load(String),
    #[error("host capability failed: {0}")]
    Host(String),
}

impl PluginError {
    /// The stable kind recorded on the binding.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::OutOfFuel { .. } => "fuel_exhausted",
            Self::Timeout { .. } => "timeout",
            Self::MemoryLimit(_) => "memory_limit",
            Self::Trap(_) => "trap",
            Self::InvalidVerdict(_) => "invalid_verdict",
            Self::Load(_) => "load_failed",
            Self::Host(_) => "host_error",
        }
    }
}

/// Truncates `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kinds the host records are the contract's list (gw-core), which the docs state: `reply_refused` is
    /// the send path's, every other one is the host's.
    #[test]
    fn the_host_records_exactly_the_contracts_failure_kinds() {
        let mut host_kinds: Vec<&str> = [
            PluginError::OutOfFuel { limit: 1 },
            PluginError::Timeout { timeout_ms: 1 },
            PluginError::MemoryLimit(String::new()),
            PluginError::Trap(String::new()),
            PluginError::InvalidVerdict(String::new()),
            PluginError::Load(String::new()),
            PluginError::Host(String::new()),
        ]
        .iter()
        .map(PluginError::kind)
        .collect();
        host_kinds.sort_unstable();
        let mut expected: Vec<&str> =
            gw_core::PLUGIN_FAILURE_KINDS.iter().copied().filter(|k| *k != gw_core::REPLY_REFUSED_KIND).collect();
        expected.sort_unstable();
        assert_eq!(host_kinds, expected);
    }
}
