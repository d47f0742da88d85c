//! [`gw_store::PluginStore`] in SQL both backends accept, instantiated per backend by [`impl_plugin_store!`] the way
//! the other aggregates' files do (see `shared.rs`). Tables: migration 0005; their rows are in `plugin_rows.rs`.

macro_rules! impl_plugin_store {
    ($store:ty, $db:ty) => {
        use async_trait::async_trait;
        use gw_core::{
            BindingFailure, InstanceId, PluginBindingId, PluginId, PluginLogRecord, PluginVersionId, SubscriptionId,
        };
        use gw_store::{
            Actor, Limit, NewPlugin, NewPluginBinding, NewPluginVersion, PLUGIN_KV_MAX_KEY_BYTES, PLUGIN_KV_MAX_KEYS,
            PLUGIN_KV_MAX_VALUE_BYTES, Page, PageRequest, Plugin, PluginBinding, PluginBindingPatch, PluginChainLink,
            PluginLogEntry, PluginStore, PluginVersion, Visibility, StoreError, StoreResult,
        };
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::plugin_rows::{
            ChainRow, PluginBindingRow, PluginLogRow, PluginRow, PluginVersionRow, bounded_message, direction_str,
            log_level, plugin_binding_columns, plugin_columns, plugin_version_columns, policy_str,
        };
        use crate::shared::now;

        fn scope_id(scope: Visibility) -> Option<Uuid> {
            scope.subscription_id().map(|id| id.as_uuid())
        }

        /// The plugin's subscription, if the plugin exists within `scope`.
        async fn plugin_owner(
            conn: &mut <$db as sqlx::Database>::Connection,
            scope: Visibility,
            plugin_id: PluginId,
        ) -> StoreResult<SubscriptionId> {
            let owner: Option<(Uuid,)> = sqlx::query_as(
                "SELECT subscription_id FROM plugins WHERE id = $1 AND ($2 IS NULL OR subscription_id = $2)",
            )
            .bind(plugin_id.as_uuid())
            .bind(scope_id(scope))
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err("plugin"))?;
            owner.map(|(id,)| id.into()).ok_or(StoreError::not_found("plugin"))
        }

        async fn fetch_plugin(
            conn: &mut <$db as sqlx::Database>::Connection,
            scope: Visibility,
            id: PluginId,
        ) -> StoreResult<Plugin> {
            sqlx::query_as::<_, PluginRow>(concat!(
                "SELECT ",
                plugin_columns!(),
                " FROM plugins p WHERE p.id = $1 AND ($2 IS NULL OR p.subscription_id = $2)"
            ))
            .bind(id.as_uuid())
            .bind(scope_id(scope))
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err("plugin"))?
            .map(Into::into)
            .ok_or(StoreError::not_found("plugin"))
        }

        async fn fetch_binding(
            conn: &mut <$db as sqlx::Database>::Connection,
            instance_id: InstanceId,
            id: PluginBindingId,
        ) -> StoreResult<PluginBinding> {
            sqlx::query_as::<_, PluginBindingRow>(concat!(
                "SELECT ",
                plugin_binding_columns!(),
                " FROM plugin_bindings WHERE id = $1 AND instance_id = $2"
            ))
            .bind(id.as_uuid())
            .bind(instance_id.as_uuid())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err("plugin binding"))?
            .ok_or(StoreError::not_found("plugin binding"))?
            .try_into()
        }

        /// A pinned version must be one of the binding's plugin.
        async fn check_version_of(
            conn: &mut <$db as sqlx::Database>::Connection,
            plugin_id: PluginId,
            version_id: PluginVersionId,
        ) -> StoreResult<()> {
            let found: Option<(Uuid,)> =
                sqlx::query_as("SELECT id FROM plugin_versions WHERE id = $1 AND plugin_id = $2")
                    .bind(version_id.as_uuid())
                    .bind(plugin_id.as_uuid())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db_err("plugin version"))?;
            found.map(|_| ()).ok_or(StoreError::not_found("plugin version"))
        }

        #[async_trait]
        impl PluginStore for $store {
            async fn create_plugin(&self, new: NewPlugin, actor: &Actor) -> StoreResult<Plugin> {
                let at = now();
                let mut tx = self.begin_write().await?;
                // The UPDATE locks the subscription's row (PostgreSQL; SQLite's write transaction is exclusive
                // already), so the count below cannot be raced by a concurrent create.
                let locked: Option<(bool,)> = sqlx::query_as(
                    "UPDATE subscriptions SET updated_at = updated_at WHERE id = $1 RETURNING is_active",
                )
                .bind(new.subscription_id.as_uuid())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("subscription"))?;
                match locked {
                    None => return Err(StoreError::not_found("subscription")),
                    Some((false,)) => return Err(StoreError::Inactive { entity: "subscription" }),
                    Some((true,)) => {}
                }
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM plugins WHERE subscription_id = $1")
                    .bind(new.subscription_id.as_uuid())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err("plugin"))?;
                if count >= new.max_count {
                    return Err(StoreError::LimitReached(Limit::Plugins { max: new.max_count }));
                }
                let id = Uuid::now_v7();
                sqlx::query(
                    "INSERT INTO plugins (id, subscription_id, name, description, active_version_id, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, NULL, $5, $5)",
                )
                .bind(id)
                .bind(new.subscription_id.as_uuid())
                .bind(&new.name)
                .bind(new.description.as_deref())
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(db_err("plugin"))?;
                Self::write_audit(
                    &mut tx,
                    Some(new.subscription_id),
                    gw_core::AuditAction::PluginCreate,
                    Some(id.to_string()),
                    actor,
                )
                .await?;
                let plugin = fetch_plugin(&mut tx, Visibility::All, id.into()).await?;
                tx.commit().await.map_err(db_err("plugin"))?;
                Ok(plugin)
            }

            async fn get_plugin(&self, scope: Visibility, id: PluginId) -> StoreResult<Plugin> {
                let mut conn = self.pool.acquire().await.map_err(db_err("plugin"))?;
                fetch_plugin(&mut conn, scope, id).await
            }

            async fn list_plugins(&self, scope: Visibility, page: PageRequest) -> StoreResult<Page<Plugin>> {
                let rows = sqlx::query_as::<_, PluginRow>(concat!(
                    "SELECT ",
                    plugin_columns!(),
                    " FROM plugins p WHERE ($1 IS NULL OR p.subscription_id = $1) AND ($2 IS NULL OR p.id > $2) \
                     ORDER BY p.id LIMIT $3"
                ))
                .bind(scope_id(scope))
                .bind(page.after.map(|c| c.last_id()))
                .bind(i64::from(page.limit()) + 1)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("plugin"))?;
                let items: Vec<Plugin> = rows.into_iter().map(Into::into).collect();
                Ok(Page::from_overfetch(items, page, |p| p.id.as_uuid()))
            }

            async fn delete_plugin(&self, scope: Visibility, id: PluginId, actor: &Actor) -> StoreResult<Vec<InstanceId>> {
                let mut tx = self.begin_write().await?;
                let subscription_id = plugin_owner(&mut tx, scope, id).await?;
                let bound: Vec<(Uuid,)> =
                    sqlx::query_as("SELECT DISTINCT instance_id FROM plugin_bindings WHERE plugin_id = $1")
                        .bind(id.as_uuid())
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db_err("plugin binding"))?;
                let hashes: Vec<(String,)> =
                    sqlx::query_as("SELECT DISTINCT sha256 FROM plugin_versions WHERE plugin_id = $1")
                        .bind(id.as_uuid())
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db_err("plugin version"))?;
                sqlx::query("DELETE FROM plugins WHERE id = $1")
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("plugin"))?;
                // Bytes no other plugin's version shares go with it.
                for (sha256,) in &hashes {
                    sqlx::query(
                        "DELETE FROM plugin_components WHERE sha256 = $1 \
                         AND NOT EXISTS (SELECT 1 FROM plugin_versions v WHERE v.sha256 = $1)",
                    )
                    .bind(sha256)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("plugin component"))?;
                }
                Self::write_audit(&mut tx, Some(subscription_id), gw_core::AuditAction::PluginDelete, Some(id.to_string()), actor)
                    .await?;
                tx.commit().await.map_err(db_err("plugin"))?;
                Ok(bound.into_iter().map(|(id,)| id.into()).collect())
            }

            async fn add_plugin_version(
                &self,
                scope: Visibility,
                new: NewPluginVersion,
                actor: &Actor,
            ) -> StoreResult<PluginVersion> {
                let at = now();
                let mut tx = self.begin_write().await?;
                // Locks the plugin's row, so concurrent uploads take consecutive numbers instead of colliding.
                let locked: Option<(Uuid, Option<Uuid>)> = sqlx::query_as(
                    "UPDATE plugins SET updated_at = $3 WHERE id = $1 AND ($2 IS NULL OR subscription_id = $2) \
                     RETURNING subscription_id, active_version_id",
                )
                .bind(new.plugin_id.as_uuid())
                .bind(scope_id(scope))
                .bind(at)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("plugin"))?;
                let Some((subscription_id, active)) = locked else {
                    return Err(StoreError::not_found("plugin"));
                };
                let size = i64::try_from(new.bytes.len()).unwrap_or(i64::MAX);
                sqlx::query(
                    "INSERT INTO plugin_components (sha256, bytes, size_bytes, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (sha256) DO NOTHING",
                )
                .bind(&new.sha256)
                .bind(&new.bytes)
                .bind(size)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(db_err("plugin component"))?;
                let version = sqlx::query_as::<_, PluginVersionRow>(concat!(
                    "INSERT INTO plugin_versions (id, plugin_id, version, sha256, size_bytes, uploaded_by, \
                     created_at) SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3, $4, $5, $6 \
                     FROM plugin_versions WHERE plugin_id = $2 RETURNING ",
                    plugin_version_columns!()
                ))
                .bind(Uuid::now_v7())
                .bind(new.plugin_id.as_uuid())
                .bind(&new.sha256)
                .bind(size)
                .bind(new.uploaded_by.map(|id| id.as_uuid()))
                .bind(at)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err_fk("plugin version", OnForeignKey::MissingParent("user")))?;
                let version: PluginVersion = version.into();
                if active.is_none() {
                    sqlx::query("UPDATE plugins SET active_version_id = $2 WHERE id = $1")
                        .bind(new.plugin_id.as_uuid())
                        .bind(version.id.as_uuid())
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("plugin"))?;
                }
                Self::write_audit(
                    &mut tx,
                    Some(subscription_id.into()),
                    gw_core::AuditAction::PluginUpload,
                    Some(format!("{}@{}", new.plugin_id, version.version)),
                    actor,
                )
                .await?;
                tx.commit().await.map_err(db_err("plugin version"))?;
                Ok(version)
            }

            async fn list_plugin_versions(
                &self,
                scope: Visibility,
                plugin_id: PluginId,
            ) -> StoreResult<Vec<PluginVersion>> {
                let mut conn = self.pool.acquire().await.map_err(db_err("plugin"))?;
                plugin_owner(&mut conn, scope, plugin_id).await?;
                let rows = sqlx::query_as::<_, PluginVersionRow>(concat!(
                    "SELECT ",
                    plugin_version_columns!(),
                    " FROM plugin_versions WHERE plugin_id = $1 ORDER BY version DESC"
                ))
                .bind(plugin_id.as_uuid())
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err("plugin version"))?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn activate_plugin_version(
                &self,
                scope: Visibility,
                plugin_id: PluginId,
                version: i32,
                actor: &Actor,
            ) -> StoreResult<Plugin> {
                let mut tx = self.begin_write().await?;
                let subscription_id = plugin_owner(&mut tx, scope, plugin_id).await?;
                let found: Option<(Uuid,)> =
                    sqlx::query_as("SELECT id FROM plugin_versions WHERE plugin_id = $1 AND version = $2")
                        .bind(plugin_id.as_uuid())
                        .bind(version)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err("plugin version"))?;
                let Some((version_id,)) = found else {
                    return Err(StoreError::not_found("plugin version"));
                };
                sqlx::query("UPDATE plugins SET active_version_id = $2, updated_at = $3 WHERE id = $1")
                    .bind(plugin_id.as_uuid())
                    .bind(version_id)
                    .bind(now())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("plugin"))?;
                Self::write_audit(
                    &mut tx,
                    Some(subscription_id),
                    gw_core::AuditAction::PluginActivate,
                    Some(format!("{plugin_id}@{version}")),
                    actor,
                )
                .await?;
                let plugin = fetch_plugin(&mut tx, Visibility::All, plugin_id).await?;
                tx.commit().await.map_err(db_err("plugin"))?;
                Ok(plugin)
            }

            async fn plugin_instances(&self, plugin_id: PluginId) -> StoreResult<Vec<InstanceId>> {
                let rows: Vec<(Uuid,)> =
                    sqlx::query_as("SELECT DISTINCT instance_id FROM plugin_bindings WHERE plugin_id = $1")
                        .bind(plugin_id.as_uuid())
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db_err("plugin binding"))?;
                Ok(rows.into_iter().map(|(id,)| id.into()).collect())
            }

            async fn create_plugin_binding(&self, new: NewPluginBinding, actor: &Actor) -> StoreResult<PluginBinding> {
                let at = now();
                let mut tx = self.begin_write().await?;
                let subscription_id = <$store>::instance_owner(&mut tx, new.instance_id).await?;
                // Another subscription's plugin is simply not found: ids do not leak across tenants.
                plugin_owner(&mut tx, Visibility::Subscription(subscription_id), new.plugin_id).await?;
                if let Some(version_id) = new.version_id {
                    check_version_of(&mut tx, new.plugin_id, version_id).await?;
                }
                let position = match new.position {
                    Some(position) => position,
                    None => {
                        // The sum is taken here, not in SQL: `MAX(position) + 1` at `i32::MAX` overflows (an error
                        // on PostgreSQL, a 64-bit value on SQLite that no longer decodes as `i32`).
                        let (last,): (Option<i32>,) =
                            sqlx::query_as("SELECT MAX(position) FROM plugin_bindings WHERE instance_id = $1")
                                .bind(new.instance_id.as_uuid())
                                .fetch_one(&mut *tx)
                                .await
                                .map_err(db_err("plugin binding"))?;
                        match last {
                            None => 0,
                            Some(last) => last.saturating_add(1),
                        }
                    }
                };
                let binding: PluginBinding = sqlx::query_as::<_, PluginBindingRow>(concat!(
                    "INSERT INTO plugin_bindings (id, instance_id, plugin_id, version_id, position, direction, config, \
                     enabled, failure_policy, error_count, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $10) RETURNING ",
                    plugin_binding_columns!()
                ))
                .bind(Uuid::now_v7())
                .bind(new.instance_id.as_uuid())
                .bind(new.plugin_id.as_uuid())
                .bind(new.version_id.map(|id| id.as_uuid()))
                .bind(position)
                .bind(direction_str(new.direction))
                .bind(Json(&new.config))
                .bind(new.enabled)
                .bind(policy_str(new.failure_policy))
                .bind(at)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err("plugin binding"))?
                .try_into()?;
                Self::write_audit(
                    &mut tx,
                    Some(subscription_id),
                    gw_core::AuditAction::PluginBindingCreate,
                    Some(binding.id.to_string()),
                    actor,
                )
                .await?;
                tx.commit().await.map_err(db_err("plugin binding"))?;
                Ok(binding)
            }

            async fn get_plugin_binding(
                &self,
                instance_id: InstanceId,
                id: PluginBindingId,
            ) -> StoreResult<PluginBinding> {
                let mut conn = self.pool.acquire().await.map_err(db_err("plugin binding"))?;
                fetch_binding(&mut conn, instance_id, id).await
            }

            async fn list_plugin_bindings(&self, instance_id: InstanceId) -> StoreResult<Vec<PluginBinding>> {
                sqlx::query_as::<_, PluginBindingRow>(concat!(
                    "SELECT ",
                    plugin_binding_columns!(),
                    " FROM plugin_bindings WHERE instance_id = $1 ORDER BY position, id"
                ))
                .bind(instance_id.as_uuid())
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("plugin binding"))?
                .into_iter()
                .map(PluginBinding::try_from)
                .collect()
            }

            async fn update_plugin_binding(
                &self,
                instance_id: InstanceId,
                id: PluginBindingId,
                patch: PluginBindingPatch,
                actor: &Actor,
            ) -> StoreResult<PluginBinding> {
                let mut tx = self.begin_write().await?;
                let subscription_id = <$store>::instance_owner(&mut tx, instance_id).await?;
                let current = fetch_binding(&mut tx, instance_id, id).await?;
                let version_id = patch.version_id.unwrap_or(current.version_id);
                if let Some(version_id) = version_id
                    && Some(version_id) != current.version_id
                {
                    check_version_of(&mut tx, current.plugin_id, version_id).await?;
                }
                let config = patch.config.unwrap_or(current.config);
                let binding: PluginBinding = sqlx::query_as::<_, PluginBindingRow>(concat!(
                    "UPDATE plugin_bindings SET version_id = $3, position = $4, direction = $5, config = $6, \
                     enabled = $7, failure_policy = $8, updated_at = $9, \
                     error_count = CASE WHEN $10 THEN 0 ELSE error_count END, \
                     last_error = CASE WHEN $10 THEN NULL ELSE last_error END, \
                     last_error_kind = CASE WHEN $10 THEN NULL ELSE last_error_kind END, \
                     last_error_at = CASE WHEN $10 THEN NULL ELSE last_error_at END \
                     WHERE id = $1 AND instance_id = $2 RETURNING ",
                    plugin_binding_columns!()
                ))
                .bind(id.as_uuid())
                .bind(instance_id.as_uuid())
                .bind(version_id.map(|v| v.as_uuid()))
                .bind(patch.position.unwrap_or(current.position))
                .bind(direction_str(patch.direction.unwrap_or(current.direction)))
                .bind(Json(&config))
                .bind(patch.enabled.unwrap_or(current.enabled))
                .bind(policy_str(patch.failure_policy.unwrap_or(current.failure_policy)))
                .bind(now())
                .bind(patch.reset_errors)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err("plugin binding"))?
                .try_into()?;
                Self::write_audit(
                    &mut tx,
                    Some(subscription_id),
                    gw_core::AuditAction::PluginBindingUpdate,
                    Some(id.to_string()),
                    actor,
                )
                .await?;
                tx.commit().await.map_err(db_err("plugin binding"))?;
                Ok(binding)
            }

            async fn delete_plugin_binding(
                &self,
                instance_id: InstanceId,
                id: PluginBindingId,
                actor: &Actor,
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let subscription_id = <$store>::instance_owner(&mut tx, instance_id).await?;
                let deleted = sqlx::query("DELETE FROM plugin_bindings WHERE id = $1 AND instance_id = $2")
                    .bind(id.as_uuid())
                    .bind(instance_id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("plugin binding"))?
                    .rows_affected();
                if deleted == 0 {
                    return Err(StoreError::not_found("plugin binding"));
                }
                Self::write_audit(
                    &mut tx,
                    Some(subscription_id),
                    gw_core::AuditAction::PluginBindingDelete,
                    Some(id.to_string()),
                    actor,
                )
                .await?;
                tx.commit().await.map_err(db_err("plugin binding"))
            }

            async fn plugin_chain(&self, instance_id: InstanceId) -> StoreResult<Vec<PluginChainLink>> {
                sqlx::query_as::<_, ChainRow>(
                    "SELECT b.id AS binding_id, b.plugin_id, p.name AS plugin_name, v.id AS version_id, v.version, \
                     v.sha256, b.position, b.direction, b.config, b.failure_policy, p.subscription_id \
                     FROM plugin_bindings b JOIN plugins p ON p.id = b.plugin_id \
                     JOIN plugin_versions v ON v.id = COALESCE(b.version_id, p.active_version_id) \
                     WHERE b.instance_id = $1 AND b.enabled ORDER BY b.position, b.id",
                )
                .bind(instance_id.as_uuid())
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("plugin binding"))?
                .into_iter()
                .map(PluginChainLink::try_from)
                .collect()
            }

            async fn plugin_component(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
                let row: Option<(Vec<u8>,)> = sqlx::query_as("SELECT bytes FROM plugin_components WHERE sha256 = $1")
                    .bind(sha256)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err("plugin component"))?;
                Ok(row.map(|(bytes,)| bytes))
            }

            async fn record_plugin_failure(
                &self,
                binding_id: PluginBindingId,
                failure: &BindingFailure,
            ) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE plugin_bindings SET error_count = error_count + 1, last_error = $2, \
                     last_error_kind = $3, last_error_at = $4 WHERE id = $1",
                )
                .bind(binding_id.as_uuid())
                .bind(bounded_message(&failure.message))
                .bind(&failure.kind)
                .bind(failure.at.as_datetime())
                .execute(&self.pool)
                .await
                .map_err(db_err("plugin binding"))?;
                Ok(())
            }

            async fn append_plugin_logs(&self, logs: &[PluginLogRecord], keep: u32) -> StoreResult<()> {
                if logs.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                let mut touched: Vec<PluginBindingId> = Vec::new();
                for log in logs {
                    // INSERT … SELECT: a line of a binding deleted meanwhile matches no row instead of failing the
                    // batch on the foreign key.
                    sqlx::query(
                        "INSERT INTO plugin_logs (id, binding_id, level, message, at) \
                         SELECT $1, b.id, $3, $4, $5 FROM plugin_bindings b WHERE b.id = $2",
                    )
                    .bind(Uuid::now_v7())
                    .bind(log.binding_id.as_uuid())
                    .bind(log_level(&log.level))
                    .bind(bounded_message(&log.message))
                    .bind(log.at.as_datetime())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("plugin log"))?;
                    if !touched.contains(&log.binding_id) {
                        touched.push(log.binding_id);
                    }
                }
                for binding_id in touched {
                    sqlx::query(
                        "DELETE FROM plugin_logs WHERE binding_id = $1 AND id NOT IN \
                         (SELECT id FROM plugin_logs WHERE binding_id = $1 ORDER BY id DESC LIMIT $2)",
                    )
                    .bind(binding_id.as_uuid())
                    .bind(i64::from(keep))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("plugin log"))?;
                }
                tx.commit().await.map_err(db_err("plugin log"))
            }

            async fn list_plugin_logs(
                &self,
                instance_id: InstanceId,
                binding_id: PluginBindingId,
                page: PageRequest,
            ) -> StoreResult<Page<PluginLogEntry>> {
                let mut conn = self.pool.acquire().await.map_err(db_err("plugin log"))?;
                fetch_binding(&mut conn, instance_id, binding_id).await?;
                let rows = sqlx::query_as::<_, PluginLogRow>(
                    "SELECT id, binding_id, level, message, at FROM plugin_logs WHERE binding_id = $1 \
                     AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
                )
                .bind(binding_id.as_uuid())
                .bind(page.after.map(|c| c.last_id()))
                .bind(i64::from(page.limit()) + 1)
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err("plugin log"))?;
                let items: Vec<PluginLogEntry> = rows.into_iter().map(Into::into).collect();
                Ok(Page::from_overfetch(items, page, |l| l.id))
            }

            async fn plugin_kv_get(
                &self,
                plugin_id: PluginId,
                instance_id: InstanceId,
                key: &str,
            ) -> StoreResult<Option<Vec<u8>>> {
                let row: Option<(Vec<u8>,)> = sqlx::query_as(
                    "SELECT value FROM plugin_kv WHERE plugin_id = $1 AND instance_id = $2 AND key = $3",
                )
                .bind(plugin_id.as_uuid())
                .bind(instance_id.as_uuid())
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("plugin kv"))?;
                Ok(row.map(|(value,)| value))
            }

            async fn plugin_kv_set(
                &self,
                plugin_id: PluginId,
                instance_id: InstanceId,
                key: &str,
                value: &[u8],
            ) -> StoreResult<()> {
                let too_long = |what, max: usize| {
                    StoreError::LimitReached(Limit::PluginKv { what, max: i64::try_from(max).unwrap_or(i64::MAX) })
                };
                if key.len() > PLUGIN_KV_MAX_KEY_BYTES {
                    return Err(too_long("key_bytes", PLUGIN_KV_MAX_KEY_BYTES));
                }
                if value.len() > PLUGIN_KV_MAX_VALUE_BYTES {
                    return Err(too_long("value_bytes", PLUGIN_KV_MAX_VALUE_BYTES));
                }
                let mut tx = self.begin_write().await?;
                let (others,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM plugin_kv WHERE plugin_id = $1 AND instance_id = $2 AND key <> $3",
                )
                .bind(plugin_id.as_uuid())
                .bind(instance_id.as_uuid())
                .bind(key)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err("plugin kv"))?;
                if others >= i64::from(PLUGIN_KV_MAX_KEYS) {
                    return Err(StoreError::LimitReached(Limit::PluginKv {
                        what: "keys",
                        max: i64::from(PLUGIN_KV_MAX_KEYS),
                    }));
                }
                sqlx::query(
                    "INSERT INTO plugin_kv (plugin_id, instance_id, key, value, updated_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (plugin_id, instance_id, key) DO UPDATE SET value = excluded.value, \
                     updated_at = excluded.updated_at",
                )
                .bind(plugin_id.as_uuid())
                .bind(instance_id.as_uuid())
                .bind(key)
                .bind(value)
                .bind(now())
                .execute(&mut *tx)
                .await
                .map_err(db_err_fk("plugin kv", OnForeignKey::MissingParent("plugin or instance")))?;
                tx.commit().await.map_err(db_err("plugin kv"))
            }

            async fn plugin_kv_delete(&self, plugin_id: PluginId, instance_id: InstanceId, key: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM plugin_kv WHERE plugin_id = $1 AND instance_id = $2 AND key = $3")
                    .bind(plugin_id.as_uuid())
                    .bind(instance_id.as_uuid())
                    .bind(key)
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("plugin kv"))?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_plugin_store;
