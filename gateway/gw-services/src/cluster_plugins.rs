//! The plugin runtime as a cluster of nodes sees it: a change to an instance's bindings or active versions
//! invalidates its chain on this node at once and, through a [`ChainInvalidationPublisher`], on every other node,
//! so no node keeps running an old version for the chain cache's TTL.
//!
//! What travels is a [`ChainInvalidation`]; how it travels (Redis publish/subscribe) is the binary's wiring, so
//! this crate stays free of Redis.

use std::sync::Arc;

use gw_core::{InstanceId, PluginLimits, PluginRejection, PluginRuntime, PreparedComponent};

/// Which chains every node must load afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainInvalidation {
    Instance(InstanceId),
    /// Every chain: after a change that may touch many instances, or after a gap in the subscription.
    All,
}

/// The wire form of [`ChainInvalidation::All`]; an instance travels as its id.
const ALL_INSTANCES: &str = "all";

impl ChainInvalidation {
    pub fn encode(&self) -> String {
        match self {
            ChainInvalidation::Instance(instance) => instance.to_string(),
            ChainInvalidation::All => ALL_INSTANCES.to_owned(),
        }
    }

    pub fn decode(raw: &str) -> Option<Self> {
        if raw == ALL_INSTANCES {
            return Some(ChainInvalidation::All);
        }
        raw.parse().ok().map(ChainInvalidation::Instance)
    }

    /// Drops the named chains from `runtime` (this node's own, not published again).
    pub fn apply(&self, runtime: &dyn PluginRuntime) {
        match self {
            ChainInvalidation::Instance(instance) => runtime.invalidate(*instance),
            ChainInvalidation::All => runtime.invalidate_all(),
        }
    }
}

/// Tells the other nodes which chains to drop. It must not block: the binary publishes in the background, and a
/// lost message is bounded by the chain cache's TTL.
pub trait ChainInvalidationPublisher: Send + Sync + std::fmt::Debug {
    fn publish(&self, invalidation: ChainInvalidation);
}

/// `local` behind a publisher: invalidations take effect here and are published for the other nodes.
#[derive(Debug)]
pub struct ClusterPlugins {
    local: Arc<dyn PluginRuntime>,
    publisher: Arc<dyn ChainInvalidationPublisher>,
}

impl ClusterPlugins {
    pub fn new(local: Arc<dyn PluginRuntime>, publisher: Arc<dyn ChainInvalidationPublisher>) -> Self {
        Self { local, publisher }
    }
}

#[async_trait::async_trait]
impl PluginRuntime for ClusterPlugins {
    async fn prepare(&self, bytes: &[u8], limits: &PluginLimits) -> Result<PreparedComponent, PluginRejection> {
        self.local.prepare(bytes, limits).await
    }

    fn invalidate(&self, instance: InstanceId) {
        self.local.invalidate(instance);
        self.publisher.publish(ChainInvalidation::Instance(instance));
    }

    fn invalidate_all(&self) {
        self.local.invalidate_all();
        self.publisher.publish(ChainInvalidation::All);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidations_round_trip_and_garbage_is_refused() {
        let instance = InstanceId::new();
        for invalidation in [ChainInvalidation::Instance(instance), ChainInvalidation::All] {
            assert_eq!(ChainInvalidation::decode(&invalidation.encode()), Some(invalidation));
        }
        assert_eq!(ChainInvalidation::decode("not an instance id"), None);
        assert_eq!(ChainInvalidation::decode(""), None);
    }
}
