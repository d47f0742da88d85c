//! Tiers and their default limits. A subscription takes its tier's defaults and may override any of them.

use gw_core::{LimitOverrides, Tier};
use serde::{Deserialize, Serialize};

/// Every limit a tier sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    pub max_instances: i32,
    pub monthly_messages: i64,
    /// Default requests per minute of an API key.
    pub api_rate_limit_per_minute: i32,
    /// Requests per minute of all the subscription's API keys together, enforced as well as each key's own.
    pub requests_per_minute: i32,
    pub plugin_max_count: i32,
    pub plugin_max_module_bytes: i64,
    pub plugin_fuel: i64,
    pub plugin_memory_bytes: i64,
}

impl TierLimits {
    /// These limits with a subscription's overrides applied.
    pub fn with_overrides(&self, overrides: &LimitOverrides) -> TierLimits {
        TierLimits {
            max_instances: overrides.max_instances.unwrap_or(self.max_instances),
            monthly_messages: overrides.monthly_messages.unwrap_or(self.monthly_messages),
            api_rate_limit_per_minute: overrides.api_rate_limit_per_minute.unwrap_or(self.api_rate_limit_per_minute),
            requests_per_minute: overrides.requests_per_minute.unwrap_or(self.requests_per_minute),
            plugin_max_count: overrides.plugin_max_count.unwrap_or(self.plugin_max_count),
            plugin_max_module_bytes: overrides.plugin_max_module_bytes.unwrap_or(self.plugin_max_module_bytes),
            plugin_fuel: overrides.plugin_fuel.unwrap_or(self.plugin_fuel),
            plugin_memory_bytes: overrides.plugin_memory_bytes.unwrap_or(self.plugin_memory_bytes),
        }
    }

    /// What one plugin call of this subscription runs under; `timeout_ms` is the deployment's per-call deadline.
    pub fn plugin_limits(&self, timeout_ms: u32) -> gw_core::PluginLimits {
        gw_core::PluginLimits {
            fuel: u64::try_from(self.plugin_fuel).unwrap_or(0),
            memory_bytes: u64::try_from(self.plugin_memory_bytes).unwrap_or(0),
            timeout_ms,
            max_module_bytes: u64::try_from(self.plugin_max_module_bytes).unwrap_or(0),
        }
    }

    /// The first limit that is negative (or zero where zero makes no sense), or beyond what the host can honour, by
    /// name.
    pub fn invalid_field(&self) -> Option<&'static str> {
        [
            ("max_instances", self.max_instances >= 0),
            ("monthly_messages", self.monthly_messages >= 0),
            ("api_rate_limit_per_minute", self.api_rate_limit_per_minute > 0),
            ("requests_per_minute", self.requests_per_minute > 0),
            ("plugin_max_count", self.plugin_max_count >= 0),
            ("plugin_max_module_bytes", (1..=MAX_PLUGIN_MODULE_BYTES).contains(&self.plugin_max_module_bytes)),
            ("plugin_fuel", self.plugin_fuel > 0),
            ("plugin_memory_bytes", (1..=MAX_PLUGIN_MEMORY_BYTES).contains(&self.plugin_memory_bytes)),
        ]
        .into_iter()
        .find_map(|(name, ok)| (!ok).then_some(name))
    }
}

const MIB: i64 = 1024 * 1024;

/// A 32-bit WebAssembly guest cannot address more.
pub const MAX_PLUGIN_MEMORY_BYTES: i64 = 4 * 1024 * MIB;
/// The largest upload the edge reads at all.
pub const MAX_PLUGIN_MODULE_BYTES: i64 = 64 * MIB;

/// The default limits of every tier; configurable per deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierCatalog {
    pub free: TierLimits,
    pub starter: TierLimits,
    pub pro: TierLimits,
    pub enterprise: TierLimits,
}

impl Default for TierCatalog {
    fn default() -> Self {
        Self {
            free: TierLimits {
                max_instances: 1,
                monthly_messages: 1_000,
                api_rate_limit_per_minute: 60,
                requests_per_minute: 120,
                plugin_max_count: 1,
                plugin_max_module_bytes: MIB,
                plugin_fuel: 1_000_000,
                plugin_memory_bytes: 16 * MIB,
            },
            starter: TierLimits {
                max_instances: 3,
                monthly_messages: 20_000,
                api_rate_limit_per_minute: 300,
                requests_per_minute: 600,
                plugin_max_count: 5,
                plugin_max_module_bytes: 2 * MIB,
                plugin_fuel: 5_000_000,
                plugin_memory_bytes: 32 * MIB,
            },
            pro: TierLimits {
                max_instances: 20,
                monthly_messages: 250_000,
                api_rate_limit_per_minute: 1_200,
                requests_per_minute: 2_400,
                plugin_max_count: 20,
                // Admits a JavaScript plugin (componentize-js: about 12 MB, the engine included); see the plugins guide.
                plugin_max_module_bytes: 16 * MIB,
                plugin_fuel: 10_000_000,
                plugin_memory_bytes: 64 * MIB,
            },
            enterprise: TierLimits {
                max_instances: 200,
                monthly_messages: 5_000_000,
                api_rate_limit_per_minute: 6_000,
                requests_per_minute: 12_000,
                plugin_max_count: 50,
                // Admits a Python plugin too (componentize-py: about 18 MB, CPython included).
                plugin_max_module_bytes: 32 * MIB,
                plugin_fuel: 50_000_000,
                plugin_memory_bytes: 128 * MIB,
            },
        }
    }
}

impl TierCatalog {
    pub fn limits(&self, tier: Tier) -> &TierLimits {
        match tier {
            Tier::Free => &self.free,
            Tier::Starter => &self.starter,
            Tier::Pro => &self.pro,
            Tier::Enterprise => &self.enterprise,
        }
    }

    /// The first tier with an invalid limit, as `tier.field`.
    pub fn invalid_field(&self) -> Option<String> {
        Tier::ALL.iter().find_map(|tier| self.limits(*tier).invalid_field().map(|field| format!("{tier}.{field}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_name() {
        let catalog = TierCatalog::default();
        let overrides = LimitOverrides { max_instances: Some(7), plugin_fuel: Some(42), ..Default::default() };
        let effective = catalog.limits(Tier::Starter).with_overrides(&overrides);
        assert_eq!((effective.max_instances, effective.plugin_fuel), (7, 42));
        assert_eq!(effective.monthly_messages, catalog.starter.monthly_messages);
    }

    #[test]
    fn defaults_are_valid_and_bad_limits_are_named() {
        assert_eq!(TierCatalog::default().invalid_field(), None);
        let mut catalog = TierCatalog::default();
        catalog.pro.api_rate_limit_per_minute = 0;
        assert_eq!(catalog.invalid_field().as_deref(), Some("pro.api_rate_limit_per_minute"));
        let mut catalog = TierCatalog::default();
        catalog.free.plugin_memory_bytes = i64::MAX;
        assert_eq!(catalog.invalid_field().as_deref(), Some("free.plugin_memory_bytes"), "beyond a 32-bit guest");
        catalog.free.plugin_memory_bytes = MAX_PLUGIN_MEMORY_BYTES;
        catalog.free.plugin_max_module_bytes = MAX_PLUGIN_MODULE_BYTES + 1;
        assert_eq!(catalog.invalid_field().as_deref(), Some("free.plugin_max_module_bytes"));
    }
}
