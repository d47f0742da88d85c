//! The gateway's storage contract: one trait per aggregate, the commands they take, and [`StoreError`].
//!
//! Architecture invariant: this crate names no SQL driver. Backends (`gw-store-sql`) implement the traits; the rest
//! of the gateway holds an `Arc<dyn Store>` and never knows which database it talks to. The behaviour every backend
//! must show is written once, in the contract suite behind the `testing` feature.
//!
//! Methods say intent (`reserve_instance_slot`, not `update_subscription_counter`). Methods that carry out a
//! tenant's or operator's action take an [`Actor`] and write the audit log row in the same transaction as the change.

mod cluster;
mod commands;
mod error;
mod fanout;
mod messages;
mod page;
mod plugins;
mod traits;
mod webhooks;
mod whatsapp;

#[cfg(feature = "testing")]
mod cluster_contract;
#[cfg(feature = "testing")]
pub mod contract;
#[cfg(feature = "testing")]
mod outbox_contract;

pub use cluster::{
    ClusterNode, ClusterStore, CommandOutcome, HeldLease, InstanceCommand, InstanceCommandKind, NodeAnnouncement,
    OwnerEpoch, WakeReceiver,
};
pub use commands::*;
pub use error::{Limit, StoreError, StoreResult, UniqueKey};
pub use fanout::{FanoutListener, Heard, NodeFanout};
pub use messages::{Enqueued, MessageStore, NewInboundMessage, NewOutboundMessage, QueuedMessage, RecordedInbound};
pub use page::{Cursor, CursorError, Page, PageRequest};
pub use plugins::{
    NewPlugin, NewPluginBinding, NewPluginVersion, PLUGIN_KV_MAX_KEY_BYTES, PLUGIN_KV_MAX_KEYS,
    PLUGIN_KV_MAX_VALUE_BYTES, PLUGIN_LOG_KEEP, Plugin, PluginBinding, PluginBindingPatch, PluginChainLink,
    PluginLimitsFn, PluginLogEntry, PluginStore, PluginVersion, StoreCatalog,
};
pub use traits::*;
pub use webhooks::{
    ClaimedDelivery, CompletionReport, DeliveryCompletion, DeliveryStatus, DisabledEndpoint, NewWebhookEvent, NextStep,
    RESPONSE_EXCERPT_MAX, WebhookAttempt, WebhookDelivery, WebhookDeliveryStore,
};
pub use whatsapp::{WaStateRecord, WaStateWrite, WhatsAppStateStore};
