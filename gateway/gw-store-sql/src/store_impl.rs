//! The storage traits implemented once, in SQL both backends accept, and instantiated per backend by
//! [`impl_store!`]. A backend type provides `pool` (a `sqlx::Pool`) and `begin_write()` (a transaction that takes
//! the write lock up front where the database needs it), and the macro provides everything else.
//!
//! Rules the statements keep so both dialects accept them: `$n` placeholders, `RETURNING`, `ON CONFLICT`,
//! booleans compared as `col` / `TRUE`, timestamps always bound from Rust (never the database's clock, whose SQLite
//! text format differs), and `lower(..) LIKE` for case-insensitive search.

/// Takes `$2` messages of subscription `$1`'s monthly allowance, in one statement: a reservation in a new month
/// (`$3` is the current period's start) starts the counter afresh and records when, so the rollover is right on
/// whichever node sees the month's first message. Matches no row when the subscription is inactive or the
/// allowance would be exceeded. Used alone (`reserve_messages`) and inside the outbox insert's transaction.
pub(crate) const RESERVE_MESSAGES: &str = "UPDATE subscriptions SET \
     messages_used = CASE WHEN last_usage_reset < $3 THEN $2 ELSE messages_used + $2 END, \
     last_usage_reset = CASE WHEN last_usage_reset < $3 THEN $3 ELSE last_usage_reset END \
     WHERE id = $1 AND is_active \
     AND (CASE WHEN last_usage_reset < $3 THEN 0 ELSE messages_used END) + $2 <= monthly_messages \
     RETURNING messages_used, monthly_messages";

/// Escapes `%`, `_` and `\` so user text matches literally inside a `LIKE … ESCAPE '\'` pattern.
pub(crate) fn like_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

macro_rules! impl_store {
    ($store:ty, $db:ty, $backend:literal, $fence_lock:literal) => {
        use async_trait::async_trait;
        use chrono::{DateTime, NaiveDate, Utc};
        use gw_core::{
            ApiKey, ApiKeyHash, ApiKeyId, AuditLogEntry, Contact, ContactId, Email, Instance, InstanceId,
            MessageStat, RefreshToken, SessionData, Subscription, SubscriptionId, Timestamp, TokenFamilyId,
            UsageRecord, User, UserId, WebhookConfig, WebhookConfigId,
        };
        use gw_store::{
            Actor, ApiKeyPatch, ApiKeyRecord, ApiKeyStore, ApiKeyUsage, AuditFilter, AuditLogStore,
            ConnectionUpdate, ContactStore, ContactUpsert, DeliveryOutcome, InstancePatch, InstanceStore, Limit,
            MessageStatDelta, MessageStatStore, MessagesReserved, NewApiKey, NewAuditEntry, NewInstance,
            NewRefreshToken, NewSubscription, NewUser, NewWebhookConfig, Page, PageRequest, RefreshOutcome,
            RefreshTokenStore, Reserved, Scope, SessionStore, Store,
            StoreError, StoreResult, SubscriptionPatch, SubscriptionStore, UsageDelta, UsageFilter, UsageStore,
            UserPatch, UserStore, WebhookConfigPatch, WebhookConfigStore,
        };
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::rows::*;
        use crate::store_impl::like_pattern;

        fn now() -> DateTime<Utc> {
            Timestamp::now().as_datetime()
        }

        fn page_limit(page: PageRequest) -> i64 {
            i64::from(page.limit()) + 1
        }

        fn after(page: PageRequest) -> Option<Uuid> {
            page.after.map(|c| c.last_id())
        }

        impl $store {
            /// Writes the audit row of an action, on the connection of the transaction that makes the change.
            pub(crate) async fn write_audit(
                conn: &mut <$db as sqlx::Database>::Connection,
                subscription_id: Option<SubscriptionId>,
                action: &str,
                resource: &str,
                resource_id: Option<String>,
                actor: &Actor,
            ) -> StoreResult<AuditLogEntry> {
                sqlx::query_as::<_, AuditRow>(concat!(
                    "INSERT INTO audit_log (id, subscription_id, action, resource, resource_id, user_id, \
                     api_key_id, ip_address, timestamp) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
                    audit_columns!()
                ))
                .bind(Uuid::now_v7())
                .bind(subscription_id.map(|id| id.as_uuid()))
                .bind(action)
                .bind(resource)
                .bind(resource_id)
                .bind(actor.user_id.map(|id| id.as_uuid()))
                .bind(actor.api_key_id.map(|id| id.as_uuid()))
                .bind(actor.ip_address.as_deref())
                .bind(now())
                .fetch_one(&mut *conn)
                .await
                .map(Into::into)
                .map_err(db_err("audit log entry"))
            }

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

            /// Why a reservation statement matched no row: no such subscription, an inactive one, or the limit.
            pub(crate) async fn refused_reservation(&self, id: SubscriptionId, instances: bool) -> StoreError {
                let subscription = match self.get_subscription(id).await {
                    Ok(subscription) => subscription,
                    Err(err) => return err,
                };
                if !subscription.is_active {
                    StoreError::Inactive { entity: "subscription" }
                } else if instances {
                    StoreError::LimitReached(Limit::Instances { max: i64::from(subscription.max_instances) })
                } else {
                    StoreError::LimitReached(Limit::MonthlyMessages { max: subscription.monthly_messages })
                }
            }
        }

        const RESERVE_SLOT: &str = "UPDATE subscriptions SET current_instances = current_instances + 1 \
             WHERE id = $1 AND is_active AND current_instances < max_instances \
             RETURNING current_instances, max_instances";
        const RELEASE_SLOT: &str = "UPDATE subscriptions SET current_instances = current_instances - 1 \
             WHERE id = $1 AND current_instances > 0";

        #[async_trait]
        impl SubscriptionStore for $store {
            async fn create_subscription(&self, new: NewSubscription, actor: &Actor) -> StoreResult<Subscription> {
                let at = now();
                let mut tx = self.begin_write().await?;
                let row = sqlx::query_as::<_, SubscriptionRow>(concat!(
                    "INSERT INTO subscriptions (id, name, tier, max_instances, is_active, created_at, updated_at, \
                     current_instances, monthly_messages, messages_used, last_usage_reset, limit_overrides) \
                     VALUES ($1, $2, $3, $4, TRUE, $5, $5, 0, $6, 0, $7, $8) RETURNING ",
                    subscription_columns!()
                ))
                .bind(Uuid::now_v7())
                .bind(&new.name)
                .bind(new.tier.as_str())
                .bind(new.max_instances)
                .bind(at)
                .bind(new.monthly_messages)
                .bind(Timestamp::from(at).period().start().as_datetime())
                .bind(Json(&new.limit_overrides))
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err("subscription"))?;
                let subscription = Subscription::try_from(row)?;
                Self::write_audit(
                    &mut tx,
                    Some(subscription.id),
                    "subscription.create",
                    "subscription",
                    Some(subscription.id.to_string()),
                    actor,
                )
                .await?;
                tx.commit().await.map_err(db_err("subscription"))?;
                Ok(subscription)
            }

            async fn get_subscription(&self, id: SubscriptionId) -> StoreResult<Subscription> {
                sqlx::query_as::<_, SubscriptionRow>(concat!(
                    "SELECT ",
                    subscription_columns!(),
                    " FROM subscriptions WHERE id = $1"
                ))
                .bind(id.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("subscription"))?
                .ok_or(StoreError::not_found("subscription"))?
                .try_into()
            }

            async fn list_subscriptions(&self, page: PageRequest) -> StoreResult<Page<Subscription>> {
                let rows = sqlx::query_as::<_, SubscriptionRow>(concat!(
                    "SELECT ",
                    subscription_columns!(),
                    " FROM subscriptions WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2"
                ))
                .bind(after(page))
                .bind(page_limit(page))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("subscription"))?;
                let items = rows.into_iter().map(Subscription::try_from).collect::<StoreResult<Vec<_>>>()?;
                Ok(Page::from_overfetch(items, page, |s| s.id.as_uuid()))
            }

            async fn update_subscription(
                &self,
                id: SubscriptionId,
                patch: SubscriptionPatch,
                actor: &Actor,
            ) -> StoreResult<Subscription> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query_as::<_, SubscriptionRow>(concat!(
                    "UPDATE subscriptions SET name = COALESCE($2, name), tier = COALESCE($3, tier), \
                     max_instances = COALESCE($4, max_instances), \
                     monthly_messages = COALESCE($5, monthly_messages), is_active = COALESCE($6, is_active), \
                     updated_at = $7, limit_overrides = COALESCE($8, limit_overrides) WHERE id = $1 RETURNING ",
                    subscription_columns!()
                ))
                .bind(id.as_uuid())
                .bind(patch.name.as_deref())
                .bind(patch.tier.map(|t| t.as_str()))
                .bind(patch.max_instances)
                .bind(patch.monthly_messages)
                .bind(patch.is_active)
                .bind(now())
                .bind(patch.limit_overrides.as_ref().map(Json))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("subscription"))?
                .ok_or(StoreError::not_found("subscription"))?;
                let subscription = Subscription::try_from(row)?;
                Self::write_audit(
                    &mut tx,
                    Some(id),
                    "subscription.update",
                    "subscription",
                    Some(id.to_string()),
                    actor,
                )
                .await?;
                tx.commit().await.map_err(db_err("subscription"))?;
                Ok(subscription)
            }

            async fn delete_subscription(&self, id: SubscriptionId, actor: &Actor) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let deleted = sqlx::query("DELETE FROM subscriptions WHERE id = $1")
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err_fk("subscription", OnForeignKey::Referenced("users, instances or usage records")))?;
                if deleted.rows_affected() == 0 {
                    return Err(StoreError::not_found("subscription"));
                }
                Self::write_audit(&mut tx, Some(id), "subscription.delete", "subscription", Some(id.to_string()), actor)
                    .await?;
                tx.commit().await.map_err(db_err("subscription"))
            }

            async fn reserve_instance_slot(&self, id: SubscriptionId) -> StoreResult<Reserved> {
                let granted: Option<(i32, i32)> = sqlx::query_as(RESERVE_SLOT)
                    .bind(id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err("subscription"))?;
                match granted {
                    Some((used, limit)) => Ok(Reserved { used: used.into(), limit: limit.into() }),
                    None => Err(self.refused_reservation(id, true).await),
                }
            }

            async fn release_instance_slot(&self, id: SubscriptionId) -> StoreResult<()> {
                let released = sqlx::query(RELEASE_SLOT)
                    .bind(id.as_uuid())
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("subscription"))?;
                if released.rows_affected() == 0 {
                    // Either no such subscription or nothing to release; only the former is an error.
                    self.get_subscription(id).await?;
                }
                Ok(())
            }

            async fn reserve_messages(
                &self,
                id: SubscriptionId,
                count: i64,
                now: Timestamp,
            ) -> StoreResult<MessagesReserved> {
                if count < 1 {
                    return Err(StoreError::Backend(format!("message reservation of {count}: must be positive").into()));
                }
                let period = now.period();
                let granted: Option<(i64, i64)> = sqlx::query_as(crate::store_impl::RESERVE_MESSAGES)
                .bind(id.as_uuid())
                .bind(count)
                .bind(period.start().as_datetime())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("subscription"))?;
                match granted {
                    Some((used, limit)) => Ok(MessagesReserved { used, limit, period }),
                    None => Err(self.refused_reservation(id, false).await),
                }
            }
        }

        #[async_trait]
        impl UserStore for $store {
            async fn create_user(&self, new: NewUser, actor: &Actor) -> StoreResult<User> {
                let at = now();
                let mut tx = self.begin_write().await?;
                let row = sqlx::query_as::<_, UserRow>(concat!(
                    "INSERT INTO users (id, email, password, name, role, subscription_id, is_active, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $7) RETURNING ",
                    user_columns!()
                ))
                .bind(Uuid::now_v7())
                .bind(new.email.as_str())
                .bind(new.password.as_phc())
                .bind(&new.name)
                .bind(new.role.as_str())
                .bind(new.subscription_id.map(|id| id.as_uuid()))
                .bind(at)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err_fk("user", OnForeignKey::MissingParent("subscription")))?;
                let user = User::try_from(row)?;
                Self::write_audit(&mut tx, user.subscription_id, "user.create", "user", Some(user.id.to_string()), actor)
                    .await?;
                tx.commit().await.map_err(db_err("user"))?;
                Ok(user)
            }

            async fn get_user(&self, scope: Scope, id: UserId) -> StoreResult<User> {
                sqlx::query_as::<_, UserRow>(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE id = $1 AND ($2 IS NULL OR subscription_id = $2)"
                ))
                .bind(id.as_uuid())
                .bind(scope.subscription_id().map(|id| id.as_uuid()))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("user"))?
                .ok_or(StoreError::not_found("user"))?
                .try_into()
            }

            async fn find_user_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
                sqlx::query_as::<_, UserRow>(concat!("SELECT ", user_columns!(), " FROM users WHERE email = $1"))
                    .bind(email.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err("user"))?
                    .map(User::try_from)
                    .transpose()
            }

            async fn list_users(&self, scope: Scope, page: PageRequest) -> StoreResult<Page<User>> {
                let rows = sqlx::query_as::<_, UserRow>(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE ($1 IS NULL OR subscription_id = $1) AND ($2 IS NULL OR id > $2) \
                     ORDER BY id LIMIT $3"
                ))
                .bind(scope.subscription_id().map(|id| id.as_uuid()))
                .bind(after(page))
                .bind(page_limit(page))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("user"))?;
                let items = rows.into_iter().map(User::try_from).collect::<StoreResult<Vec<_>>>()?;
                Ok(Page::from_overfetch(items, page, |u| u.id.as_uuid()))
            }

            async fn update_user(&self, scope: Scope, id: UserId, patch: UserPatch, actor: &Actor) -> StoreResult<User> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query_as::<_, UserRow>(concat!(
                    "UPDATE users SET name = COALESCE($3, name), role = COALESCE($4, role), \
                     is_active = COALESCE($5, is_active), password = COALESCE($6, password), updated_at = $7 \
                     WHERE id = $1 AND ($2 IS NULL OR subscription_id = $2) RETURNING ",
                    user_columns!()
                ))
                .bind(id.as_uuid())
                .bind(scope.subscription_id().map(|id| id.as_uuid()))
                .bind(patch.name.as_deref())
                .bind(patch.role.map(|r| r.as_str()))
                .bind(patch.is_active)
                .bind(patch.password.as_ref().map(|p| p.as_phc()))
                .bind(now())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("user"))?
                .ok_or(StoreError::not_found("user"))?;
                let user = User::try_from(row)?;
                let action = if patch.password.is_some() { "user.password_reset" } else { "user.update" };
                Self::write_audit(&mut tx, user.subscription_id, action, "user", Some(id.to_string()), actor).await?;
                tx.commit().await.map_err(db_err("user"))?;
                Ok(user)
            }

            async fn delete_user(&self, scope: Scope, id: UserId, actor: &Actor) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let deleted: Option<(Option<Uuid>,)> = sqlx::query_as(
                    "DELETE FROM users WHERE id = $1 AND ($2 IS NULL OR subscription_id = $2) \
                     RETURNING subscription_id",
                )
                .bind(id.as_uuid())
                .bind(scope.subscription_id().map(|id| id.as_uuid()))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("user"))?;
                let (subscription_id,) = deleted.ok_or(StoreError::not_found("user"))?;
                Self::write_audit(
                    &mut tx,
                    subscription_id.map(Into::into),
                    "user.delete",
                    "user",
                    Some(id.to_string()),
                    actor,
                )
                .await?;
                tx.commit().await.map_err(db_err("user"))
            }

            async fn record_login(&self, id: UserId, at: Timestamp) -> StoreResult<()> {
                let updated = sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1")
                    .bind(id.as_uuid())
                    .bind(at.as_datetime())
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("user"))?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::not_found("user"));
                }
                Ok(())
            }

            async fn count_active_admins(&self) -> StoreResult<i64> {
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users WHERE role = 'admin' AND is_active")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_err("user"))?;
                Ok(count)
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
                    "instance.create",
                    "instance",
                    Some(instance.id.to_string()),
                    actor,
                )
                .await?;
                tx.commit().await.map_err(db_err("instance"))?;
                Ok(instance)
            }

            async fn get_instance(&self, scope: Scope, id: InstanceId) -> StoreResult<Instance> {
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

            async fn list_instances(&self, scope: Scope, page: PageRequest) -> StoreResult<Page<Instance>> {
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
                scope: Scope,
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
                    "instance.update",
                    "instance",
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

            async fn delete_instance(&self, scope: Scope, id: InstanceId, actor: &Actor) -> StoreResult<()> {
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
                    "instance.delete",
                    "instance",
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
            /// writes its `<resource>.delete` audit row, in one transaction.
            async fn delete_instance_owned(
                &self,
                statement: &'static str,
                entity: &'static str,
                resource: &'static str,
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
                let action = format!("{resource}.delete");
                Self::write_audit(&mut tx, Some(subscription_id), &action, resource, Some(id.to_string()), actor).await?;
                tx.commit().await.map_err(db_err(entity))
            }
        }

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
                Self::write_audit(&mut tx, Some(subscription_id), "api_key.create", "api_key", Some(key.id.to_string()), actor)
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
                let action = if patch.is_active == Some(false) { "api_key.revoke" } else { "api_key.update" };
                Self::write_audit(&mut tx, Some(subscription_id), action, "api_key", Some(id.to_string()), actor).await?;
                tx.commit().await.map_err(db_err("api key"))?;
                Ok(key)
            }

            async fn delete_api_key(&self, instance_id: InstanceId, id: ApiKeyId, actor: &Actor) -> StoreResult<()> {
                self.delete_instance_owned(
                    "DELETE FROM api_keys WHERE id = $1 AND instance_id = $2",
                    "api key",
                    "api_key",
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

        #[async_trait]
        impl ContactStore for $store {
            async fn upsert_contact(&self, upsert: ContactUpsert) -> StoreResult<Contact> {
                let at = now();
                let mut tx = self.begin_write().await?;
                // Learning that a LID and a phone number are one person: the row known so far only by its LID
                // becomes the phone-number row (or, if both rows exist, the LID-only row gives way), so each
                // person keeps exactly one contact.
                if let Some(lid) = upsert.lid.as_deref().filter(|lid| *lid != upsert.jid) {
                    let pn_row: Option<(Uuid,)> =
                        sqlx::query_as("SELECT id FROM contacts WHERE instance_id = $1 AND jid = $2")
                            .bind(upsert.instance_id.as_uuid())
                            .bind(&upsert.jid)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(db_err("contact"))?;
                    if pn_row.is_some() {
                        sqlx::query("DELETE FROM contacts WHERE instance_id = $1 AND jid = $2")
                            .bind(upsert.instance_id.as_uuid())
                            .bind(lid)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err("contact"))?;
                        sqlx::query("UPDATE contacts SET lid = NULL WHERE instance_id = $1 AND lid = $2 AND jid <> $3")
                            .bind(upsert.instance_id.as_uuid())
                            .bind(lid)
                            .bind(&upsert.jid)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err("contact"))?;
                    } else {
                        sqlx::query("UPDATE contacts SET jid = $3, lid = $2 WHERE instance_id = $1 AND (jid = $2 OR lid = $2)")
                            .bind(upsert.instance_id.as_uuid())
                            .bind(lid)
                            .bind(&upsert.jid)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err("contact"))?;
                    }
                }
                let contact = sqlx::query_as::<_, ContactRow>(concat!(
                    "INSERT INTO contacts (id, instance_id, jid, lid, name, notify, is_blocked, is_group, group_admin, \
                     created_at, updated_at, last_message_at, profile_picture_url, status) \
                     VALUES ($1, $2, $3, $12, $4, $5, FALSE, COALESCE($6, FALSE), COALESCE($7, FALSE), $8, $8, $9, $10, $11) \
                     ON CONFLICT (instance_id, jid) DO UPDATE SET \
                     lid = COALESCE(excluded.lid, contacts.lid), \
                     name = COALESCE(excluded.name, contacts.name), \
                     notify = COALESCE(excluded.notify, contacts.notify), \
                     is_group = CASE WHEN $6 IS NULL THEN contacts.is_group ELSE excluded.is_group END, \
                     group_admin = CASE WHEN $7 IS NULL THEN contacts.group_admin ELSE excluded.group_admin END, \
                     last_message_at = CASE WHEN excluded.last_message_at IS NOT NULL AND \
                       (contacts.last_message_at IS NULL OR excluded.last_message_at > contacts.last_message_at) \
                       THEN excluded.last_message_at ELSE contacts.last_message_at END, \
                     profile_picture_url = COALESCE(excluded.profile_picture_url, contacts.profile_picture_url), \
                     status = COALESCE(excluded.status, contacts.status), \
                     updated_at = excluded.updated_at \
                     RETURNING ",
                    contact_columns!()
                ))
                .bind(Uuid::now_v7())
                .bind(upsert.instance_id.as_uuid())
                .bind(&upsert.jid)
                .bind(upsert.name.as_deref())
                .bind(upsert.notify.as_deref())
                .bind(upsert.is_group)
                .bind(upsert.group_admin)
                .bind(at)
                .bind(upsert.last_message_at.map(|t| t.as_datetime()))
                .bind(upsert.profile_picture_url.as_deref())
                .bind(upsert.status.as_deref())
                .bind(upsert.lid.as_deref().filter(|lid| *lid != upsert.jid))
                .fetch_one(&mut *tx)
                .await
                .map(Into::into)
                .map_err(db_err_fk("contact", OnForeignKey::MissingParent("instance")))?;
                tx.commit().await.map_err(db_err("contact"))?;
                Ok(contact)
            }

            async fn get_contact(&self, instance_id: InstanceId, id: ContactId) -> StoreResult<Contact> {
                sqlx::query_as::<_, ContactRow>(concat!(
                    "SELECT ",
                    contact_columns!(),
                    " FROM contacts WHERE id = $1 AND instance_id = $2"
                ))
                .bind(id.as_uuid())
                .bind(instance_id.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("contact"))?
                .map(Into::into)
                .ok_or(StoreError::not_found("contact"))
            }

            async fn find_contact_by_jid(&self, instance_id: InstanceId, jid: &str) -> StoreResult<Option<Contact>> {
                Ok(sqlx::query_as::<_, ContactRow>(concat!(
                    "SELECT ",
                    contact_columns!(),
                    " FROM contacts WHERE instance_id = $1 AND (jid = $2 OR lid = $2)"
                ))
                .bind(instance_id.as_uuid())
                .bind(jid)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("contact"))?
                .map(Into::into))
            }

            async fn list_contacts(
                &self,
                instance_id: InstanceId,
                search: Option<&str>,
                page: PageRequest,
            ) -> StoreResult<Page<Contact>> {
                let rows = sqlx::query_as::<_, ContactRow>(concat!(
                    "SELECT ",
                    contact_columns!(),
                    " FROM contacts WHERE instance_id = $1 AND ($2 IS NULL OR id > $2) AND ($3 IS NULL \
                     OR lower(jid) LIKE $3 ESCAPE '\\' OR lower(COALESCE(name, '')) LIKE $3 ESCAPE '\\' \
                     OR lower(COALESCE(notify, '')) LIKE $3 ESCAPE '\\') ORDER BY id LIMIT $4"
                ))
                .bind(instance_id.as_uuid())
                .bind(after(page))
                .bind(search.map(like_pattern))
                .bind(page_limit(page))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("contact"))?;
                let items: Vec<Contact> = rows.into_iter().map(Into::into).collect();
                Ok(Page::from_overfetch(items, page, |c| c.id.as_uuid()))
            }

            async fn set_contact_blocked(
                &self,
                instance_id: InstanceId,
                id: ContactId,
                blocked: bool,
                actor: &Actor,
            ) -> StoreResult<Contact> {
                let mut tx = self.begin_write().await?;
                let subscription_id = <$store>::instance_owner(&mut tx, instance_id).await?;
                let contact: Contact = sqlx::query_as::<_, ContactRow>(concat!(
                    "UPDATE contacts SET is_blocked = $3, updated_at = $4 WHERE id = $1 AND instance_id = $2 \
                     RETURNING ",
                    contact_columns!()
                ))
                .bind(id.as_uuid())
                .bind(instance_id.as_uuid())
                .bind(blocked)
                .bind(now())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("contact"))?
                .ok_or(StoreError::not_found("contact"))?
                .into();
                let action = if blocked { "contact.block" } else { "contact.unblock" };
                Self::write_audit(&mut tx, Some(subscription_id), action, "contact", Some(id.to_string()), actor).await?;
                tx.commit().await.map_err(db_err("contact"))?;
                Ok(contact)
            }

            async fn delete_contact(&self, instance_id: InstanceId, id: ContactId, actor: &Actor) -> StoreResult<()> {
                self.delete_instance_owned(
                    "DELETE FROM contacts WHERE id = $1 AND instance_id = $2",
                    "contact",
                    "contact",
                    instance_id,
                    id.as_uuid(),
                    actor,
                )
                .await
            }
        }

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
                Self::write_audit(&mut tx, Some(subscription_id), "webhook.create", "webhook", Some(config.id.to_string()), actor)
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
                let action = if patch.secret.is_some() { "webhook.rotate_secret" } else { "webhook.update" };
                Self::write_audit(&mut tx, Some(subscription_id), action, "webhook", Some(id.to_string()), actor).await?;
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
                    "webhook",
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

        const UPSERT_ATTRIBUTED_USAGE: &str = "INSERT INTO usage_records (id, subscription_id, instance_id, \
             record_type, count, period, record_date, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7, '{}') \
             ON CONFLICT (subscription_id, instance_id, record_type, period) WHERE instance_id IS NOT NULL \
             DO UPDATE SET count = usage_records.count + excluded.count, record_date = excluded.record_date";
        const UPSERT_UNATTRIBUTED_USAGE: &str = "INSERT INTO usage_records (id, subscription_id, instance_id, \
             record_type, count, period, record_date, metadata) VALUES ($1, $2, NULL, $3, $4, $5, $6, '{}') \
             ON CONFLICT (subscription_id, record_type, period) WHERE instance_id IS NULL \
             DO UPDATE SET count = usage_records.count + excluded.count, record_date = excluded.record_date";

        #[async_trait]
        impl UsageStore for $store {
            async fn add_usage(&self, batch: &[UsageDelta]) -> StoreResult<()> {
                if batch.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                for delta in batch {
                    let done = match delta.instance_id {
                        Some(instance_id) => sqlx::query(UPSERT_ATTRIBUTED_USAGE)
                            .bind(Uuid::now_v7())
                            .bind(delta.subscription_id.as_uuid())
                            .bind(instance_id.as_uuid())
                            .bind(delta.record_type.as_str())
                            .bind(delta.count)
                            .bind(delta.period.to_string())
                            .bind(delta.at.as_datetime())
                            .execute(&mut *tx)
                            .await,
                        None => sqlx::query(UPSERT_UNATTRIBUTED_USAGE)
                            .bind(Uuid::now_v7())
                            .bind(delta.subscription_id.as_uuid())
                            .bind(delta.record_type.as_str())
                            .bind(delta.count)
                            .bind(delta.period.to_string())
                            .bind(delta.at.as_datetime())
                            .execute(&mut *tx)
                            .await,
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

        #[async_trait]
        impl AuditLogStore for $store {
            async fn append_audit(&self, entry: NewAuditEntry) -> StoreResult<AuditLogEntry> {
                let mut conn = self.pool.acquire().await.map_err(db_err("audit log entry"))?;
                Self::write_audit(
                    &mut conn,
                    entry.subscription_id,
                    &entry.action,
                    &entry.resource,
                    entry.resource_id,
                    &entry.actor,
                )
                .await
            }

            async fn list_audit(&self, filter: AuditFilter, page: PageRequest) -> StoreResult<Page<AuditLogEntry>> {
                let rows = sqlx::query_as::<_, AuditRow>(concat!(
                    "SELECT ",
                    audit_columns!(),
                    " FROM audit_log WHERE ($1 IS NULL OR subscription_id = $1) AND ($2 IS NULL OR user_id = $2) \
                     AND ($3 IS NULL OR api_key_id = $3) AND ($4 IS NULL OR resource = $4) \
                     AND ($5 IS NULL OR timestamp >= $5) AND ($6 IS NULL OR timestamp < $6) \
                     AND ($7 IS NULL OR id < $7) ORDER BY id DESC LIMIT $8"
                ))
                .bind(filter.subscription_id.map(|id| id.as_uuid()))
                .bind(filter.user_id.map(|id| id.as_uuid()))
                .bind(filter.api_key_id.map(|id| id.as_uuid()))
                .bind(filter.resource.as_deref())
                .bind(filter.since.map(|t| t.as_datetime()))
                .bind(filter.until.map(|t| t.as_datetime()))
                .bind(after(page))
                .bind(page_limit(page))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("audit log entry"))?;
                let items: Vec<AuditLogEntry> = rows.into_iter().map(Into::into).collect();
                Ok(Page::from_overfetch(items, page, |e| e.id.as_uuid()))
            }
        }

        #[async_trait]
        impl RefreshTokenStore for $store {
            async fn create_refresh_token(&self, new: NewRefreshToken) -> StoreResult<RefreshToken> {
                sqlx::query_as::<_, RefreshTokenRow>(concat!(
                    "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, issued_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
                    refresh_token_columns!()
                ))
                .bind(Uuid::now_v7())
                .bind(new.user_id.as_uuid())
                .bind(new.family_id.as_uuid())
                .bind(&new.token_hash)
                .bind(new.issued_at.as_datetime())
                .bind(new.expires_at.as_datetime())
                .fetch_one(&self.pool)
                .await
                .map(Into::into)
                .map_err(db_err_fk("refresh token", OnForeignKey::MissingParent("user")))
            }

            async fn rotate_refresh_token(
                &self,
                presented: &[u8],
                successor: NewRefreshToken,
                now: Timestamp,
            ) -> StoreResult<RefreshOutcome> {
                let mut tx = self.begin_write().await?;
                // The conditional UPDATE is the arbiter: of two concurrent uses, one consumes, the other sees it used.
                let consumed = sqlx::query_as::<_, RefreshTokenRow>(concat!(
                    "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL \
                     AND revoked_at IS NULL AND expires_at > $2 RETURNING ",
                    refresh_token_columns!()
                ))
                .bind(presented)
                .bind(now.as_datetime())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("refresh token"))?;
                if let Some(previous) = consumed {
                    let previous = RefreshToken::from(previous);
                    let next: RefreshToken = sqlx::query_as::<_, RefreshTokenRow>(concat!(
                        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, issued_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
                        refresh_token_columns!()
                    ))
                    .bind(Uuid::now_v7())
                    .bind(previous.user_id.as_uuid())
                    .bind(previous.family_id.as_uuid())
                    .bind(&successor.token_hash)
                    .bind(successor.issued_at.as_datetime())
                    .bind(successor.expires_at.as_datetime())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err("refresh token"))?
                    .into();
                    tx.commit().await.map_err(db_err("refresh token"))?;
                    return Ok(RefreshOutcome::Rotated { previous, successor: next });
                }
                let known: Option<(Uuid, Uuid, Option<DateTime<Utc>>)> =
                    sqlx::query_as("SELECT user_id, family_id, used_at FROM refresh_tokens WHERE token_hash = $1")
                        .bind(presented)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err("refresh token"))?;
                match known {
                    Some((user_id, family_id, Some(_))) => {
                        sqlx::query(
                            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
                        )
                        .bind(family_id)
                        .bind(now.as_datetime())
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err("refresh token"))?;
                        tx.commit().await.map_err(db_err("refresh token"))?;
                        Ok(RefreshOutcome::Reused { user_id: user_id.into(), family_id: family_id.into() })
                    }
                    _ => Ok(RefreshOutcome::Invalid),
                }
            }

            async fn find_refresh_token(&self, hash: &[u8]) -> StoreResult<Option<RefreshToken>> {
                Ok(sqlx::query_as::<_, RefreshTokenRow>(concat!(
                    "SELECT ",
                    refresh_token_columns!(),
                    " FROM refresh_tokens WHERE token_hash = $1"
                ))
                .bind(hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("refresh token"))?
                .map(Into::into))
            }

            async fn revoke_refresh_family(&self, family_id: TokenFamilyId, at: Timestamp) -> StoreResult<()> {
                sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL")
                    .bind(family_id.as_uuid())
                    .bind(at.as_datetime())
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("refresh token"))?;
                Ok(())
            }

            async fn revoke_user_refresh_tokens(&self, user_id: UserId, at: Timestamp) -> StoreResult<()> {
                sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
                    .bind(user_id.as_uuid())
                    .bind(at.as_datetime())
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("refresh token"))?;
                Ok(())
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
                    .map_err(|err| StoreError::Unavailable(Box::new(err)))
            }

            async fn close(&self) {
                self.pool.close().await;
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_match_user_text_literally() {
        assert_eq!(like_pattern("Ann"), "%ann%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
