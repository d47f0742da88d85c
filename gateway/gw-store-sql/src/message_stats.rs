//! [`gw_store::MessageStatStore`] in SQL both backends accept, instantiated per backend by
//! [`impl_message_stat_store!`].

macro_rules! impl_message_stat_store {
    ($store:ty) => {
        use async_trait::async_trait;
        use chrono::NaiveDate;
        use gw_core::{InstanceId, MessageStat};
        use gw_store::{MessageStatDelta, MessageStatStore, StoreResult};
        use uuid::Uuid;

        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::rows::{MessageStatRow, message_stat_columns};

        #[async_trait]
        impl MessageStatStore for $store {
            async fn add_message_stats(&self, batch: &[MessageStatDelta]) -> StoreResult<()> {
                if batch.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                for delta in batch {
                    sqlx::query(
                        "INSERT INTO message_stats (id, instance_id, date, messages_sent, messages_received, \
                         messages_failed, api_calls) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (instance_id, date) DO UPDATE SET \
                         messages_sent = message_stats.messages_sent + excluded.messages_sent, \
                         messages_received = message_stats.messages_received + excluded.messages_received, \
                         messages_failed = message_stats.messages_failed + excluded.messages_failed, \
                         api_calls = message_stats.api_calls + excluded.api_calls",
                    )
                    .bind(Uuid::now_v7())
                    .bind(delta.instance_id.as_uuid())
                    .bind(delta.date)
                    .bind(delta.messages_sent)
                    .bind(delta.messages_received)
                    .bind(delta.messages_failed)
                    .bind(delta.api_calls)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err_fk("message stat", OnForeignKey::MissingParent("instance")))?;
                }
                tx.commit().await.map_err(db_err("message stat"))
            }

            async fn list_message_stats(
                &self,
                instance_id: InstanceId,
                from: NaiveDate,
                to: NaiveDate,
            ) -> StoreResult<Vec<MessageStat>> {
                let rows = sqlx::query_as::<_, MessageStatRow>(concat!(
                    "SELECT ",
                    message_stat_columns!(),
                    " FROM message_stats WHERE instance_id = $1 AND date >= $2 AND date <= $3 ORDER BY date"
                ))
                .bind(instance_id.as_uuid())
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("message stat"))?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
        }
    };
}
pub(crate) use impl_message_stat_store;
