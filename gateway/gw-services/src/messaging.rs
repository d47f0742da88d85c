//! Messaging: session commands (connect, restart, log out, pair, QR), sends, messages, chats, contacts, groups and
//! the live event stream of one instance, each behind one [`Access::instance`] check.

use std::sync::Arc;

use gw_core::{Contact, ContactId, GatewayEvent, Instance, InstanceId, InstanceStatus, Message, MessageId, Timestamp};
use gw_sessions::{Accepted, Engine, EngineError, GroupInfo, InvalidField, NumberCheck, Presence, SendRequest};
use gw_store::{Page, PageRequest, Store, StoreError};

use crate::access::{Access, AccessError};
use crate::caller::{Caller, Need};
use crate::number_check::NumberCache;

#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// A QR code was asked for while the instance is not waiting to be paired.
    #[error("the instance is {0}; there is no QR code to scan")]
    NotPairing(InstanceStatus),
}

/// Most message ids one mark-read call takes.
pub const MAX_MARK_READ: usize = 100;

/// The messaging service.
#[derive(Clone)]
pub struct Messaging {
    access: Access,
    store: Arc<dyn Store>,
    engine: Engine,
    numbers: NumberCache,
}

impl std::fmt::Debug for Messaging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messaging").finish_non_exhaustive()
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> MessagingError {
    MessagingError::Invalid(InvalidField { field, reason: reason.into() })
}

impl Messaging {
    /// `number_check_ttl`: how long a number check's answers are reused (zero: never).
    pub fn new(access: Access, engine: Engine, number_check_ttl: std::time::Duration) -> Self {
        Self { store: access.store().clone(), access, engine, numbers: NumberCache::new(number_check_ttl) }
    }

    /// The instance, checked for `need`: for callers that act on it elsewhere (the sandbox's control API).
    pub async fn instance(&self, caller: &Caller, id: InstanceId, need: Need) -> Result<Instance, MessagingError> {
        Ok(self.access.instance(caller, id, need).await?)
    }

    /// The instance's connection state: any key of the instance (whatever its scopes) or a user who sees it.
    pub async fn status(&self, caller: &Caller, id: InstanceId) -> Result<Instance, MessagingError> {
        tracing::Span::current().record("instance", tracing::field::display(id));
        Ok(self.access.instance_status(caller, id).await?)
    }

    /// Renames, reconfigures or (de)activates an instance; a deactivated one's session task ends.
    pub async fn update_instance(
        &self,
        by: &gw_accounts::Principal,
        id: InstanceId,
        update: gw_accounts::UpdateInstance,
    ) -> Result<Instance, MessagingError> {
        let deactivate = update.is_active == Some(false);
        let instance = self.access.accounts().update_instance(by, id, update).await.map_err(AccessError::from)?;
        if deactivate {
            self.engine.stop(id).await;
        }
        Ok(instance)
    }

    /// Deletes an instance with its keys, contacts, webhooks and session; its session task ends.
    pub async fn delete_instance(&self, by: &gw_accounts::Principal, id: InstanceId) -> Result<(), MessagingError> {
        self.access.accounts().delete_instance(by, id).await.map_err(AccessError::from)?;
        // After the delete succeeded (so only someone allowed to delete can stop it).
        self.engine.stop(id).await;
        Ok(())
    }

    /// Starts connecting (a new instance shows a QR code, a paired one reconnects). Idempotent.
    pub async fn connect(&self, caller: &Caller, id: InstanceId) -> Result<Instance, MessagingError> {
        let instance = self.access.instance(caller, id, Need::MANAGE_SESSION).await?;
        self.engine.start(&instance, None)?;
        Ok(instance)
    }

    pub async fn restart(&self, caller: &Caller, id: InstanceId) -> Result<Instance, MessagingError> {
        let instance = self.access.instance(caller, id, Need::MANAGE_SESSION).await?;
        self.engine.restart(&instance)?;
        Ok(instance)
    }

    /// Logs out on WhatsApp's side and answers the instance as it is afterwards.
    pub async fn logout(&self, caller: &Caller, id: InstanceId) -> Result<Instance, MessagingError> {
        let instance = self.access.instance(caller, id, Need::MANAGE_SESSION).await?;
        self.engine.logout(&instance).await?;
        Ok(self.store.get_instance(caller.visibility(), id).await?)
    }

    /// The QR payload and its expiry, while the instance is `qr`.
    pub async fn qr(&self, caller: &Caller, id: InstanceId) -> Result<(String, Option<Timestamp>), MessagingError> {
        let instance = self.access.instance(caller, id, Need::READ_SESSION).await?;
        match (instance.status, instance.qr_code) {
            (InstanceStatus::Qr, Some(qr)) => Ok((qr, instance.qr_code_expiry)),
            (status, _) => Err(MessagingError::NotPairing(status)),
        }
    }

    pub async fn pair_code(&self, caller: &Caller, id: InstanceId, phone: &str) -> Result<String, MessagingError> {
        let instance = self.access.instance(caller, id, Need::MANAGE_SESSION).await?;
        Ok(self.engine.request_pair_code(&instance, phone).await?)
    }

    /// Queues a message. `request` is parsed only once the caller is known to be allowed, so a caller who may not
    /// send learns nothing from how its body is judged; its errors pass through unchanged.
    pub async fn send<E>(
        &self,
        caller: &Caller,
        id: InstanceId,
        request: impl FnOnce() -> Result<SendRequest, E>,
    ) -> Result<Accepted, E>
    where
        E: From<MessagingError>,
    {
        let instance = self.access.instance(caller, id, Need::SEND).await.map_err(MessagingError::from)?;
        let request = request()?;
        Ok(self.engine.send(&instance, request).await.map_err(MessagingError::from)?)
    }

    /// The instance's messages, optionally of one chat (a phone number or JID).
    pub async fn list_messages(
        &self,
        caller: &Caller,
        id: InstanceId,
        chat: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<Message>, MessagingError> {
        let instance = self.access.instance(caller, id, Need::READ_MESSAGES).await?;
        let chat = chat.map(|c| gw_sessions::normalize_recipient("chat", c)).transpose()?;
        Ok(self.store.list_messages(instance.id, chat.as_deref(), page).await?)
    }

    pub async fn message(
        &self,
        caller: &Caller,
        id: InstanceId,
        message: MessageId,
    ) -> Result<Message, MessagingError> {
        let instance = self.access.instance(caller, id, Need::READ_MESSAGES).await?;
        Ok(self.store.get_message(instance.id, message).await?)
    }

    /// Marks 1 to [`MAX_MARK_READ`] messages of a chat read.
    pub async fn mark_read(
        &self,
        caller: &Caller,
        id: InstanceId,
        chat: &str,
        message_ids: &[String],
    ) -> Result<(), MessagingError> {
        let instance = self.access.instance(caller, id, Need::SEND).await?;
        let chat = gw_sessions::normalize_recipient("chat", chat)?;
        if message_ids.is_empty() || message_ids.len() > MAX_MARK_READ {
            return Err(invalid("message_ids", format!("1 to {MAX_MARK_READ} message ids")));
        }
        // Executed by whichever node runs the session.
        self.engine.mark_read(&instance, &chat, message_ids).await?;
        Ok(())
    }

    pub async fn presence(
        &self,
        caller: &Caller,
        id: InstanceId,
        chat: &str,
        presence: Presence,
    ) -> Result<(), MessagingError> {
        let instance = self.access.instance(caller, id, Need::SEND).await?;
        let chat = gw_sessions::normalize_recipient("chat", chat)?;
        self.engine.send_presence(&instance, &chat, presence).await?;
        Ok(())
    }

    /// The instance's contacts; `search` matches JID, name or push name.
    pub async fn list_contacts(
        &self,
        caller: &Caller,
        id: InstanceId,
        search: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<Contact>, MessagingError> {
        let instance = self.access.instance(caller, id, Need::READ_CONTACTS).await?;
        let search = search.map(str::trim).filter(|s| !s.is_empty());
        Ok(self.store.list_contacts(instance.id, search, page).await?)
    }

    pub async fn contact(
        &self,
        caller: &Caller,
        id: InstanceId,
        contact: ContactId,
    ) -> Result<Contact, MessagingError> {
        let instance = self.access.instance(caller, id, Need::READ_CONTACTS).await?;
        Ok(self.store.get_contact(instance.id, contact).await?)
    }

    /// Blocks or unblocks the contact on WhatsApp, then records it (audited).
    pub async fn set_blocked(
        &self,
        caller: &Caller,
        id: InstanceId,
        contact: ContactId,
        blocked: bool,
    ) -> Result<Contact, MessagingError> {
        let instance = self.access.instance(caller, id, Need::WRITE_CONTACTS).await?;
        let found = self.store.get_contact(instance.id, contact).await?;
        self.engine.set_blocked(&instance, &found.jid, blocked).await?;
        Ok(self.store.set_contact_blocked(instance.id, contact, blocked, &caller.actor()).await?)
    }

    pub async fn groups(&self, caller: &Caller, id: InstanceId) -> Result<Vec<GroupInfo>, MessagingError> {
        let instance = self.access.instance(caller, id, Need::READ_CONTACTS).await?;
        let connection = self.engine.connection(&instance)?;
        Ok(connection.groups().await.map_err(EngineError::from)?)
    }

    /// Which of `numbers` (1 to [`crate::MAX_NUMBER_CHECK`] phone numbers) are on WhatsApp: one answer per number,
    /// in order, each with the number's digits. Recent answers come from the cache; the rest from the session
    /// (on whichever node runs it).
    pub async fn check_numbers(
        &self,
        caller: &Caller,
        id: InstanceId,
        numbers: &[String],
    ) -> Result<Vec<NumberCheck>, MessagingError> {
        let instance = self.access.instance(caller, id, Need::READ_CONTACTS).await?;
        let phones = crate::number_check::phones(numbers)?;
        Ok(self.numbers.check(&self.engine, &instance, &phones).await?)
    }

    /// The live event bus and the instance whose events the caller may follow on it.
    pub async fn events(&self, caller: &Caller, id: InstanceId) -> Result<LiveEvents, MessagingError> {
        let instance = self.access.instance(caller, id, Need::READ_MESSAGES).await?;
        // Gaps first: a gap recorded after this point is one the stream may have missed events in.
        let gaps = self.engine.relay_gaps();
        Ok(LiveEvents { instance_id: instance.id, events: self.engine.subscribe(), gaps })
    }
}

/// What a live event stream follows.
#[derive(Debug)]
pub struct LiveEvents {
    pub instance_id: InstanceId,
    /// Every instance's events on this node; the stream keeps the instance's.
    pub events: tokio::sync::broadcast::Receiver<GatewayEvent>,
    /// Changes when this node may have missed other nodes' events (its relay reconnected): the client should
    /// resync from the API.
    pub gaps: tokio::sync::watch::Receiver<u64>,
}
