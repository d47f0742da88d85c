//! One trait per aggregate, and [`Store`], which is all of them.

use async_trait::async_trait;
use chrono::NaiveDate;
use gw_core::{
    ApiKey, ApiKeyHash, ApiKeyId, AuditLogEntry, Contact, ContactId, Email, Instance, InstanceId, MessageStat,
    RefreshToken, SessionData, Subscription, SubscriptionId, Timestamp, TokenFamilyId, UsageRecord, User, UserId,
    WebhookConfig, WebhookConfigId,
};

use crate::{
    Actor, ApiKeyPatch, ApiKeyRecord, ApiKeyUsage, AuditFilter, ConnectionUpdate, ContactUpsert, DeliveryOutcome,
    InstancePatch, MessageStatDelta, MessagesReserved, NewApiKey, NewAuditEntry, NewInstance, NewRefreshToken,
    NewSubscription, NewUser, NewWebhookConfig, Page, PageRequest, RefreshOutcome, Reserved, StoreResult,
    SubscriptionPatch, UsageDelta, UsageFilter, UserPatch, Visibility, WebhookConfigPatch,
};

#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    async fn create_subscription(&self, new: NewSubscription, actor: &Actor) -> StoreResult<Subscription>;
    async fn get_subscription(&self, id: SubscriptionId) -> StoreResult<Subscription>;
    async fn list_subscriptions(&self, page: PageRequest) -> StoreResult<Page<Subscription>>;
    async fn update_subscription(
        &self,
        id: SubscriptionId,
        patch: SubscriptionPatch,
        actor: &Actor,
    ) -> StoreResult<Subscription>;
    /// Refused with [`crate::StoreError::InUse`] while users or instances belong to it.
    async fn delete_subscription(&self, id: SubscriptionId, actor: &Actor) -> StoreResult<()>;

    /// Takes one instance slot in a single atomic statement: granted only while `current_instances <
    /// max_instances` and the subscription is active, whatever runs concurrently.
    async fn reserve_instance_slot(&self, id: SubscriptionId) -> StoreResult<Reserved>;
    /// Gives a slot back (never below zero).
    async fn release_instance_slot(&self, id: SubscriptionId) -> StoreResult<()>;
    /// Takes `count` messages of the monthly allowance in a single atomic statement. The first reservation of a
    /// new month (UTC) resets the counter and `last_usage_reset`, in the same statement.
    async fn reserve_messages(&self, id: SubscriptionId, count: i64, now: Timestamp) -> StoreResult<MessagesReserved>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(&self, new: NewUser, actor: &Actor) -> StoreResult<User>;
    async fn get_user(&self, scope: Visibility, id: UserId) -> StoreResult<User>;
    async fn find_user_by_email(&self, email: &Email) -> StoreResult<Option<User>>;
    async fn list_users(&self, scope: Visibility, page: PageRequest) -> StoreResult<Page<User>>;
    async fn update_user(&self, scope: Visibility, id: UserId, patch: UserPatch, actor: &Actor) -> StoreResult<User>;
    async fn delete_user(&self, scope: Visibility, id: UserId, actor: &Actor) -> StoreResult<()>;
    async fn record_login(&self, id: UserId, at: Timestamp) -> StoreResult<()>;
    /// Active operators; zero on first run.
    async fn count_active_admins(&self) -> StoreResult<i64>;
}

#[async_trait]
pub trait InstanceStore: Send + Sync {
    /// Reserves a slot of the subscription and inserts the instance in one transaction: a refused or failed
    /// insert leaves the counter as it was.
    async fn create_instance(&self, new: NewInstance, actor: &Actor) -> StoreResult<Instance>;
    async fn get_instance(&self, scope: Visibility, id: InstanceId) -> StoreResult<Instance>;
    async fn list_instances(&self, scope: Visibility, page: PageRequest) -> StoreResult<Page<Instance>>;
    async fn update_instance(
        &self,
        scope: Visibility,
        id: InstanceId,
        patch: InstancePatch,
        actor: &Actor,
    ) -> StoreResult<Instance>;
    /// With `update.fence`, written only while the instance's lease has that epoch ([`crate::StoreError::Fenced`]
    /// otherwise).
    async fn update_connection(&self, id: InstanceId, update: ConnectionUpdate) -> StoreResult<Instance>;
    /// Deletes the instance with its keys, stats, contacts, webhooks and session, folds its usage records into
    /// the subscription's unattributed ones, and releases its slot, in one transaction.
    async fn delete_instance(&self, scope: Visibility, id: InstanceId, actor: &Actor) -> StoreResult<()>;
    /// Active instances of active subscriptions, for the session engine to resume at start-up.
    async fn list_resumable_instances(&self) -> StoreResult<Vec<Instance>>;
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn create_api_key(&self, new: NewApiKey, actor: &Actor) -> StoreResult<ApiKey>;
    async fn get_api_key(&self, instance_id: InstanceId, id: ApiKeyId) -> StoreResult<ApiKey>;
    /// The edge's look-up: the key with its instance's and subscription's state, in one query.
    async fn find_api_key_by_hash(&self, hash: &ApiKeyHash) -> StoreResult<Option<ApiKeyRecord>>;
    async fn list_api_keys(&self, instance_id: InstanceId, page: PageRequest) -> StoreResult<Page<ApiKey>>;
    async fn update_api_key(
        &self,
        instance_id: InstanceId,
        id: ApiKeyId,
        patch: ApiKeyPatch,
        actor: &Actor,
    ) -> StoreResult<ApiKey>;
    async fn delete_api_key(&self, instance_id: InstanceId, id: ApiKeyId, actor: &Actor) -> StoreResult<()>;
    /// Adds batched uses (`usage_count += uses`, `last_used_at` moves forward only).
    async fn record_api_key_usage(&self, batch: &[ApiKeyUsage]) -> StoreResult<()>;
}

#[async_trait]
pub trait MessageStatStore: Send + Sync {
    /// Adds batched increments, creating the (instance, day) rows as needed.
    async fn add_message_stats(&self, batch: &[MessageStatDelta]) -> StoreResult<()>;
    /// Days in `from..=to`, oldest first.
    async fn list_message_stats(
        &self,
        instance_id: InstanceId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> StoreResult<Vec<MessageStat>>;
}

#[async_trait]
pub trait ContactStore: Send + Sync {
    /// Creates the contact or merges what is known into it (one row per instance and JID). Fenced by
    /// [`ContactUpsert::fence`] like [`crate::MessageStore::record_inbound`].
    async fn upsert_contact(&self, upsert: ContactUpsert) -> StoreResult<Contact>;
    async fn get_contact(&self, instance_id: InstanceId, id: ContactId) -> StoreResult<Contact>;
    async fn find_contact_by_jid(&self, instance_id: InstanceId, jid: &str) -> StoreResult<Option<Contact>>;
    /// Contacts in id order; `search` matches name, notify name or JID, case-insensitively.
    async fn list_contacts(
        &self,
        instance_id: InstanceId,
        search: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<Contact>>;
    async fn set_contact_blocked(
        &self,
        instance_id: InstanceId,
        id: ContactId,
        blocked: bool,
        actor: &Actor,
    ) -> StoreResult<Contact>;
    async fn delete_contact(&self, instance_id: InstanceId, id: ContactId, actor: &Actor) -> StoreResult<()>;
}

#[async_trait]
pub trait WebhookConfigStore: Send + Sync {
    async fn create_webhook_config(&self, new: NewWebhookConfig, actor: &Actor) -> StoreResult<WebhookConfig>;
    async fn get_webhook_config(&self, instance_id: InstanceId, id: WebhookConfigId) -> StoreResult<WebhookConfig>;
    async fn list_webhook_configs(&self, instance_id: InstanceId) -> StoreResult<Vec<WebhookConfig>>;
    async fn update_webhook_config(
        &self,
        instance_id: InstanceId,
        id: WebhookConfigId,
        patch: WebhookConfigPatch,
        actor: &Actor,
    ) -> StoreResult<WebhookConfig>;
    async fn delete_webhook_config(
        &self,
        instance_id: InstanceId,
        id: WebhookConfigId,
        actor: &Actor,
    ) -> StoreResult<()>;
    /// Counts one delivery attempt's outcome on the endpoint.
    async fn record_webhook_outcome(&self, id: WebhookConfigId, outcome: DeliveryOutcome) -> StoreResult<()>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Creates or replaces the instance's session; marks it valid and stamps `last_backup`.
    /// With a `fence`, written only while the instance's lease has that epoch ([`crate::StoreError::Fenced`]
    /// otherwise); without one (an operator's action), unconditionally.
    async fn save_session(
        &self,
        instance_id: InstanceId,
        auth_state: Vec<u8>,
        at: Timestamp,
        fence: Option<crate::OwnerEpoch>,
    ) -> StoreResult<SessionData>;
    async fn load_session(&self, instance_id: InstanceId) -> StoreResult<Option<SessionData>>;
    /// Keeps the row but marks it unusable (logged out): the engine will not resume it. An instance that never
    /// saved a session has nothing to invalidate: that is not an error.
    /// Fenced like [`SessionStore::save_session`].
    async fn invalidate_session(
        &self,
        instance_id: InstanceId,
        at: Timestamp,
        fence: Option<crate::OwnerEpoch>,
    ) -> StoreResult<()>;
    async fn delete_session(&self, instance_id: InstanceId) -> StoreResult<()>;
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Adds batched increments, creating (subscription, instance, type, period) rows as needed.
    async fn add_usage(&self, batch: &[UsageDelta]) -> StoreResult<()>;
    async fn list_usage(&self, filter: UsageFilter) -> StoreResult<Vec<UsageRecord>>;
}

#[async_trait]
pub trait AuditLogStore: Send + Sync {
    async fn append_audit(&self, entry: NewAuditEntry) -> StoreResult<AuditLogEntry>;
    /// Newest first.
    async fn list_audit(&self, filter: AuditFilter, page: PageRequest) -> StoreResult<Page<AuditLogEntry>>;
}

#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    async fn create_refresh_token(&self, new: NewRefreshToken) -> StoreResult<RefreshToken>;
    /// In one transaction: consumes the live token whose hash is `presented` and stores `successor` in its
    /// family (the successor's `user_id` and `family_id` are taken from the consumed token); or, if that token was
    /// already consumed, revokes every token of its family. Of two concurrent uses of one token, exactly one
    /// rotates.
    async fn rotate_refresh_token(
        &self,
        presented: &[u8],
        successor: NewRefreshToken,
        now: Timestamp,
    ) -> StoreResult<RefreshOutcome>;
    async fn find_refresh_token(&self, hash: &[u8]) -> StoreResult<Option<RefreshToken>>;
    async fn revoke_refresh_family(&self, family_id: TokenFamilyId, at: Timestamp) -> StoreResult<()>;
    /// Revokes every live token of a user (deactivation, password reset).
    async fn revoke_user_refresh_tokens(&self, user_id: UserId, at: Timestamp) -> StoreResult<()>;
}

/// Everything the gateway persists.
#[async_trait]
pub trait Store:
    SubscriptionStore
    + UserStore
    + InstanceStore
    + ApiKeyStore
    + MessageStatStore
    + ContactStore
    + WebhookConfigStore
    + SessionStore
    + UsageStore
    + AuditLogStore
    + RefreshTokenStore
    + crate::MessageStore
    + crate::WhatsAppStateStore
    + crate::PluginStore
    + crate::WebhookDeliveryStore
    + crate::ClusterStore
    + std::fmt::Debug
{
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> StoreResult<()>;
    /// Closes the connection pool, waiting for connections in use to be returned (graceful shutdown).
    async fn close(&self);
}
