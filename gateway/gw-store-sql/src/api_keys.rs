//! [`gw_store::ApiKeyStore`] in SQL both backends accept, instantiated per backend by [`impl_api_key_store!`].

macro_rules! impl_api_key_store {
    ($store:ty) => {
        use async_trait::async_trait;
        use gw_core::{ApiKey, ApiKeyHash, ApiKeyId, InstanceId};
        use gw_store::{
            Actor, ApiKeyPatch, ApiKeyRecord, ApiKeyStore, ApiKeyUsage, NewApiKey, Page, PageRequest, StoreError,
            StoreResult,
        };
        use sqlx::types::Json;

        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::rows::{ApiKeyRecordRow, ApiKeyRow, api_key_columns, api_key_record_select};
        use crate::shared::{after, now, page_limit};

        #[async_trait]
        impl ApiKeyStore for $store {
            async fn create_api_key(&self, new: NewApiKey, actor: &Actor) -> StoreResult<ApiKey> {
                let at = now();
                let mut tx = self.begin_write().await?;
                let subscription_id = <$store>::instance_owner(&mut tx, new.instance_id).await?;
                let key: ApiKey = sqlx::query_as::<_, ApiKeyRow>(concat!(
                    "INSERT INTO api_keys (id, instance_id, name, key_hash, permissions, is_active, created_at, \
                     updated_at, expires_at, usage_count, rate_limit) \
                     VALUES ($1, $2, $3, $4, $5, TRUE, $6, $6, $7, 0, $8) RETURNING ",
                    api_key_columns!()
                ))
                .bind(new.id.as_uuid())
                .bind(new.instance_id.as_uuid())
                .bind(&new.name)
                .bind(new.key_hash.as_bytes())
                .bind(Json(&new.permissions))
                .bind(at)
                .bind(new.expires_at.map(|t| t.as_datetime()))
                .bind(new.rate_limit)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err_fk("api key", OnForeignKey::MissingParent("instance")))?
                .into();
                Self::write_audit(
                    &mut tx,
                    Some(subscription_id),
                    gw_core::AuditAction::ApiKeyCreate,
                    Some(key.id.to_string()),
                    actor,
                )
                .await?;
                tx.commit().await.map_err(db_err("api key"))?;
                Ok(key)
            }

            async fn get_api_key(&self, instance_id: InstanceId, id: ApiKeyId) -> StoreResult<ApiKey> {
                sqlx::query_as::<_, ApiKeyRow>(concat!(
                    "SELECT ",
                    api_key_columns!(),
                    " FROM api_keys WHERE id = $1 AND instance_id = $2"
                ))
                .bind(id.as_uuid())
                .bind(instance_id.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("api key"))?
                .map(Into::into)
                .ok_or(StoreError::not_found("api key"))
            }

            async fn find_api_key_by_hash(&self, hash: &ApiKeyHash) -> StoreResult<Option<ApiKeyRecord>> {
                Ok(sqlx::query_as::<_, ApiKeyRecordRow>(concat!(api_key_record_select!(), " WHERE k.key_hash = $1"))
                    .bind(hash.as_bytes())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err("api key"))?
                    .map(Into::into))
            }

            async fn list_api_keys(&self, instance_id: InstanceId, page: PageRequest) -> StoreResult<Page<ApiKey>> {
                let rows = sqlx::query_as::<_, ApiKeyRow>(concat!(
                    "SELECT ",
                    api_key_columns!(),
                    " FROM api_keys WHERE instance_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
                ))
                .bind(instance_id.as_uuid())
                .bind(after(page))
                .bind(page_limit(page))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("api key"))?;
                let items: Vec<ApiKey> = rows.into_iter().map(Into::into).collect();
                Ok(Page::from_overfetch(items, page, |k| k.id.as_uuid()))
            }

            async fn update_api_key(
                &self,
                instance_id: InstanceId,
                id: ApiKeyId,
                patch: ApiKeyPatch,
                actor: &Actor,
            ) -> StoreResult<ApiKey> {
                let mut tx = self.begin_write().await?;
                let subscription_id = <$store>::instance_owner(&mut tx, instance_id).await?;
                let key: ApiKey = sqlx::query_as::<_, ApiKeyRow>(concat!(
                    "UPDATE api_keys SET name = COALESCE($3, name), permissions = COALESCE($4, permissions), \
                     is_active = COALESCE($5, is_active), \
                     expires_at = CASE WHEN $6 THEN $7 ELSE expires_at END, \
                     rate_limit = CASE WHEN $8 THEN $9 ELSE rate_limit END, updated_at = $10 \
                     WHERE id = $1 AND instance_id = $2 RETURNING ",
                    api_key_columns!()
                ))
                .bind(id.as_uuid())
                .bind(instance_id.as_uuid())
                .bind(patch.name.as_deref())
                .bind(patch.permissions.as_ref().map(Json))
                .bind(patch.is_active)
                .bind(patch.expires_at.is_some())
                .bind(patch.expires_at.flatten().map(|t| t.as_datetime()))
                .bind(patch.rate_limit.is_some())
                .bind(patch.rate_limit.flatten())
                .bind(now())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("api key"))?
                .ok_or(StoreError::not_found("api key"))?
                .into();
                let action = if patch.is_active == Some(false) {
                    gw_core::AuditAction::ApiKeyRevoke
                } else {
                    gw_core::AuditAction::ApiKeyUpdate
                };
                Self::write_audit(&mut tx, Some(subscription_id), action, Some(id.to_string()), actor).await?;
                tx.commit().await.map_err(db_err("api key"))?;
                Ok(key)
            }

            async fn delete_api_key(&self, instance_id: InstanceId, id: ApiKeyId, actor: &Actor) -> StoreResult<()> {
                self.delete_instance_owned(
                    "DELETE FROM api_keys WHERE id = $1 AND instance_id = $2",
                    "api key",
                    gw_core::AuditAction::ApiKeyDelete,
                    instance_id,
                    id.as_uuid(),
                    actor,
                )
                .await
            }

            async fn record_api_key_usage(&self, batch: &[ApiKeyUsage]) -> StoreResult<()> {
                if batch.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                for usage in batch {
                    // A key deleted since its uses were counted simply matches no row.
                    sqlx::query(
                        "UPDATE api_keys SET usage_count = usage_count + $2, \
                         last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $3 THEN $3 \
                         ELSE last_used_at END WHERE id = $1",
                    )
                    .bind(usage.key_id.as_uuid())
                    .bind(usage.uses)
                    .bind(usage.last_used_at.as_datetime())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("api key"))?;
                }
                tx.commit().await.map_err(db_err("api key"))
            }
        }
    };
}
pub(crate) use impl_api_key_store;
