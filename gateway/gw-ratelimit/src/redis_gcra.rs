//! GCRA in Redis: one script, one round trip per decision; and a second script that grants a batch of tokens,
//! which the local-first limiter spends without a round trip per request.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::tokens::Grant;
use crate::{Decision, LimiterError, LimiterStats, Quota, RateLimiter};

/// GCRA over N keys at once, all or nothing: a request is allowed only if every key allows it, and only then are
/// the keys' theoretical arrival times (TAT) advanced, so a request refused by one limit (the subscription's) does
/// not use up another (the key's). KEYS: the keys. ARGV: per key, emission interval (us) and burst. Returns {index
/// (1-based) of the deciding key, allowed, remaining, reset_after_us, retry_after_us}: the refusing key with the
/// longest wait, or, when all allow, the key with the least left. TATs are in microseconds of Redis' own clock and
/// expire when a key is back to full capacity, so idle keys cost no memory.
const GCRA: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local decide, allowed, best_remaining, reset, retry = 1, 1, -1, 0, 0
local new_tats = {}
for i, key in ipairs(KEYS) do
  local emission = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + emission
  local allow_at = new_tat - emission * burst
  if now < allow_at then
    if allowed == 1 or allow_at - now > retry then
      decide, reset, retry = i, tat - now, allow_at - now
    end
    allowed = 0
  else
    new_tats[i] = new_tat
    local remaining = math.floor((now - allow_at) / emission)
    if allowed == 1 and (best_remaining < 0 or remaining < best_remaining) then
      decide, best_remaining, reset = i, remaining, new_tat - now
    end
  end
end
if allowed == 0 then
  return {decide, 0, 0, reset, retry}
end
for i, key in ipairs(KEYS) do
  local ttl_ms = math.ceil((new_tats[i] - now) / 1000)
  redis.call('SET', key, new_tats[i], 'PX', math.max(ttl_ms, 1))
end
return {decide, 1, best_remaining, reset, 0}
"#;

/// The same GCRA, granting up to a requested number of tokens per key at once, each key on its own (a batch is
/// not a request, so there is nothing to decide all or nothing). KEYS: the keys. ARGV: per key, emission interval
/// (us), burst and the tokens wanted. Returns per key {granted, remaining, reset_after_us, retry_after_us}: as many
/// as the key has available now, at most the tokens wanted, and the wait until the key has a token again after them
/// (zero or less while it has); 0 granted is a refusal.
const TAKE: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local out = {}
for i, key in ipairs(KEYS) do
  local emission = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local want = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local available = math.floor((now - tat) / emission) + burst
  if available > burst then available = burst end
  if available < 0 then available = 0 end
  local granted = math.min(want, available)
  if granted > 0 then
    tat = tat + granted * emission
    redis.call('SET', key, tat, 'PX', math.max(math.ceil((tat - now) / 1000), 1))
    out[#out + 1] = granted
    out[#out + 1] = available - granted
    out[#out + 1] = tat - now
    out[#out + 1] = tat + emission - emission * burst - now
  else
    out[#out + 1] = 0
    out[#out + 1] = 0
    out[#out + 1] = tat - now
    out[#out + 1] = tat + emission - emission * burst - now
  end
end
return out
"#;

/// The cluster-wide limiter.
#[derive(Clone)]
pub struct RedisLimiter {
    connection: ConnectionManager,
    script: redis::Script,
    take: redis::Script,
    prefix: String,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Connects to `url` and waits for Redis to answer; keys are stored as `<prefix><key>`. The connection
    /// manager reconnects by itself.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, LimiterError> {
        let limiter = Self::connect_lazy(url, prefix)?;
        limiter.ping(Duration::from_secs(2)).await?;
        Ok(limiter)
    }

    /// Like [`RedisLimiter::connect`] without waiting: the connection is made on first use and remade after a
    /// failure, so a node can start while Redis is down (its fallback decides meanwhile). Only a malformed URL is
    /// an error.
    pub fn connect_lazy(url: &str, prefix: impl Into<String>) -> Result<Self, LimiterError> {
        let connection = gw_redis::lazy_connection(url)?;
        Ok(Self { connection, script: redis::Script::new(GCRA), take: redis::Script::new(TAKE), prefix: prefix.into() })
    }

    /// Whether Redis answers within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), LimiterError> {
        Ok(gw_redis::ping(&self.connection, timeout).await?)
    }

    /// Loads the script into Redis's script cache (`SCRIPT LOAD`), so the first decision is one `EVALSHA` rather
    /// than `EVALSHA`, `NOSCRIPT`, `SCRIPT LOAD` and `EVALSHA` again, and connects if not yet connected.
    pub async fn load_script(&self, timeout: Duration) -> Result<(), LimiterError> {
        let mut connection = self.connection.clone();
        let load = async {
            self.script.load_async(&mut connection).await?;
            self.take.load_async(&mut connection).await
        };
        match tokio::time::timeout(timeout, load).await {
            Ok(loaded) => loaded.map(|_| ()).map_err(LimiterError::from),
            Err(_) => Err(LimiterError::Timeout(timeout)),
        }
    }

    /// Takes up to `want` tokens of each key in one round trip (the local-first limiter's batches).
    pub async fn try_take(&self, takes: &[(&str, Quota, u32)]) -> Result<Vec<Grant>, LimiterError> {
        if takes.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.take.prepare_invoke();
        for (key, quota, want) in takes {
            invocation.key(format!("{}{key}", self.prefix));
            invocation.arg(quota.emission_interval().as_micros() as u64).arg(quota.burst.max(1)).arg((*want).max(1));
        }
        let mut connection = self.connection.clone();
        let reply: Vec<i64> = invocation.invoke_async(&mut connection).await?;
        if reply.len() != takes.len() * 4 {
            return Err(LimiterError::Reply(format!("{reply:?}")));
        }
        let micros = |v: i64| Duration::from_micros(v.max(0) as u64);
        let count = |v: i64| v.clamp(0, i64::from(u32::MAX)) as u32;
        Ok(reply
            .chunks_exact(4)
            .map(|grant| Grant {
                granted: count(grant[0]),
                remaining: count(grant[1]),
                reset_after: micros(grant[2]),
                retry_after: micros(grant[3]),
            })
            .collect())
    }

    /// One decision, or why Redis could not make it.
    pub async fn try_check(&self, key: &str, quota: Quota) -> Result<Decision, LimiterError> {
        self.try_check_all(&[(key, quota)]).await.map(|(_, decision)| decision)
    }

    /// One decision over several keys in one round trip (see [`RateLimiter::check_all`]).
    pub async fn try_check_all(&self, checks: &[(&str, Quota)]) -> Result<(usize, Decision), LimiterError> {
        if checks.is_empty() {
            return Err(LimiterError::Reply("no keys to check".into()));
        }
        let mut invocation = self.script.prepare_invoke();
        for (key, quota) in checks {
            invocation.key(format!("{}{key}", self.prefix));
            invocation.arg(quota.emission_interval().as_micros() as u64).arg(quota.burst.max(1));
        }
        let mut connection = self.connection.clone();
        let reply: Vec<i64> = invocation.invoke_async(&mut connection).await?;
        let [index, allowed, remaining, reset_after, retry_after] = reply[..] else {
            return Err(LimiterError::Reply(format!("{reply:?}")));
        };
        let index = usize::try_from(index - 1)
            .ok()
            .filter(|i| *i < checks.len())
            .ok_or_else(|| LimiterError::Reply(format!("{reply:?}")))?;
        let micros = |v: i64| Duration::from_micros(v.max(0) as u64);
        Ok((
            index,
            Decision {
                allowed: allowed == 1,
                quota: checks[index].1,
                remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
                reset_after: micros(reset_after),
                retry_after: (allowed != 1).then(|| micros(retry_after).max(Duration::from_millis(1))),
            },
        ))
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

    async fn check_all(&self, checks: &[(&str, Quota)]) -> (usize, Decision) {
        match self.try_check_all(checks).await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::warn!(%err, "rate limit check failed; allowing");
                let quota = checks.first().map_or(Quota::per_minute(1), |(_, q)| *q);
                (0, Decision { allowed: true, quota, remaining: 0, reset_after: Duration::ZERO, retry_after: None })
            }
        }
    }

    fn stats(&self) -> LimiterStats {
        LimiterStats { backend: "redis", degraded: false, fallback_decisions: 0 }
    }
}
