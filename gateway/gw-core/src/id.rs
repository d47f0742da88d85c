//! Typed ids. Every entity id is a UUIDv7: opaque to clients, time-ordered, so id order is creation order and
//! cursor pagination on the id is stable under concurrent inserts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A string that is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id: {0:?}")]
pub struct IdParseError(pub String);

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|_| IdParseError(s.to_owned()))
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

define_id!(
    /// Identifies a subscription (a tenant).
    SubscriptionId
);
define_id!(
    /// Identifies one gateway process of a cluster: new at every start, so a restarted node never inherits the
    /// leases of its previous life.
    NodeId
);
define_id!(
    /// Identifies a command written for the node that runs an instance's session.
    InstanceCommandId
);
define_id!(
    /// Identifies a user: an operator or a member of a subscription.
    UserId
);
define_id!(
    /// Identifies an instance: one WhatsApp account.
    InstanceId
);
define_id!(
    /// Identifies an API key (not the key's secret).
    ApiKeyId
);
define_id!(
    /// Identifies a daily message statistics row.
    MessageStatId
);
define_id!(
    /// Identifies a contact of an instance.
    ContactId
);
define_id!(
    /// Identifies a webhook endpoint configuration.
    WebhookConfigId
);
define_id!(
    /// Identifies an instance's persisted session state.
    SessionDataId
);
define_id!(
    /// Identifies a usage record.
    UsageRecordId
);
define_id!(
    /// Identifies an audit log entry.
    AuditLogId
);
define_id!(
    /// Identifies a refresh token (not its secret).
    RefreshTokenId
);
define_id!(
    /// Identifies a chain of rotated refresh tokens, all descended from one sign-in.
    TokenFamilyId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_string_form() {
        let id = InstanceId::new();
        let parsed: InstanceId = id.to_string().parse().expect("valid id");
        assert_eq!(id, parsed);
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let ids: Vec<UserId> = (0..1000).map(|_| UserId::new()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "UUIDv7 ids must be monotonic within a process");
    }

    #[test]
    fn garbage_is_not_an_id() {
        let err = "not-a-uuid".parse::<ApiKeyId>().expect_err("must refuse");
        assert_eq!(err, IdParseError("not-a-uuid".into()));
    }
}
define_id!(
    /// Identifies one gateway event; stable across webhook retries so receivers can de-duplicate.
    EventId
);
define_id!(
    /// Identifies one event's delivery to one webhook endpoint (the outbox row).
    WebhookDeliveryId
);
define_id!(
    /// Identifies a named plugin of a subscription.
    PluginId
);
define_id!(
    /// Identifies one uploaded version of a plugin.
    PluginVersionId
);
define_id!(
    /// Identifies a plugin version bound to an instance.
    PluginBindingId
);
define_id!(
    /// Identifies a message the gateway accepted or received (not WhatsApp's own message id).
    MessageId
);
