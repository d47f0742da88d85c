//! [`gw_store::ContactStore`] in SQL both backends accept, instantiated per backend by [`impl_contact_store!`].

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

macro_rules! impl_contact_store {
    ($store:ty, $fence_lock:literal) => {
        use async_trait::async_trait;
        use gw_core::{Contact, ContactId, InstanceId};
        use gw_store::{Actor, ContactStore, ContactUpsert, Page, PageRequest, StoreError, StoreResult};
        use uuid::Uuid;

        use crate::contacts::like_pattern;
        use crate::error::{OnForeignKey, db_err, db_err_fk};
        use crate::rows::{ContactRow, contact_columns};
        use crate::shared::{after, now, page_limit};

        #[async_trait]
        impl ContactStore for $store {
            async fn upsert_contact(&self, upsert: ContactUpsert) -> StoreResult<Contact> {
                let at = now();
                let mut tx = self.begin_write().await?;
                if let Some(fence) = upsert.fence {
                    // Under the instance row's lock until commit, as every fenced write (see cluster.rs).
                    let current: Option<(i64,)> = sqlx::query_as(crate::cluster::epoch_under_lock!($fence_lock))
                        .bind(upsert.instance_id.as_uuid())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err("instance"))?;
                    if current.is_some_and(|(epoch,)| epoch != fence.get()) {
                        return Err(StoreError::Fenced { instance: upsert.instance_id });
                    }
                }
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
                let action = if blocked { gw_core::AuditAction::ContactBlock } else { gw_core::AuditAction::ContactUnblock };
                Self::write_audit(&mut tx, Some(subscription_id), action, Some(id.to_string()), actor).await?;
                tx.commit().await.map_err(db_err("contact"))?;
                Ok(contact)
            }

            async fn delete_contact(&self, instance_id: InstanceId, id: ContactId, actor: &Actor) -> StoreResult<()> {
                self.delete_instance_owned(
                    "DELETE FROM contacts WHERE id = $1 AND instance_id = $2",
                    "contact",
                    gw_core::AuditAction::ContactDelete,
                    instance_id,
                    id.as_uuid(),
                    actor,
                )
                .await
            }
        }
    };
}
pub(crate) use impl_contact_store;

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_match_user_text_literally() {
        assert_eq!(like_pattern("Ann"), "%ann%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
