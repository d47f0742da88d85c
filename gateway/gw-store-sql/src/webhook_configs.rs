//! [`gw_store::WebhookConfigStore`] in SQL both backends accept, instantiated per backend by
//! [`impl_webhook_config_store!`]. The deliveries are `webhooks.rs`.

macro_rules! impl_webhook_config_store {
    ($store:ty) => {
        use async_trait::async_trait;
        use gw_core::{InstanceId, WebhookConfig, WebhookConfigId};
        use gw_store::{
            Actor, DeliveryOutcome, NewWebhookConfig, StoreError, StoreResult, WebhookConfigPatch, WebhookConfigStore,
        };
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::rows::{WebhookConfigRow, webhook_config_columns};
        use crate::shared::now;

        #[async_trait]
        impl WebhookConfigStore for $store {
            async fn create_webhook_config(&self, new: NewWebhookConfig, actor: &Actor) -> StoreResult<WebhookConfig> {
                let at = now();
                let mut tx = self.begin_write().await?;
                let subscription_id = <$store>::instance_owner(&mut tx, new.instance_id).await?;
                let config: WebhookConfig = sqlx::query_as::<_, WebhookConfigRow>(concat!(
                    "INSERT INTO webhook_configs (id, instance_id, url, events, secret, is_active, created_at, \
                     updated_at, total_sent, total_failed) VALUES ($1, $2, $3, $4, $5, TRUE, $6, $6, 0, 0) RETURNING ",
                    webhook_config_columns!()
                ))
                .bind(Uuid::now_v7())
                .bind(new.instance_id.as_uuid())
                .bind(&new.url)
                .bind(Json(&new.events))
                .bind(&new.secret)
                .bind(at)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err_fk("webhook config", OnForeignKey::MissingParent("instance")))?
                .into();
                Self::write_audit(&mut tx, Some(subscription_id), gw_core::AuditAction::WebhookCreate, Some(config.id.to_string()), actor)
                    .await?;
                tx.commit().await.map_err(db_err("webhook config"))?;
                Ok(config)
            }

            async fn get_webhook_config(&self, instance_id: InstanceId, id: WebhookConfigId) -> StoreResult<WebhookConfig> {
                sqlx::query_as::<_, WebhookConfigRow>(concat!(
                    "SELECT ",
                    webhook_config_columns!(),
                    " FROM webhook_configs WHERE id = $1 AND instance_id = $2"
                ))
                .bind(id.as_uuid())
                .bind(instance_id.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("webhook config"))?
                .map(Into::into)
                .ok_or(StoreError::not_found("webhook config"))
            }

            async fn list_webhook_configs(&self, instance_id: InstanceId) -> StoreResult<Vec<WebhookConfig>> {
                let rows = sqlx::query_as::<_, WebhookConfigRow>(concat!(
                    "SELECT ",
                    webhook_config_columns!(),
                    " FROM webhook_configs WHERE instance_id = $1 ORDER BY id"
                ))
                .bind(instance_id.as_uuid())
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("webhook config"))?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn update_webhook_config(
                &self,
                instance_id: InstanceId,
                id: WebhookConfigId,
                patch: WebhookConfigPatch,
                actor: &Actor,
            ) -> StoreResult<WebhookConfig> {
                let mut tx = self.begin_write().await?;
                let subscription_id = <$store>::instance_owner(&mut tx, instance_id).await?;
                let config: WebhookConfig = sqlx::query_as::<_, WebhookConfigRow>(concat!(
                    "UPDATE webhook_configs SET url = COALESCE($3, url), events = COALESCE($4, events), \
                     secret = COALESCE($5, secret), is_active = COALESCE($6, is_active), updated_at = $7, \
                     failing_since = CASE WHEN $6 THEN NULL ELSE failing_since END, \
                     disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END \
                     WHERE id = $1 AND instance_id = $2 RETURNING ",
                    webhook_config_columns!()
                ))
                .bind(id.as_uuid())
                .bind(instance_id.as_uuid())
                .bind(patch.url.as_deref())
                .bind(patch.events.as_ref().map(Json))
                .bind(patch.secret.as_deref())
                .bind(patch.is_active)
                .bind(now())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("webhook config"))?
                .ok_or(StoreError::not_found("webhook config"))?
                .into();
                let action = if patch.secret.is_some() { gw_core::AuditAction::WebhookRotateSecret } else { gw_core::AuditAction::WebhookUpdate };
                Self::write_audit(&mut tx, Some(subscription_id), action, Some(id.to_string()), actor).await?;
                tx.commit().await.map_err(db_err("webhook config"))?;
                Ok(config)
            }

            async fn delete_webhook_config(
                &self,
                instance_id: InstanceId,
                id: WebhookConfigId,
                actor: &Actor,
            ) -> StoreResult<()> {
                self.delete_instance_owned(
                    "DELETE FROM webhook_configs WHERE id = $1 AND instance_id = $2",
                    "webhook config",
                    gw_core::AuditAction::WebhookDelete,
                    instance_id,
                    id.as_uuid(),
                    actor,
                )
                .await
            }

            async fn record_webhook_outcome(&self, id: WebhookConfigId, outcome: DeliveryOutcome) -> StoreResult<()> {
                let query = match &outcome {
                    DeliveryOutcome::Sent { at } => {
                        sqlx::query("UPDATE webhook_configs SET total_sent = total_sent + 1, last_sent_at = $2 WHERE id = $1")
                            .bind(id.as_uuid())
                            .bind(at.as_datetime())
                    }
                    DeliveryOutcome::Failed { at, error } => sqlx::query(
                        "UPDATE webhook_configs SET total_failed = total_failed + 1, last_failed_at = $2, \
                         last_error = $3 WHERE id = $1",
                    )
                    .bind(id.as_uuid())
                    .bind(at.as_datetime())
                    .bind(error.clone()),
                };
                let updated = query.execute(&self.pool).await.map_err(db_err("webhook config"))?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::not_found("webhook config"));
                }
                Ok(())
            }
        }
    };
}
pub(crate) use impl_webhook_config_store;
