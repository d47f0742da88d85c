//! The one place a caller is checked against a resource: visible first, then allowed.

use std::sync::Arc;

use gw_accounts::{AccountError, Accounts, Action};
use gw_core::{Instance, InstanceId, PluginId};
use gw_store::{Plugin, Store, StoreError, Visibility};

use gw_core::KeyScope;

use crate::caller::{Caller, Need};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Not visible to the caller (another tenant's, or another instance's key): indistinguishable from missing.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The key is the instance's but lacks the scope.
    #[error("this endpoint needs the `{0}` scope")]
    InsufficientScope(KeyScope),
    /// Visible, but the user's role may not do this (or the account is no longer active).
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks callers; every service holds one.
#[derive(Clone)]
pub struct Access {
    store: Arc<dyn Store>,
    accounts: Arc<Accounts>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").finish_non_exhaustive()
    }
}

impl Access {
    pub fn new(store: Arc<dyn Store>, accounts: Arc<Accounts>) -> Self {
        Self { store, accounts }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn accounts(&self) -> &Arc<Accounts> {
        &self.accounts
    }

    /// The instance `id`, if the caller sees it and may do what `need` says: a user's role must allow its action,
    /// a key must be the instance's own and hold its scope.
    pub async fn instance(&self, caller: &Caller, id: InstanceId, need: Need) -> Result<Instance, AccessError> {
        tracing::Span::current().record("instance", tracing::field::display(id));
        match caller {
            Caller::User(principal) => {
                let instance = self.accounts.get_instance(principal, id).await?;
                principal.require(need.action)?;
                Ok(instance)
            }
            Caller::Key(key) if key.instance_id == id => {
                if !key.has_scope(need.scope) {
                    return Err(AccessError::InsufficientScope(need.scope));
                }
                Ok(self.store.get_instance(Visibility::Subscription(key.subscription_id), id).await?)
            }
            Caller::Key(_) => Err(AccessError::NotFound("instance")),
        }
    }

    /// The instance `id` for a status read: any key of the instance (no scope needed) or a user who sees it.
    pub async fn instance_status(&self, caller: &Caller, id: InstanceId) -> Result<Instance, AccessError> {
        match caller {
            Caller::User(principal) => Ok(self.accounts.get_instance(principal, id).await?),
            Caller::Key(key) if key.instance_id == id => {
                Ok(self.store.get_instance(Visibility::Subscription(key.subscription_id), id).await?)
            }
            Caller::Key(_) => Err(AccessError::NotFound("instance")),
        }
    }

    /// The subscription of instance `id`, if the caller may read the instance's own counters: a user who sees it,
    /// or any key of that very instance (no store read for a key).
    pub async fn instance_subscription(
        &self,
        caller: &Caller,
        id: InstanceId,
    ) -> Result<gw_core::SubscriptionId, AccessError> {
        match caller {
            Caller::User(principal) => Ok(self.accounts.get_instance(principal, id).await?.subscription_id),
            Caller::Key(key) if key.instance_id == id => Ok(key.subscription_id),
            Caller::Key(_) => Err(AccessError::NotFound("instance")),
        }
    }

    /// What plugins the caller sees: a user's visibility, or a key's subscription when it holds `plugins:write`.
    pub fn plugin_scope(&self, caller: &Caller) -> Result<Visibility, AccessError> {
        match caller {
            Caller::User(principal) => Ok(principal.visibility()),
            Caller::Key(key) if key.has_scope(KeyScope::PluginsWrite) => {
                Ok(Visibility::Subscription(key.subscription_id))
            }
            Caller::Key(_) => Err(AccessError::InsufficientScope(KeyScope::PluginsWrite)),
        }
    }

    /// The plugin `id`, if visible to the caller, and then if the caller's role allows `action`.
    pub async fn plugin(&self, caller: &Caller, id: PluginId, action: Action) -> Result<Plugin, AccessError> {
        let scope = self.plugin_scope(caller)?;
        let plugin = self.store.get_plugin(scope, id).await?;
        self.require(caller, action)?;
        Ok(plugin)
    }

    /// The caller's role allows `action` (keys are checked by scope, per instance, in [`Access::instance`]).
    pub fn require(&self, caller: &Caller, action: Action) -> Result<(), AccessError> {
        match caller {
            Caller::User(principal) => Ok(principal.require(action)?),
            Caller::Key(_) => Ok(()),
        }
    }
}
