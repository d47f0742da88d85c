//! [`gw_store::AuditLogStore`] in SQL both backends accept, instantiated per backend by [`impl_audit_log_store!`],
//! with `write_audit`, which every audited change calls on the connection of its own transaction.

macro_rules! impl_audit_log_store {
    ($store:ty, $db:ty) => {
        use async_trait::async_trait;
        use gw_core::{AuditLogEntry, SubscriptionId};
        use gw_store::{Actor, AuditFilter, AuditLogStore, NewAuditEntry, Page, PageRequest, StoreResult};
        use uuid::Uuid;

        use crate::error::db_err;
        use crate::rows::{AuditRow, audit_columns};
        use crate::shared::{after, now, page_limit};

        impl $store {
            /// Writes the audit row of an action, on the connection of the transaction that makes the change.
            pub(crate) async fn write_audit(
                conn: &mut <$db as sqlx::Database>::Connection,
                subscription_id: Option<SubscriptionId>,
                action: gw_core::AuditAction,
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
                .bind(action.as_str())
                .bind(action.resource().as_str())
                .bind(resource_id)
                .bind(actor.user_id.map(|id| id.as_uuid()))
                .bind(actor.api_key_id.map(|id| id.as_uuid()))
                .bind(actor.ip_address.as_deref())
                .bind(now())
                .fetch_one(&mut *conn)
                .await
                .map_err(db_err("audit log entry"))
                .and_then(AuditLogEntry::try_from)
            }
        }

        #[async_trait]
        impl AuditLogStore for $store {
            async fn append_audit(&self, entry: NewAuditEntry) -> StoreResult<AuditLogEntry> {
                let mut conn = self.pool.acquire().await.map_err(db_err("audit log entry"))?;
                Self::write_audit(&mut conn, entry.subscription_id, entry.action, entry.resource_id, &entry.actor).await
            }

            async fn list_audit(&self, filter: AuditFilter, page: PageRequest) -> StoreResult<Page<AuditLogEntry>> {
                let rows = sqlx::query_as::<_, AuditRow>(concat!(
                    "SELECT ",
                    audit_columns!(),
                    " FROM audit_log WHERE ($1 IS NULL OR subscription_id = $1) AND ($2 IS NULL OR user_id = $2) \
                     AND ($3 IS NULL OR api_key_id = $3) AND ($4 IS NULL OR resource = $4) \
                     AND ($5 IS NULL OR timestamp >= $5) AND ($6 IS NULL OR timestamp < $6) \
                     AND ($7 IS NULL OR id < $7) AND ($9 IS NULL OR action = $9) ORDER BY id DESC LIMIT $8"
                ))
                .bind(filter.subscription_id.map(|id| id.as_uuid()))
                .bind(filter.user_id.map(|id| id.as_uuid()))
                .bind(filter.api_key_id.map(|id| id.as_uuid()))
                .bind(filter.resource.map(|r| r.as_str()))
                .bind(filter.since.map(|t| t.as_datetime()))
                .bind(filter.until.map(|t| t.as_datetime()))
                .bind(after(page))
                .bind(page_limit(page))
                .bind(filter.action.map(|a| a.as_str()))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("audit log entry"))?;
                let items = rows.into_iter().map(AuditLogEntry::try_from).collect::<StoreResult<Vec<_>>>()?;
                Ok(Page::from_overfetch(items, page, |e| e.id.as_uuid()))
            }
        }
    };
}
pub(crate) use impl_audit_log_store;
