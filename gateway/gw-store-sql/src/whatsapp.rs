//! [`gw_store::WhatsAppStateStore`] in SQL both backends accept, instantiated per backend by
//! [`impl_whatsapp_state_store!`] the way the other aggregates' files do (see `shared.rs`).
//! The table is `whatsapp_state` (migration 0007); values arrive encrypted and are stored as they are.

/// Keys per `IN (...)` list: far below SQLite's and PostgreSQL's bind-parameter limits.
pub(crate) const KEYS_PER_QUERY: usize = 500;

/// `$first, $first+1, ...` for `count` parameters.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

macro_rules! impl_whatsapp_state_store {
    ($store:ty) => {
        use async_trait::async_trait;
        use gw_core::{InstanceId, Timestamp};
        use gw_store::{StoreResult, WaStateRecord, WaStateWrite, WhatsAppStateStore};

        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::whatsapp::{KEYS_PER_QUERY, placeholders};

        type Row = (String, Vec<u8>, i64);

        fn record((key, value, stamp): Row) -> WaStateRecord {
            WaStateRecord { key, value, stamp }
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

            async fn wa_state_apply(&self, instance_id: InstanceId, writes: Vec<WaStateWrite>) -> StoreResult<()> {
                if writes.is_empty() {
                    return Ok(());
                }
                let now = Timestamp::now().as_datetime();
                let mut tx = self.begin_write().await?;
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
            ) -> StoreResult<Option<WaStateRecord>> {
                // One DELETE ... RETURNING: the row goes to exactly one caller.
                Ok(sqlx::query_as::<_, Row>(
                    "DELETE FROM whatsapp_state WHERE instance_id = $1 AND kind = $2 AND key = $3 \
                     RETURNING key, value, stamp",
                )
                .bind(instance_id.as_uuid())
                .bind(kind)
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("whatsapp state"))?
                .map(record))
            }

            async fn wa_state_delete_stamped_before(
                &self,
                instance_id: InstanceId,
                kind: &str,
                cutoff: i64,
            ) -> StoreResult<u64> {
                Ok(sqlx::query("DELETE FROM whatsapp_state WHERE instance_id = $1 AND kind = $2 AND stamp < $3")
                    .bind(instance_id.as_uuid())
                    .bind(kind)
                    .bind(cutoff)
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("whatsapp state"))?
                    .rows_affected())
            }
        }
    };
}
