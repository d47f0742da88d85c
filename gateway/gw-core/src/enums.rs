//! The closed sets of the data model. Each has one stable lower-case spelling, used in JSON, in SQL (where a
//! CHECK constraint holds the same list) and in configuration.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A spelling that names no member of the set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind}; expected one of: {expected}")]
pub struct ParseEnumError {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        // The document states the closed set the server parses, from the same list.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ParseEnumError {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}

string_enum!(
    /// A subscription's commercial tier; each has default limits in configuration.
    Tier, "tier" {
        Free = "free",
        Starter = "starter",
        Pro = "pro",
        Enterprise = "enterprise",
    }
);

string_enum!(
    /// What a user may do. `admin` operates the platform and belongs to no subscription; `owner` and `member`
    /// belong to one.
    UserRole, "user role" {
        Admin = "admin",
        Owner = "owner",
        Member = "member",
    }
);

string_enum!(
    /// Where an instance's connection stands.
    InstanceStatus, "instance status" {
        /// Created, never connected.
        Created = "created",
        /// Opening a connection.
        Connecting = "connecting",
        /// Waiting for the phone to scan a QR code (or enter a pairing code).
        Qr = "qr",
        /// Paired and online.
        Connected = "connected",
        /// Offline for a transient reason; the engine reconnects with backoff.
        Disconnected = "disconnected",
        /// The phone unlinked this device; needs a new pairing, never retried.
        LoggedOut = "logged_out",
        /// The same credentials connected elsewhere; not retried until restarted.
        Replaced = "replaced",
        /// WhatsApp banned the account (possibly temporarily); not retried until restarted.
        Banned = "banned",
        /// Gave up after an unrecoverable error; `last_error` says why.
        Failed = "failed",
    }
);

string_enum!(
    /// Which driver speaks for an instance.
    DriverKind, "driver" {
        /// The in-process simulated WhatsApp network (development, demos, tests).
        Sandbox = "sandbox",
        /// The real WhatsApp multi-device protocol.
        Whatsapp = "whatsapp",
    }
);

string_enum!(
    /// What a usage record counts.
    UsageRecordType, "usage record type" {
        MessagesSent = "messages_sent",
        MessagesReceived = "messages_received",
        ApiCalls = "api_calls",
        MediaBytes = "media_bytes",
        PluginInvocations = "plugin_invocations",
        WebhookDeliveries = "webhook_deliveries",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_round_trips_through_its_spelling() {
        for status in InstanceStatus::ALL {
            assert_eq!(status.as_str().parse::<InstanceStatus>(), Ok(*status));
            let json = serde_json::to_string(status).expect("serialize");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        for tier in Tier::ALL {
            assert_eq!(tier.as_str().parse::<Tier>(), Ok(*tier));
        }
    }

    #[test]
    fn unknown_spelling_names_the_choices() {
        let err = "gold".parse::<Tier>().expect_err("must refuse");
        assert_eq!(err.to_string(), "\"gold\" is not a valid tier; expected one of: free starter pro enterprise ");
    }
}

string_enum!(
    /// Which way a message travels relative to the instance.
    Direction, "direction" {
        /// From WhatsApp to the instance.
        Inbound = "inbound",
        /// From the instance (API, plugin reply) to WhatsApp.
        Outbound = "outbound",
    }
);

string_enum!(
    /// What a message carries.
    MessageKind, "message kind" {
        Text = "text",
        Image = "image",
        Video = "video",
        Audio = "audio",
        Document = "document",
        Sticker = "sticker",
        Location = "location",
        ContactCard = "contact",
        Reaction = "reaction",
        Other = "other",
    }
);

string_enum!(
    /// The names of the events the gateway publishes (live stream, webhooks). The spelling is the public contract.
    EventType, "event type" {
        /// An inbound message passed the plugin chain.
        MessageReceived = "message.received",
        /// An outbound message left for WhatsApp.
        MessageSent = "message.sent",
        /// An outbound message's status changed (delivered, read, failed).
        MessageStatus = "message.status",
        /// The plugin chain dropped a message.
        MessageDropped = "message.dropped",
        /// The instance's connection status changed.
        ConnectionUpdate = "connection.update",
        /// A new QR code (or pairing code) is ready to be scanned.
        QrUpdated = "qr.updated",
        /// A contact was created or changed.
        ContactUpdated = "contact.updated",
        /// A contact's presence (online, typing) changed.
        PresenceUpdated = "presence.updated",
        /// A webhook endpoint was disabled (410 Gone or failing too long).
        WebhookDisabled = "webhook.disabled",
        /// A test event fired by the tenant at one endpoint.
        WebhookTest = "webhook.test",
    }
);

string_enum!(
    /// Where a message is in its life. Outbound: queued -> sent -> delivered -> read, or failed. Inbound: received
    /// (passed the pipeline) or dropped (a plugin dropped it).
    MessageStatus, "message status" {
        Queued = "queued",
        Sent = "sent",
        Delivered = "delivered",
        Read = "read",
        Failed = "failed",
        Received = "received",
        Dropped = "dropped",
    }
);

impl MessageStatus {
    /// Receipts only move a message forward: a late "delivered" never undoes "read".
    pub const fn rank(&self) -> u8 {
        match self {
            MessageStatus::Queued => 0,
            MessageStatus::Sent => 1,
            MessageStatus::Delivered => 2,
            MessageStatus::Read => 3,
            MessageStatus::Failed | MessageStatus::Received | MessageStatus::Dropped => 4,
        }
    }
}

string_enum!(
    /// What an API key may do; a key holds a set of these, stored in their text form.
    KeyScope, "key scope" {
        MessagesSend = "messages:send",
        MessagesRead = "messages:read",
        ContactsRead = "contacts:read",
        ContactsWrite = "contacts:write",
        WebhooksWrite = "webhooks:write",
        InstanceManage = "instance:manage",
        PluginsWrite = "plugins:write",
    }
);

string_enum!(
    /// Why the plugin host refused an upload.
    RejectionKind, "plugin rejection kind" {
        /// Larger than the subscription's limit.
        TooLarge = "too_large",
        /// Not a WebAssembly component, or one that does not compile.
        InvalidComponent = "invalid_component",
        /// Imports something the plugin world does not offer.
        ForbiddenImport = "forbidden_import",
        /// A component of another world.
        WrongWorld = "wrong_world",
        /// Failed or ran out of limits on a sample event.
        SmokeTestFailed = "smoke_test_failed",
    }
);

string_enum!(
    /// What an audit row records. The spelling is `<resource>.<verb>`, stored as written and matched by the audit
    /// filter; every mutating store write and every sign-in event writes one of these.
    AuditAction, "audit action" {
        SubscriptionCreate = "subscription.create",
        SubscriptionUpdate = "subscription.update",
        SubscriptionDelete = "subscription.delete",
        UserCreate = "user.create",
        UserUpdate = "user.update",
        /// A user's password was set by a patch (by themselves or an operator).
        UserPasswordReset = "user.password_reset",
        UserDelete = "user.delete",
        AuthLogin = "auth.login",
        AuthLogout = "auth.logout",
        /// A rotated refresh token was presented again: its whole family was revoked.
        AuthRefreshReuse = "auth.refresh_reuse",
        InstanceCreate = "instance.create",
        InstanceUpdate = "instance.update",
        InstanceDelete = "instance.delete",
        ApiKeyCreate = "api_key.create",
        ApiKeyUpdate = "api_key.update",
        ApiKeyRevoke = "api_key.revoke",
        ApiKeyDelete = "api_key.delete",
        ContactBlock = "contact.block",
        ContactUnblock = "contact.unblock",
        ContactDelete = "contact.delete",
        WebhookCreate = "webhook.create",
        WebhookUpdate = "webhook.update",
        WebhookRotateSecret = "webhook.rotate_secret",
        WebhookDelete = "webhook.delete",
        /// The gateway disabled a failing endpoint (the actor is the system).
        WebhookDisable = "webhook.disable",
        WebhookReplay = "webhook.replay",
        WebhookReplayRange = "webhook.replay_range",
        PluginCreate = "plugin.create",
        PluginUpload = "plugin.upload",
        PluginActivate = "plugin.activate",
        PluginDelete = "plugin.delete",
        PluginBindingCreate = "plugin_binding.create",
        PluginBindingUpdate = "plugin_binding.update",
        PluginBindingDelete = "plugin_binding.delete",
    }
);

string_enum!(
    /// What kind of thing an audit row is about (the part of its action before the dot; `session` for sign-ins).
    AuditResource, "audit resource" {
        Subscription = "subscription",
        User = "user",
        Session = "session",
        Instance = "instance",
        ApiKey = "api_key",
        Contact = "contact",
        Webhook = "webhook",
        Plugin = "plugin",
        PluginBinding = "plugin_binding",
    }
);

impl AuditAction {
    /// The resource every row of this action is about; one place, so an action and its resource never disagree.
    pub const fn resource(&self) -> AuditResource {
        use AuditAction::*;
        match self {
            SubscriptionCreate | SubscriptionUpdate | SubscriptionDelete => AuditResource::Subscription,
            UserCreate | UserUpdate | UserPasswordReset | UserDelete => AuditResource::User,
            AuthLogin | AuthLogout | AuthRefreshReuse => AuditResource::Session,
            InstanceCreate | InstanceUpdate | InstanceDelete => AuditResource::Instance,
            ApiKeyCreate | ApiKeyUpdate | ApiKeyRevoke | ApiKeyDelete => AuditResource::ApiKey,
            ContactBlock | ContactUnblock | ContactDelete => AuditResource::Contact,
            WebhookCreate | WebhookUpdate | WebhookRotateSecret | WebhookDelete | WebhookDisable | WebhookReplay
            | WebhookReplayRange => AuditResource::Webhook,
            PluginCreate | PluginUpload | PluginActivate | PluginDelete => AuditResource::Plugin,
            PluginBindingCreate | PluginBindingUpdate | PluginBindingDelete => AuditResource::PluginBinding,
        }
    }
}

/// One entry of a webhook endpoint's event list: one event type, or `*` for every type but `webhook.test` (which
/// is only ever fired at one endpoint on request). Stored and shown as its spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventSelector {
    All,
    Only(EventType),
}

impl EventSelector {
    pub const ALL_SPELLING: &'static str = "*";

    pub const fn as_str(&self) -> &'static str {
        match self {
            EventSelector::All => Self::ALL_SPELLING,
            EventSelector::Only(event_type) => event_type.as_str(),
        }
    }

    /// Whether an event of this type goes to an endpoint that lists this selector.
    pub fn selects(&self, event_type: &str) -> bool {
        match self {
            EventSelector::All => event_type != EventType::WebhookTest.as_str(),
            EventSelector::Only(t) => t.as_str() == event_type,
        }
    }
}

impl fmt::Display for EventSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventSelector {
    type Err = ParseEnumError;

    /// `*` or an event type an endpoint may subscribe to (not `webhook.test`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == Self::ALL_SPELLING {
            return Ok(EventSelector::All);
        }
        match s.parse::<EventType>() {
            Ok(t) if t != EventType::WebhookTest => Ok(EventSelector::Only(t)),
            _ => Err(ParseEnumError {
                kind: "webhook event selector",
                value: s.to_owned(),
                expected: "* or an event type other than webhook.test",
            }),
        }
    }
}

impl Serialize for EventSelector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventSelector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spelling = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        spelling.parse().map_err(serde::de::Error::custom)
    }
}

// The document enumerates what an endpoint may list, from the same set the server parses.
impl utoipa::PartialSchema for EventSelector {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let spellings = std::iter::once(Self::ALL_SPELLING)
            .chain(EventType::ALL.iter().filter(|t| **t != EventType::WebhookTest).map(EventType::as_str));
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(spellings))
            .into()
    }
}

impl utoipa::ToSchema for EventSelector {
    fn name() -> std::borrow::Cow<'static, str> {
        "WebhookEventName".into()
    }
}

#[cfg(test)]
mod audit_and_selector_tests {
    use super::*;

    #[test]
    fn every_audit_action_is_spelled_after_its_resource() {
        for action in AuditAction::ALL {
            let (resource, _) = action.as_str().split_once('.').expect("<resource>.<verb>");
            let expected = if resource == "auth" { "session" } else { resource };
            assert_eq!(action.resource().as_str(), expected, "{action}");
            assert_eq!(action.as_str().parse::<AuditAction>(), Ok(*action));
        }
    }

    #[test]
    fn selectors_parse_star_and_event_types_but_not_the_test_event() {
        assert_eq!("*".parse::<EventSelector>(), Ok(EventSelector::All));
        assert_eq!("message.sent".parse::<EventSelector>(), Ok(EventSelector::Only(EventType::MessageSent)));
        let refused = "webhook.test".parse::<EventSelector>().expect_err("the test event is fired on request only");
        assert_eq!(refused.value, "webhook.test");
        assert!("message.nope".parse::<EventSelector>().is_err());
        let json =
            serde_json::to_string(&[EventSelector::All, EventSelector::Only(EventType::QrUpdated)]).expect("json");
        assert_eq!(json, r#"["*","qr.updated"]"#);
        let back: Vec<EventSelector> = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, [EventSelector::All, EventSelector::Only(EventType::QrUpdated)]);
    }

    #[test]
    fn star_selects_everything_but_the_test_event() {
        assert!(EventSelector::All.selects("message.received"));
        assert!(!EventSelector::All.selects("webhook.test"));
        assert!(EventSelector::Only(EventType::WebhookDisabled).selects("webhook.disabled"));
        assert!(!EventSelector::Only(EventType::WebhookDisabled).selects("message.sent"));
    }
}
