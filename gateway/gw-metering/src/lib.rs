//! Usage metering: what the gateway counts per instance per day (`MESSAGE_STAT`: sent, received, failed, API calls)
//! and per subscription, instance, record type and month (`USAGE_RECORD`), counted in memory and written in
//! batches, never one write per event.
//!
//! - [`Metering`] holds the counters. Recording is a map update under a short lock; [`Metering::flush`] takes
//!   everything counted so far and writes it as two batched upserts; a failed write puts the counts back for the
//!   next flush, so nothing counted is lost. [`Metering::spawn_flusher`] flushes every few seconds and once more
//!   when told to stop (graceful shutdown).
//! - [`EngineMeter`] is the session engine's [`Meter`] (a port in `gw-core`) over it: counts go to the counters.
//!   The monthly quota is not counted here: the store charges it in the transaction that stores each outbound
//!   message, so it is exact across nodes and equals what was accepted.
//!
//! Architecture invariant: no HTTP and no SQL here; this crate talks to the `gw-store` traits only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use gw_core::{InstanceId, Meter, Metered, PerThread, SubscriptionId, Timestamp, UsagePeriod, UsageRecordType};
use gw_store::{MessageStatDelta, Store, StoreError, UsageDelta};

/// One countable thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    MessageSent,
    MessageReceived,
    MessageFailed,
    /// A request authenticated with one of the instance's API keys.
    ApiCall,
}

impl From<Metered> for Event {
    fn from(event: Metered) -> Self {
        match event {
            Metered::MessageSent => Event::MessageSent,
            Metered::MessageReceived => Event::MessageReceived,
            Metered::MessageFailed => Event::MessageFailed,
        }
    }
}

impl Event {
    /// The usage record it also counts towards (failed sends are statistics only: they are not billable usage).
    fn usage_type(self) -> Option<UsageRecordType> {
        match self {
            Event::MessageSent => Some(UsageRecordType::MessagesSent),
            Event::MessageReceived => Some(UsageRecordType::MessagesReceived),
            Event::ApiCall => Some(UsageRecordType::ApiCalls),
            Event::MessageFailed => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct StatCounts {
    sent: i64,
    received: i64,
    failed: i64,
    api_calls: i64,
}

type UsageKey = (SubscriptionId, InstanceId, UsageRecordType, UsagePeriod);

#[derive(Debug, Default)]
struct Pending {
    stats: HashMap<(InstanceId, NaiveDate), StatCounts, FastHash>,
    usage: HashMap<UsageKey, (i64, Timestamp), FastHash>,
}

/// The keys are the gateway's own ids, not chosen by clients: a fast hash (seeded per process) is enough.
type FastHash = foldhash::fast::RandomState;

impl Pending {
    fn add(&mut self, subscription: SubscriptionId, instance: InstanceId, event: Event, count: i64, at: Timestamp) {
        let stat = self.stats.entry((instance, at.date())).or_default();
        match event {
            Event::MessageSent => stat.sent += count,
            Event::MessageReceived => stat.received += count,
            Event::MessageFailed => stat.failed += count,
            Event::ApiCall => stat.api_calls += count,
        }
        if let Some(record_type) = event.usage_type() {
            self.add_usage((subscription, instance, record_type, at.period()), count, at);
        }
    }

    fn is_empty(&self) -> bool {
        self.stats.is_empty() && self.usage.is_empty()
    }

    /// Adds `other`'s counts to these.
    fn absorb(&mut self, other: Pending) {
        for (key, counts) in other.stats {
            let entry = self.stats.entry(key).or_default();
            entry.sent += counts.sent;
            entry.received += counts.received;
            entry.failed += counts.failed;
            entry.api_calls += counts.api_calls;
        }
        for (key, (count, at)) in other.usage {
            self.add_usage(key, count, at);
        }
    }

    /// Adds to a usage row's count and keeps its latest time.
    fn add_usage(&mut self, key: UsageKey, count: i64, at: Timestamp) {
        let entry = self.usage.entry(key).or_insert((0, at));
        entry.0 += count;
        entry.1 = entry.1.max(at);
    }
}

/// The counts not yet written, kept per thread: an event locks only its own thread's counters, not a lock that
/// every worker shares.
#[derive(Debug, Default)]
struct Counters(PerThread<Mutex<Pending>>);

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|p| p.into_inner())
}

impl Counters {
    fn add(&self, subscription: SubscriptionId, instance: InstanceId, event: Event, at: Timestamp) {
        lock(self.0.get()).add(subscription, instance, event, 1, at);
    }

    /// Everything counted so far, by every thread, merged.
    fn take(&self) -> Pending {
        let mut all = Pending::default();
        for pending in self.0.iter() {
            all.absorb(std::mem::take(&mut *lock(pending)));
        }
        all
    }

    /// Puts back what could not be written.
    fn restore(&self, leftover: Pending) {
        lock(self.0.get()).absorb(leftover);
    }
}

/// What one flush wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    pub stat_rows: usize,
    pub usage_rows: usize,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeteringStats {
    pub flushes: u64,
    pub failed_flushes: u64,
    /// Counts dropped because their instance no longer exists (deleted before the flush).
    pub dropped_orphans: u64,
}

/// The in-memory counters and their batched writer.
pub struct Metering {
    store: Arc<dyn Store>,
    pending: Counters,
    /// One flush at a time, so a periodic flush and the shutdown flush cannot interleave their restores.
    flushing: tokio::sync::Mutex<()>,
    flushes: AtomicU64,
    failed_flushes: AtomicU64,
    dropped_orphans: AtomicU64,
}

impl std::fmt::Debug for Metering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metering").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Metering {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            pending: Counters::default(),
            flushing: tokio::sync::Mutex::new(()),
            flushes: AtomicU64::new(0),
            failed_flushes: AtomicU64::new(0),
            dropped_orphans: AtomicU64::new(0),
        }
    }

    /// Counts one event now. Never blocks on I/O.
    pub fn record(&self, subscription: SubscriptionId, instance: InstanceId, event: Event) {
        self.record_at(subscription, instance, event, Timestamp::now());
    }

    /// Counts one event at `at` (its day and month decide the rows it lands in).
    pub fn record_at(&self, subscription: SubscriptionId, instance: InstanceId, event: Event, at: Timestamp) {
        self.pending.add(subscription, instance, event, at);
    }

    pub fn stats(&self) -> MeteringStats {
        MeteringStats {
            flushes: self.flushes.load(Ordering::Relaxed),
            failed_flushes: self.failed_flushes.load(Ordering::Relaxed),
            dropped_orphans: self.dropped_orphans.load(Ordering::Relaxed),
        }
    }

    /// Writes everything counted so far: one batch of statistics, one of usage records. What fails to be written
    /// is kept for the next flush; counts whose instance was deleted meanwhile are dropped (logged), since no row
    /// can hold them.
    pub async fn flush(&self) -> Result<Flushed, StoreError> {
        let _one_at_a_time = self.flushing.lock().await;
        let taken = self.pending.take();
        if taken.is_empty() {
            return Ok(Flushed::default());
        }
        let stats: Vec<MessageStatDelta> = taken
            .stats
            .iter()
            .map(|(&(instance_id, date), c)| MessageStatDelta {
                instance_id,
                date,
                messages_sent: c.sent,
                messages_received: c.received,
                messages_failed: c.failed,
                api_calls: c.api_calls,
            })
            .collect();
        let usage: Vec<UsageDelta> = taken
            .usage
            .iter()
            .map(|(&(subscription_id, instance_id, record_type, period), &(count, at))| UsageDelta {
                subscription_id,
                instance_id: Some(instance_id),
                record_type,
                period,
                count,
                at,
            })
            .collect();
        let mut failure = None;
        let mut leftover = Pending::default();
        match self.write_stats(&stats).await {
            Ok(()) => {}
            Err(err) => {
                leftover.stats = taken.stats;
                failure = Some(err);
            }
        }
        match self.write_usage(&usage).await {
            Ok(()) => {}
            Err(err) => {
                leftover.usage = taken.usage;
                failure.get_or_insert(err);
            }
        }
        if let Some(err) = failure {
            self.pending.restore(leftover);
            self.failed_flushes.fetch_add(1, Ordering::Relaxed);
            return Err(err);
        }
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(Flushed { stat_rows: stats.len(), usage_rows: usage.len() })
    }

    async fn write_stats(&self, batch: &[MessageStatDelta]) -> Result<(), StoreError> {
        match self.store.add_message_stats(batch).await {
            Err(StoreError::NotFound { .. }) => {
                // An instance was deleted since its events were counted: write the rest one by one.
                for delta in batch {
                    match self.store.add_message_stats(std::slice::from_ref(delta)).await {
                        Ok(()) => {}
                        Err(StoreError::NotFound { .. }) => self.orphan(delta.instance_id),
                        Err(err) => return Err(err),
                    }
                }
                Ok(())
            }
            other => other,
        }
    }

    async fn write_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        match self.store.add_usage(batch).await {
            Err(StoreError::NotFound { .. }) => {
                for delta in batch {
                    match self.store.add_usage(std::slice::from_ref(delta)).await {
                        Ok(()) => {}
                        Err(StoreError::NotFound { .. }) => {
                            if let Some(instance) = delta.instance_id {
                                self.orphan(instance);
                            }
                        }
                        Err(err) => return Err(err),
                    }
                }
                Ok(())
            }
            other => other,
        }
    }

    fn orphan(&self, instance: InstanceId) {
        self.dropped_orphans.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%instance, "counts of a deleted instance dropped");
    }

    /// Flushes every `every` and once more after `stop` turns true (a flush in progress finishes first).
    pub fn spawn_flusher(
        self: Arc<Self>,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = ticker.tick() => {
                        if let Err(err) = self.flush().await {
                            tracing::warn!(%err, "usage flush failed; the counts are kept for the next one");
                        }
                    }
                }
            }
            match self.flush().await {
                Ok(flushed) => tracing::info!(?flushed, "usage flushed at shutdown"),
                Err(err) => tracing::error!(%err, "could not flush usage at shutdown"),
            }
        })
    }
}

/// The session engine's [`Meter`]: counts in memory. (The monthly quota is charged by the store in the transaction
/// that stores each message, not here.)
#[derive(Debug, Clone)]
pub struct EngineMeter {
    metering: Arc<Metering>,
}

impl EngineMeter {
    pub fn new(metering: Arc<Metering>) -> Self {
        Self { metering }
    }
}

impl Meter for EngineMeter {
    fn record(&self, subscription: SubscriptionId, instance: InstanceId, event: Metered) {
        self.metering.record(subscription, instance, event.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_made_on_many_threads_are_taken_together_once() {
        let counters = Counters::default();
        let (sub, inst) = (SubscriptionId::new(), InstanceId::new());
        let at = Timestamp::now();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| (0..500).for_each(|_| counters.add(sub, inst, Event::ApiCall, at)));
            }
        });
        let taken = counters.take();
        assert_eq!(taken.stats[&(inst, at.date())].api_calls, 2_000);
        assert_eq!(taken.usage[&(sub, inst, UsageRecordType::ApiCalls, at.period())].0, 2_000);
        assert!(counters.take().is_empty(), "taken once");
        counters.restore(taken);
        assert_eq!(counters.take().stats[&(inst, at.date())].api_calls, 2_000, "a failed write loses nothing");
    }

    #[test]
    fn events_land_in_their_day_and_month() {
        let mut pending = Pending::default();
        let (sub, inst) = (SubscriptionId::new(), InstanceId::new());
        let at = |s: &str| Timestamp::from(s.parse::<chrono::DateTime<chrono::Utc>>().expect("time"));
        let (nov30, dec1) = (at("2026-11-30T23:59:59Z"), at("2026-12-01T00:00:00Z"));
        pending.add(sub, inst, Event::MessageSent, 1, nov30);
        pending.add(sub, inst, Event::MessageSent, 1, dec1);
        pending.add(sub, inst, Event::MessageFailed, 1, dec1);
        pending.add(sub, inst, Event::ApiCall, 2, dec1);
        assert_eq!(pending.stats.len(), 2);
        let dec = pending.stats[&(inst, dec1.date())];
        assert_eq!((dec.sent, dec.failed, dec.api_calls), (1, 1, 2));
        // Failed sends are statistics only; sent and API calls are usage, per month.
        assert_eq!(pending.usage.len(), 3);
        assert_eq!(pending.usage[&(sub, inst, UsageRecordType::ApiCalls, dec1.period())].0, 2);
        assert_eq!(pending.usage[&(sub, inst, UsageRecordType::MessagesSent, nov30.period())].0, 1);
    }
}
