//! Who may do what. One table, documented in the README, checked in one place.
//!
//! | action | admin | owner | member |
//! | --- | --- | --- | --- |
//! | manage subscriptions, tiers, users of any subscription | yes | no | no |
//! | read any subscription's audit log | yes | no | no |
//! | read own subscription, its users and audit log | yes | yes | no |
//! | create, rename, configure, deactivate, delete instances | yes | yes | no |
//! | read instances (list, get) | yes | yes | yes |
//! | create, list, revoke, rotate, delete an instance's API keys | yes | yes | no |
//! | create, upload, activate, delete plugins; bind them to instances | yes | yes | no |
//! | read plugins, their versions, bindings, errors and logs | yes | yes | yes |
//!
//! Operators (`admin`) act across subscriptions; tenants only within their own. Another subscription's resources
//! are *not found* to a tenant (404), never *forbidden* (403), so ids do not leak; 403 is for a tenant's own
//! resource that their role may not touch.

use gw_core::UserRole;

/// Something a signed-in user may try to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ManagePlatform,
    ReadSubscription,
    ReadAudit,
    ManageInstances,
    ReadInstances,
    ManageApiKeys,
    ManagePlugins,
    ReadPlugins,
}

pub fn allows(role: UserRole, action: Action) -> bool {
    match role {
        UserRole::Admin => true,
        UserRole::Owner => !matches!(action, Action::ManagePlatform),
        UserRole::Member => matches!(action, Action::ReadInstances | Action::ReadPlugins),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_as_documented() {
        use Action::*;
        let all = [
            ManagePlatform,
            ReadSubscription,
            ReadAudit,
            ManageInstances,
            ReadInstances,
            ManageApiKeys,
            ManagePlugins,
            ReadPlugins,
        ];
        let expected = [
            (UserRole::Admin, [true, true, true, true, true, true, true, true]),
            (UserRole::Owner, [false, true, true, true, true, true, true, true]),
            (UserRole::Member, [false, false, false, false, true, false, false, true]),
        ];
        for (role, row) in expected {
            for (action, allowed) in all.iter().zip(row) {
                assert_eq!(allows(role, *action), allowed, "{role} {action:?}");
            }
        }
    }
}
