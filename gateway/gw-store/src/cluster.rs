//! Cluster ownership: which node runs which instance's session, decided by leases with fencing tokens.
//!
//! Each instance has at most one owner: a node id, an epoch that only grows (the fencing token) and an expiry. A
//! lease is acquired and renewed with one conditional statement each, judged by the database's clock (never a
//! node's), so two nodes can never both win. Every write a session makes carries the epoch it started with
//! ([`OwnerEpoch`]); once another node took the instance over (and so raised the epoch), such a write is refused
//! with [`crate::StoreError::Fenced`] and the session stops.
//!
//! Nodes announce themselves with heartbeats; a node whose heartbeat is older than the lease TTL is gone.

use std::time::Duration;

use async_trait::async_trait;
use gw_core::{Instance, InstanceCommandId, InstanceId, NodeId, Timestamp};

use crate::StoreResult;

/// The fencing token of an instance's lease: raised by one at every acquisition, never lowered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerEpoch(i64);

impl OwnerEpoch {
    pub const fn new(epoch: i64) -> Self {
        Self(epoch)
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for OwnerEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What a node says about itself at every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAnnouncement {
    pub id: NodeId,
    /// Where the node serves HTTP (its listen address), for operators.
    pub address: String,
    /// How many sessions the node takes at most.
    pub capacity: u32,
}

/// A node as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: NodeId,
    pub address: String,
    pub capacity: u32,
    pub started_at: Timestamp,
    pub heartbeat_at: Timestamp,
    /// Instances whose unexpired lease the node holds.
    pub instances: u64,
}

/// A lease a node still holds after a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldLease {
    pub instance_id: InstanceId,
    pub epoch: OwnerEpoch,
}

/// What a node asks of the node running an instance's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceCommandKind {
    Connect {
        pair_phone: Option<String>,
    },
    Restart,
    Logout,
    PairCode {
        phone: String,
    },
    /// Read receipts for messages of a chat (WhatsApp's message ids).
    MarkRead {
        chat_jid: String,
        wa_message_ids: Vec<String>,
    },
    /// A presence shown in a chat; `presence` is the session engine's spelling (`composing`, `paused`, ...), which
    /// the store does not interpret.
    Presence {
        chat_jid: String,
        presence: String,
    },
    Block {
        jid: String,
        blocked: bool,
    },
    /// Which of these phone numbers (digits only) are on WhatsApp; the answer is the engine's JSON, which the store
    /// does not interpret.
    CheckNumbers {
        phones: Vec<String>,
    },
}

/// The stored argument of the commands that carry more than one value.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Argument {
    MarkRead { chat_jid: String, wa_message_ids: Vec<String> },
    Presence { chat_jid: String, presence: String },
    Block { jid: String, blocked: bool },
    CheckNumbers { phones: Vec<String> },
}

impl InstanceCommandKind {
    /// The stored spelling and argument.
    pub fn to_parts(&self) -> (&'static str, Option<String>) {
        let json = |argument: Argument| serde_json::to_string(&argument).ok();
        match self {
            Self::Connect { pair_phone } => ("connect", pair_phone.clone()),
            Self::Restart => ("restart", None),
            Self::Logout => ("logout", None),
            Self::PairCode { phone } => ("pair_code", Some(phone.clone())),
            Self::MarkRead { chat_jid, wa_message_ids } => (
                "mark_read",
                json(Argument::MarkRead { chat_jid: chat_jid.clone(), wa_message_ids: wa_message_ids.clone() }),
            ),
            Self::Presence { chat_jid, presence } => {
                ("presence", json(Argument::Presence { chat_jid: chat_jid.clone(), presence: presence.clone() }))
            }
            Self::Block { jid, blocked } => ("block", json(Argument::Block { jid: jid.clone(), blocked: *blocked })),
            Self::CheckNumbers { phones } => ("check_numbers", json(Argument::CheckNumbers { phones: phones.clone() })),
        }
    }

    /// Back from the stored spelling; `None` for one this version does not know (or an argument it cannot read).
    pub fn from_parts(kind: &str, argument: Option<String>) -> Option<Self> {
        let parsed = || serde_json::from_str::<Argument>(argument.as_deref()?).ok();
        Some(match kind {
            "connect" => Self::Connect { pair_phone: argument },
            "restart" => Self::Restart,
            "logout" => Self::Logout,
            "pair_code" => Self::PairCode { phone: argument? },
            "mark_read" => match parsed()? {
                Argument::MarkRead { chat_jid, wa_message_ids } => Self::MarkRead { chat_jid, wa_message_ids },
                _ => return None,
            },
            "presence" => match parsed()? {
                Argument::Presence { chat_jid, presence } => Self::Presence { chat_jid, presence },
                _ => return None,
            },
            "block" => match parsed()? {
                Argument::Block { jid, blocked } => Self::Block { jid, blocked },
                _ => return None,
            },
            "check_numbers" => match parsed()? {
                Argument::CheckNumbers { phones } => Self::CheckNumbers { phones },
                _ => return None,
            },
            _ => return None,
        })
    }
}

/// A command taken for execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceCommand {
    pub id: InstanceCommandId,
    pub instance_id: InstanceId,
    pub kind: InstanceCommandKind,
}

/// Where a command stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    /// Not executed yet (or being executed).
    Pending,
    /// Executed; the answer, if the command has one (a pairing code).
    Done(Option<String>),
    /// Executed and refused; why.
    Failed(String),
}

/// Wake-ups for instances: "look at this instance's rows now" (a send accepted on another node, say). The rows stay
/// the truth; a missed or lagged wake-up is covered by a slow poll.
pub type WakeReceiver = tokio::sync::broadcast::Receiver<InstanceId>;

#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Creates the node's row or stamps its heartbeat with the database's clock.
    async fn heartbeat(&self, node: &NodeAnnouncement) -> StoreResult<()>;
    /// Nodes whose last heartbeat is within `live_within` of the database's clock, in id order.
    async fn list_nodes(&self, live_within: Duration) -> StoreResult<Vec<ClusterNode>>;
    /// Removes the node's row and releases every lease it holds (a drained node, or a long-dead one).
    async fn remove_node(&self, id: NodeId) -> StoreResult<()>;

    /// Takes the instance's lease for `ttl` if nobody holds an unexpired one; returns the new (raised) epoch, or
    /// `None` when another node holds it. One conditional statement: of concurrent acquisitions one wins.
    async fn acquire_lease(
        &self,
        instance_id: InstanceId,
        node: NodeId,
        ttl: Duration,
    ) -> StoreResult<Option<OwnerEpoch>>;
    /// Extends every unexpired lease the node holds to `ttl` from now, in one statement, and returns them. An
    /// expired lease is not renewed (another node may take it at any moment): it is lost.
    async fn renew_leases(&self, node: NodeId, ttl: Duration) -> StoreResult<Vec<HeldLease>>;
    /// Gives the lease up (only while the node holds it at that epoch), so another node may take it at once.
    async fn release_lease(&self, instance_id: InstanceId, node: NodeId, epoch: OwnerEpoch) -> StoreResult<bool>;
    /// Gives every lease of the node up; returns how many.
    async fn release_all_leases(&self, node: NodeId) -> StoreResult<u64>;
    /// Clears every other node's leases and rows; returns how many leases. Only for a node that knows it is the only
    /// one (SQLite, whose file lock it holds): whatever else holds a lease is a dead process.
    async fn release_foreign_leases(&self, node: NodeId) -> StoreResult<u64>;
    /// Active instances of active subscriptions with a valid session whose lease is free or expired, in id order:
    /// what the nodes of the cluster should share out.
    async fn list_orphaned_instances(&self, limit: u32) -> StoreResult<Vec<Instance>>;
    /// Ends pairings whose node is gone, up to `limit`: instances waiting for a phone (`connecting` or `qr`)
    /// without a valid session, whose lease is free or expired, become `disconnected` with `reason` as their last
    /// error and no QR code, and their epoch is raised so a late write of the node that ran the pairing is refused.
    /// Returns them. One statement: of nodes doing this at once, each instance is ended by one.
    async fn end_interrupted_pairings(&self, reason: &str, limit: u32) -> StoreResult<Vec<Instance>>;
    /// The node holding the instance's unexpired lease.
    async fn instance_owner(&self, instance_id: InstanceId) -> StoreResult<Option<NodeId>>;
    /// The node's instances that have outbound messages or commands waiting (the slow poll behind wake-ups).
    async fn instances_with_queued_messages(&self, node: NodeId) -> StoreResult<Vec<InstanceId>>;

    /// Writes a command for the node running the instance's session (which the caller then wakes).
    async fn enqueue_command(&self, command: &InstanceCommand) -> StoreResult<()>;
    /// Takes the instance's pending commands for execution, oldest first; each is taken by one caller only.
    async fn take_commands(&self, instance_id: InstanceId) -> StoreResult<Vec<InstanceCommand>>;
    /// Records a taken command's outcome.
    async fn complete_command(&self, id: InstanceCommandId, outcome: &CommandOutcome) -> StoreResult<()>;
    async fn command_outcome(&self, id: InstanceCommandId) -> StoreResult<CommandOutcome>;

    /// The database's clock (`db_clock`), the one every lease, heartbeat and command is stamped by. Cut-offs for
    /// [`ClusterStore::prune_dead_nodes`] and [`ClusterStore::prune_commands`] are taken from it.
    async fn database_now(&self) -> StoreResult<Timestamp>;
    /// Deletes up to `batch` rows of nodes whose last heartbeat is before `silent_since` (database clock);
    /// returns how many. Their leases are untouched (they expired long ago, and the epochs must stay).
    async fn prune_dead_nodes(&self, silent_since: Timestamp, batch: u32) -> StoreResult<u64>;
    /// Deletes up to `batch` commands written before `written_before` (database clock), oldest first, whatever
    /// their state: finished ones, and pending ones whose caller stopped waiting long ago; returns how many.
    async fn prune_commands(&self, written_before: Timestamp, batch: u32) -> StoreResult<u64>;

    /// Wakes whichever node owns the instance (every node's receiver sees it).
    async fn wake_instance(&self, instance_id: InstanceId) -> StoreResult<()>;
    /// Wake-ups of every node's [`ClusterStore::wake_instance`] calls, this node's included.
    async fn subscribe_wakes(&self) -> StoreResult<WakeReceiver>;
}
