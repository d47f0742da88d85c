//! GCRA in Redis: one script, one round trip per decision.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::{Decision, LimiterError, Quota, RateLimiter};

/// KEYS[1]: the key. ARGV: emission interval (us), burst, cost. Returns {allowed, remaining, reset_after_us,
/// retry_after_us}. The theoretical arrival time (TAT) is stored in microseconds of Redis' own clock and expires
/// when the key is back to full capacity, so idle keys cost no memory.
const GCRA: &str = r#"
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local capacity = emission * burst
local new_tat = tat + emission * cost
local allow_at = new_tat - capacity
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], new_tat, 'PX', math.max(ttl_ms, 1))
local remaining = math.floor((now - allow_at) / emission)
return {1, remaining, new_tat - now, 0}
"#;

/// The cluster-wide limiter.
#[derive(Clone)]
pub struct RedisLimiter {
    connection: ConnectionManager,
    script: redis::Script,
    prefix: String,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Connects to `url`; keys are stored as `<prefix><key>`. The connection manager reconnects by itself.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, LimiterError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self { connection, script: redis::Script::new(GCRA), prefix: prefix.into() })
    }

    /// One decision, or why Redis could not make it.
    pub async fn try_check(&self, key: &str, quota: Quota) -> Result<Decision, LimiterError> {
        let emission = quota.emission_interval().as_micros() as u64;
        let mut connection = self.connection.clone();
        let reply: Vec<i64> = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(emission)
            .arg(quota.burst.max(1))
            .arg(1)
            .invoke_async(&mut connection)
            .await?;
        let [allowed, remaining, reset_after, retry_after] = reply[..] else {
            return Err(LimiterError::Reply(format!("{reply:?}")));
        };
        let micros = |v: i64| Duration::from_micros(v.max(0) as u64);
        Ok(Decision {
            allowed: allowed == 1,
            quota,
            remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
            reset_after: micros(reset_after),
            retry_after: (allowed != 1).then(|| micros(retry_after).max(Duration::from_millis(1))),
        })
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    /// Without a fallback a Redis failure must still answer: it allows, so an outage never refuses traffic. Use
    /// [`crate::FallbackLimiter`] to keep limiting through outages.
    async fn check(&self, key: &str, quota: Quota) -> Decision {
        match self.try_check(key, quota).await {
            Ok(decision) => decision,
            Err(err) => {
                tracing::warn!(%err, "rate limit check failed; allowing");
                Decision { allowed: true, quota, remaining: 0, reset_after: Duration::ZERO, retry_after: None }
            }
        }
    }
}
