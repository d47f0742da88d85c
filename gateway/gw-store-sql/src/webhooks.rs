//! [`gw_store::WebhookDeliveryStore`] in SQL both backends accept, instantiated per backend by
//! [`impl_webhook_delivery_store!`].
//!
//! Claiming differs by backend, and only in one clause. PostgreSQL: the claim's inner `SELECT` takes
//! `FOR UPDATE OF d SKIP LOCKED`, so concurrent dispatchers on several nodes each lock different rows and never wait
//! on one another (the River / Oban / graphile-worker pattern). SQLite has no row locks: the claim runs in a
//! `BEGIN IMMEDIATE` transaction, which holds the database's single write lock, so claims are serialised and one
//! claim's rows are `delivering` before the next claim looks. Leases make both safe against a dispatcher that dies.

use chrono::{DateTime, Utc};
use gw_core::Timestamp;
use gw_store::{StoreError, WebhookAttempt, WebhookDelivery};
use uuid::Uuid;

macro_rules! delivery_columns {
    () => {
        "d.id, d.config_id, d.instance_id, d.event_id, d.event_type, d.payload, d.status, d.attempts, \
         d.next_attempt_at, d.created_at, d.last_attempt_at"
    };
}
pub(crate) use delivery_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    id: Uuid,
    config_id: Uuid,
    instance_id: Uuid,
    event_id: Uuid,
    event_type: String,
    payload: String,
    status: String,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    last_attempt_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct AttemptRow {
    pub(crate) delivery_id: Uuid,
    attempt: i32,
    at: DateTime<Utc>,
    status_code: Option<i32>,
    latency_ms: i64,
    error: Option<String>,
    response_excerpt: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct ClaimRow {
    pub(crate) id: Uuid,
    pub(crate) config_id: Uuid,
    pub(crate) instance_id: Uuid,
    pub(crate) event_id: Uuid,
    pub(crate) event_type: String,
    pub(crate) payload: String,
    pub(crate) attempts: i32,
    pub(crate) claim_token: Uuid,
    pub(crate) url: String,
    pub(crate) secret: String,
    pub(crate) previous_secret: Option<String>,
}

impl From<AttemptRow> for WebhookAttempt {
    fn from(row: AttemptRow) -> Self {
        WebhookAttempt {
            attempt: row.attempt,
            at: Timestamp::from_datetime(row.at),
            status_code: row.status_code.and_then(|c| u16::try_from(c).ok()),
            latency_ms: row.latency_ms,
            error: row.error,
            response_excerpt: row.response_excerpt,
        }
    }
}

pub(crate) fn to_delivery(row: DeliveryRow, attempts: Vec<WebhookAttempt>) -> Result<WebhookDelivery, StoreError> {
    Ok(WebhookDelivery {
        id: row.id.into(),
        config_id: row.config_id.into(),
        instance_id: row.instance_id.into(),
        event_id: gw_core::EventId::from_uuid(row.event_id),
        event_type: row.event_type,
        payload: row.payload,
        status: row
            .status
            .parse()
            .map_err(|e| StoreError::Corrupt { entity: "webhook delivery", detail: format!("{e}") })?,
        attempts: row.attempts,
        next_attempt_at: Timestamp::from_datetime(row.next_attempt_at),
        created_at: Timestamp::from_datetime(row.created_at),
        last_attempt_at: row.last_attempt_at.map(Timestamp::from_datetime),
        attempt_log: attempts,
    })
}

/// Joins attempts (ordered by delivery, then attempt) to their deliveries.
pub(crate) fn with_attempts(
    rows: Vec<DeliveryRow>,
    attempts: Vec<AttemptRow>,
) -> Result<Vec<WebhookDelivery>, StoreError> {
    let mut by_delivery: std::collections::HashMap<Uuid, Vec<WebhookAttempt>> = std::collections::HashMap::new();
    for attempt in attempts {
        by_delivery.entry(attempt.delivery_id).or_default().push(attempt.into());
    }
    rows.into_iter()
        .map(|row| {
            let log = by_delivery.remove(&row.id).unwrap_or_default();
            to_delivery(row, log)
        })
        .collect()
}

macro_rules! impl_webhook_delivery_store {
    ($store:ty, $db:ty, $skip_locked:literal) => {
        use async_trait::async_trait;
        use chrono::{DateTime, Utc};
        use gw_core::{InstanceId, Redacted, Timestamp, WebhookConfig, WebhookConfigId, WebhookDeliveryId};
        use gw_store::{
            Actor, ClaimedDelivery, CompletionReport, DeliveryCompletion, DisabledEndpoint, NewWebhookEvent, NextStep,
            Page, PageRequest, StoreError, StoreResult, WebhookDelivery, WebhookDeliveryStore,
        };
        use uuid::Uuid;

        use crate::error::db_err;
        use crate::rows::{WebhookConfigRow, webhook_config_columns};
        use crate::webhooks::{AttemptRow, ClaimRow, DeliveryRow, Tally, delivery_columns, with_attempts};

        async fn attempts_between(
            conn: &mut <$db as sqlx::Database>::Connection,
            config_id: Uuid,
            low: Uuid,
            high: Uuid,
        ) -> StoreResult<Vec<AttemptRow>> {
            sqlx::query_as::<_, AttemptRow>(
                "SELECT delivery_id, attempt, at, status_code, latency_ms, error, response_excerpt \
                 FROM webhook_attempts WHERE config_id = $1 AND delivery_id >= $2 AND delivery_id <= $3 \
                 ORDER BY delivery_id, attempt",
            )
            .bind(config_id)
            .bind(low)
            .bind(high)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err("webhook attempt"))
        }

        #[async_trait]
        impl WebhookDeliveryStore for $store {
            async fn enqueue_webhook_event(&self, event: &NewWebhookEvent) -> StoreResult<Vec<WebhookDeliveryId>> {
                // Most events of most instances go to no endpoint: find out with a read, so they never take
                // SQLite's write lock.
                let configs: Vec<WebhookConfig> = sqlx::query_as::<_, WebhookConfigRow>(concat!(
                    "SELECT ",
                    webhook_config_columns!(),
                    " FROM webhook_configs WHERE instance_id = $1 AND is_active ORDER BY id"
                ))
                .bind(event.instance_id.as_uuid())
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("webhook config"))?
                .into_iter()
                .map(WebhookConfig::from)
                .filter(|config| config.subscribes(&event.event_type))
                .collect();
                if configs.is_empty() {
                    return Ok(Vec::new());
                }
                let mut tx = self.begin_write().await?;
                let mut created = Vec::new();
                for config in configs {
                    let id: Option<(Uuid,)> = sqlx::query_as(
                        "INSERT INTO webhook_deliveries (id, config_id, instance_id, event_id, event_type, payload, \
                         status, attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, \
                         $7, $7) ON CONFLICT (config_id, event_id) DO NOTHING RETURNING id",
                    )
                    .bind(Uuid::now_v7())
                    .bind(config.id.as_uuid())
                    .bind(event.instance_id.as_uuid())
                    .bind(event.event_id.as_uuid())
                    .bind(&event.event_type)
                    .bind(&event.payload)
                    .bind(event.at.as_datetime())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err("webhook delivery"))?;
                    if let Some((id,)) = id {
                        created.push(id.into());
                    }
                }
                tx.commit().await.map_err(db_err("webhook delivery"))?;
                Ok(created)
            }

            async fn claim_webhook_deliveries(
                &self,
                now: Timestamp,
                lease_until: Timestamp,
                limit: u32,
            ) -> StoreResult<Vec<ClaimedDelivery>> {
                // Two tokens for one claim: rows taken over from an expired lease get the second, so the caller
                // learns which work it recovered without another query (SET sees the row as it was).
                let (token, takeover_token) = (Uuid::now_v7(), Uuid::now_v7());
                let mut tx = self.begin_write().await?;
                let claimed = sqlx::query(concat!(
                    "UPDATE webhook_deliveries SET status = 'delivering', lease_until = $2, \
                     claim_token = CASE WHEN status = 'delivering' THEN $5 ELSE $3 END \
                     WHERE id IN (SELECT d.id FROM webhook_deliveries d JOIN webhook_configs c ON c.id = d.config_id \
                     WHERE c.is_active AND ((d.status = 'pending' AND d.next_attempt_at <= $1) \
                     OR (d.status = 'delivering' AND d.lease_until <= $1)) ORDER BY d.next_attempt_at, d.id LIMIT $4",
                    $skip_locked,
                    ")"
                ))
                .bind(now.as_datetime())
                .bind(lease_until.as_datetime())
                .bind(token)
                .bind(i64::from(limit))
                .bind(takeover_token)
                .execute(&mut *tx)
                .await
                .map_err(db_err("webhook delivery"))?;
                if claimed.rows_affected() == 0 {
                    tx.commit().await.map_err(db_err("webhook delivery"))?;
                    return Ok(Vec::new());
                }
                let rows = sqlx::query_as::<_, ClaimRow>(
                    "SELECT d.id, d.config_id, d.instance_id, d.event_id, d.event_type, d.payload, d.attempts, \
                     d.claim_token, c.url, c.secret, \
                     CASE WHEN c.previous_secret_expires_at > $2 THEN c.previous_secret END AS previous_secret \
                     FROM webhook_deliveries d JOIN webhook_configs c ON c.id = d.config_id \
                     WHERE d.claim_token = $1 OR d.claim_token = $3 ORDER BY d.next_attempt_at, d.id",
                )
                .bind(token)
                .bind(now.as_datetime())
                .bind(takeover_token)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err("webhook delivery"))?;
                tx.commit().await.map_err(db_err("webhook delivery"))?;
                Ok(rows
                    .into_iter()
                    .map(|row| ClaimedDelivery {
                        id: row.id.into(),
                        config_id: row.config_id.into(),
                        instance_id: row.instance_id.into(),
                        event_id: gw_core::EventId::from_uuid(row.event_id),
                        event_type: row.event_type,
                        payload: row.payload,
                        attempts: row.attempts,
                        claim_token: row.claim_token,
                        taken_over: row.claim_token == takeover_token,
                        url: row.url,
                        secret: Redacted::new(row.secret),
                        previous_secret: row.previous_secret.map(Redacted::new),
                    })
                    .collect())
            }

            async fn renew_webhook_leases(
                &self,
                claim_tokens: &[Uuid],
                lease_until: Timestamp,
            ) -> StoreResult<Vec<WebhookDeliveryId>> {
                let mut renewed = Vec::new();
                if claim_tokens.is_empty() {
                    return Ok(renewed);
                }
                let mut tx = self.begin_write().await?;
                for tokens in claim_tokens.chunks(crate::webhooks::RENEWAL_CHUNK) {
                    let mut renewal = sqlx::query_as::<_, (Uuid,)>(sqlx::AssertSqlSafe(crate::webhooks::renewal_sql(tokens.len())))
                        .bind(lease_until.as_datetime());
                    for token in tokens {
                        renewal = renewal.bind(*token);
                    }
                    let ids = renewal.fetch_all(&mut *tx).await.map_err(db_err("webhook delivery"))?;
                    renewed.extend(ids.into_iter().map(|(id,)| WebhookDeliveryId::from(id)));
                }
                tx.commit().await.map_err(db_err("webhook delivery"))?;
                Ok(renewed)
            }

            async fn complete_webhook_deliveries(
                &self,
                batch: &[DeliveryCompletion],
                auto_disable_after: chrono::Duration,
            ) -> StoreResult<CompletionReport> {
                let mut report = CompletionReport::default();
                if batch.is_empty() {
                    return Ok(report);
                }
                let mut tallies: std::collections::BTreeMap<WebhookConfigId, Tally> = Default::default();
                let mut tx = self.begin_write().await?;
                for done in batch {
                    let (status, next_at) = match done.next {
                        NextStep::Succeeded => ("succeeded", None),
                        NextStep::RetryAt(at) => ("pending", Some(at.as_datetime())),
                        NextStep::Dead | NextStep::Gone => ("dead", None),
                    };
                    let attempt: Option<(i32,)> = sqlx::query_as(
                        "UPDATE webhook_deliveries SET status = $3, attempts = attempts + 1, last_attempt_at = $4, \
                         next_attempt_at = COALESCE($5, next_attempt_at), lease_until = NULL, claim_token = NULL \
                         WHERE id = $1 AND claim_token = $2 RETURNING attempts",
                    )
                    .bind(done.id.as_uuid())
                    .bind(done.claim_token)
                    .bind(status)
                    .bind(done.at.as_datetime())
                    .bind(next_at)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err("webhook delivery"))?;
                    let Some((attempt,)) = attempt else {
                        report.stale += 1;
                        continue;
                    };
                    sqlx::query(
                        "INSERT INTO webhook_attempts (id, delivery_id, config_id, attempt, at, status_code, latency_ms, \
                         error, response_excerpt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(Uuid::now_v7())
                    .bind(done.id.as_uuid())
                    .bind(done.config_id.as_uuid())
                    .bind(attempt)
                    .bind(done.at.as_datetime())
                    .bind(done.status_code.map(i32::from))
                    .bind(done.latency_ms.max(0))
                    .bind(done.error.as_deref())
                    .bind(done.response_excerpt.as_deref())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("webhook attempt"))?;
                    let tally = tallies.entry(done.config_id).or_insert_with(Tally::default);
                    tally.add(done);
                }
                // One counter update per endpoint and batch: a busy endpoint's row is not rewritten per delivery.
                for (config_id, tally) in tallies {
                    let failing: Option<(Option<DateTime<Utc>>,)> = sqlx::query_as(
                        "UPDATE webhook_configs SET total_sent = total_sent + $2, total_failed = total_failed + $3, \
                         last_sent_at = COALESCE($4, last_sent_at), last_failed_at = COALESCE($5, last_failed_at), \
                         last_error = COALESCE($6, last_error), \
                         failing_since = CASE WHEN $7 THEN $8 ELSE COALESCE(failing_since, $8) END \
                         WHERE id = $1 AND is_active RETURNING failing_since",
                    )
                    .bind(config_id.as_uuid())
                    .bind(tally.sent)
                    .bind(tally.failed)
                    .bind(tally.last_sent_at)
                    .bind(tally.last_failed_at)
                    .bind(tally.last_error.as_deref())
                    .bind(tally.last_sent_at.is_some())
                    .bind(tally.failing_since)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err("webhook config"))?;
                    let Some((failing_since,)) = failing else { continue };
                    let reason = if let Some(gone_at) = tally.gone_at {
                        Some((gone_at, "the endpoint answered 410 Gone".to_owned()))
                    } else {
                        match (failing_since, tally.last_failed_at) {
                            (Some(since), Some(at)) if at - since >= auto_disable_after => Some((
                                at,
                                format!(
                                    "every delivery failed since {} (last error: {})",
                                    since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                                    tally.last_error.as_deref().unwrap_or("failed")
                                ),
                            )),
                            _ => None,
                        }
                    };
                    let Some((at, reason)) = reason else { continue };
                    let disabled: Option<(Uuid, String)> = sqlx::query_as(
                        "UPDATE webhook_configs SET is_active = FALSE, disabled_reason = $2, updated_at = $3 \
                         WHERE id = $1 AND is_active RETURNING instance_id, url",
                    )
                    .bind(config_id.as_uuid())
                    .bind(&reason)
                    .bind(at)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err("webhook config"))?;
                    if let Some((instance_id, url)) = disabled {
                        let instance_id: InstanceId = instance_id.into();
                        let subscription_id = <$store>::instance_owner(&mut tx, instance_id).await?;
                        <$store>::write_audit(&mut tx, Some(subscription_id), gw_core::AuditAction::WebhookDisable, Some(config_id.to_string()), &Actor::system())
                            .await?;
                        report.disabled.push(DisabledEndpoint { config_id, instance_id, subscription_id, url, reason });
                    }
                }
                tx.commit().await.map_err(db_err("webhook delivery"))?;
                Ok(report)
            }

            async fn next_webhook_due_at(&self) -> StoreResult<Option<Timestamp>> {
                let row: (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
                    "SELECT (SELECT MIN(d.next_attempt_at) FROM webhook_deliveries d JOIN webhook_configs c \
                     ON c.id = d.config_id WHERE d.status = 'pending' AND c.is_active), \
                     (SELECT MIN(lease_until) FROM webhook_deliveries WHERE status = 'delivering')",
                )
                .fetch_one(&self.pool)
                .await
                .map_err(db_err("webhook delivery"))?;
                let due = match row {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                Ok(due.map(Timestamp::from_datetime))
            }

            async fn webhook_queue_depth(&self) -> StoreResult<i64> {
                let (depth,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM webhook_deliveries WHERE status IN ('pending', 'delivering')",
                )
                .fetch_one(&self.pool)
                .await
                .map_err(db_err("webhook delivery"))?;
                Ok(depth)
            }

            async fn list_webhook_deliveries(
                &self,
                instance_id: InstanceId,
                config_id: WebhookConfigId,
                page: PageRequest,
            ) -> StoreResult<Page<WebhookDelivery>> {
                let mut conn = self.pool.acquire().await.map_err(db_err("webhook delivery"))?;
                let rows = sqlx::query_as::<_, DeliveryRow>(concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM webhook_deliveries d WHERE d.config_id = $1 AND d.instance_id = $2 \
                     AND ($3 IS NULL OR d.id < $3) ORDER BY d.id DESC LIMIT $4"
                ))
                .bind(config_id.as_uuid())
                .bind(instance_id.as_uuid())
                .bind(page.after.map(|c| c.last_id()))
                .bind(i64::from(page.limit()) + 1)
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err("webhook delivery"))?;
                let attempts = match (rows.iter().map(|r| r.id()).min(), rows.iter().map(|r| r.id()).max()) {
                    (Some(low), Some(high)) => attempts_between(&mut conn, config_id.as_uuid(), low, high).await?,
                    _ => Vec::new(),
                };
                let deliveries = with_attempts(rows, attempts)?;
                Ok(Page::from_overfetch(deliveries, page, |d| d.id.as_uuid()))
            }

            async fn get_webhook_delivery(
                &self,
                instance_id: InstanceId,
                config_id: WebhookConfigId,
                id: WebhookDeliveryId,
            ) -> StoreResult<WebhookDelivery> {
                let mut conn = self.pool.acquire().await.map_err(db_err("webhook delivery"))?;
                let row = sqlx::query_as::<_, DeliveryRow>(concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM webhook_deliveries d WHERE d.id = $1 AND d.config_id = $2 AND d.instance_id = $3"
                ))
                .bind(id.as_uuid())
                .bind(config_id.as_uuid())
                .bind(instance_id.as_uuid())
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err("webhook delivery"))?
                .ok_or(StoreError::not_found("webhook delivery"))?;
                let attempts = attempts_between(&mut conn, config_id.as_uuid(), id.as_uuid(), id.as_uuid()).await?;
                with_attempts(vec![row], attempts)?.pop().ok_or(StoreError::not_found("webhook delivery"))
            }

            async fn replay_webhook_delivery(
                &self,
                instance_id: InstanceId,
                config_id: WebhookConfigId,
                id: WebhookDeliveryId,
                at: Timestamp,
                actor: &Actor,
            ) -> StoreResult<WebhookDelivery> {
                let mut tx = self.begin_write().await?;
                let subscription_id = <$store>::instance_owner(&mut tx, instance_id).await?;
                let updated = sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $4, lease_until = NULL, \
                     claim_token = NULL WHERE id = $1 AND config_id = $2 AND instance_id = $3 AND status <> 'delivering'",
                )
                .bind(id.as_uuid())
                .bind(config_id.as_uuid())
                .bind(instance_id.as_uuid())
                .bind(at.as_datetime())
                .execute(&mut *tx)
                .await
                .map_err(db_err("webhook delivery"))?;
                if updated.rows_affected() > 0 {
                    <$store>::write_audit(&mut tx, Some(subscription_id), gw_core::AuditAction::WebhookReplay, Some(id.to_string()), actor).await?;
                }
                tx.commit().await.map_err(db_err("webhook delivery"))?;
                self.get_webhook_delivery(instance_id, config_id, id).await
            }

            async fn replay_webhook_deliveries(
                &self,
                instance_id: InstanceId,
                config_id: WebhookConfigId,
                from: Timestamp,
                to: Timestamp,
                at: Timestamp,
                actor: &Actor,
            ) -> StoreResult<u64> {
                let mut tx = self.begin_write().await?;
                let subscription_id = <$store>::instance_owner(&mut tx, instance_id).await?;
                let updated = sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $5, lease_until = NULL, \
                     claim_token = NULL WHERE config_id = $1 AND instance_id = $2 AND created_at >= $3 \
                     AND created_at < $4 AND status IN ('succeeded', 'dead')",
                )
                .bind(config_id.as_uuid())
                .bind(instance_id.as_uuid())
                .bind(from.as_datetime())
                .bind(to.as_datetime())
                .bind(at.as_datetime())
                .execute(&mut *tx)
                .await
                .map_err(db_err("webhook delivery"))?;
                <$store>::write_audit(&mut tx, Some(subscription_id), gw_core::AuditAction::WebhookReplayRange, Some(config_id.to_string()), actor).await?;
                tx.commit().await.map_err(db_err("webhook delivery"))?;
                Ok(updated.rows_affected())
            }

            async fn rotate_webhook_secret(
                &self,
                instance_id: InstanceId,
                id: WebhookConfigId,
                new_secret: String,
                old_valid_until: Timestamp,
                actor: &Actor,
            ) -> StoreResult<WebhookConfig> {
                let mut tx = self.begin_write().await?;
                let subscription_id = <$store>::instance_owner(&mut tx, instance_id).await?;
                let config: WebhookConfig = sqlx::query_as::<_, WebhookConfigRow>(concat!(
                    "UPDATE webhook_configs SET previous_secret = secret, previous_secret_expires_at = $4, \
                     secret = $3, updated_at = $5 WHERE id = $1 AND instance_id = $2 RETURNING ",
                    webhook_config_columns!()
                ))
                .bind(id.as_uuid())
                .bind(instance_id.as_uuid())
                .bind(&new_secret)
                .bind(old_valid_until.as_datetime())
                .bind(Timestamp::now().as_datetime())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("webhook config"))?
                .ok_or(StoreError::not_found("webhook config"))?
                .into();
                <$store>::write_audit(&mut tx, Some(subscription_id), gw_core::AuditAction::WebhookRotateSecret, Some(id.to_string()), actor).await?;
                tx.commit().await.map_err(db_err("webhook config"))?;
                Ok(config)
            }
        }
    };
}
pub(crate) use impl_webhook_delivery_store;

/// Claim tokens per renewal statement: far below both backends' limits on bound parameters (SQLite 32766,
/// PostgreSQL 65535); a dispatcher holds one token per claim round trip, at most its `max_in_flight` of them.
pub(crate) const RENEWAL_CHUNK: usize = 500;

/// The renewal for `tokens` claim tokens (`$2` …): one indexed `UPDATE` (`webhook_deliveries_claim_idx`) that
/// touches only rows still delivering under those tokens. Same text on both backends.
pub(crate) fn renewal_sql(tokens: usize) -> String {
    let placeholders: Vec<String> = (2..tokens + 2).map(|n| format!("${n}")).collect();
    format!(
        "UPDATE webhook_deliveries SET lease_until = $1 WHERE status = 'delivering' AND claim_token IN ({}) \
         RETURNING id",
        placeholders.join(", ")
    )
}

/// One endpoint's outcomes within a batch of completions, in the order they are recorded.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) sent: i64,
    pub(crate) failed: i64,
    pub(crate) last_sent_at: Option<DateTime<Utc>>,
    pub(crate) last_failed_at: Option<DateTime<Utc>>,
    pub(crate) last_error: Option<String>,
    /// The first failure after the batch's last success (or of the batch, if nothing succeeded).
    pub(crate) failing_since: Option<DateTime<Utc>>,
    pub(crate) gone_at: Option<DateTime<Utc>>,
}

impl Tally {
    pub(crate) fn add(&mut self, done: &gw_store::DeliveryCompletion) {
        let at = done.at.as_datetime();
        if done.next == gw_store::NextStep::Succeeded {
            self.sent += 1;
            self.last_sent_at = Some(self.last_sent_at.map_or(at, |t| t.max(at)));
            if self.failing_since.is_some_and(|since| since <= at) {
                self.failing_since = None;
            }
            return;
        }
        self.failed += 1;
        if self.last_failed_at.is_none_or(|t| t <= at) {
            self.last_failed_at = Some(at);
            self.last_error = Some(done.error.clone().unwrap_or_else(|| match done.status_code {
                Some(code) => format!("HTTP {code}"),
                None => "failed".to_owned(),
            }));
        }
        if self.last_sent_at.is_none_or(|sent| sent < at) {
            self.failing_since = Some(self.failing_since.map_or(at, |t| t.min(at)));
        }
        if done.next == gw_store::NextStep::Gone {
            self.gone_at = Some(at);
        }
    }
}

impl DeliveryRow {
    pub(crate) fn id(&self) -> Uuid {
        self.id
    }
}
