//! The node's part in the cluster: a session runs only where its instance's lease is held.
//!
//! Four loops per node. The **ownership loop** (every third of the lease TTL) renews every lease the node holds in
//! one statement, stops sessions whose lease is gone, gives up leases nothing runs under, announces the node
//! (heartbeat) and at most once a minute deletes what is past the retention (dead nodes' rows, old forwarded
//! commands). The **claim loop** (every tenth of the TTL, while the heartbeat is fresh) claims orphaned instances
//! that placement gives it: more often than renewal, so a dead node's instances are taken within about a tenth of
//! the TTL of their leases expiring instead of up to a third. The **watchdog** stops any session whose lease
//! could not be renewed within two thirds of the TTL, so it is down before the lease can pass to another node. The
//! **wake loop** turns wake-ups (a send accepted on another node) and a slow poll into outbox wake-ups here.
//!
//! Placement is rendezvous hashing (highest random weight) over the live nodes, skipping nodes at capacity: each
//! instance has a stable preferred node, and a node joining or leaving moves only the instances it gains or held.
//! An orphan its preferred node has not taken within one TTL is taken by whichever node claims it first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use gw_core::{EventType, InstanceId, NodeId};
use gw_store::{ClusterNode, HeldLease, NodeAnnouncement, OwnerEpoch, StoreResult};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::engine::needs_a_person;
use crate::events::connection_json;
use crate::state::{Inner, Tenure};
use crate::supervision::Command;

/// How the node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// How long a lease lasts without renewal. Renewed every third; a session that could not be renewed for two
    /// thirds stops. A dead node's instances are taken over after at most this long.
    pub lease_ttl: Duration,
    /// The node's HTTP listen address, shown to operators.
    pub node_address: String,
    /// At most this many sessions run on the node.
    pub capacity: u32,
    /// The slow poll for outbound messages accepted on other nodes (behind the wake-ups).
    pub poll_interval: Duration,
    /// How many orphaned instances one claim round looks at.
    pub claim_batch: u32,
    /// How long a node waits for the owning node's answer to a forwarded command (a pairing code) before it
    /// answers "unavailable, retry".
    pub command_wait: Duration,
    /// The node knows it is the only one (SQLite, whose file lock it holds): at start-up, leases other nodes hold
    /// are a dead process's and are cleared at once instead of waiting for them to expire.
    pub exclusive: bool,
    /// Rows of nodes silent this long, and forwarded commands written this long ago, are deleted (in batches, at
    /// most once a minute, by whichever node gets there).
    pub retention: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(10),
            node_address: String::new(),
            capacity: 10_000,
            poll_interval: Duration::from_secs(1),
            claim_batch: 512,
            command_wait: Duration::from_secs(5),
            exclusive: false,
            retention: Duration::from_secs(3600),
        }
    }
}

impl ClusterConfig {
    fn tick(&self) -> Duration {
        (self.lease_ttl / 3).max(Duration::from_millis(10))
    }

    /// A session whose lease was last renewed (or taken) longer ago than this stops.
    fn stop_after(&self) -> Duration {
        self.lease_ttl * 2 / 3
    }

    /// How often a node looks for orphans: a tenth of the TTL, at least [`MIN_CLAIM_EVERY`], at most a renewal
    /// period. A dead node's leases all expire at once (one renewal statement), and the time from then to the next
    /// claim round adds to every one of its instances' failover time.
    fn claim_every(&self) -> Duration {
        (self.lease_ttl / 10).max(MIN_CLAIM_EVERY).min(self.tick())
    }

    fn prune_every(&self) -> Duration {
        self.retention.min(PRUNE_EVERY)
    }
}

/// Claim rounds cost two queries each even when nothing is orphaned; with short leases (tests) this keeps them
/// from crowding the database.
const MIN_CLAIM_EVERY: Duration = Duration::from_millis(500);

/// How often a node deletes what is past [`ClusterConfig::retention`], at most.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Rows one delete statement removes at most, so a long backlog never holds locks for long.
const PRUNE_BATCH: u32 = 500;

/// The node's running cluster loops.
#[derive(Debug)]
pub(crate) struct ClusterTasks {
    tasks: Vec<JoinHandle<()>>,
}

impl ClusterTasks {
    pub(crate) async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

pub(crate) fn spawn(inner: Arc<Inner>) -> ClusterTasks {
    let (announced, heartbeat) = watch::channel(None);
    // Reconciling after a renewal and taking a lease take turns: a lease claimed while a renewal's answer is
    // reconciled could otherwise look like one held without a session, and be given up. Only one statement at a
    // time is waited for, so the renewals keep their pace.
    let turn = Arc::new(Mutex::new(()));
    ClusterTasks {
        tasks: vec![
            tokio::spawn(ownership_loop(inner.clone(), announced, turn.clone())),
            tokio::spawn(claim_loop(inner.clone(), heartbeat, turn)),
            tokio::spawn(watchdog(inner.clone())),
            tokio::spawn(wake_loop(inner)),
        ],
    }
}

/// Stamps the node's heartbeat (creating its row on the first call).
pub(crate) async fn announce(inner: &Inner) -> StoreResult<()> {
    let cluster = &inner.config.cluster;
    let node =
        NodeAnnouncement { id: inner.node, address: cluster.node_address.clone(), capacity: cluster.capacity.max(1) };
    inner.store.heartbeat(&node).await
}

async fn ownership_loop(inner: Arc<Inner>, announced: watch::Sender<Option<Instant>>, turn: Arc<Mutex<()>>) {
    let cluster = inner.config.cluster.clone();
    let mut pruned_at: Option<Instant> = None;
    let mut ticks = tokio::time::interval(cluster.tick());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // Renewal first: it is what keeps the sessions running.
        let sent = Instant::now();
        let renewed = tokio::time::timeout(cluster.tick(), inner.store.renew_leases(inner.node, cluster.lease_ttl));
        match renewed.await {
            Ok(Ok(held)) => {
                *inner.lock_last_renewal() = Some(sent);
                let _turn = turn.lock().await;
                reconcile(&inner, &held, sent).await;
            }
            Ok(Err(error)) => tracing::warn!(%error, "leases not renewed"),
            Err(_) => tracing::warn!("leases not renewed in time"),
        }
        let started = Instant::now();
        match tokio::time::timeout(cluster.tick(), announce(&inner)).await {
            Ok(Ok(())) => {
                announced.send_replace(Some(started));
            }
            _ => tracing::warn!("heartbeat not recorded; not claiming until it is"),
        }
        match tokio::time::timeout(cluster.tick(), end_interrupted_pairings(&inner)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "interrupted pairings not ended; retrying next round"),
            Err(_) => tracing::warn!("interrupted pairings not ended in time; retrying next round"),
        }
        if pruned_at.is_none_or(|at| at.elapsed() >= cluster.prune_every()) {
            pruned_at = Some(Instant::now());
            match tokio::time::timeout(cluster.tick(), prune(&inner)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(deleted)) => tracing::debug!(deleted, "dead nodes and old commands deleted"),
                Ok(Err(error)) => tracing::warn!(%error, "dead nodes and old commands not deleted; retrying later"),
                Err(_) => tracing::warn!("pruning did not finish in time; the rest goes next time"),
            }
        }
    }
}

/// The last error of a pairing that [`end_interrupted_pairings`] ended.
pub const PAIRING_INTERRUPTED: &str =
    "pairing interrupted: the node showing the QR code stopped before the phone scanned it; call connect again";

/// Ends the pairings no node runs any more (the watchdog stopped one whose lease lapsed, or its node died or was
/// drained before the phone scanned): they become `disconnected` with [`PAIRING_INTERRUPTED`], and the tenant is
/// told with a `connection.update`. Not resumed: a pairing is a person in front of a screen, and a new QR code
/// they did not ask for, shown for minutes, is worse than a clear state (see the cluster design page).
async fn end_interrupted_pairings(inner: &Inner) -> StoreResult<()> {
    for instance in inner.store.end_interrupted_pairings(PAIRING_INTERRUPTED, PAIRINGS_PER_ROUND).await? {
        tracing::info!(instance = %instance.id, "pairing interrupted; the instance waits for a new connect");
        inner.publish_logged(&instance, EventType::ConnectionUpdate, connection_json(&instance)).await;
    }
    Ok(())
}

/// Interrupted pairings ended per ownership round, at most (the rest go in the next round).
const PAIRINGS_PER_ROUND: u32 = 100;

/// Claims orphans every [`ClusterConfig::claim_every`] while the node's last heartbeat is fresh (a node that
/// cannot announce itself may be listed as gone, and must not take instances meanwhile).
async fn claim_loop(inner: Arc<Inner>, heartbeat: watch::Receiver<Option<Instant>>, turn: Arc<Mutex<()>>) {
    let cluster = inner.config.cluster.clone();
    let mut placement = Placement::default();
    let mut ticks = tokio::time::interval(cluster.claim_every());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let fresh = heartbeat.borrow().is_some_and(|at| at.elapsed() < cluster.stop_after());
        if !fresh {
            continue;
        }
        match tokio::time::timeout(cluster.tick(), claim_round(&inner, &mut placement, &turn)).await {
            Ok(Ok(claimed)) if claimed > 0 => tracing::info!(claimed, "instances taken over"),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "orphaned instances not claimed"),
            Err(_) => tracing::warn!("claim round did not finish in time"),
        }
    }
}

/// Deletes the rows of nodes dead for longer than the retention and commands older than it, batch by batch.
pub(crate) async fn prune(inner: &Inner) -> StoreResult<u64> {
    let retention = chrono::Duration::from_std(inner.config.cluster.retention).unwrap_or(chrono::Duration::MAX);
    // The cut-off is taken once, on the database's clock, so every batch deletes against the same instant.
    let now = inner.store.database_now().await?;
    let Some(cutoff) = now.checked_add(-retention) else {
        return Ok(0); // a retention reaching before the calendar: nothing is that old
    };
    let mut deleted = 0;
    loop {
        let nodes = inner.store.prune_dead_nodes(cutoff, PRUNE_BATCH).await?;
        let commands = inner.store.prune_commands(cutoff, PRUNE_BATCH).await?;
        deleted += nodes + commands;
        if nodes < u64::from(PRUNE_BATCH) && commands < u64::from(PRUNE_BATCH) {
            return Ok(deleted);
        }
    }
}

/// Wakes local outbox workers for sends accepted on other nodes: at once through the store's wake-ups, and by a
/// slow poll of the rows (the truth) for a wake-up that was lost.
async fn wake_loop(inner: Arc<Inner>) {
    let every = inner.config.cluster.poll_interval.max(Duration::from_millis(10));
    let mut wakes = None;
    let mut poll = tokio::time::interval(every);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if wakes.is_none() {
            match inner.store.subscribe_wakes().await {
                Ok(receiver) => wakes = Some(receiver),
                Err(error) => tracing::warn!(%error, "wake-ups unavailable; polling only"),
            }
        }
        let woken = async {
            match wakes.as_mut() {
                Some(receiver) => Some(receiver.recv().await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            woken = woken => match woken {
                Some(Ok(instance)) => {
                    if inner.wake_local(instance) {
                        tokio::spawn(crate::forward::execute_pending(inner.clone(), instance));
                    }
                }
                // Missed some: the poll below finds their rows.
                Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => poll.reset_immediately(),
                Some(Err(tokio::sync::broadcast::error::RecvError::Closed)) | None => wakes = None,
            },
            _ = poll.tick() => match inner.store.instances_with_queued_messages(inner.node).await {
                Ok(instances) => {
                    // These are this node's leases: pending commands run here even if the session task is gone.
                    for instance in instances {
                        inner.wake_local(instance);
                        tokio::spawn(crate::forward::execute_pending(inner.clone(), instance));
                    }
                }
                Err(error) => tracing::warn!(%error, "outbox poll failed"),
            },
        }
    }
}

/// Stops every session whose lease was not renewed within two thirds of the TTL: its lease may pass to another
/// node at the TTL, and the session must be gone by then.
async fn watchdog(inner: Arc<Inner>) {
    let every = (inner.config.cluster.lease_ttl / 12).max(Duration::from_millis(5));
    loop {
        tokio::time::sleep(every).await;
        let last = *inner.lock_last_renewal();
        let limit = inner.config.cluster.stop_after();
        let now = Instant::now();
        let overdue: Vec<InstanceId> = inner
            .lock_sessions()
            .iter()
            .filter(|(_, handle)| !handle.task.is_finished() && !handle.shared.tenure.is_lost())
            .filter(|(_, handle)| {
                handle.shared.tenure.acquired_at().is_some_and(|acquired| {
                    let renewed = last.map_or(acquired, |last| last.max(acquired));
                    now >= renewed + limit
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for instance in overdue {
            tracing::warn!(%instance, "lease not renewed in time; stopping the session before it can pass on");
            lose_session(&inner, instance);
        }
    }
}

/// After a renewal: sessions whose lease is no longer held stop; leases held without a session are given up;
/// finished tasks leave the map (giving their lease up unless it was lost).
async fn reconcile(inner: &Inner, held: &[HeldLease], sent: Instant) {
    let held_epochs: HashMap<InstanceId, OwnerEpoch> = held.iter().map(|h| (h.instance_id, h.epoch)).collect();
    let mut lost = Vec::new();
    let mut finished = Vec::new();
    let mut running = HashSet::new();
    {
        let sessions = inner.lock_sessions();
        for (id, handle) in sessions.iter() {
            let tenure = &handle.shared.tenure;
            if handle.task.is_finished() {
                finished.push((*id, tenure.fence().filter(|_| !tenure.is_lost())));
                continue;
            }
            running.insert(*id);
            // A lease taken after the renewal was sent is not in its answer.
            let before = tenure.acquired_at().is_some_and(|at| at < sent);
            if let Some(epoch) = tenure.fence()
                && before
                && held_epochs.get(id) != Some(&epoch)
            {
                lost.push(*id);
            }
        }
    }
    for instance in lost {
        tracing::warn!(%instance, "lease lost to another node; stopping the session here");
        lose_session(inner, instance);
    }
    for (instance, epoch) in finished {
        let still_finished = {
            let mut sessions = inner.lock_sessions();
            let done = sessions.get(&instance).is_some_and(|h| h.task.is_finished());
            if done {
                sessions.remove(&instance);
            }
            done
        };
        if still_finished && let Some(epoch) = epoch {
            release(inner, instance, epoch).await;
        }
    }
    for lease in held {
        if !running.contains(&lease.instance_id) && !inner.lock_sessions().contains_key(&lease.instance_id) {
            release(inner, lease.instance_id, lease.epoch).await;
        }
    }
}

async fn release(inner: &Inner, instance: InstanceId, epoch: OwnerEpoch) {
    if let Err(error) = inner.store.release_lease(instance, inner.node, epoch).await {
        tracing::warn!(%instance, %error, "lease not released; it expires by itself");
    }
}

/// Marks the session's lease lost and tells it to stop, without waiting: it disconnects at once.
fn lose_session(inner: &Inner, instance: InstanceId) {
    let handle = inner.lock_sessions().remove(&instance);
    if let Some(handle) = handle {
        handle.shared.tenure.lose();
        let _ = handle.commands.send(Command::Stop);
    }
}

/// Stops the instance's session here and waits for it; with `release`, gives its lease up.
pub(crate) async fn stop_session(inner: &Inner, instance: InstanceId, release_lease: bool) {
    let handle = inner.lock_sessions().remove(&instance);
    if let Some(handle) = handle {
        let _ = handle.commands.send(Command::Stop);
        let _ = handle.task.await;
        let tenure = &handle.shared.tenure;
        if release_lease
            && !tenure.is_lost()
            && let Some(epoch) = tenure.fence()
        {
            release(inner, instance, epoch).await;
        }
    }
}

/// Stops every session, then leaves the cluster giving every lease up, so other nodes take over at once.
pub(crate) async fn drain(inner: &Inner) {
    let handles: Vec<_> = inner.lock_sessions().drain().map(|(_, h)| h).collect();
    for handle in &handles {
        let _ = handle.commands.send(Command::Stop);
    }
    for handle in handles {
        let _ = handle.task.await;
    }
    if let Err(error) = inner.store.remove_node(inner.node).await {
        tracing::warn!(%error, "leases not released at shutdown; other nodes take over when they expire");
    }
}

/// Takes the lease for a session the API started here. While another node holds it, that node is woken and
/// nothing runs here. A lease this node already holds (its earlier task ended) is adopted with its epoch.
pub(crate) async fn take_lease(inner: &Inner, instance: InstanceId, tenure: &Tenure) -> bool {
    let ttl = inner.config.cluster.lease_ttl;
    let sent = Instant::now();
    match inner.store.acquire_lease(instance, inner.node, ttl).await {
        Ok(Some(epoch)) => {
            tenure.hold(epoch, sent);
            return true;
        }
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(%instance, %error, "lease not taken; the session does not start");
            return false;
        }
    }
    match inner.store.renew_leases(inner.node, ttl).await {
        Ok(held) => {
            if let Some(lease) = held.iter().find(|h| h.instance_id == instance) {
                tenure.hold(lease.epoch, sent);
                return true;
            }
        }
        Err(error) => tracing::warn!(%instance, %error, "leases not readable"),
    }
    tracing::info!(%instance, "the instance runs on another node; forwarding to it");
    false
}

/// One claim round: the orphaned instances placement gives this node (or that their preferred node left alone for
/// a TTL) are acquired and started, up to the node's capacity. Returns how many started.
/// Each lease is taken and its session started under `turn` (see [`spawn`]).
pub(crate) async fn claim_round(inner: &Arc<Inner>, placement: &mut Placement, turn: &Mutex<()>) -> StoreResult<usize> {
    let cluster = &inner.config.cluster;
    let orphans = inner.store.list_orphaned_instances(cluster.claim_batch).await?;
    if orphans.is_empty() {
        placement.retain(std::iter::empty());
        return Ok(0);
    }
    let nodes = inner.store.list_nodes(cluster.lease_ttl).await?;
    let mut load: HashMap<NodeId, u64> = nodes.iter().map(|n| (n.id, n.instances)).collect();
    let mut running = inner.lock_sessions().values().filter(|h| !h.task.is_finished()).count();
    let now = Instant::now();
    placement.retain(orphans.iter().map(|i| i.id));
    let mut started = 0;
    for instance in orphans {
        if needs_a_person(instance.status)
            || !inner.drivers.contains_key(&instance.driver)
            || inner.lock_sessions().get(&instance.id).is_some_and(|h| !h.task.is_finished())
        {
            continue;
        }
        let preferred = rendezvous(&nodes, &load, instance.id);
        let overdue = placement.seen(instance.id, now) + cluster.lease_ttl <= now;
        if preferred != Some(inner.node) && !overdue {
            continue;
        }
        if running >= cluster.capacity as usize {
            break;
        }
        let _turn = turn.lock().await;
        let sent = Instant::now();
        if let Some(epoch) = inner.store.acquire_lease(instance.id, inner.node, cluster.lease_ttl).await? {
            let tenure = Tenure::held(epoch, sent);
            inner.command(instance.id, Command::Connect { pair_phone: None }, Some(tenure));
            *load.entry(inner.node).or_default() += 1;
            running += 1;
            started += 1;
        }
    }
    Ok(started)
}

/// When this node first saw each orphan, so one its preferred node leaves alone is taken by someone.
#[derive(Debug, Default)]
pub(crate) struct Placement {
    first_seen: HashMap<InstanceId, Instant>,
}

impl Placement {
    fn seen(&mut self, instance: InstanceId, now: Instant) -> Instant {
        *self.first_seen.entry(instance).or_insert(now)
    }

    fn retain(&mut self, orphans: impl Iterator<Item = InstanceId>) {
        let orphans: HashSet<InstanceId> = orphans.collect();
        self.first_seen.retain(|id, _| orphans.contains(id));
    }
}

/// The live node with the highest weight for the instance that still has room.
fn rendezvous(nodes: &[ClusterNode], load: &HashMap<NodeId, u64>, instance: InstanceId) -> Option<NodeId> {
    nodes
        .iter()
        .filter(|n| load.get(&n.id).copied().unwrap_or(0) < u64::from(n.capacity))
        .max_by_key(|n| (weight(n.id, instance), n.id))
        .map(|n| n.id)
}

/// A stable 64-bit weight of the pair (FNV-1a then a SplitMix64 finaliser), the same on every node and build.
fn weight(node: NodeId, instance: InstanceId) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node.as_uuid().as_bytes().iter().chain(instance.as_uuid().as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(capacity: u32) -> ClusterNode {
        let at = gw_core::Timestamp::now();
        ClusterNode {
            id: NodeId::new(),
            address: String::new(),
            capacity,
            started_at: at,
            heartbeat_at: at,
            instances: 0,
        }
    }

    #[test]
    fn rendezvous_spreads_instances_and_moves_few_when_a_node_leaves() {
        let nodes: Vec<ClusterNode> = (0..3).map(|_| node(10_000)).collect();
        let load = HashMap::new();
        let instances: Vec<InstanceId> = (0..3000).map(|_| InstanceId::new()).collect();
        let placed: Vec<NodeId> =
            instances.iter().map(|i| rendezvous(&nodes, &load, *i).expect("a node has room")).collect();
        for n in &nodes {
            let share = placed.iter().filter(|p| **p == n.id).count();
            assert!((800..=1200).contains(&share), "each of 3 nodes gets about a third: {share}");
        }
        // The third node leaves: only its instances move.
        let survivors = &nodes[..2];
        for (instance, before) in instances.iter().zip(&placed) {
            let after = rendezvous(survivors, &load, *instance).expect("room");
            if *before != nodes[2].id {
                assert_eq!(after, *before, "an instance of a surviving node stays where it was");
            }
        }
    }

    #[test]
    fn a_full_node_is_skipped() {
        let nodes = vec![node(1), node(1)];
        let instance = InstanceId::new();
        let first = rendezvous(&nodes, &HashMap::new(), instance).expect("room");
        let load: HashMap<NodeId, u64> = [(first, 1)].into();
        let second = rendezvous(&nodes, &load, instance).expect("the other has room");
        assert_ne!(first, second);
        let full: HashMap<NodeId, u64> = nodes.iter().map(|n| (n.id, 1)).collect();
        assert_eq!(rendezvous(&nodes, &full, instance), None);
    }
}
