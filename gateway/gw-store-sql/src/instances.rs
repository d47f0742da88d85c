//! [`gw_store::InstanceStore`] in SQL both backends accept, instantiated per backend by [`impl_instance_store!`],
//! with the helpers the stores of instance-owned rows (API keys, contacts, webhooks, plugins) share: the owning
//! subscription for their audit rows, and an audited delete.

macro_rules! impl_instance_store {
    ($store:ty, $db:ty) => {
        use async_trait::async_trait;
        use gw_core::{Instance, InstanceId, SubscriptionId, Timestamp, UsageRecord};
        use gw_store::{
            Actor, ConnectionUpdate, InstancePatch, InstanceStore, NewInstance, Page, PageRequest, StoreError,
            StoreResult, Visibility,
        };
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::rows::{InstanceRow, UsageRow, instance_columns, usage_columns};
        use crate::shared::{after, now, page_limit};
        use crate::subscriptions::{RELEASE_SLOT, RESERVE_SLOT};
        use crate::usage::UPSERT_UNATTRIBUTED_USAGE;

        impl $store {
            /// The instance's owning subscription, for audit rows of instance-scoped resources.
            pub(crate) async fn instance_owner(
                conn: &mut <$db as sqlx::Database>::Connection,
                instance_id: InstanceId,
            ) -> StoreResult<SubscriptionId> {
                let owner: Option<(Uuid,)> = sqlx::query_as("SELECT subscription_id FROM instances WHERE id = $1")
                    .bind(instance_id.as_uuid())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db_err("instance"))?;
                owner.map(|(id,)| id.into()).ok_or(StoreError::not_found("instance"))
            }
        }

        #[async_trait]
        impl InstanceStore for $store {
            async fn create_instance(&self, new: NewInstance, actor: &Actor) -> StoreResult<Instance> {
                let at = now();
                let mut tx = self.begin_write().await?;
                let granted: Option<(i32, i32)> = sqlx::query_as(RESERVE_SLOT)
                    .bind(new.subscription_id.as_uuid())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err("subscription"))?;
                if granted.is_none() {
                    drop(tx);
                    return Err(self.refused_reservation(new.subscription_id, true).await);
                }
                let row = sqlx::query_as::<_, InstanceRow>(concat!(
                    "INSERT INTO instances (id, name, subscription_id, created_by_id, driver, status, created_at, \
                     updated_at, settings, is_active, connection_attempts) \
                     VALUES ($1, $2, $3, $4, $5, 'created', $6, $6, $7, TRUE, 0) RETURNING ",
                    instance_columns!()
                ))
                .bind(Uuid::now_v7())
                .bind(&new.name)
                .bind(new.subscription_id.as_uuid())
                .bind(new.created_by_id.map(|id| id.as_uuid()))
                .bind(new.driver.as_str())
                .bind(at)
                .bind(Json(&new.settings))
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err_fk("instance", OnForeignKey::MissingParent("user")))?;
                let instance = Instance::try_from(row)?;
                Self::write_audit(
                    &mut tx,
                    Some(instance.subscription_id),
                    gw_core::AuditAction::InstanceCreate,
                    Some(instance.id.to_string()),
                    actor,
                )
                .await?;
                tx.commit().await.map_err(db_err("instance"))?;
                Ok(instance)
            }

            async fn get_instance(&self, scope: Visibility, id: InstanceId) -> StoreResult<Instance> {
                sqlx::query_as::<_, InstanceRow>(concat!(
                    "SELECT ",
                    instance_columns!(),
                    " FROM instances WHERE id = $1 AND ($2 IS NULL OR subscription_id = $2)"
                ))
                .bind(id.as_uuid())
                .bind(scope.subscription_id().map(|id| id.as_uuid()))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("instance"))?
                .ok_or(StoreError::not_found("instance"))?
                .try_into()
            }

            async fn list_instances(&self, scope: Visibility, page: PageRequest) -> StoreResult<Page<Instance>> {
                let rows = sqlx::query_as::<_, InstanceRow>(concat!(
                    "SELECT ",
                    instance_columns!(),
                    " FROM instances WHERE ($1 IS NULL OR subscription_id = $1) AND ($2 IS NULL OR id > $2) \
                     ORDER BY id LIMIT $3"
                ))
                .bind(scope.subscription_id().map(|id| id.as_uuid()))
                .bind(after(page))
                .bind(page_limit(page))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("instance"))?;
                let items = rows.into_iter().map(Instance::try_from).collect::<StoreResult<Vec<_>>>()?;
                Ok(Page::from_overfetch(items, page, |i| i.id.as_uuid()))
            }

            async fn update_instance(
                &self,
                scope: Visibility,
                id: InstanceId,
                patch: InstancePatch,
                actor: &Actor,
            ) -> StoreResult<Instance> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query_as::<_, InstanceRow>(concat!(
                    "UPDATE instances SET name = COALESCE($3, name), settings = COALESCE($4, settings), \
                     is_active = COALESCE($5, is_active), updated_at = $6 \
                     WHERE id = $1 AND ($2 IS NULL OR subscription_id = $2) RETURNING ",
                    instance_columns!()
                ))
                .bind(id.as_uuid())
                .bind(scope.subscription_id().map(|id| id.as_uuid()))
                .bind(patch.name.as_deref())
                .bind(patch.settings.as_ref().map(Json))
                .bind(patch.is_active)
                .bind(now())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("instance"))?
                .ok_or(StoreError::not_found("instance"))?;
                let instance = Instance::try_from(row)?;
                Self::write_audit(
                    &mut tx,
                    Some(instance.subscription_id),
                    gw_core::AuditAction::InstanceUpdate,
                    Some(id.to_string()),
                    actor,
                )
                .await?;
                tx.commit().await.map_err(db_err("instance"))?;
                Ok(instance)
            }

            async fn update_connection(&self, id: InstanceId, update: ConnectionUpdate) -> StoreResult<Instance> {
                let at = update.at.unwrap_or_else(Timestamp::now).as_datetime();
                let row = sqlx::query_as::<_, InstanceRow>(concat!(
                    "UPDATE instances SET status = COALESCE($2, status), phone = COALESCE($3, phone), \
                     display_name = COALESCE($4, display_name), \
                     last_connected_at = COALESCE($5, last_connected_at), \
                     last_disconnected_at = COALESCE($6, last_disconnected_at), \
                     qr_code = CASE WHEN $7 THEN NULL ELSE COALESCE($8, qr_code) END, \
                     qr_code_expiry = CASE WHEN $7 THEN NULL ELSE COALESCE($9, qr_code_expiry) END, \
                     connection_attempts = COALESCE($10, connection_attempts), \
                     last_error = CASE WHEN $11 THEN NULL ELSE COALESCE($12, last_error) END, \
                     last_error_at = CASE WHEN $12 IS NULL THEN last_error_at ELSE $13 END, \
                     updated_at = $13 WHERE id = $1",
                    crate::cluster::fence_on_instances!("$14"),
                    " RETURNING ",
                    instance_columns!()
                ))
                .bind(id.as_uuid())
                .bind(update.status.map(|s| s.as_str()))
                .bind(update.phone.as_deref())
                .bind(update.display_name.as_deref())
                .bind(update.last_connected_at.map(|t| t.as_datetime()))
                .bind(update.last_disconnected_at.map(|t| t.as_datetime()))
                .bind(update.clear_qr_code)
                .bind(update.qr_code.as_deref())
                .bind(update.qr_code_expiry.map(|t| t.as_datetime()))
                .bind(update.connection_attempts)
                .bind(update.clear_last_error)
                .bind(update.last_error.as_deref())
                .bind(at)
                .bind(update.fence.map(|f| f.get()))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("instance"))?;
                match (row, update.fence) {
                    (Some(row), _) => row.try_into(),
                    (None, Some(fence)) => Err(self.instance_refusal(id, fence, "instance").await),
                    (None, None) => Err(StoreError::not_found("instance")),
                }
            }

            async fn delete_instance(&self, scope: Visibility, id: InstanceId, actor: &Actor) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let owner: Option<(Uuid,)> = sqlx::query_as(
                    "SELECT subscription_id FROM instances WHERE id = $1 AND ($2 IS NULL OR subscription_id = $2)",
                )
                .bind(id.as_uuid())
                .bind(scope.subscription_id().map(|id| id.as_uuid()))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("instance"))?;
                let (subscription_id,) = owner.ok_or(StoreError::not_found("instance"))?;

                // Usage is billing history: it outlives the instance, folded into the unattributed rows.
                let usage = sqlx::query_as::<_, UsageRow>(concat!(
                    "SELECT ",
                    usage_columns!(),
                    " FROM usage_records WHERE instance_id = $1"
                ))
                .bind(id.as_uuid())
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err("usage record"))?;
                for record in usage {
                    let record = UsageRecord::try_from(record)?;
                    sqlx::query(UPSERT_UNATTRIBUTED_USAGE)
                        .bind(Uuid::now_v7())
                        .bind(subscription_id)
                        .bind(record.record_type.as_str())
                        .bind(record.count)
                        .bind(record.period.to_string())
                        .bind(record.record_date.as_datetime())
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("usage record"))?;
                }
                sqlx::query("DELETE FROM usage_records WHERE instance_id = $1")
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("usage record"))?;
                sqlx::query("DELETE FROM instances WHERE id = $1")
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err_fk("instance", OnForeignKey::Referenced("usage records")))?;
                sqlx::query(RELEASE_SLOT)
                    .bind(subscription_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("subscription"))?;
                Self::write_audit(
                    &mut tx,
                    Some(subscription_id.into()),
                    gw_core::AuditAction::InstanceDelete,
                    Some(id.to_string()),
                    actor,
                )
                .await?;
                tx.commit().await.map_err(db_err("instance"))
            }

            async fn list_resumable_instances(&self) -> StoreResult<Vec<Instance>> {
                let rows = sqlx::query_as::<_, InstanceRow>(concat!(
                    "SELECT ",
                    instance_columns!(),
                    " FROM instances WHERE is_active \
                     AND subscription_id IN (SELECT id FROM subscriptions WHERE is_active) ORDER BY id"
                ))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("instance"))?;
                rows.into_iter().map(Instance::try_from).collect()
            }
        }

        impl $store {
            /// Deletes one row of an instance-owned table (`statement` binds the row id then the instance id) and
            /// writes its audit row (`action`, a `<resource>.delete`), in one transaction.
            pub(crate) async fn delete_instance_owned(
                &self,
                statement: &'static str,
                entity: &'static str,
                action: gw_core::AuditAction,
                instance_id: InstanceId,
                id: Uuid,
                actor: &Actor,
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let subscription_id = <$store>::instance_owner(&mut tx, instance_id).await?;
                let deleted = sqlx::query(statement)
                    .bind(id)
                    .bind(instance_id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err(entity))?;
                if deleted.rows_affected() == 0 {
                    return Err(StoreError::not_found(entity));
                }
                Self::write_audit(&mut tx, Some(subscription_id), action, Some(id.to_string()), actor).await?;
                tx.commit().await.map_err(db_err(entity))
            }
        }
    };
}
pub(crate) use impl_instance_store;
