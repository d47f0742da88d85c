//! [`gw_store::SubscriptionStore`] in SQL both backends accept, instantiated per backend by
//! [`impl_subscription_store!`]; also the slot and allowance statements the instance and message stores run inside
//! their own transactions.

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

/// Takes one of subscription `$1`'s instance slots; matches no row when inactive or full.
pub(crate) const RESERVE_SLOT: &str = "UPDATE subscriptions SET current_instances = current_instances + 1 \
     WHERE id = $1 AND is_active AND current_instances < max_instances \
     RETURNING current_instances, max_instances";

/// Gives back one of subscription `$1`'s instance slots.
pub(crate) const RELEASE_SLOT: &str = "UPDATE subscriptions SET current_instances = current_instances - 1 \
     WHERE id = $1 AND current_instances > 0";

macro_rules! impl_subscription_store {
    ($store:ty) => {
        use async_trait::async_trait;
        use gw_core::{Subscription, SubscriptionId, Timestamp};
        use gw_store::{
            Actor, Limit, MessagesReserved, NewSubscription, Page, PageRequest, Reserved, StoreError, StoreResult,
            SubscriptionPatch, SubscriptionStore,
        };
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::rows::{SubscriptionRow, subscription_columns};
        use crate::shared::{after, now, page_limit};
        use crate::subscriptions::{RELEASE_SLOT, RESERVE_SLOT};

        impl $store {
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
                    gw_core::AuditAction::SubscriptionCreate,
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
                    gw_core::AuditAction::SubscriptionUpdate,
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
                    .map_err(db_err_fk(
                        "subscription",
                        OnForeignKey::Referenced("users, instances or usage records"),
                    ))?;
                if deleted.rows_affected() == 0 {
                    return Err(StoreError::not_found("subscription"));
                }
                Self::write_audit(
                    &mut tx,
                    Some(id),
                    gw_core::AuditAction::SubscriptionDelete,
                    Some(id.to_string()),
                    actor,
                )
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
                    return Err(StoreError::Backend(
                        format!("message reservation of {count}: must be positive").into(),
                    ));
                }
                let period = now.period();
                let granted: Option<(i64, i64)> = sqlx::query_as(crate::subscriptions::RESERVE_MESSAGES)
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
    };
}
pub(crate) use impl_subscription_store;
