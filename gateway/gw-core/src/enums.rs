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
