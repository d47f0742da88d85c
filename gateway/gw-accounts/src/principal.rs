//! The authenticated caller, as the services see it.

use gw_core::{SubscriptionId, UserId, UserRole};
use gw_store::{Actor, Visibility};

use crate::{AccountError, Action, allows};

/// A signed-in, active user of an active subscription (or an operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub role: UserRole,
    pub subscription_id: Option<SubscriptionId>,
    pub ip_address: Option<String>,
}

impl Principal {
    /// What this caller may see: everything for an operator, its own subscription for a tenant.
    pub fn visibility(&self) -> Visibility {
        match (self.role, self.subscription_id) {
            (UserRole::Admin, _) => Visibility::All,
            (_, Some(id)) => Visibility::Subscription(id),
            // A tenant without a subscription cannot exist (a CHECK constraint forbids it); see nothing.
            (_, None) => Visibility::Subscription(SubscriptionId::from_uuid(uuid::Uuid::nil())),
        }
    }

    pub fn actor(&self) -> Actor {
        Actor::user(self.user_id, self.ip_address.clone())
    }

    pub fn require(&self, action: Action) -> Result<(), AccountError> {
        if allows(self.role, action) { Ok(()) } else { Err(AccountError::Forbidden) }
    }

    /// Whether the caller may see rows of `subscription_id`.
    pub fn sees(&self, subscription_id: SubscriptionId) -> bool {
        match self.visibility() {
            Visibility::All => true,
            Visibility::Subscription(own) => own == subscription_id,
        }
    }
}
