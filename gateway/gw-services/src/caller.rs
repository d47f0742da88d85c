//! Who calls, and what a call needs of them.

use gw_accounts::{Action, KeyPrincipal, Principal};
use gw_core::KeyScope;
use gw_store::{Actor, Visibility};

/// The authenticated principal of a request: a signed-in user, or an API key bound to one instance.
#[derive(Debug, Clone)]
pub enum Caller {
    User(Principal),
    Key(KeyPrincipal),
}

impl Caller {
    /// Who the audit log names for what this caller changes.
    pub fn actor(&self) -> Actor {
        match self {
            Caller::User(p) => p.actor(),
            Caller::Key(k) => Actor::api_key(k.key_id, k.ip_address.map(|ip| ip.to_string())),
        }
    }

    /// The rows this caller may see: everything for an operator, its own subscription otherwise.
    pub fn visibility(&self) -> Visibility {
        match self {
            Caller::User(p) => p.visibility(),
            Caller::Key(k) => Visibility::Subscription(k.subscription_id),
        }
    }
}

/// What one call on an instance needs: a user's role must allow `action`, a key must hold `scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub action: Action,
    pub scope: KeyScope,
}

impl Need {
    pub const fn new(action: Action, scope: KeyScope) -> Self {
        Self { action, scope }
    }

    /// Connect, restart, log out, pair: owners, or keys with `instance:manage`.
    pub const MANAGE_SESSION: Need = Need::new(Action::ManageInstances, KeyScope::InstanceManage);
    /// The QR code: anyone who reads the instance, or keys with `instance:manage`.
    pub const READ_SESSION: Need = Need::new(Action::ReadInstances, KeyScope::InstanceManage);
    pub const SEND: Need = Need::new(Action::ManageInstances, KeyScope::MessagesSend);
    pub const READ_MESSAGES: Need = Need::new(Action::ReadInstances, KeyScope::MessagesRead);
    pub const READ_CONTACTS: Need = Need::new(Action::ReadInstances, KeyScope::ContactsRead);
    pub const WRITE_CONTACTS: Need = Need::new(Action::ManageInstances, KeyScope::ContactsWrite);
    pub const READ_WEBHOOKS: Need = Need::new(Action::ReadInstances, KeyScope::WebhooksWrite);
    pub const MANAGE_WEBHOOKS: Need = Need::new(Action::ManageInstances, KeyScope::WebhooksWrite);
    pub const READ_PLUGINS: Need = Need::new(Action::ReadPlugins, KeyScope::PluginsWrite);
    pub const MANAGE_PLUGINS: Need = Need::new(Action::ManagePlugins, KeyScope::PluginsWrite);
}
