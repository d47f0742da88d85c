//! Usage and statistics: what a subscription and its instances used per month, and daily message statistics.
//! Counts are written by the metering service every ~2 s, so a read may lag the last events by that much.

use axum::extract::State;
use axum::response::IntoResponse as _;
use chrono::NaiveDate;
use gw_core::{InstanceId, SubscriptionId, Timestamp, UsagePeriod, UsageRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ProblemBody};
use crate::extract::{Auth, Caller, Json, Path, Query};
use crate::state::AppState;

/// `?period=YYYY-MM` (default: the current month, UTC).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    #[param(example = "2026-11")]
    pub period: Option<String>,
}

impl PeriodQuery {
    fn period(&self) -> Result<UsagePeriod, ApiError> {
        match &self.period {
            None => Ok(Timestamp::now().period()),
            Some(raw) => raw.parse().map_err(|_| ApiError::invalid("period", "expected YYYY-MM")),
        }
    }
}

/// One counter of a period.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRecordDto {
    /// `null` for usage of instances since deleted.
    pub instance_id: Option<String>,
    #[schema(value_type = gw_core::UsageRecordType, example = "messages_sent")]
    pub record_type: String,
    pub count: i64,
    pub updated_at: crate::dto::Time,
}

impl From<UsageRecord> for UsageRecordDto {
    fn from(r: UsageRecord) -> Self {
        Self {
            instance_id: r.instance_id.map(|id| id.to_string()),
            record_type: r.record_type.to_string(),
            count: r.count,
            updated_at: r.record_date.into(),
        }
    }
}

/// The monthly message quota, for the current period.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaDto {
    pub messages_used: i64,
    pub monthly_messages: i64,
    /// Start of the next period (UTC), when the quota resets.
    pub resets_at: crate::dto::Time,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionUsageDto {
    pub subscription_id: String,
    #[schema(example = "2026-11")]
    pub period: String,
    /// Present for the current period only: reservations are exact and immediate, unlike the batched records.
    pub quota: Option<QuotaDto>,
    pub records: Vec<UsageRecordDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceUsageDto {
    pub instance_id: String,
    pub period: String,
    pub records: Vec<UsageRecordDto>,
}

/// One instance's day.
#[derive(Debug, Serialize, ToSchema)]
pub struct DailyStatDto {
    #[schema(format = Date, example = "2026-11-29")]
    pub date: String,
    pub messages_sent: i64,
    pub messages_received: i64,
    pub messages_failed: i64,
    pub api_calls: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceStatsDto {
    pub instance_id: String,
    #[schema(format = Date)]
    pub from: String,
    #[schema(format = Date)]
    pub to: String,
    /// Days with any activity, oldest first.
    pub days: Vec<DailyStatDto>,
}

/// `?from=YYYY-MM-DD&to=YYYY-MM-DD` (inclusive, at most 366 days; default: the last 30 days).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    #[param(format = Date)]
    pub from: Option<String>,
    #[param(format = Date)]
    pub to: Option<String>,
}

const MAX_RANGE_DAYS: i64 = 366;

/// A calendar date of the Gregorian era (years 1 to 9999): chrono parses far wider years (±262,143), whose
/// arithmetic overflows, and no statistic exists outside this range anyway.
fn parse_date(field: &str, raw: &str) -> Result<NaiveDate, ApiError> {
    use chrono::Datelike;
    let date =
        NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| ApiError::invalid(field, "expected YYYY-MM-DD"))?;
    if !(1..=9999).contains(&date.year()) {
        return Err(ApiError::invalid(field, "the year must be between 0001 and 9999"));
    }
    Ok(date)
}

impl RangeQuery {
    fn range(&self) -> Result<(NaiveDate, NaiveDate), ApiError> {
        let to =
            self.to.as_deref().map(|raw| parse_date("to", raw)).transpose()?.unwrap_or_else(|| Timestamp::now().date());
        let from = match self.from.as_deref() {
            Some(raw) => parse_date("from", raw)?,
            // Cannot underflow: `to` is at least year 1 (`parse_date`).
            None => to.checked_sub_days(chrono::Days::new(29)).unwrap_or(to),
        };
        if from > to {
            return Err(ApiError::invalid("from", "must not be after to"));
        }
        if (to - from).num_days() >= MAX_RANGE_DAYS {
            return Err(ApiError::invalid("from", format!("the range may span at most {MAX_RANGE_DAYS} days")));
        }
        Ok((from, to))
    }
}

/// A subscription's usage records of one month, with its quota when the month is the current one.
#[utoipa::path(get, path = "/v1/subscriptions/{id}/usage", tag = "usage", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), PeriodQuery), responses(
    (status = 200, body = SubscriptionUsageDto),
    (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    (status = 422, body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn subscription_usage(
    State(state): State<AppState>,
    Auth(by): Auth,
    Path(id): Path<SubscriptionId>,
    Query(query): Query<PeriodQuery>,
) -> Result<Json<SubscriptionUsageDto>, ApiError> {
    let period = query.period()?;
    let (subscription, records) = state.usage.subscription(&by, id, period).await?;
    let current = Timestamp::now().period();
    let quota = (period == current).then(|| QuotaDto {
        // A counter last reset in an earlier month has not rolled over yet: nothing is used this month.
        messages_used: if subscription.last_usage_reset.period() == current { subscription.messages_used } else { 0 },
        monthly_messages: subscription.monthly_messages,
        resets_at: current.next().start().into(),
    });
    Ok(Json(SubscriptionUsageDto {
        subscription_id: id.to_string(),
        period: period.to_string(),
        quota,
        records: records.into_iter().map(Into::into).collect(),
    }))
}

/// One instance's usage records of one month.
#[utoipa::path(get, path = "/v1/instances/{id}/usage", tag = "usage", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path), PeriodQuery), responses(
    (status = 200, body = InstanceUsageDto),
    (status = 404, body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn instance_usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
    Query(query): Query<PeriodQuery>,
) -> Result<Json<InstanceUsageDto>, ApiError> {
    let period = query.period()?;
    let records = state.usage.instance(&caller, id, period).await?;
    Ok(Json(InstanceUsageDto {
        instance_id: id.to_string(),
        period: period.to_string(),
        records: records.into_iter().map(Into::into).collect(),
    }))
}

/// One instance's daily message statistics over a date range.
#[utoipa::path(get, path = "/v1/instances/{id}/stats", tag = "usage", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path), RangeQuery), responses(
    (status = 200, body = InstanceStatsDto),
    (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    (status = 422, body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn instance_stats(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
    Query(query): Query<RangeQuery>,
) -> Result<Json<InstanceStatsDto>, ApiError> {
    // Visibility first: another tenant's instance is 404 whatever the query says.
    let (from, to, days) = state.usage.stats(&caller, id, || query.range()).await?;
    Ok(Json(InstanceStatsDto {
        instance_id: id.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        days: days
            .into_iter()
            .map(|d| DailyStatDto {
                date: d.date.to_string(),
                messages_sent: d.messages_sent,
                messages_received: d.messages_received,
                messages_failed: d.messages_failed,
                api_calls: d.api_calls,
            })
            .collect(),
    }))
}

/// The calling API key itself, from the verified-key cache: no database on this path.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeySelfDto<'a> {
    // Ids serialize as their UUID text straight into the body (no intermediate strings on this hot path).
    #[schema(value_type = String, format = Uuid)]
    pub key_id: gw_core::ApiKeyId,
    #[schema(value_type = String, format = Uuid)]
    pub instance_id: gw_core::InstanceId,
    #[schema(value_type = String, format = Uuid)]
    pub subscription_id: gw_core::SubscriptionId,
    pub permissions: &'a [String],
    pub rate_limit_per_minute: u32,
    pub subscription_rate_limit_per_minute: u32,
}

/// Who the presented API key is: its instance, scopes and limits. Rate-limited and counted like every key call.
#[utoipa::path(get, path = "/v1/key", tag = "usage", security(("api_key" = [])), responses(
    (status = 200, body = KeySelfDto),
    (status = 401, body = ProblemBody, content_type = "application/problem+json"),
    (status = 429, body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn key_self(caller: Caller) -> Result<axum::response::Response, ApiError> {
    let Caller::Key(key) = caller else {
        return Err(ApiError::Problem(
            &crate::error::ProblemType::UNAUTHENTICATED,
            "this endpoint describes an API key; send X-API-Key".into(),
        ));
    };
    let dto = KeySelfDto {
        key_id: key.key_id,
        instance_id: key.instance_id,
        subscription_id: key.subscription_id,
        permissions: key.permissions(),
        rate_limit_per_minute: key.rate_limit_per_minute,
        subscription_rate_limit_per_minute: key.subscription_rate_limit_per_minute,
    };
    // Sized for the usual answer (about 250 bytes), so the body is written without growing its buffer.
    let mut body = Vec::with_capacity(384);
    dto.write_json(&mut body).map_err(|e| ApiError::Internal(format!("serializing the key: {e}")))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

impl KeySelfDto<'_> {
    /// The JSON its `Serialize` writes (a test holds the two equal), without serde_json's escaping scan over the
    /// three ids: UUID text is hex digits and hyphens, which never need escaping, and this body is written on
    /// every call of the key path. The scopes still go through serde_json.
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), std::io::Error> {
        use std::io::Write as _;
        let mut text = uuid::Uuid::encode_buffer();
        let ids = [
            ("{\"key_id\":\"", self.key_id.as_uuid()),
            (",\"instance_id\":\"", self.instance_id.as_uuid()),
            (",\"subscription_id\":\"", self.subscription_id.as_uuid()),
        ];
        for (field, id) in ids {
            out.extend_from_slice(field.as_bytes());
            out.extend_from_slice(id.hyphenated().encode_lower(&mut text).as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b",\"permissions\":");
        serde_json::to_writer(&mut *out, self.permissions)?;
        write!(
            out,
            ",\"rate_limit_per_minute\":{},\"subscription_rate_limit_per_minute\":{}}}",
            self.rate_limit_per_minute, self.subscription_rate_limit_per_minute
        )
    }
}

#[cfg(test)]
mod tests {
    use super::KeySelfDto;

    #[test]
    fn the_key_body_is_exactly_what_serde_writes() {
        let permissions = vec!["messages:read".to_owned(), "needs \"escaping\" \\ \u{1}".to_owned()];
        let dto = KeySelfDto {
            key_id: gw_core::ApiKeyId::new(),
            instance_id: gw_core::InstanceId::new(),
            subscription_id: gw_core::SubscriptionId::new(),
            permissions: &permissions,
            rate_limit_per_minute: 1_000_000,
            subscription_rate_limit_per_minute: 0,
        };
        let mut fast = Vec::new();
        dto.write_json(&mut fast).expect("write");
        assert_eq!(String::from_utf8(fast).expect("utf-8"), serde_json::to_string(&dto).expect("serde"));
    }
}
