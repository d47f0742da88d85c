//! [`gw_store::MessageStore`] in SQL both backends accept, instantiated per backend by [`impl_message_store!`].

use chrono::{DateTime, Utc};
use gw_core::{Message, Timestamp};
use gw_store::StoreError;
use sqlx::types::Json;
use uuid::Uuid;

macro_rules! message_columns {
    () => {
        "id, instance_id, direction, chat_jid, sender_jid, wa_message_id, kind, content, text, quoted_message_id, \
         status, failure_reason, idempotency_key, origin, created_at, updated_at, sent_at, delivered_at, read_at"
    };
}
pub(crate) use message_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    pub(crate) id: Uuid,
    instance_id: Uuid,
    direction: String,
    chat_jid: String,
    sender_jid: Option<String>,
    wa_message_id: Option<String>,
    kind: String,
    content: Json<gw_core::MessageContent>,
    text: Option<String>,
    quoted_message_id: Option<String>,
    status: String,
    failure_reason: Option<String>,
    idempotency_key: Option<String>,
    origin: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    read_at: Option<DateTime<Utc>>,
}

/// A message found by its idempotency key, with the hash of the request that created it: what a repeated send is
/// compared with, by the store's look-up and by the outbox writer alike.
#[derive(sqlx::FromRow)]
pub(crate) struct KeyedMessageRow {
    #[sqlx(flatten)]
    pub(crate) message: MessageRow,
    pub(crate) request_hash: Option<Vec<u8>>,
}

/// The message an instance's idempotency key names (`$1` the instance, `$2` the key).
pub(crate) const KEYED_MESSAGE: &str = concat!(
    "SELECT ",
    message_columns!(),
    ", request_hash FROM messages WHERE instance_id = $1 AND idempotency_key = $2"
);

fn corrupt(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { entity: "message", detail: detail.to_string() }
}

impl TryFrom<MessageRow> for Message {
    type Error = StoreError;

    fn try_from(row: MessageRow) -> Result<Self, StoreError> {
        Ok(Message {
            id: row.id.into(),
            instance_id: row.instance_id.into(),
            direction: row.direction.parse().map_err(corrupt)?,
            chat_jid: row.chat_jid,
            sender_jid: row.sender_jid,
            wa_message_id: row.wa_message_id,
            kind: row.kind.parse().map_err(corrupt)?,
            content: row.content.0,
            text: row.text,
            quoted_message_id: row.quoted_message_id,
            status: row.status.parse().map_err(corrupt)?,
            failure_reason: row.failure_reason,
            idempotency_key: row.idempotency_key,
            origin: row.origin.parse().map_err(corrupt)?,
            created_at: Timestamp::from_datetime(row.created_at),
            updated_at: Timestamp::from_datetime(row.updated_at),
            sent_at: row.sent_at.map(Timestamp::from_datetime),
            delivered_at: row.delivered_at.map(Timestamp::from_datetime),
            read_at: row.read_at.map(Timestamp::from_datetime),
        })
    }
}

macro_rules! impl_message_store {
    ($store:ty, $fence_lock:literal) => {
        use async_trait::async_trait;
        use gw_core::{InstanceId, Message, MessageId, MessageStatus, Timestamp};
        use gw_store::{
            Enqueued, MessageStore, NewInboundMessage, NewOutboundMessage, OwnerEpoch, Page, PageRequest,
            QueuedMessage, RecordedInbound, StoreError, StoreResult,
        };
        use sqlx::types::Json;

        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::messages::{KEYED_MESSAGE, KeyedMessageRow, MessageRow, message_columns};
        use crate::outbox_writer::Written;

        fn to_messages(rows: Vec<MessageRow>) -> StoreResult<Vec<Message>> {
            rows.into_iter().map(Message::try_from).collect()
        }

        impl $store {
            /// The result of a (possibly fenced) update of a queued message that returned `row`.
            async fn fenced_message(
                &self,
                id: MessageId,
                row: Option<MessageRow>,
                fence: Option<OwnerEpoch>,
            ) -> StoreResult<Message> {
                match (row, fence) {
                    (Some(row), _) => row.try_into(),
                    (None, Some(fence)) => Err(self.message_refusal(id, fence).await),
                    (None, None) => Err(StoreError::not_found("message")),
                }
            }
        }

        #[async_trait]
        impl MessageStore for $store {
            async fn enqueue_message(&self, new: NewOutboundMessage) -> StoreResult<Enqueued> {
                // Committed by the outbox writer together with whatever else is being accepted right now.
                match self.outbox.submit(new).await? {
                    Written::Enqueued(enqueued) => Ok(*enqueued),
                    Written::Refused(subscription) => Err(self.refused_reservation(subscription, false).await),
                }
            }

            async fn find_idempotent_message(
                &self,
                instance_id: InstanceId,
                key: &str,
            ) -> StoreResult<Option<(Message, Option<Vec<u8>>)>> {
                let row = sqlx::query_as::<_, KeyedMessageRow>(KEYED_MESSAGE)
                    .bind(instance_id.as_uuid())
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err("message"))?;
                row.map(|r| Ok((r.message.try_into()?, r.request_hash))).transpose()
            }

            async fn queued_messages(&self, instance_id: InstanceId, limit: u32) -> StoreResult<Vec<QueuedMessage>> {
                #[derive(sqlx::FromRow)]
                struct Queued {
                    #[sqlx(flatten)]
                    message: MessageRow,
                    media: Option<Vec<u8>>,
                }
                let rows = sqlx::query_as::<_, Queued>(concat!(
                    "SELECT ",
                    message_columns!(),
                    ", media FROM messages WHERE instance_id = $1 AND status = 'queued' ORDER BY id LIMIT $2"
                ))
                .bind(instance_id.as_uuid())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("message"))?;
                rows.into_iter()
                    .map(|row| Ok(QueuedMessage { message: row.message.try_into()?, media: row.media }))
                    .collect()
            }

            async fn mark_message_sent(
                &self,
                id: MessageId,
                at: Timestamp,
                fence: Option<OwnerEpoch>,
            ) -> StoreResult<Message> {
                let row = sqlx::query_as::<_, MessageRow>(concat!(
                    "UPDATE messages SET status = 'sent', media = NULL, sent_at = $2, updated_at = $2 \
                     WHERE id = $1 AND status = 'queued'",
                    crate::cluster::fence_on_instance_of!("messages.instance_id", "$3", $fence_lock),
                    " RETURNING ",
                    message_columns!()
                ))
                .bind(id.as_uuid())
                .bind(at.as_datetime())
                .bind(fence.map(|f| f.get()))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("message"))?;
                self.fenced_message(id, row, fence).await
            }

            async fn mark_message_failed(
                &self,
                id: MessageId,
                reason: &str,
                at: Timestamp,
                fence: Option<OwnerEpoch>,
            ) -> StoreResult<Message> {
                let row = sqlx::query_as::<_, MessageRow>(concat!(
                    "UPDATE messages SET status = 'failed', failure_reason = $2, media = NULL, updated_at = $3 \
                     WHERE id = $1 AND status = 'queued'",
                    crate::cluster::fence_on_instance_of!("messages.instance_id", "$4", $fence_lock),
                    " RETURNING ",
                    message_columns!()
                ))
                .bind(id.as_uuid())
                .bind(reason)
                .bind(at.as_datetime())
                .bind(fence.map(|f| f.get()))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("message"))?;
                self.fenced_message(id, row, fence).await
            }

            async fn apply_receipt(
                &self,
                instance_id: InstanceId,
                wa_message_ids: &[String],
                status: MessageStatus,
                at: Timestamp,
                fence: Option<OwnerEpoch>,
            ) -> StoreResult<Vec<Message>> {
                let earlier: &[&str] = match status {
                    MessageStatus::Delivered => &["sent"],
                    MessageStatus::Read => &["sent", "delivered"],
                    _ => return Ok(Vec::new()),
                };
                let mut changed = Vec::new();
                let mut tx = self.begin_write().await?;
                if let Some(fence) = fence {
                    let current: Option<(i64,)> = sqlx::query_as(crate::cluster::epoch_under_lock!($fence_lock))
                        .bind(instance_id.as_uuid())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err("instance"))?;
                    if current.is_some_and(|(epoch,)| epoch != fence.get()) {
                        return Err(StoreError::Fenced { instance: instance_id });
                    }
                }
                for wa_id in wa_message_ids {
                    let row = sqlx::query_as::<_, MessageRow>(concat!(
                        "UPDATE messages SET status = $3, \
                         delivered_at = COALESCE(delivered_at, $4), \
                         read_at = CASE WHEN $3 = 'read' THEN $4 ELSE read_at END, updated_at = $4 \
                         WHERE instance_id = $1 AND direction = 'outbound' AND wa_message_id = $2 \
                         AND (status = $5 OR status = $6)",
                        crate::cluster::fence_on_instance_of!("$1", "$7", $fence_lock),
                        " RETURNING ",
                        message_columns!()
                    ))
                    .bind(instance_id.as_uuid())
                    .bind(wa_id)
                    .bind(status.as_str())
                    .bind(at.as_datetime())
                    .bind(earlier[0])
                    .bind(earlier.get(1).copied().unwrap_or(earlier[0]))
                    .bind(fence.map(|f| f.get()))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err("message"))?;
                    if let Some(row) = row {
                        changed.push(Message::try_from(row)?);
                    }
                }
                tx.commit().await.map_err(db_err("message"))?;
                Ok(changed)
            }

            async fn record_inbound(&self, new: NewInboundMessage) -> StoreResult<RecordedInbound> {
                let mut tx = self.begin_write().await?;
                if let Some(fence) = new.fence {
                    // Under the instance row's lock until commit, as every fenced write (see cluster.rs).
                    let current: Option<(i64,)> = sqlx::query_as(crate::cluster::epoch_under_lock!($fence_lock))
                        .bind(new.instance_id.as_uuid())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err("instance"))?;
                    if current.is_some_and(|(epoch,)| epoch != fence.get()) {
                        return Err(StoreError::Fenced { instance: new.instance_id });
                    }
                }
                let inserted = sqlx::query_as::<_, MessageRow>(concat!(
                    "INSERT INTO messages (id, instance_id, direction, chat_jid, sender_jid, wa_message_id, kind, \
                     content, text, quoted_message_id, status, origin, created_at, updated_at) \
                     VALUES ($1, $2, 'inbound', $3, $4, $5, $6, $7, $8, $9, 'received', 'whatsapp', $10, $10) \
                     ON CONFLICT (instance_id, direction, wa_message_id) WHERE wa_message_id IS NOT NULL \
                     DO NOTHING RETURNING ",
                    message_columns!()
                ))
                .bind(new.id.as_uuid())
                .bind(new.instance_id.as_uuid())
                .bind(&new.chat_jid)
                .bind(&new.sender_jid)
                .bind(&new.wa_message_id)
                .bind(new.kind.as_str())
                .bind(Json(&new.content))
                .bind(new.text.as_deref())
                .bind(new.quoted_message_id.as_deref())
                .bind(new.at.as_datetime())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err_fk("message", OnForeignKey::MissingParent("instance")))?;
                let recorded = match inserted {
                    Some(row) => RecordedInbound { message: row.try_into()?, created: true, processed: false },
                    None => {
                        #[derive(sqlx::FromRow)]
                        struct Existing {
                            #[sqlx(flatten)]
                            message: MessageRow,
                            processed: bool,
                        }
                        let row = sqlx::query_as::<_, Existing>(concat!(
                            "SELECT ",
                            message_columns!(),
                            ", processed FROM messages WHERE instance_id = $1 AND direction = 'inbound' \
                             AND wa_message_id = $2"
                        ))
                        .bind(new.instance_id.as_uuid())
                        .bind(&new.wa_message_id)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db_err("message"))?;
                        RecordedInbound { message: row.message.try_into()?, created: false, processed: row.processed }
                    }
                };
                tx.commit().await.map_err(db_err("message"))?;
                Ok(recorded)
            }

            async fn finish_inbound(
                &self,
                id: MessageId,
                status: MessageStatus,
                text: Option<String>,
                reason: Option<String>,
                at: Timestamp,
                fence: Option<OwnerEpoch>,
            ) -> StoreResult<()> {
                let done = sqlx::query(concat!(
                    "UPDATE messages SET status = $2, text = COALESCE($3, text), failure_reason = $4, \
                     processed = TRUE, updated_at = $5 WHERE id = $1 AND direction = 'inbound'",
                    crate::cluster::fence_on_instance_of!("messages.instance_id", "$6", $fence_lock)
                ))
                .bind(id.as_uuid())
                .bind(status.as_str())
                .bind(text)
                .bind(reason)
                .bind(at.as_datetime())
                .bind(fence.map(|f| f.get()))
                .execute(&self.pool)
                .await
                .map_err(db_err("message"))?;
                if done.rows_affected() == 0
                    && let Some(fence) = fence
                    && let err @ StoreError::Fenced { .. } = self.message_refusal(id, fence).await
                {
                    return Err(err);
                }
                Ok(())
            }

            async fn get_message(&self, instance_id: InstanceId, id: MessageId) -> StoreResult<Message> {
                sqlx::query_as::<_, MessageRow>(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages WHERE id = $1 AND instance_id = $2"
                ))
                .bind(id.as_uuid())
                .bind(instance_id.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("message"))?
                .ok_or(StoreError::not_found("message"))?
                .try_into()
            }

            async fn list_messages(
                &self,
                instance_id: InstanceId,
                chat_jid: Option<&str>,
                page: PageRequest,
            ) -> StoreResult<Page<Message>> {
                let rows = sqlx::query_as::<_, MessageRow>(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages WHERE instance_id = $1 AND ($2 IS NULL OR chat_jid = $2) \
                     AND ($3 IS NULL OR id > $3) ORDER BY id LIMIT $4"
                ))
                .bind(instance_id.as_uuid())
                .bind(chat_jid)
                .bind(page.after.map(|c| c.last_id()))
                .bind(i64::from(page.limit()) + 1)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("message"))?;
                Ok(Page::from_overfetch(to_messages(rows)?, page, |m| m.id.as_uuid()))
            }
        }
    };
}
pub(crate) use impl_message_store;
