//! One supervised task per instance: take the lease, connect, reconnect with backoff, restart after a panic, stop
//! when the lease is lost. Driver events are translated in `translate`, the outbox runs in `outbox`.
//!
//! Status transitions (documented in the README):
//! created -> connecting -> qr -> connected; connected -> disconnected -> connecting (backoff) -> connected;
//! any -> logged_out | replaced | banned | failed, which wait for a person (connect or restart through the API).

use std::sync::Arc;
use std::time::Duration;

use gw_core::{EventType, Instance, InstanceId, InstanceStatus, Timestamp};
use gw_store::ConnectionUpdate;
use rand::Rng;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::events::connection_json;
use crate::ownership;
use crate::state::{Inner, Shared, Tenure};
use crate::translate::{on_event, record_status, update_instance};
use crate::vault::StoreVault;
use crate::{AuthVault, ConnectRequest, Connection, DriverError, DriverEvents};

/// What the engine asks of an instance's task.
#[derive(Debug)]
pub(crate) enum Command {
    Connect { pair_phone: Option<String> },
    Restart,
    Logout { reply: oneshot::Sender<Result<(), DriverError>> },
    PairCode { phone: String, reply: oneshot::Sender<Result<String, DriverError>> },
    Stop,
}

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum Exit {
    /// Told to stop.
    Stopped,
    /// Told to restart: reconnect at once.
    Restart,
    /// Ended in a status that waits for a person; already recorded.
    Parked,
    /// A transient failure: reconnect with backoff.
    Transient(String),
    /// A working connection dropped (or WhatsApp restarted it after pairing): reconnect at once, unless that
    /// already happened within the last minute, which makes it an ordinary transient failure.
    Dropped(String),
}

/// How often a dropped connection may be reconnected without a backoff.
const QUICK_RECONNECT_EVERY: Duration = Duration::from_secs(60);

type Commands = mpsc::UnboundedReceiver<Command>;

/// Runs the instance's task, restarting it after a panic so one instance's bug never ends its supervision (and
/// never touches another instance: each runs in its own task).
pub(crate) async fn supervise(inner: Arc<Inner>, instance_id: InstanceId, shared: Arc<Shared>, commands: Commands) {
    // A task created by the API (not by the ownership loop) takes the lease first; without it, nothing runs here.
    let mut commands = commands;
    if shared.tenure.fence().is_none() && !ownership::take_lease(&inner, instance_id, &shared.tenure).await {
        forward_queued(&inner, instance_id, &mut commands).await;
        return;
    }
    let commands = Arc::new(Mutex::new(commands));
    let mut first = None;
    let mut crashes = 0u32;
    loop {
        let span = tracing::info_span!("session", instance = %instance_id);
        let session = run(inner.clone(), instance_id, shared.clone(), commands.clone(), first.take());
        let task = tokio::spawn(tracing::Instrument::instrument(session, span));
        match task.await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                crashes += 1;
                clear_connection(&shared);
                tracing::error!(instance = %instance_id, crashes, "instance task panicked; restarting it");
                record_disconnected(&inner, &shared, instance_id, "internal error; reconnecting").await;
                tokio::time::sleep(backoff(&inner.config, crashes)).await;
                first = Some(Command::Connect { pair_phone: None });
                // Commands that arrived meanwhile come first: a stop must end a task that would panic again.
                let mut pending = commands.lock().await;
                while let Ok(command) = pending.try_recv() {
                    match command {
                        Command::Stop => return,
                        Command::Logout { reply } => {
                            let _ = reply.send(logout_offline(&inner, &shared.tenure, instance_id).await);
                            first = None;
                        }
                        Command::PairCode { reply, .. } => {
                            let _ = reply.send(Err(DriverError::NotConnected));
                        }
                        Command::Connect { .. } | Command::Restart => {
                            first = Some(Command::Connect { pair_phone: None });
                        }
                    }
                }
            }
            Err(_) => return,
        }
    }
}

/// Records that the instance is disconnected (and why), under this task's lease; a vanished instance is left alone.
async fn record_disconnected(inner: &Inner, shared: &Shared, instance_id: InstanceId, reason: &str) {
    if let Ok(instance) = inner.store.get_instance(gw_store::Visibility::All, instance_id).await {
        record_status(inner, Some(shared.tenure.as_ref()), &instance, InstanceStatus::Disconnected, Some(reason)).await;
    }
}

/// Hands what was asked of a session that runs on another node to that node.
async fn forward_queued(inner: &Inner, instance_id: InstanceId, commands: &mut Commands) {
    use gw_store::InstanceCommandKind as Kind;
    while let Ok(command) = commands.try_recv() {
        let kind = match command {
            Command::Connect { pair_phone } => Kind::Connect { pair_phone },
            Command::Restart => Kind::Restart,
            Command::Logout { reply } => {
                let _ = reply.send(Err(DriverError::Transient("the instance runs on another node".into())));
                continue;
            }
            Command::PairCode { reply, .. } => {
                let _ = reply.send(Err(DriverError::NotConnected));
                continue;
            }
            Command::Stop => continue,
        };
        if let Err(error) = crate::forward::forward(inner, instance_id, kind).await {
            tracing::warn!(instance = %instance_id, %error, "command for the owning node not written");
        }
    }
}

fn clear_connection(shared: &Shared) {
    if let Ok(mut connection) = shared.connection.lock() {
        *connection = None;
    }
}

/// Capped exponential backoff with jitter (50–100 % of the step), so many instances failing together do not
/// reconnect in lockstep.
pub(crate) fn backoff(config: &crate::EngineConfig, attempt: u32) -> Duration {
    let step = config.backoff_initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(config.backoff_max);
    let jitter = rand::rng().random_range(0.5..=1.0);
    step.mul_f64(jitter)
}

async fn run(
    inner: Arc<Inner>,
    instance_id: InstanceId,
    shared: Arc<Shared>,
    commands: Arc<Mutex<Commands>>,
    mut next: Option<Command>,
) {
    let mut commands = commands.lock().await;
    let mut attempt = 0u32;
    let mut last_quick: Option<tokio::time::Instant> = None;
    loop {
        let command = match next.take() {
            Some(command) => command,
            None => tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => command,
                    None => return,
                },
                () = shared.tenure.lost() => return,
            },
        };
        let mut pair_phone = None;
        match command {
            Command::Stop => return,
            Command::Logout { reply } => {
                let _ = reply.send(logout_offline(&inner, &shared.tenure, instance_id).await);
                continue;
            }
            Command::PairCode { reply, .. } => {
                let _ = reply.send(Err(DriverError::NotConnected));
                continue;
            }
            Command::Restart => attempt = 0,
            Command::Connect { pair_phone: phone } => pair_phone = phone,
        }
        // Connect, and reconnect after transient failures, until stopped or parked.
        loop {
            if shared.tenure.is_lost() {
                return;
            }
            let instance = match inner.store.get_instance(gw_store::Visibility::All, instance_id).await {
                Ok(instance) if instance.is_active => instance,
                Ok(_) => return,
                Err(gw_store::StoreError::NotFound { .. }) => return,
                Err(e) => {
                    tracing::warn!(instance = %instance_id, error = %e, "instance not readable; retrying");
                    tokio::time::sleep(backoff(&inner.config, attempt.max(1))).await;
                    continue;
                }
            };
            attempt += 1;
            let mut exit =
                connect_once(&inner, instance, &shared, &mut commands, &mut attempt, pair_phone.clone()).await;
            clear_connection(&shared);
            if let Exit::Dropped(reason) = exit {
                if last_quick.is_some_and(|at| at.elapsed() < QUICK_RECONNECT_EVERY) {
                    exit = Exit::Transient(reason);
                } else {
                    last_quick = Some(tokio::time::Instant::now());
                    record_disconnected(&inner, &shared, instance_id, &reason).await;
                    tracing::info!(instance = %instance_id, %reason, "connection dropped; reconnecting at once");
                    attempt = 0;
                    continue;
                }
            }
            match exit {
                Exit::Stopped => return,
                Exit::Restart => attempt = 0,
                Exit::Parked => break,
                Exit::Dropped(reason) | Exit::Transient(reason) => {
                    record_disconnected(&inner, &shared, instance_id, &reason).await;
                    let delay = backoff(&inner.config, attempt);
                    tracing::info!(instance = %instance_id, attempt, ?delay, %reason, "reconnecting after backoff");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        () = shared.tenure.lost() => return,
                        command = commands.recv() => match command {
                            None | Some(Command::Stop) => return,
                            Some(Command::Restart) | Some(Command::Connect { .. }) => attempt = 0,
                            Some(Command::Logout { reply }) => {
                                let _ = reply.send(logout_offline(&inner, &shared.tenure, instance_id).await);
                                break;
                            }
                            Some(Command::PairCode { reply, .. }) => {
                                let _ = reply.send(Err(DriverError::NotConnected));
                            }
                        },
                    }
                }
            }
        }
    }
}

async fn logout_offline(inner: &Inner, tenure: &Tenure, instance_id: InstanceId) -> Result<(), DriverError> {
    let invalidated = inner.store.invalidate_session(instance_id, Timestamp::now(), tenure.fence()).await;
    tenure.check(&invalidated);
    invalidated.map_err(|e| DriverError::Transient(e.to_string()))?;
    if let Ok(instance) = inner.store.get_instance(gw_store::Visibility::All, instance_id).await {
        record_status(inner, Some(tenure), &instance, InstanceStatus::LoggedOut, Some("logged out by the API")).await;
    }
    Ok(())
}

async fn connect_once(
    inner: &Arc<Inner>,
    instance: Instance,
    shared: &Arc<Shared>,
    commands: &mut Commands,
    attempt: &mut u32,
    pair_phone: Option<String>,
) -> Exit {
    let Some(driver) = inner.drivers.get(&instance.driver).cloned() else {
        let reason = Some("no driver of this kind on this node");
        record_status(inner, Some(shared.tenure.as_ref()), &instance, InstanceStatus::Failed, reason).await;
        return Exit::Parked;
    };
    let update = ConnectionUpdate {
        status: Some(InstanceStatus::Connecting),
        connection_attempts: Some(i32::try_from(*attempt).unwrap_or(i32::MAX)),
        ..Default::default()
    };
    let instance = update_instance(inner, Some(shared.tenure.as_ref()), &instance, update).await;
    inner.publish_logged(&instance, EventType::ConnectionUpdate, connection_json(&instance)).await;
    let vault: Arc<StoreVault> =
        Arc::new(StoreVault::new(inner.store.clone(), inner.cipher.clone(), instance.id).fenced(shared.tenure.clone()));
    let request = ConnectRequest { instance_id: instance.id, pair_phone };
    match driver.connect(request, vault.clone()).await {
        Err(DriverError::LoggedOut(reason)) => {
            let _ = vault.invalidate().await;
            record_status(inner, Some(shared.tenure.as_ref()), &instance, InstanceStatus::LoggedOut, Some(&reason))
                .await;
            Exit::Parked
        }
        Err(e) if e.is_transient() => Exit::Transient(e.to_string()),
        Err(e) => {
            record_status(inner, Some(shared.tenure.as_ref()), &instance, InstanceStatus::Failed, Some(&e.to_string()))
                .await;
            Exit::Parked
        }
        Ok((connection, events)) => {
            let connection: Arc<dyn Connection> = Arc::from(connection);
            run_connection(inner, instance, connection, events, shared, commands, attempt, vault).await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_connection(
    inner: &Arc<Inner>,
    mut instance: Instance,
    connection: Arc<dyn Connection>,
    mut events: DriverEvents,
    shared: &Arc<Shared>,
    commands: &mut Commands,
    attempt: &mut u32,
    vault: Arc<StoreVault>,
) -> Exit {
    let mut outbox: Option<JoinHandle<()>> = None;
    let exit = loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break Exit::Transient("the connection closed".into()) };
                let step = on_event(inner, &mut instance, event, &connection, shared, &mut outbox, attempt, &vault).await;
                if let Some(exit) = step {
                    break exit;
                }
            }
            () = shared.tenure.lost() => {
                connection.disconnect().await;
                break Exit::Stopped;
            }
            command = commands.recv() => match command {
                None | Some(Command::Stop) => {
                    connection.disconnect().await;
                    break Exit::Stopped;
                }
                Some(Command::Restart) => {
                    connection.disconnect().await;
                    break Exit::Restart;
                }
                Some(Command::Connect { .. }) => {}
                Some(Command::PairCode { phone, reply }) => {
                    let _ = reply.send(connection.request_pair_code(&phone).await);
                }
                Some(Command::Logout { reply }) => {
                    let result = connection.logout().await;
                    // Whatever WhatsApp answered, this session is never used again.
                    let _ = vault.invalidate().await;
                    let reason = Some("logged out by the API");
                    record_status(inner, Some(shared.tenure.as_ref()), &instance, InstanceStatus::LoggedOut, reason).await;
                    let _ = reply.send(result);
                    break Exit::Parked;
                }
            },
        }
    };
    if let Some(outbox) = outbox.take() {
        outbox.abort();
    }
    exit
}
