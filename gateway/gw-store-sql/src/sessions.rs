//! [`gw_store::SessionStore`] in SQL both backends accept, instantiated per backend by [`impl_session_store!`].

macro_rules! impl_session_store {
    ($store:ty, $fence_lock:literal) => {
        use async_trait::async_trait;
        use gw_core::{InstanceId, SessionData, Timestamp};
        use gw_store::{SessionStore, StoreError, StoreResult};
        use uuid::Uuid;

        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::rows::{SessionRow, session_columns};

        #[async_trait]
        impl SessionStore for $store {
            async fn save_session(
                &self,
                instance_id: InstanceId,
                auth_state: Vec<u8>,
                at: Timestamp,
                fence: Option<gw_store::OwnerEpoch>,
            ) -> StoreResult<SessionData> {
                // `WHERE` before `ON CONFLICT`: SQLite needs one there to parse an upsert from a `SELECT`.
                let row = sqlx::query_as::<_, SessionRow>(concat!(
                    "INSERT INTO session_data (id, instance_id, auth_state, created_at, updated_at, session_valid, \
                     last_backup) SELECT $1, $2, $3, $4, $4, TRUE, $4 WHERE TRUE",
                    crate::cluster::fence_on_instance_of!("$2", "$5", $fence_lock),
                    " ON CONFLICT (instance_id) DO UPDATE SET auth_state = excluded.auth_state, \
                     updated_at = excluded.updated_at, session_valid = TRUE, last_backup = excluded.last_backup \
                     RETURNING ",
                    session_columns!()
                ))
                .bind(Uuid::now_v7())
                .bind(instance_id.as_uuid())
                .bind(auth_state)
                .bind(at.as_datetime())
                .bind(fence.map(|f| f.get()))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err_fk("session", OnForeignKey::MissingParent("instance")))?;
                match (row, fence) {
                    (Some(row), _) => Ok(row.into()),
                    (None, Some(fence)) => Err(self.instance_refusal(instance_id, fence, "instance").await),
                    (None, None) => Err(StoreError::not_found("instance")),
                }
            }

            async fn load_session(&self, instance_id: InstanceId) -> StoreResult<Option<SessionData>> {
                Ok(sqlx::query_as::<_, SessionRow>(concat!(
                    "SELECT ",
                    session_columns!(),
                    " FROM session_data WHERE instance_id = $1"
                ))
                .bind(instance_id.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("session"))?
                .map(Into::into))
            }

            async fn invalidate_session(
                &self,
                instance_id: InstanceId,
                at: Timestamp,
                fence: Option<gw_store::OwnerEpoch>,
            ) -> StoreResult<()> {
                let done = sqlx::query(concat!(
                    "UPDATE session_data SET session_valid = FALSE, updated_at = $2 WHERE instance_id = $1",
                    crate::cluster::fence_on_instance_of!("$1", "$3", $fence_lock)
                ))
                .bind(instance_id.as_uuid())
                .bind(at.as_datetime())
                .bind(fence.map(|f| f.get()))
                .execute(&self.pool)
                .await
                .map_err(db_err("session"))?;
                // Nothing changed: no session (not an error), or another owner's epoch (fenced).
                if done.rows_affected() == 0
                    && let Some(fence) = fence
                    && let err @ StoreError::Fenced { .. } = self.instance_refusal(instance_id, fence, "instance").await
                {
                    return Err(err);
                }
                Ok(())
            }

            async fn delete_session(&self, instance_id: InstanceId) -> StoreResult<()> {
                sqlx::query("DELETE FROM session_data WHERE instance_id = $1")
                    .bind(instance_id.as_uuid())
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("session"))?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_session_store;
