//! Domain types of the gateway: typed ids, timestamps, the entities of the data model, their enums and value
//! objects.
//!
//! Architecture invariant: this crate does no I/O and knows no storage, HTTP or WebAssembly types. Every other
//! crate speaks in these types; the edge and the store translate them to JSON and SQL at their own borders.

mod content;
mod contract;
mod entities;
mod enums;
mod events;
mod id;
mod meter;
mod per_thread;
mod pipeline;
mod plugins;
mod public;
mod time;
mod values;

pub use content::{ContactCard, InboundContent, Location, MessageContent, OutboundContent, Reaction};
pub use contract::{
    MAX_CAPTION_CHARS, MAX_TEXT_CHARS, PLUGIN_FAILURE_KINDS, PLUGIN_KV_MAX_KEY_BYTES, PLUGIN_KV_MAX_KEYS,
    PLUGIN_KV_MAX_VALUE_BYTES, PLUGIN_KV_MAX_WRITES_PER_CALL, PLUGIN_MAX_DROP_REASON_BYTES, PLUGIN_MAX_LOG_LINE_BYTES,
    PLUGIN_MAX_LOG_LINES_PER_CALL, PLUGIN_MAX_REPLIES, PLUGIN_MAX_REPLY_CHARS, REPLY_REFUSED_KIND, TextRefused,
    check_modified_text, check_text_body,
};
pub use entities::{
    ApiKey, AuditLogEntry, Contact, Instance, LimitOverrides, Message, MessageStat, RefreshToken, SessionData,
    Subscription, UsageRecord, User, WebhookConfig,
};
pub use enums::{
    AuditAction, AuditResource, Direction, DriverKind, EventSelector, EventType, InstanceStatus, KeyScope, MessageKind,
    MessageStatus, ParseEnumError, RejectionKind, Tier, UsageRecordType, UserRole,
};
pub use events::{EventSink, EventSinkError, GatewayEvent};
pub use id::{
    ApiKeyId, AuditLogId, ContactId, EventId, IdParseError, InstanceCommandId, InstanceId, MessageId, MessageStatId,
    NodeId, PluginBindingId, PluginId, PluginVersionId, RefreshTokenId, SessionDataId, SubscriptionId, TokenFamilyId,
    UsageRecordId, UserId, WebhookConfigId, WebhookDeliveryId,
};
pub use meter::{Meter, Metered};
pub use per_thread::PerThread;
pub use pipeline::{
    Disposition, MediaInfo, MessageEvent, MessagePipeline, Origin, ParseOriginError, PassThrough, PipelineOutcome,
    Reply,
};
pub use plugins::{
    BindingDirection, BindingFailure, BoundPlugin, CatalogError, FailurePolicy, KvSetError, PluginCatalog,
    PluginLimits, PluginLogRecord, PluginRejection, PluginRuntime, PreparedComponent,
};
pub use public::{PublicMessage, Rfc3339};
pub use time::{Timestamp, UsagePeriod};
pub use values::{ApiKeyHash, Email, EmailError, PasswordHash, Redacted};
