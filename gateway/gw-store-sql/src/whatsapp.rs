//! [`gw_store::WhatsAppStateStore`] in SQL both backends accept, instantiated per backend by
//! [`impl_whatsapp_state_store!`] the way the other aggregates' files do (see `shared.rs`).
//! The table is `whatsapp_state` (migration 0007); values arrive encrypted and are stored as they are.

/// Keys per `IN (...)` list: far below SQLite's and PostgreSQL's bind-parameter limits.
pub(crate) const KEYS_PER_QUERY: usize = 500;

/// `$first, $first+1, ...` for `count` parameters.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// Instantiates the trait for a backend; `$fence_lock` is its row lock for fence checks (see
/// [`crate::cluster::fence_on_instance_of!`]).
macro_rules! impl_whatsapp_state_store {
    ($store:ty, $fence_lock:literal) => {
        use async_trait::async_trait;
        use gw_core::{InstanceId, Timestamp};
        use gw_store::{OwnerEpoch, StoreError, StoreResult, WaStateRecord, WaStateWrite, WhatsAppStateStore};

        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::whatsapp::{KEYS_PER_QUERY, placeholders};

        type Row = (String, Vec<u8>, i64);

        fn record((key, value, stamp): Row) -> WaStateRecord {
            WaStateRecord { key, value, stamp }
        }

        impl $store {
            /// What a fenced take or delete that changed nothing means: nothing to change (`Ok`), or another
            /// owner's epoch (fenced).
            async fn wa_state_unchanged(&self, instance_id: InstanceId, fence: Option<OwnerEpoch>) -> StoreResult<()> {
                match fence {
                    Some(fence) => match self.instance_refusal(instance_id, fence, "instance").await {
                        err @ StoreError::Fenced { .. } => Err(err),
                        _ => Ok(()),
                    },
                    None => Ok(()),
                }
            }
        }

        #[async_trait]
        impl WhatsAppStateStore for $store {
            async fn wa_state_get(
                &self,
                instance_id: InstanceId,
                kind: &str,
                key: &str,
            ) -> StoreResult<Option<WaStateRecord>> {
                Ok(sqlx::query_as::<_, Row>(
                    "SELECT key, value, stamp FROM whatsapp_state WHERE instance_id = $1 AND kind = $2 AND key = $3",
                )
                .bind(instance_id.as_uuid())
                .bind(kind)
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("whatsapp state"))?
                .map(record))
            }

            async fn wa_state_get_many(
                &self,
                instance_id: InstanceId,
                kind: &str,
                keys: &[String],
            ) -> StoreResult<Vec<WaStateRecord>> {
                let mut found = Vec::with_capacity(keys.len());
                for chunk in keys.chunks(KEYS_PER_QUERY) {
                    // Only placeholders are formatted into the statement; every value is bound.
                    let sql = format!(
                        "SELECT key, value, stamp FROM whatsapp_state WHERE instance_id = $1 AND kind = $2 \
                         AND key IN ({})",
                        placeholders(3, chunk.len())
                    );
                    let mut query =
                        sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql)).bind(instance_id.as_uuid()).bind(kind);
                    for key in chunk {
                        query = query.bind(key.as_str());
                    }
                    let rows = query.fetch_all(&self.pool).await.map_err(db_err("whatsapp state"))?;
                    found.extend(rows.into_iter().map(record));
                }
                Ok(found)
            }

            async fn wa_state_list(
                &self,
                instance_id: InstanceId,
                kind: &str,
                prefix: &str,
            ) -> StoreResult<Vec<WaStateRecord>> {
                // substr/length rather than LIKE: keys are JIDs and ids, which may hold `_` or `%`.
                Ok(sqlx::query_as::<_, Row>(
                    "SELECT key, value, stamp FROM whatsapp_state WHERE instance_id = $1 AND kind = $2 \
                     AND substr(key, 1, length($3)) = $3 ORDER BY key",
                )
                .bind(instance_id.as_uuid())
                .bind(kind)
                .bind(prefix)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("whatsapp state"))?
                .into_iter()
                .map(record)
                .collect())
            }

            async fn wa_state_apply(
                &self,
                instance_id: InstanceId,
                writes: Vec<WaStateWrite>,
                fence: Option<OwnerEpoch>,
            ) -> StoreResult<()> {
                if writes.is_empty() {
                    return Ok(());
                }
                let now = Timestamp::now().as_datetime();
                let mut tx = self.begin_write().await?;
                if let Some(fence) = fence {
                    // Under the instance row's lock until commit: a take-over waits for these writes or they fail.
                    let current: Option<(i64,)> = sqlx::query_as(crate::cluster::epoch_under_lock!($fence_lock))
                        .bind(instance_id.as_uuid())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err("instance"))?;
                    match current {
                        Some((epoch,)) if epoch != fence.get() => {
                            return Err(StoreError::Fenced { instance: instance_id });
                        }
                        Some(_) => {}
                        None => return Err(StoreError::not_found("instance")),
                    }
                }
                for write in writes {
                    match write {
                        WaStateWrite::Put { kind, key, value, stamp } => {
                            sqlx::query(
                                "INSERT INTO whatsapp_state (instance_id, kind, key, value, stamp, updated_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (instance_id, kind, key) DO UPDATE \
                                 SET value = excluded.value, stamp = excluded.stamp, updated_at = excluded.updated_at",
                            )
                            .bind(instance_id.as_uuid())
                            .bind(kind)
                            .bind(key)
                            .bind(value)
                            .bind(stamp)
                            .bind(now)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err_fk("whatsapp state", OnForeignKey::MissingParent("instance")))?;
                        }
                        WaStateWrite::Delete { kind, key } => {
                            sqlx::query("DELETE FROM whatsapp_state WHERE instance_id = $1 AND kind = $2 AND key = $3")
                                .bind(instance_id.as_uuid())
                                .bind(kind)
                                .bind(key)
                                .execute(&mut *tx)
                                .await
                                .map_err(db_err("whatsapp state"))?;
                        }
                        WaStateWrite::DeletePrefix { kind, prefix } => {
                            sqlx::query(
                                "DELETE FROM whatsapp_state WHERE instance_id = $1 AND kind = $2 \
                                 AND substr(key, 1, length($3)) = $3",
                            )
                            .bind(instance_id.as_uuid())
                            .bind(kind)
                            .bind(prefix)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err("whatsapp state"))?;
                        }
                    }
                }
                tx.commit().await.map_err(db_err("whatsapp state"))
            }

            async fn wa_state_take(
                &self,
                instance_id: InstanceId,
                kind: &str,
                key: &str,
                fence: Option<OwnerEpoch>,
            ) -> StoreResult<Option<WaStateRecord>> {
                // One DELETE ... RETURNING: the row goes to exactly one caller.
                let taken = sqlx::query_as::<_, Row>(concat!(
                    "DELETE FROM whatsapp_state WHERE instance_id = $1 AND kind = $2 AND key = $3",
                    crate::cluster::fence_on_instance_of!("$1", "$4", $fence_lock),
                    " RETURNING key, value, stamp"
                ))
                .bind(instance_id.as_uuid())
                .bind(kind)
                .bind(key)
                .bind(fence.map(|f| f.get()))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("whatsapp state"))?;
                if taken.is_none() {
                    self.wa_state_unchanged(instance_id, fence).await?;
                }
                Ok(taken.map(record))
            }

            async fn wa_state_delete_stamped_before(
                &self,
                instance_id: InstanceId,
                kind: &str,
                cutoff: i64,
                fence: Option<OwnerEpoch>,
            ) -> StoreResult<u64> {
                let removed = sqlx::query(concat!(
                    "DELETE FROM whatsapp_state WHERE instance_id = $1 AND kind = $2 AND stamp < $3",
                    crate::cluster::fence_on_instance_of!("$1", "$4", $fence_lock)
                ))
                .bind(instance_id.as_uuid())
                .bind(kind)
                .bind(cutoff)
                .bind(fence.map(|f| f.get()))
                .execute(&self.pool)
                .await
                .map_err(db_err("whatsapp state"))?
                .rows_affected();
                if removed == 0 {
                    self.wa_state_unchanged(instance_id, fence).await?;
                }
                Ok(removed)
            }
        }
    };
}
