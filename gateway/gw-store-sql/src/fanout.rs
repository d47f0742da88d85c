//! [`NodeFanout`] on PostgreSQL `LISTEN/NOTIFY`: every node sharing the database hears every message.
//!
//! A NOTIFY payload must stay under 8000 bytes. A longer message is split into parts sent by one transaction:
//! PostgreSQL delivers a transaction's notifications together, in order, at commit, so a listener either gets
//! every part or none, and never a part of an uncommitted message. Each part names its message, so parts of
//! messages from several nodes never mix. No table is needed, nothing is left to clean up.
//! SQLite needs none of this: one SQLite database means one node.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gw_store::{FanoutListener, Heard, NodeFanout, StoreResult};
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};

use crate::error::db_err;
use crate::open::{OpenError, redact_url};

/// The channel the gateway's live events travel on.
const CHANNEL: &str = "gw_live_events";
/// Bytes of message text per notification, leaving room for the part header under PostgreSQL's 8000.
const PART_BYTES: usize = 7_800;
/// A message whose parts have not all arrived by then is dropped (its transaction's parts come together, so
/// only a reconnect in the middle leaves one incomplete).
const PART_WAIT: Duration = Duration::from_secs(30);
/// At most this many incomplete messages are held.
const MAX_INCOMPLETE: usize = 256;

/// Live messages between the nodes of one PostgreSQL database.
pub struct PgFanout {
    pool: PgPool,
}

impl std::fmt::Debug for PgFanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgFanout").finish_non_exhaustive()
    }
}

impl PgFanout {
    /// Connects to the database a `postgres://` URL names, with a small pool of its own: one connection listens,
    /// the others publish, and neither waits on the store's pool.
    pub async fn connect(url: &str) -> Result<Self, OpenError> {
        let pool = PgPoolOptions::new()
            .max_connections(3)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|source| OpenError::Connect { url: redact_url(url), source })?;
        Ok(Self { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The notifications that carry `message`: `=text` whole, or `+id:seq:total:text` parts.
fn parts(message: &str) -> Vec<String> {
    if message.len() <= PART_BYTES {
        return vec![format!("={message}")];
    }
    let mut chunks = Vec::new();
    let mut rest = message;
    while !rest.is_empty() {
        let mut end = rest.len().min(PART_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (chunk, tail) = rest.split_at(end);
        chunks.push(chunk);
        rest = tail;
    }
    let id: u64 = rand_id();
    let total = chunks.len();
    chunks.into_iter().enumerate().map(|(seq, chunk)| format!("+{id:016x}:{seq}:{total}:{chunk}")).collect()
}

fn rand_id() -> u64 {
    // A UUIDv7's low half is 62 random bits: enough to tell concurrent messages apart.
    uuid::Uuid::now_v7().as_u64_pair().1
}

#[async_trait::async_trait]
impl NodeFanout for PgFanout {
    async fn publish(&self, message: &str) -> StoreResult<()> {
        let parts = parts(message);
        let mut tx = self.pool.begin().await.map_err(db_err("live event"))?;
        for part in &parts {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(part)
                .execute(&mut *tx)
                .await
                .map_err(db_err("live event"))?;
        }
        tx.commit().await.map_err(db_err("live event"))
    }

    async fn listen(&self) -> StoreResult<Box<dyn FanoutListener>> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(db_err("live event listener"))?;
        listener.listen(CHANNEL).await.map_err(db_err("live event listener"))?;
        Ok(Box::new(PgFanoutListener { listener, reassembly: Reassembly::default() }))
    }
}

struct Incomplete {
    parts: Vec<Option<String>>,
    started: Instant,
}

/// Messages whose parts are arriving, by message id.
#[derive(Default)]
struct Reassembly {
    incomplete: HashMap<String, Incomplete>,
}

struct PgFanoutListener {
    listener: PgListener,
    reassembly: Reassembly,
}

impl std::fmt::Debug for PgFanoutListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgFanoutListener")
            .field("incomplete", &self.reassembly.incomplete.len())
            .finish_non_exhaustive()
    }
}

impl Reassembly {
    /// Takes one notification; returns a message once it is whole.
    fn take(&mut self, payload: &str) -> Option<String> {
        if let Some(whole) = payload.strip_prefix('=') {
            return Some(whole.to_owned());
        }
        let mut fields = payload.strip_prefix('+')?.splitn(4, ':');
        let (id, seq, total, text) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        let (seq, total) = (seq.parse::<usize>().ok()?, total.parse::<usize>().ok()?);
        if seq >= total || total > 100_000 {
            return None;
        }
        self.incomplete.retain(|_, m| m.started.elapsed() < PART_WAIT);
        if self.incomplete.len() >= MAX_INCOMPLETE && !self.incomplete.contains_key(id) {
            return None;
        }
        let entry = self
            .incomplete
            .entry(id.to_owned())
            .or_insert_with(|| Incomplete { parts: vec![None; total], started: Instant::now() });
        *entry.parts.get_mut(seq)? = Some(text.to_owned());
        if entry.parts.iter().any(Option::is_none) {
            return None;
        }
        let entry = self.incomplete.remove(id)?;
        Some(entry.parts.into_iter().flatten().collect())
    }
}

#[async_trait::async_trait]
impl FanoutListener for PgFanoutListener {
    async fn next(&mut self) -> StoreResult<Heard> {
        loop {
            match self.listener.try_recv().await {
                Ok(Some(notification)) => {
                    if let Some(message) = self.reassembly.take(notification.payload()) {
                        return Ok(Heard::Message(message));
                    }
                }
                Ok(None) => {
                    self.reassembly.incomplete.clear();
                    return Ok(Heard::Gap);
                }
                Err(err) => return Err(db_err("live event listener")(err)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_split_on_character_boundaries_and_join_again() {
        // Two bytes a character: the split falls inside the text, never inside a character.
        let long = format!("x{}", "é".repeat(PART_BYTES / 2 + 10));
        let other = "y".repeat(3 * PART_BYTES);
        let (long_parts, other_parts) = (parts(&long), parts(&other));
        assert_eq!((long_parts.len(), other_parts.len()), (2, 3));
        assert!(long_parts.iter().chain(&other_parts).all(|p| p.len() < 8000), "every payload fits NOTIFY");
        // Parts of two nodes' messages interleaved: each comes out whole, once.
        let mut reassembly = Reassembly::default();
        let mut whole = Vec::new();
        for part in [&other_parts[0], &long_parts[0], &other_parts[1], &long_parts[1], &other_parts[2]] {
            whole.extend(reassembly.take(part));
        }
        assert_eq!(whole, vec![long.clone(), other.clone()]);
        assert_eq!(reassembly.take("=short"), Some("short".to_owned()));
        assert_eq!(parts("short"), vec!["=short".to_owned()]);
        assert_eq!(reassembly.take("+bad"), None, "garbage is ignored");
        assert!(reassembly.incomplete.is_empty());
    }
}
