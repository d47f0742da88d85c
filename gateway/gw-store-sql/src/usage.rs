//! [`gw_store::UsageStore`] in SQL both backends accept, instantiated per backend by [`impl_usage_store!`].

/// Adds to an instance's usage counter of a period (one row per subscription, instance, type and period).
pub(crate) const UPSERT_ATTRIBUTED_USAGE: &str = "INSERT INTO usage_records (id, subscription_id, instance_id, \
     record_type, count, period, record_date, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7, '{}') \
     ON CONFLICT (subscription_id, instance_id, record_type, period) WHERE instance_id IS NOT NULL \
     DO UPDATE SET count = usage_records.count + excluded.count, record_date = excluded.record_date";

/// Adds to the subscription's unattributed counter of a period: usage of no instance, or of a deleted one.
pub(crate) const UPSERT_UNATTRIBUTED_USAGE: &str = "INSERT INTO usage_records (id, subscription_id, instance_id, \
     record_type, count, period, record_date, metadata) VALUES ($1, $2, NULL, $3, $4, $5, $6, '{}') \
     ON CONFLICT (subscription_id, record_type, period) WHERE instance_id IS NULL \
     DO UPDATE SET count = usage_records.count + excluded.count, record_date = excluded.record_date";

macro_rules! impl_usage_store {
    ($store:ty) => {
        use async_trait::async_trait;
        use gw_core::UsageRecord;
        use gw_store::{StoreResult, UsageDelta, UsageFilter, UsageStore};
        use uuid::Uuid;

        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::rows::{UsageRow, usage_columns};
        use crate::usage::{UPSERT_ATTRIBUTED_USAGE, UPSERT_UNATTRIBUTED_USAGE};

        #[async_trait]
        impl UsageStore for $store {
            async fn add_usage(&self, batch: &[UsageDelta]) -> StoreResult<()> {
                if batch.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                for delta in batch {
                    let done = match delta.instance_id {
                        Some(instance_id) => {
                            sqlx::query(UPSERT_ATTRIBUTED_USAGE)
                                .bind(Uuid::now_v7())
                                .bind(delta.subscription_id.as_uuid())
                                .bind(instance_id.as_uuid())
                                .bind(delta.record_type.as_str())
                                .bind(delta.count)
                                .bind(delta.period.to_string())
                                .bind(delta.at.as_datetime())
                                .execute(&mut *tx)
                                .await
                        }
                        None => {
                            sqlx::query(UPSERT_UNATTRIBUTED_USAGE)
                                .bind(Uuid::now_v7())
                                .bind(delta.subscription_id.as_uuid())
                                .bind(delta.record_type.as_str())
                                .bind(delta.count)
                                .bind(delta.period.to_string())
                                .bind(delta.at.as_datetime())
                                .execute(&mut *tx)
                                .await
                        }
                    };
                    done.map_err(db_err_fk("usage record", OnForeignKey::MissingParent("subscription or instance")))?;
                }
                tx.commit().await.map_err(db_err("usage record"))
            }

            async fn list_usage(&self, filter: UsageFilter) -> StoreResult<Vec<UsageRecord>> {
                let rows = sqlx::query_as::<_, UsageRow>(concat!(
                    "SELECT ",
                    usage_columns!(),
                    " FROM usage_records WHERE subscription_id = $1 AND ($2 IS NULL OR instance_id = $2) \
                     AND ($3 IS NULL OR period = $3) ORDER BY period, record_type, id"
                ))
                .bind(filter.subscription_id.as_uuid())
                .bind(filter.instance_id.map(|id| id.as_uuid()))
                .bind(filter.period.map(|p| p.to_string()))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("usage record"))?;
                rows.into_iter().map(UsageRecord::try_from).collect()
            }
        }
    };
}
pub(crate) use impl_usage_store;
