//! Domain types of the gateway: typed ids, timestamps, the entities of the data model, their enums and value
//! objects.
//!
//! Architecture invariant: this crate does no I/O and knows no storage, HTTP or WebAssembly types. Every other
//! crate speaks in these types; the edge and the store translate them to JSON and SQL at their own borders.

mod entities;
mod enums;
mod id;
mod time;
mod values;

pub use entities::{
    ApiKey, AuditLogEntry, Contact, Instance, LimitOverrides, MessageStat, RefreshToken, SessionData, Subscription,
    UsageRecord, User, WebhookConfig,
};
pub use enums::{DriverKind, InstanceStatus, ParseEnumError, Tier, UsageRecordType, UserRole};
pub use id::{
    ApiKeyId, AuditLogId, ContactId, IdParseError, InstanceId, MessageStatId, RefreshTokenId, SessionDataId,
    SubscriptionId, TokenFamilyId, UsageRecordId, UserId, WebhookConfigId,
};
pub use time::{Timestamp, UsagePeriod};
pub use values::{ApiKeyHash, Email, EmailError, PasswordHash, Redacted};
