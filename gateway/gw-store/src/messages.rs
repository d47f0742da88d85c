//! Messages: the durable per-instance outbox and the inbound log.

use async_trait::async_trait;
use gw_core::{InstanceId, Message, MessageId, MessageKind, MessageStatus, SubscriptionId, Timestamp};

use crate::{OwnerEpoch, Page, PageRequest, StoreResult};

/// An outbound message to queue. The row and the idempotency record are one row, and the row and its charge to the
/// monthly quota are one transaction: a refused or failed send leaves nothing behind and costs nothing, and what
/// the quota counts is exactly what was stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboundMessage {
    pub id: MessageId,
    pub instance_id: InstanceId,
    /// The subscription whose monthly quota pays for the message (one unit, taken only when the row is created).
    pub charge_to: SubscriptionId,
    /// WhatsApp's id for the message, chosen once when it is accepted and used by every send attempt, so a message
    /// sent again after a crash is recognised by WhatsApp (and the sandbox) as the same message.
    pub wa_message_id: String,
    pub chat_jid: String,
    pub kind: MessageKind,
    pub content: gw_core::MessageContent,
    pub text: Option<String>,
    pub quoted_message_id: Option<String>,
    pub media: Option<Vec<u8>>,
    pub idempotency_key: Option<String>,
    /// Hash of the request that carried the idempotency key; a retry with another body is refused.
    pub request_hash: Option<Vec<u8>>,
    pub origin: gw_core::Origin,
    /// Set when the pipeline dropped the message: it is recorded as `dropped`, never sent.
    pub dropped_reason: Option<String>,
    pub at: Timestamp,
}

/// What `enqueue_message` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Enqueued {
    /// A new message is queued.
    Created(Message),
    /// The idempotency key was seen before with the same request: the first result.
    Replayed(Message),
    /// The idempotency key was seen before with a different request.
    KeyReused,
}

/// A queued message with everything needed to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedMessage {
    pub message: Message,
    pub media: Option<Vec<u8>>,
}

/// An inbound message to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInboundMessage {
    pub id: MessageId,
    pub instance_id: InstanceId,
    pub chat_jid: String,
    pub sender_jid: String,
    pub wa_message_id: String,
    pub kind: MessageKind,
    pub content: gw_core::MessageContent,
    pub text: Option<String>,
    pub quoted_message_id: Option<String>,
    pub at: Timestamp,
    /// The session's lease epoch: refused as [`crate::StoreError::Fenced`] once another node owns the instance.
    pub fence: Option<OwnerEpoch>,
}

/// What `record_inbound` did. A message WhatsApp redelivers after a crash is found, not stored twice; `processed`
/// says whether the pipeline already finished with it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedInbound {
    pub message: Message,
    pub created: bool,
    pub processed: bool,
}

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Stores the message and takes one unit of `charge_to`'s monthly quota, in one transaction. A replay of an
    /// idempotency key charges nothing; an exhausted quota is [`crate::StoreError::LimitReached`] (an inactive
    /// subscription [`crate::StoreError::Inactive`]) and stores nothing.
    async fn enqueue_message(&self, new: NewOutboundMessage) -> StoreResult<Enqueued>;
    /// The message first sent with this idempotency key, and the hash of that request.
    async fn find_idempotent_message(
        &self,
        instance_id: InstanceId,
        key: &str,
    ) -> StoreResult<Option<(Message, Option<Vec<u8>>)>>;
    /// The instance's queued messages, oldest first: the order they must leave in.
    async fn queued_messages(&self, instance_id: InstanceId, limit: u32) -> StoreResult<Vec<QueuedMessage>>;
    /// The message left (under the WhatsApp id it was given when accepted): drop the media bytes. With a `fence`,
    /// only while the instance's lease has that epoch ([`crate::StoreError::Fenced`] otherwise), as for the next
    /// two.
    async fn mark_message_sent(&self, id: MessageId, at: Timestamp, fence: Option<OwnerEpoch>) -> StoreResult<Message>;
    async fn mark_message_failed(
        &self,
        id: MessageId,
        reason: &str,
        at: Timestamp,
        fence: Option<OwnerEpoch>,
    ) -> StoreResult<Message>;
    /// Moves the instance's outbound messages with these WhatsApp ids forward to `status` (never backwards);
    /// returns the messages that changed.
    async fn apply_receipt(
        &self,
        instance_id: InstanceId,
        wa_message_ids: &[String],
        status: MessageStatus,
        at: Timestamp,
        fence: Option<OwnerEpoch>,
    ) -> StoreResult<Vec<Message>>;
    async fn record_inbound(&self, new: NewInboundMessage) -> StoreResult<RecordedInbound>;
    /// The pipeline finished with an inbound message: `received` (possibly rewritten text) or `dropped`. Fenced
    /// like [`MessageStore::mark_message_sent`].
    async fn finish_inbound(
        &self,
        id: MessageId,
        status: MessageStatus,
        text: Option<String>,
        reason: Option<String>,
        at: Timestamp,
        fence: Option<OwnerEpoch>,
    ) -> StoreResult<()>;
    async fn get_message(&self, instance_id: InstanceId, id: MessageId) -> StoreResult<Message>;
    /// The instance's messages, newest first, optionally of one chat.
    async fn list_messages(
        &self,
        instance_id: InstanceId,
        chat_jid: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<Message>>;
}
