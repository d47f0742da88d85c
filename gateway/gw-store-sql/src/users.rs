//! [`gw_store::UserStore`] in SQL both backends accept, instantiated per backend by [`impl_user_store!`].

macro_rules! impl_user_store {
    ($store:ty) => {
        use async_trait::async_trait;
        use gw_core::{Email, Timestamp, User, UserId};
        use gw_store::{Actor, NewUser, Page, PageRequest, StoreError, StoreResult, UserPatch, UserStore, Visibility};
        use uuid::Uuid;

        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::rows::{UserRow, user_columns};
        use crate::shared::{after, now, page_limit};

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
                Self::write_audit(
                    &mut tx,
                    user.subscription_id,
                    gw_core::AuditAction::UserCreate,
                    Some(user.id.to_string()),
                    actor,
                )
                .await?;
                tx.commit().await.map_err(db_err("user"))?;
                Ok(user)
            }

            async fn get_user(&self, scope: Visibility, id: UserId) -> StoreResult<User> {
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

            async fn list_users(&self, scope: Visibility, page: PageRequest) -> StoreResult<Page<User>> {
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

            async fn update_user(
                &self,
                scope: Visibility,
                id: UserId,
                patch: UserPatch,
                actor: &Actor,
            ) -> StoreResult<User> {
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
                let action = if patch.password.is_some() {
                    gw_core::AuditAction::UserPasswordReset
                } else {
                    gw_core::AuditAction::UserUpdate
                };
                Self::write_audit(&mut tx, user.subscription_id, action, Some(id.to_string()), actor).await?;
                tx.commit().await.map_err(db_err("user"))?;
                Ok(user)
            }

            async fn delete_user(&self, scope: Visibility, id: UserId, actor: &Actor) -> StoreResult<()> {
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
                    gw_core::AuditAction::UserDelete,
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
    };
}
pub(crate) use impl_user_store;
