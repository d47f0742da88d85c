//! [`gw_store::RefreshTokenStore`] in SQL both backends accept, instantiated per backend by
//! [`impl_refresh_token_store!`].

macro_rules! impl_refresh_token_store {
    ($store:ty) => {
        use async_trait::async_trait;
        use chrono::{DateTime, Utc};
        use gw_core::{RefreshToken, Timestamp, TokenFamilyId, UserId};
        use gw_store::{NewRefreshToken, RefreshOutcome, RefreshTokenStore, StoreResult};
        use uuid::Uuid;

        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::rows::{RefreshTokenRow, refresh_token_columns};

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
    };
}
pub(crate) use impl_refresh_token_store;
