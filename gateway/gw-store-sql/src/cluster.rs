//! [`gw_store::ClusterStore`]: leases with fencing epochs and node heartbeats, in SQL both backends accept.
//!
//! Every decision about time is the database's: statements read `db_clock` (a one-row view each backend's
//! migration 0009 defines), so no node's clock takes part. The statements are plain constants; the per-backend
//! instantiation ([`impl_cluster_store!`]) only binds and maps. Wake-ups differ by backend: PostgreSQL sends them
//! with `NOTIFY` and one `LISTEN` connection per node forwards them ([`pg_listen`]); SQLite serves one process, so
//! they stay in memory.

use gw_core::Timestamp;
use gw_store::{ClusterNode, HeldLease, OwnerEpoch, StoreError};
use uuid::Uuid;

/// The PostgreSQL channel wake-ups travel on.
pub(crate) const WAKE_CHANNEL: &str = "gw_instance_wake";

/// Up to this many wake-ups wait for a slow reader; beyond, the oldest are lost (the slow poll covers them).
pub(crate) const WAKE_BUFFER: usize = 1024;

pub(crate) const HEARTBEAT: &str = "INSERT INTO nodes (id, address, capacity, started_at, heartbeat_at) \
     SELECT $1, $2, $3, now_ms, now_ms FROM db_clock WHERE TRUE \
     ON CONFLICT (id) DO UPDATE SET address = excluded.address, capacity = excluded.capacity, \
     heartbeat_at = excluded.heartbeat_at";

pub(crate) const LIST_NODES: &str = "SELECT n.id, n.address, n.capacity, n.started_at, n.heartbeat_at, \
     (SELECT count(*) FROM instances i WHERE i.owner_node = n.id AND i.lease_expires_at > c.now_ms) AS instances \
     FROM nodes n, db_clock c WHERE n.heartbeat_at > c.now_ms - $1 ORDER BY n.id";

pub(crate) const DELETE_NODE: &str = "DELETE FROM nodes WHERE id = $1";

/// Takes a free or expired lease, raising the epoch, in one statement. On PostgreSQL a concurrent acquisition waits
/// for the row lock and then re-checks the condition against the winner's row, so it matches nothing.
pub(crate) const ACQUIRE: &str = "UPDATE instances SET owner_node = $2, owner_epoch = owner_epoch + 1, \
     lease_expires_at = (SELECT now_ms FROM db_clock) + $3 \
     WHERE id = $1 AND (owner_node IS NULL OR lease_expires_at IS NULL \
     OR lease_expires_at <= (SELECT now_ms FROM db_clock)) \
     RETURNING owner_epoch";

pub(crate) const RENEW: &str = "UPDATE instances SET lease_expires_at = (SELECT now_ms FROM db_clock) + $2 \
     WHERE owner_node = $1 AND lease_expires_at > (SELECT now_ms FROM db_clock) RETURNING id, owner_epoch";

/// Keeps the epoch: the next owner raises it.
pub(crate) const RELEASE: &str = "UPDATE instances SET owner_node = NULL, lease_expires_at = NULL \
     WHERE id = $1 AND owner_node = $2 AND owner_epoch = $3";

pub(crate) const RELEASE_ALL: &str =
    "UPDATE instances SET owner_node = NULL, lease_expires_at = NULL WHERE owner_node = $1";

pub(crate) const RELEASE_FOREIGN: &str =
    "UPDATE instances SET owner_node = NULL, lease_expires_at = NULL WHERE owner_node IS NOT NULL AND owner_node <> $1";

/// A pairing nobody runs: waiting for a phone, no valid session, lease free or expired. Repeated in the outer
/// `WHERE` of [`END_INTERRUPTED_PAIRINGS`], which PostgreSQL re-checks against a row another statement changed
/// meanwhile (a connect that took the lease), so such a row is left alone.
macro_rules! interrupted_pairing {
    () => {
        "status IN ('connecting', 'qr') AND (owner_node IS NULL OR lease_expires_at IS NULL \
         OR lease_expires_at <= (SELECT now_ms FROM db_clock))"
    };
}

pub(crate) const END_INTERRUPTED_PAIRINGS: &str = concat!(
    "UPDATE instances SET status = 'disconnected', qr_code = NULL, qr_code_expiry = NULL, last_error = $1, \
     last_error_at = $2, updated_at = $2, owner_epoch = owner_epoch + 1, owner_node = NULL, \
     lease_expires_at = NULL WHERE id IN (SELECT id FROM instances WHERE ",
    interrupted_pairing!(),
    " AND NOT EXISTS (SELECT 1 FROM session_data s WHERE s.instance_id = instances.id AND s.session_valid) \
     ORDER BY id LIMIT $3) AND ",
    interrupted_pairing!(),
    " RETURNING ",
    crate::rows::instance_columns!()
);

pub(crate) const DELETE_OTHER_NODES: &str = "DELETE FROM nodes WHERE id <> $1";

pub(crate) const OWNER: &str = "SELECT i.owner_node FROM instances i, db_clock c \
     WHERE i.id = $1 AND i.owner_node IS NOT NULL AND i.lease_expires_at > c.now_ms";

pub(crate) const QUEUED_OF_NODE: &str = "SELECT DISTINCT m.instance_id FROM messages m \
     JOIN instances i ON i.id = m.instance_id \
     WHERE i.owner_node = $1 AND m.status = 'queued' AND m.direction = 'outbound' \
     UNION SELECT DISTINCT c.instance_id FROM instance_commands c JOIN instances i ON i.id = c.instance_id \
     WHERE i.owner_node = $1 AND c.status = 'pending'";

pub(crate) const ENQUEUE_COMMAND: &str = "INSERT INTO instance_commands (id, instance_id, kind, argument, status, \
     created_at) SELECT $1, $2, $3, $4, 'pending', now_ms FROM db_clock";

pub(crate) const TAKE_COMMANDS: &str = "UPDATE instance_commands SET status = 'running' \
     WHERE instance_id = $1 AND status = 'pending' RETURNING id, kind, argument";

pub(crate) const COMPLETE_COMMAND: &str = "UPDATE instance_commands SET status = $2, result = $3 WHERE id = $1";

pub(crate) const COMMAND_OUTCOME: &str = "SELECT status, result FROM instance_commands WHERE id = $1";

/// Batch deletes by a sub-select with `LIMIT` (both dialects accept it; neither accepts `DELETE ... LIMIT`).
pub(crate) const PRUNE_NODES: &str = "DELETE FROM nodes WHERE id IN (SELECT id FROM nodes \
     WHERE heartbeat_at < $1 ORDER BY heartbeat_at LIMIT $2)";

pub(crate) const PRUNE_COMMANDS: &str = "DELETE FROM instance_commands WHERE id IN (SELECT id FROM instance_commands \
     WHERE created_at < $1 ORDER BY created_at LIMIT $2)";

pub(crate) const DATABASE_NOW: &str = "SELECT now_ms FROM db_clock";

pub(crate) const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// The epoch of an instance, to tell a fenced write from a missing row.
pub(crate) const EPOCH_OF_INSTANCE: &str = "SELECT id, owner_epoch FROM instances WHERE id = $1";

/// The epoch of a message's instance.
pub(crate) const EPOCH_OF_MESSAGE: &str =
    "SELECT i.id, i.owner_epoch FROM messages m JOIN instances i ON i.id = m.instance_id WHERE m.id = $1";

/// The condition a fenced write on `instances` adds (`$n` is the fence, NULL for an unfenced write).
macro_rules! fence_on_instances {
    ($n:literal) => {
        concat!(" AND (", $n, " IS NULL OR owner_epoch = ", $n, ")")
    };
}
pub(crate) use fence_on_instances;

/// The condition a fenced write on a table with an `instance_id` column adds. `$lock` is the backend's row lock
/// for the instance row the condition reads (`" FOR SHARE"` on PostgreSQL, empty on SQLite, whose writers are
/// serialised anyway): without it, PostgreSQL would judge the condition on the statement's snapshot, so a write
/// could pass the check while a take-over of the instance commits, and land after it. With it, the write waits for
/// a take-over in progress and then re-reads the instance row (and fails), and a take-over waits for the write.
macro_rules! fence_on_instance_of {
    ($column:literal, $n:literal, $lock:literal) => {
        concat!(
            " AND (",
            $n,
            " IS NULL OR EXISTS (SELECT 1 FROM instances f WHERE f.id = ",
            $column,
            " AND f.owner_epoch = ",
            $n,
            $lock,
            "))"
        )
    };
}
pub(crate) use fence_on_instance_of;

/// The instance's epoch, read inside a write transaction under the backend's row lock (`$lock`, as for
/// [`fence_on_instance_of!`]) before the fenced writes of that transaction.
macro_rules! epoch_under_lock {
    ($lock:literal) => {
        concat!("SELECT owner_epoch FROM instances WHERE id = $1", $lock)
    };
}
pub(crate) use epoch_under_lock;

#[derive(sqlx::FromRow)]
pub(crate) struct NodeRow {
    id: Uuid,
    address: String,
    capacity: i32,
    started_at: i64,
    heartbeat_at: i64,
    instances: i64,
}

pub(crate) fn to_millis(at: Timestamp) -> i64 {
    at.as_datetime().timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> Result<Timestamp, StoreError> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(Timestamp::from)
        .ok_or_else(|| StoreError::Corrupt { entity: "node", detail: format!("time out of range: {ms}") })
}

impl TryFrom<NodeRow> for ClusterNode {
    type Error = StoreError;

    fn try_from(row: NodeRow) -> Result<Self, StoreError> {
        Ok(ClusterNode {
            id: row.id.into(),
            address: row.address,
            capacity: u32::try_from(row.capacity).unwrap_or(0),
            started_at: from_millis(row.started_at)?,
            heartbeat_at: from_millis(row.heartbeat_at)?,
            instances: u64::try_from(row.instances).unwrap_or(0),
        })
    }
}

pub(crate) fn held((id, epoch): (Uuid, i64)) -> HeldLease {
    HeldLease { instance_id: id.into(), epoch: OwnerEpoch::new(epoch) }
}

/// What a fenced write that changed nothing means: the instance has another epoch now (fenced), or the row is not
/// there (not found). `found` is the instance and its current epoch, if any.
pub(crate) fn refusal(found: Option<(Uuid, i64)>, fence: OwnerEpoch, entity: &'static str) -> StoreError {
    match found {
        Some((instance, epoch)) if epoch != fence.get() => StoreError::Fenced { instance: instance.into() },
        _ => StoreError::not_found(entity),
    }
}

pub(crate) fn millis(ttl: std::time::Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Forwards PostgreSQL notifications on [`WAKE_CHANNEL`] to the node's wake-up receivers, reconnecting after a
/// failure, until nobody listens any more or the pool is closed.
#[cfg(feature = "postgres")]
pub(crate) async fn pg_listen(
    gated: crate::health::GatedPool,
    wakes: tokio::sync::broadcast::Sender<gw_core::InstanceId>,
) {
    use sqlx::postgres::PgListener;
    let retry = std::time::Duration::from_secs(1);
    let pool = gated.inner().clone();
    while wakes.receiver_count() > 0 && !pool.is_closed() {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "wake-up listener cannot connect; retrying");
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        // Report a lost connection at once rather than after reconnecting (which waits the acquire timeout while
        // the server is down): the loss is the health gate's earliest sign of an outage, and this loop reconnects.
        listener.eager_reconnect(false);
        if let Err(error) = listener.listen(WAKE_CHANNEL).await {
            tracing::warn!(%error, "wake-up listener cannot LISTEN; retrying");
            tokio::time::sleep(retry).await;
            continue;
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if let Ok(id) = notification.payload().parse::<Uuid>() {
                        // No receiver left: the loop condition ends the task.
                        let _ = wakes.send(gw_core::InstanceId::from(id));
                    }
                }
                // The connection was lost: notifications sent meanwhile are gone (the slow poll covers them). It
                // is also the first sign of a server going down: the health gate checks at once.
                Ok(None) => {
                    gated.gate().suspect();
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "wake-up listener failed; reconnecting");
                    gated.gate().suspect();
                    break;
                }
            }
            if wakes.receiver_count() == 0 {
                return;
            }
        }
    }
}

/// Implements [`gw_store::ClusterStore`] for a backend type with a `pool` and a `wakes` sender; `$notify` is the
/// backend's way to send a wake-up (`pg` or `memory`).
macro_rules! impl_cluster_store {
    ($store:ty, $notify:ident) => {
        use std::time::Duration;

        use async_trait::async_trait;
        use gw_core::{Instance, InstanceId, NodeId};
        use gw_store::{
            ClusterNode, ClusterStore, HeldLease, NodeAnnouncement, OwnerEpoch, StoreResult, WakeReceiver,
        };
        use uuid::Uuid;

        use crate::cluster::*;
        use crate::error::db_err;
        use crate::rows::{InstanceRow, instance_columns};

        impl $store {
            /// The error for a fenced write on `instance_id` that changed nothing.
            pub(crate) async fn instance_refusal(
                &self,
                instance_id: InstanceId,
                fence: OwnerEpoch,
                entity: &'static str,
            ) -> gw_store::StoreError {
                match sqlx::query_as::<_, (Uuid, i64)>(EPOCH_OF_INSTANCE)
                    .bind(instance_id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await
                {
                    Ok(found) => refusal(found, fence, entity),
                    Err(e) => db_err(entity)(e),
                }
            }

            /// The error for a fenced write on message `id` that changed nothing.
            pub(crate) async fn message_refusal(
                &self,
                id: gw_core::MessageId,
                fence: OwnerEpoch,
            ) -> gw_store::StoreError {
                match sqlx::query_as::<_, (Uuid, i64)>(EPOCH_OF_MESSAGE)
                    .bind(id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await
                {
                    Ok(found) => refusal(found, fence, "message"),
                    Err(e) => db_err("message")(e),
                }
            }
        }

        #[async_trait]
        impl ClusterStore for $store {
            async fn heartbeat(&self, node: &NodeAnnouncement) -> StoreResult<()> {
                sqlx::query(HEARTBEAT)
                    .bind(node.id.as_uuid())
                    .bind(&node.address)
                    .bind(i32::try_from(node.capacity).unwrap_or(i32::MAX))
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("node"))?;
                Ok(())
            }

            async fn list_nodes(&self, live_within: Duration) -> StoreResult<Vec<ClusterNode>> {
                let rows = sqlx::query_as::<_, NodeRow>(LIST_NODES)
                    .bind(millis(live_within))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err("node"))?;
                rows.into_iter().map(ClusterNode::try_from).collect()
            }

            async fn remove_node(&self, id: NodeId) -> StoreResult<()> {
                self.release_all_leases(id).await?;
                sqlx::query(DELETE_NODE).bind(id.as_uuid()).execute(&self.pool).await.map_err(db_err("node"))?;
                Ok(())
            }

            async fn acquire_lease(
                &self,
                instance_id: InstanceId,
                node: NodeId,
                ttl: Duration,
            ) -> StoreResult<Option<OwnerEpoch>> {
                let row: Option<(i64,)> = sqlx::query_as(ACQUIRE)
                    .bind(instance_id.as_uuid())
                    .bind(node.as_uuid())
                    .bind(millis(ttl))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err("instance"))?;
                Ok(row.map(|(epoch,)| OwnerEpoch::new(epoch)))
            }

            async fn renew_leases(&self, node: NodeId, ttl: Duration) -> StoreResult<Vec<HeldLease>> {
                let rows: Vec<(Uuid, i64)> = sqlx::query_as(RENEW)
                    .bind(node.as_uuid())
                    .bind(millis(ttl))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err("instance"))?;
                Ok(rows.into_iter().map(held).collect())
            }

            async fn release_lease(
                &self,
                instance_id: InstanceId,
                node: NodeId,
                epoch: OwnerEpoch,
            ) -> StoreResult<bool> {
                let done = sqlx::query(RELEASE)
                    .bind(instance_id.as_uuid())
                    .bind(node.as_uuid())
                    .bind(epoch.get())
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("instance"))?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_all_leases(&self, node: NodeId) -> StoreResult<u64> {
                let done = sqlx::query(RELEASE_ALL)
                    .bind(node.as_uuid())
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("instance"))?;
                Ok(done.rows_affected())
            }

            async fn release_foreign_leases(&self, node: NodeId) -> StoreResult<u64> {
                let done = sqlx::query(RELEASE_FOREIGN)
                    .bind(node.as_uuid())
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("instance"))?;
                sqlx::query(DELETE_OTHER_NODES)
                    .bind(node.as_uuid())
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("node"))?;
                Ok(done.rows_affected())
            }

            async fn list_orphaned_instances(&self, limit: u32) -> StoreResult<Vec<Instance>> {
                let rows = sqlx::query_as::<_, InstanceRow>(concat!(
                    "SELECT ",
                    instance_columns!(),
                    " FROM instances WHERE is_active \
                     AND subscription_id IN (SELECT id FROM subscriptions WHERE is_active) \
                     AND (owner_node IS NULL OR lease_expires_at IS NULL \
                     OR lease_expires_at <= (SELECT now_ms FROM db_clock)) \
                     AND EXISTS (SELECT 1 FROM session_data s WHERE s.instance_id = instances.id \
                     AND s.session_valid) ORDER BY id LIMIT $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("instance"))?;
                rows.into_iter().map(Instance::try_from).collect()
            }

            async fn end_interrupted_pairings(&self, reason: &str, limit: u32) -> StoreResult<Vec<Instance>> {
                let rows = sqlx::query_as::<_, InstanceRow>(END_INTERRUPTED_PAIRINGS)
                    .bind(reason)
                    .bind(crate::shared::now())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err("instance"))?;
                rows.into_iter().map(Instance::try_from).collect()
            }

            async fn instance_owner(&self, instance_id: InstanceId) -> StoreResult<Option<NodeId>> {
                let row: Option<(Option<Uuid>,)> = sqlx::query_as(OWNER)
                    .bind(instance_id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err("instance"))?;
                Ok(row.and_then(|(node,)| node).map(NodeId::from))
            }

            async fn instances_with_queued_messages(&self, node: NodeId) -> StoreResult<Vec<InstanceId>> {
                let rows: Vec<(Uuid,)> = sqlx::query_as(QUEUED_OF_NODE)
                    .bind(node.as_uuid())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err("message"))?;
                Ok(rows.into_iter().map(|(id,)| id.into()).collect())
            }

            async fn enqueue_command(&self, command: &gw_store::InstanceCommand) -> StoreResult<()> {
                let (kind, argument) = command.kind.to_parts();
                sqlx::query(ENQUEUE_COMMAND)
                    .bind(command.id.as_uuid())
                    .bind(command.instance_id.as_uuid())
                    .bind(kind)
                    .bind(argument)
                    .execute(&self.pool)
                    .await
                    .map_err(crate::error::db_err_fk(
                        "command",
                        crate::error::OnForeignKey::MissingParent("instance"),
                    ))?;
                Ok(())
            }

            async fn take_commands(&self, instance_id: InstanceId) -> StoreResult<Vec<gw_store::InstanceCommand>> {
                let rows: Vec<(Uuid, String, Option<String>)> = sqlx::query_as(TAKE_COMMANDS)
                    .bind(instance_id.as_uuid())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err("command"))?;
                let mut commands = rows
                    .into_iter()
                    .map(|(id, kind, argument)| {
                        let kind = gw_store::InstanceCommandKind::from_parts(&kind, argument).ok_or_else(|| {
                            gw_store::StoreError::Corrupt { entity: "command", detail: format!("unknown kind {kind}") }
                        })?;
                        Ok(gw_store::InstanceCommand { id: id.into(), instance_id, kind })
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                // Ids are UUIDv7: id order is the order they were written in.
                commands.sort_by_key(|c| c.id);
                Ok(commands)
            }

            async fn complete_command(
                &self,
                id: gw_core::InstanceCommandId,
                outcome: &gw_store::CommandOutcome,
            ) -> StoreResult<()> {
                let (status, result) = match outcome {
                    gw_store::CommandOutcome::Pending => ("pending", None),
                    gw_store::CommandOutcome::Done(answer) => ("done", answer.as_deref()),
                    gw_store::CommandOutcome::Failed(reason) => ("failed", Some(reason.as_str())),
                };
                sqlx::query(COMPLETE_COMMAND)
                    .bind(id.as_uuid())
                    .bind(status)
                    .bind(result)
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("command"))?;
                Ok(())
            }

            async fn command_outcome(&self, id: gw_core::InstanceCommandId) -> StoreResult<gw_store::CommandOutcome> {
                let row: Option<(String, Option<String>)> = sqlx::query_as(COMMAND_OUTCOME)
                    .bind(id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err("command"))?;
                Ok(match row.ok_or(gw_store::StoreError::not_found("command"))? {
                    (status, result) if status == "done" => gw_store::CommandOutcome::Done(result),
                    (status, result) if status == "failed" => {
                        gw_store::CommandOutcome::Failed(result.unwrap_or_default())
                    }
                    _ => gw_store::CommandOutcome::Pending,
                })
            }

            async fn database_now(&self) -> StoreResult<gw_core::Timestamp> {
                let (now_ms,): (i64,) =
                    sqlx::query_as(DATABASE_NOW).fetch_one(&self.pool).await.map_err(db_err("clock"))?;
                from_millis(now_ms)
            }

            async fn prune_dead_nodes(&self, silent_since: gw_core::Timestamp, batch: u32) -> StoreResult<u64> {
                let done = sqlx::query(PRUNE_NODES)
                    .bind(to_millis(silent_since))
                    .bind(i64::from(batch))
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("node"))?;
                Ok(done.rows_affected())
            }

            async fn prune_commands(&self, written_before: gw_core::Timestamp, batch: u32) -> StoreResult<u64> {
                let done = sqlx::query(PRUNE_COMMANDS)
                    .bind(to_millis(written_before))
                    .bind(i64::from(batch))
                    .execute(&self.pool)
                    .await
                    .map_err(db_err("command"))?;
                Ok(done.rows_affected())
            }

            async fn wake_instance(&self, instance_id: InstanceId) -> StoreResult<()> {
                impl_cluster_store!(@notify $notify, self, instance_id)
            }

            async fn subscribe_wakes(&self) -> StoreResult<WakeReceiver> {
                let receiver = self.wakes.subscribe();
                impl_cluster_store!(@listen $notify, self);
                Ok(receiver)
            }
        }
    };
    (@notify pg, $self:ident, $id:ident) => {{
        sqlx::query(NOTIFY)
            .bind(WAKE_CHANNEL)
            .bind($id.to_string())
            .execute(&$self.pool)
            .await
            .map_err(db_err("wake-up"))?;
        Ok(())
    }};
    (@notify memory, $self:ident, $id:ident) => {{
        // No receiver is not an error: nothing runs that could care.
        let _ = $self.wakes.send($id);
        Ok(())
    }};
    (@listen pg, $self:ident) => {{
        let mut listening = $self.listening.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if listening.as_ref().is_none_or(|task| task.is_finished()) {
            *listening = Some(tokio::spawn(pg_listen($self.pool.clone(), $self.wakes.clone())));
        }
    }};
    (@listen memory, $self:ident) => {{}};
}
pub(crate) use impl_cluster_store;
