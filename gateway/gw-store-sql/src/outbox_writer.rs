//! The outbox writer: accepted sends committed in groups ([`crate::group_commit`]), instantiated per backend by
//! [`impl_outbox_writer!`].
//!
//! A batch is one transaction: one multi-row insert of every send (`ON CONFLICT DO NOTHING` on the idempotency
//! key), a look-up of the first result for each send whose key was used before, then one quota reservation per
//! subscription and month for all the rows created, then the commit. Each caller's answer is the one its send gets
//! alone, because whenever a batch could not give it, the batch is rolled back and its sends are written one by
//! one, each in its own transaction as before batching:
//!
//! - a quota that cannot take the whole batch (which of the sends fit is decided one by one, in arrival order);
//! - any statement that fails (an instance deleted meanwhile, say): only that send gets the error;
//! - two sends of the batch with one idempotency key: the later ones wait for the batch's commit and are then
//!   written alone, finding the first one's row as they would have one after the other.
//!
//! Only when the database itself is unavailable (it cannot begin or commit, or a connection broke) does every
//! caller of the batch get that error, as each would have alone; nothing is then committed.

use gw_core::SubscriptionId;
use gw_store::{Enqueued, StoreError};

/// What the writer did with one send. A refused reservation is described by the store (it reads the subscription
/// to say whether it is inactive or exhausted) once the writer has moved on.
#[derive(Debug)]
pub(crate) enum Written {
    Enqueued(Box<Enqueued>),
    Refused(SubscriptionId),
}

/// Why a batch was not committed as one.
#[derive(Debug)]
pub(crate) enum BatchFailed {
    /// A caller stopped waiting before the commit: the batch is written again without it.
    Abandoned,
    /// The database failed the batch as a whole: every caller gets this error.
    Shared(StoreError),
    /// One send could not be written as part of the batch: each is written alone.
    OneByOne,
}

impl From<StoreError> for BatchFailed {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => BatchFailed::Shared(error),
            _ => BatchFailed::OneByOne,
        }
    }
}

/// Most sends committed in one transaction: 16 bound values each, far below either database's limit on one
/// statement's parameters, and enough that a batch's commit is shared by every send arriving meanwhile.
pub(crate) const MAX_BATCH: usize = 128;

/// The status an outbound row starts in.
pub(crate) fn outbound_status(dropped_reason: Option<&str>) -> &'static str {
    if dropped_reason.is_some() { "dropped" } else { "queued" }
}

macro_rules! impl_outbox_writer {
    ($db:ty, $pool:ty, $begin:literal) => {
        use std::collections::{HashMap, HashSet};

        use chrono::{DateTime, Utc};
        use gw_store::{Enqueued, NewOutboundMessage, StoreError, StoreResult};
        use sqlx::Transaction;
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::group_commit::{BatchWriter, Pending, share};
        use crate::messages::{KEYED_MESSAGE, KeyedMessageRow, MessageRow, message_columns};
        use crate::outbox_writer::{BatchFailed, Written, outbound_status};

        type Waiting = Pending<NewOutboundMessage, Written>;

        /// Writes batches of accepted sends; see the module documentation of `outbox_writer`.
        #[derive(Clone)]
        pub(crate) struct OutboxWriter {
            pool: $pool,
        }

        impl OutboxWriter {
            pub(crate) fn new(pool: $pool) -> Self {
                Self { pool }
            }

            async fn begin(&self) -> StoreResult<Transaction<'static, $db>> {
                self.pool.begin_with($begin).await.map_err(db_err("transaction"))
            }

            /// The batch in one transaction, or why not.
            async fn together(&self, batch: &[Waiting]) -> Result<Vec<Written>, BatchFailed> {
                let mut tx = self.begin().await.map_err(BatchFailed::Shared)?;
                let sends: Vec<&NewOutboundMessage> = batch.iter().map(|pending| &pending.item).collect();
                let mut created: HashMap<Uuid, MessageRow> =
                    insert(&mut tx, &sends).await?.into_iter().map(|row| (row.id, row)).collect();
                // Units to take per (subscription, start of the month the send was accepted in).
                let mut charges: HashMap<(Uuid, DateTime<Utc>), i64> = HashMap::new();
                let mut answers = Vec::with_capacity(sends.len());
                for new in sends {
                    let enqueued = match created.remove(&new.id.as_uuid()) {
                        Some(row) => {
                            let period = new.at.period().start().as_datetime();
                            *charges.entry((new.charge_to.as_uuid(), period)).or_default() += 1;
                            Enqueued::Created(row.try_into()?)
                        }
                        None => first_result(&mut tx, new).await?,
                    };
                    answers.push(Written::Enqueued(Box::new(enqueued)));
                }
                for ((subscription, period), count) in charges {
                    if !reserve(&mut tx, subscription, count, period).await? {
                        return Err(BatchFailed::OneByOne);
                    }
                }
                if batch.iter().any(Pending::abandoned) {
                    return Err(BatchFailed::Abandoned);
                }
                tx.commit().await.map_err(|e| BatchFailed::Shared(db_err("message")(e)))?;
                Ok(answers)
            }

            /// One send in its own transaction: what every send got before batching.
            async fn alone(&self, pending: &Waiting) -> StoreResult<Written> {
                let new = &pending.item;
                let mut tx = self.begin().await?;
                let outcome = match insert(&mut tx, &[new]).await?.pop() {
                    Some(row) => {
                        // One unit of the monthly quota, in the transaction that stores the row: a send that
                        // fails or is abandoned after this point (a timeout, a crash) rolls both back.
                        let period = new.at.period().start().as_datetime();
                        if !reserve(&mut tx, new.charge_to.as_uuid(), 1, period).await? {
                            tx.rollback().await.map_err(db_err("message"))?;
                            return Ok(Written::Refused(new.charge_to));
                        }
                        Enqueued::Created(row.try_into()?)
                    }
                    None => first_result(&mut tx, new).await?,
                };
                if pending.abandoned() {
                    // Nobody waits for this answer; dropping the transaction rolls the send back.
                    return Err(StoreError::Backend("the caller stopped waiting: rolled back".into()));
                }
                tx.commit().await.map_err(db_err("message"))?;
                Ok(Written::Enqueued(Box::new(outcome)))
            }
        }

        impl BatchWriter for OutboxWriter {
            type Item = NewOutboundMessage;
            type Answer = Written;

            async fn write(&self, batch: Vec<Waiting>) {
                let mut keys = HashSet::new();
                let (mut together, mut alone): (Vec<_>, Vec<_>) = batch.into_iter().partition(|pending| {
                    let new = &pending.item;
                    new.idempotency_key.as_ref().is_none_or(|key| keys.insert((new.instance_id, key.clone())))
                });
                loop {
                    together.retain(|pending| !pending.abandoned());
                    if together.is_empty() {
                        break;
                    }
                    match self.together(&together).await {
                        Ok(answers) => {
                            for (pending, written) in together.into_iter().zip(answers) {
                                pending.answer(Ok(written));
                            }
                            break;
                        }
                        Err(BatchFailed::Abandoned) => continue,
                        Err(BatchFailed::Shared(error)) => {
                            for pending in together {
                                pending.answer(Err(share(&error)));
                            }
                            break;
                        }
                        Err(BatchFailed::OneByOne) => {
                            alone.splice(0..0, together);
                            break;
                        }
                    }
                }
                for pending in alone {
                    if !pending.abandoned() {
                        let written = self.alone(&pending).await;
                        pending.answer(written);
                    }
                }
            }
        }

        /// Inserts the sends in one statement; returns the rows created (a send whose idempotency key is taken
        /// creates none).
        async fn insert(
            tx: &mut Transaction<'static, $db>,
            sends: &[&NewOutboundMessage],
        ) -> StoreResult<Vec<MessageRow>> {
            let mut query = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO messages (id, instance_id, direction, chat_jid, wa_message_id, kind, content, text, \
                 quoted_message_id, media, status, failure_reason, idempotency_key, request_hash, origin, \
                 created_at, updated_at) ",
            );
            query.push_values(sends, |mut row, new| {
                row.push_bind(new.id.as_uuid())
                    .push_bind(new.instance_id.as_uuid())
                    .push("'outbound'")
                    .push_bind(new.chat_jid.as_str())
                    .push_bind(new.wa_message_id.as_str())
                    .push_bind(new.kind.as_str())
                    .push_bind(Json(&new.content))
                    .push_bind(new.text.as_deref())
                    .push_bind(new.quoted_message_id.as_deref())
                    .push_bind(new.media.as_deref())
                    .push_bind(outbound_status(new.dropped_reason.as_deref()))
                    .push_bind(new.dropped_reason.as_deref())
                    .push_bind(new.idempotency_key.as_deref())
                    .push_bind(new.request_hash.as_deref())
                    .push_bind(new.origin.label())
                    .push_bind(new.at.as_datetime())
                    .push_bind(new.at.as_datetime());
            });
            query.push(concat!(
                " ON CONFLICT (instance_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING ",
                message_columns!()
            ));
            query
                .build_query_as::<MessageRow>()
                .fetch_all(&mut **tx)
                .await
                .map_err(db_err_fk("message", OnForeignKey::MissingParent("instance")))
        }

        /// The key was used before (and charged then): same request -> the first result; another request ->
        /// refused. Neither charges again.
        async fn first_result(tx: &mut Transaction<'static, $db>, new: &NewOutboundMessage) -> StoreResult<Enqueued> {
            let row = sqlx::query_as::<_, KeyedMessageRow>(KEYED_MESSAGE)
                .bind(new.instance_id.as_uuid())
                .bind(new.idempotency_key.as_deref())
                .fetch_one(&mut **tx)
                .await
                .map_err(db_err("message"))?;
            Ok(if row.request_hash == new.request_hash {
                Enqueued::Replayed(row.message.try_into()?)
            } else {
                Enqueued::KeyReused
            })
        }

        /// Takes `count` units of the subscription's monthly quota; false if they do not fit (or it is inactive).
        async fn reserve(
            tx: &mut Transaction<'static, $db>,
            subscription: Uuid,
            count: i64,
            period_start: DateTime<Utc>,
        ) -> StoreResult<bool> {
            let granted: Option<(i64, i64)> = sqlx::query_as(crate::subscriptions::RESERVE_MESSAGES)
                .bind(subscription)
                .bind(count)
                .bind(period_start)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_err("subscription"))?;
            Ok(granted.is_some())
        }
    };
}
pub(crate) use impl_outbox_writer;
