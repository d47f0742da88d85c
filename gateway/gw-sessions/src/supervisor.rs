//! One supervised task per instance: connect, reconnect with backoff, translate driver events, run the outbox.
//!
//! Status transitions (documented in the README):
//! created -> connecting -> qr -> connected; connected -> disconnected -> connecting (backoff) -> connected;
//! any -> logged_out | replaced | banned | failed, which wait for a person (connect or restart through the API).

use std::sync::Arc;
use std::time::Duration;

use gw_core::{
    Direction, EventId, EventType, Instance, InstanceId, InstanceStatus, MessageEvent, MessageKind, MessageStatus,
    Origin, Timestamp,
};
use gw_store::{ConnectionUpdate, ContactUpsert, NewInboundMessage, QueuedMessage};
use rand::Rng;
use serde_json::json;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::engine::{Inner, Shared, send_replies};
use crate::events::{connection_json, contact_json, message_json};
use crate::meter::Metered;
use crate::send::phone_of;
use crate::vault::StoreVault;
use crate::{
    AuthVault, ConnectRequest, Connection, DriverError, DriverEvent, DriverEvents, InboundMessage, OutgoingContent,
    OutgoingMessage, Presence, ReceiptKind,
};

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
enum Exit {
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
                if let Ok(instance) = inner.store.get_instance(gw_store::Scope::All, instance_id).await {
                    record_status(
                        &inner,
                        &instance,
                        InstanceStatus::Disconnected,
                        Some("internal error; reconnecting"),
                    )
                    .await;
                }
                tokio::time::sleep(backoff(&inner.config, crashes)).await;
                first = Some(Command::Connect { pair_phone: None });
                // Commands that arrived meanwhile come first: a stop must end a task that would panic again.
                let mut pending = commands.lock().await;
                while let Ok(command) = pending.try_recv() {
                    match command {
                        Command::Stop => return,
                        Command::Logout { reply } => {
                            let _ = reply.send(logout_offline(&inner, instance_id).await);
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
            None => match commands.recv().await {
                Some(command) => command,
                None => return,
            },
        };
        let mut pair_phone = None;
        match command {
            Command::Stop => return,
            Command::Logout { reply } => {
                let _ = reply.send(logout_offline(&inner, instance_id).await);
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
            let instance = match inner.store.get_instance(gw_store::Scope::All, instance_id).await {
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
                    if let Ok(instance) = inner.store.get_instance(gw_store::Scope::All, instance_id).await {
                        record_status(&inner, &instance, InstanceStatus::Disconnected, Some(&reason)).await;
                    }
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
                    if let Ok(instance) = inner.store.get_instance(gw_store::Scope::All, instance_id).await {
                        record_status(&inner, &instance, InstanceStatus::Disconnected, Some(&reason)).await;
                    }
                    let delay = backoff(&inner.config, attempt);
                    tracing::info!(instance = %instance_id, attempt, ?delay, %reason, "reconnecting after backoff");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        command = commands.recv() => match command {
                            None | Some(Command::Stop) => return,
                            Some(Command::Restart) | Some(Command::Connect { .. }) => attempt = 0,
                            Some(Command::Logout { reply }) => {
                                let _ = reply.send(logout_offline(&inner, instance_id).await);
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

async fn logout_offline(inner: &Inner, instance_id: InstanceId) -> Result<(), DriverError> {
    inner
        .store
        .invalidate_session(instance_id, Timestamp::now())
        .await
        .map_err(|e| DriverError::Transient(e.to_string()))?;
    if let Ok(instance) = inner.store.get_instance(gw_store::Scope::All, instance_id).await {
        record_status(inner, &instance, InstanceStatus::LoggedOut, Some("logged out by the API")).await;
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
        record_status(inner, &instance, InstanceStatus::Failed, Some("no driver of this kind on this node")).await;
        return Exit::Parked;
    };
    let update = ConnectionUpdate {
        status: Some(InstanceStatus::Connecting),
        connection_attempts: Some(i32::try_from(*attempt).unwrap_or(i32::MAX)),
        ..Default::default()
    };
    let instance = update_instance(inner, &instance, update).await;
    inner.publish_logged(&instance, EventType::ConnectionUpdate, connection_json(&instance)).await;
    let vault: Arc<StoreVault> = Arc::new(StoreVault::new(inner.store.clone(), inner.cipher.clone(), instance.id));
    let request = ConnectRequest { instance_id: instance.id, pair_phone };
    match driver.connect(request, vault.clone()).await {
        Err(DriverError::LoggedOut(reason)) => {
            let _ = vault.invalidate().await;
            record_status(inner, &instance, InstanceStatus::LoggedOut, Some(&reason)).await;
            Exit::Parked
        }
        Err(e) if e.is_transient() => Exit::Transient(e.to_string()),
        Err(e) => {
            record_status(inner, &instance, InstanceStatus::Failed, Some(&e.to_string())).await;
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
                    record_status(inner, &instance, InstanceStatus::LoggedOut, Some("logged out by the API")).await;
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

#[allow(clippy::too_many_arguments)]
async fn on_event(
    inner: &Arc<Inner>,
    instance: &mut Instance,
    event: DriverEvent,
    connection: &Arc<dyn Connection>,
    shared: &Arc<Shared>,
    outbox: &mut Option<JoinHandle<()>>,
    attempt: &mut u32,
    vault: &Arc<StoreVault>,
) -> Option<Exit> {
    match event {
        DriverEvent::Qr { code, expires_at } => {
            let update = ConnectionUpdate {
                status: Some(InstanceStatus::Qr),
                qr_code: Some(code.clone()),
                qr_code_expiry: Some(expires_at),
                ..Default::default()
            };
            *instance = update_instance(inner, instance, update).await;
            inner.publish_logged(instance, EventType::QrUpdated, json!({ "qr": code, "expires_at": expires_at })).await;
            inner.publish_logged(instance, EventType::ConnectionUpdate, connection_json(instance)).await;
        }
        DriverEvent::PairSuccess { jid, display_name, .. } => {
            tracing::info!(instance = %instance.id, "paired");
            // WhatsApp restarts the connection right after pairing; that reconnect must not wait for a backoff.
            *attempt = 0;
            let update = ConnectionUpdate { phone: phone_of(&jid), display_name, ..Default::default() };
            *instance = update_instance(inner, instance, update).await;
        }
        DriverEvent::PairError { reason } => {
            record_status(inner, instance, InstanceStatus::Failed, Some(&format!("pairing failed: {reason}"))).await;
            return Some(Exit::Parked);
        }
        DriverEvent::Connected { jid, display_name, .. } => {
            *attempt = 0;
            let update = ConnectionUpdate {
                status: Some(InstanceStatus::Connected),
                phone: phone_of(&jid),
                display_name,
                last_connected_at: Some(Timestamp::now()),
                connection_attempts: Some(0),
                clear_qr_code: true,
                clear_last_error: true,
                ..Default::default()
            };
            *instance = update_instance(inner, instance, update).await;
            if let Ok(mut slot) = shared.connection.lock() {
                *slot = Some(connection.clone());
            }
            inner.publish_logged(instance, EventType::ConnectionUpdate, connection_json(instance)).await;
            if let Some(old) = outbox.take() {
                old.abort();
            }
            *outbox =
                Some(tokio::spawn(outbox_worker(inner.clone(), instance.clone(), connection.clone(), shared.clone())));
        }
        // The first drop after pairing or after being connected reconnects at once; repeated failures back off.
        DriverEvent::Disconnected { reason } if *attempt == 0 => return Some(Exit::Dropped(reason)),
        DriverEvent::Disconnected { reason } => return Some(Exit::Transient(reason)),
        DriverEvent::LoggedOut { reason } => {
            let _ = vault.invalidate().await;
            record_status(inner, instance, InstanceStatus::LoggedOut, Some(&reason)).await;
            return Some(Exit::Parked);
        }
        DriverEvent::StreamReplaced => {
            let reason = "this session was opened elsewhere (stream replaced); restart the instance to take it back";
            record_status(inner, instance, InstanceStatus::Replaced, Some(reason)).await;
            return Some(Exit::Parked);
        }
        DriverEvent::TemporaryBan { reason, until } => {
            let reason = match until {
                Some(until) => format!("temporarily banned until {until}: {reason}"),
                None => format!("banned: {reason}"),
            };
            record_status(inner, instance, InstanceStatus::Banned, Some(&reason)).await;
            return Some(Exit::Parked);
        }
        DriverEvent::Message(message) => handle_inbound(inner, instance, message).await,
        DriverEvent::Receipt { wa_message_ids, kind, at, .. } => {
            let status = match kind {
                ReceiptKind::Delivered => MessageStatus::Delivered,
                ReceiptKind::Read | ReceiptKind::Played => MessageStatus::Read,
            };
            let mut early = shared.early_receipts.lock().await;
            match inner.store.apply_receipt(instance.id, &wa_message_ids, status, at).await {
                Ok(changed) => {
                    for id in &wa_message_ids {
                        if !changed.iter().any(|m| m.wa_message_id.as_ref() == Some(id)) {
                            if early.len() >= crate::engine::MAX_EARLY_RECEIPTS {
                                early.clear();
                            }
                            let entry = early.entry(id.clone()).or_insert((status, at));
                            if status.rank() > entry.0.rank() {
                                *entry = (status, at);
                            }
                        }
                    }
                    drop(early);
                    for message in changed {
                        inner.publish_logged(instance, EventType::MessageStatus, message_json(&message)).await;
                    }
                }
                Err(e) => tracing::warn!(instance = %instance.id, error = %e, "receipt not recorded"),
            }
        }
        DriverEvent::Presence { jid, presence, last_seen } => {
            let data = json!({ "jid": jid, "phone": phone_of(&jid), "presence": presence, "last_seen": last_seen });
            inner.publish_logged(instance, EventType::PresenceUpdated, data).await;
        }
        DriverEvent::Contact { jid, lid, pn_jid, name, notify } => {
            let (jid, lid) = match (pn_jid, lid) {
                (Some(pn), lid) => (pn, lid.or_else(|| jid.ends_with("@lid").then(|| jid.clone()))),
                (None, lid) => (jid, lid),
            };
            let upsert = ContactUpsert {
                instance_id: instance.id,
                is_group: Some(jid.ends_with("@g.us")),
                jid,
                lid,
                name,
                notify,
                ..Default::default()
            };
            match inner.store.upsert_contact(upsert).await {
                Ok(contact) => inner.publish_logged(instance, EventType::ContactUpdated, contact_json(&contact)).await,
                Err(e) => tracing::warn!(instance = %instance.id, error = %e, "contact not recorded"),
            }
        }
    }
    None
}

/// Stores an inbound message, runs it through the pipeline, publishes it, and only then acknowledges it to
/// WhatsApp: a crash anywhere before the ack makes WhatsApp deliver it again, and the stored row recognises the
/// redelivery (its `message.received` event keeps the same id, so receivers can de-duplicate).
async fn handle_inbound(inner: &Arc<Inner>, instance: &Instance, message: InboundMessage) {
    let InboundMessage {
        wa_message_id,
        chat_jid,
        sender_jid,
        sender_pn_jid,
        push_name,
        kind,
        text,
        media,
        quoted_message_id,
        timestamp,
        from_me,
        ack,
    } = message;
    let sender = sender_pn_jid.clone().unwrap_or_else(|| sender_jid.clone());
    let new = NewInboundMessage {
        id: gw_core::MessageId::new(),
        instance_id: instance.id,
        chat_jid: chat_jid.clone(),
        sender_jid: sender.clone(),
        wa_message_id,
        kind,
        content: json!({
            "media": media,
            "sender_lid": sender_jid.ends_with("@lid").then_some(&sender_jid),
            "push_name": push_name,
            "from_me": from_me,
        }),
        text: text.clone(),
        quoted_message_id,
        at: timestamp,
    };
    let recorded = match inner.store.record_inbound(new).await {
        Ok(recorded) => recorded,
        Err(e) => {
            // Not acknowledged: WhatsApp will deliver it again.
            tracing::warn!(instance = %instance.id, error = %e, "inbound message not stored; not acknowledging");
            return;
        }
    };
    if recorded.processed {
        ack.ack();
        return;
    }
    if !from_me {
        let lid = sender_jid.ends_with("@lid").then(|| sender_jid.clone());
        let upsert = ContactUpsert {
            instance_id: instance.id,
            jid: sender.clone(),
            lid,
            notify: push_name,
            last_message_at: Some(timestamp),
            ..Default::default()
        };
        if let Err(e) = inner.store.upsert_contact(upsert).await {
            tracing::warn!(instance = %instance.id, error = %e, "contact not recorded");
        }
    }
    let event = MessageEvent {
        direction: Direction::Inbound,
        subscription_id: instance.subscription_id,
        instance_id: instance.id,
        message_id: recorded.message.id,
        chat_jid,
        sender,
        kind,
        text,
        media: media_of(&recorded.message),
        timestamp,
        origin: Origin::WhatsApp,
    };
    let outcome = inner.pipeline.process(event).await;
    let mut message = recorded.message;
    let event_id = Some(EventId::from_uuid(message.id.as_uuid()));
    let (status, reason, event_type) = match &outcome.disposition {
        gw_core::Disposition::Deliver(event) => {
            message.text = event.text.clone();
            (MessageStatus::Received, None, EventType::MessageReceived)
        }
        gw_core::Disposition::Drop { reason, by } => {
            let reason = by.as_ref().map_or_else(|| reason.clone(), |by| format!("{by}: {reason}"));
            (MessageStatus::Dropped, Some(reason), EventType::MessageDropped)
        }
    };
    message.status = status;
    message.failure_reason = reason.clone();
    if let Err(e) = inner.publish(instance, event_type, event_id, message_json(&message)).await {
        tracing::warn!(instance = %instance.id, error = %e, "inbound event not durable; not acknowledging");
        return;
    }
    if let Err(e) = inner.store.finish_inbound(message.id, status, message.text.clone(), reason, Timestamp::now()).await
    {
        tracing::warn!(instance = %instance.id, error = %e, "inbound message not finished; not acknowledging");
        return;
    }
    ack.ack();
    if status == MessageStatus::Received && !from_me {
        inner.meter.record(instance.subscription_id, instance.id, Metered::MessageReceived);
    }
    send_replies(inner, instance, outcome.replies, Origin::WhatsApp).await;
}

fn media_of(message: &gw_core::Message) -> Option<gw_core::MediaInfo> {
    serde_json::from_value(message.content.get("media")?.clone()).ok()
}

/// Per-instance send pacing from the instance's `settings` (`send_interval_ms`, `typing_delay_ms`): a minimum gap
/// between messages and an optional "typing…" before each, which keeps accounts clear of spam heuristics.
#[derive(Debug, Clone, Copy, Default)]
struct Pacing {
    interval: Duration,
    typing: Duration,
}

impl Pacing {
    fn from_settings(settings: &serde_json::Value) -> Self {
        let ms = |key: &str| Duration::from_millis(settings.get(key).and_then(|v| v.as_u64()).unwrap_or(0).min(60_000));
        Self { interval: ms("send_interval_ms"), typing: ms("typing_delay_ms") }
    }
}

/// Sends the instance's queued messages in order, one at a time, at the instance's pace.
async fn outbox_worker(inner: Arc<Inner>, instance: Instance, connection: Arc<dyn Connection>, shared: Arc<Shared>) {
    let pacing = Pacing::from_settings(&instance.settings);
    let mut last_sent: Option<tokio::time::Instant> = None;
    let mut failures = 0u32;
    loop {
        let batch = match inner.store.queued_messages(instance.id, inner.config.outbox_batch).await {
            Ok(batch) => batch,
            Err(e) => {
                failures += 1;
                tracing::warn!(instance = %instance.id, error = %e, "outbox not readable; retrying");
                tokio::time::sleep(crate::supervisor::backoff(&inner.config, failures)).await;
                continue;
            }
        };
        if batch.is_empty() {
            shared.outbox_wake.notified().await;
            continue;
        }
        for queued in batch {
            if let Some(last) = last_sent {
                tokio::time::sleep_until(last + pacing.interval).await;
            }
            if !pacing.typing.is_zero() {
                let _ = connection.send_presence(&queued.message.chat_jid, Presence::Composing).await;
                tokio::time::sleep(pacing.typing).await;
                let _ = connection.send_presence(&queued.message.chat_jid, Presence::Paused).await;
            }
            let id = queued.message.id;
            let outgoing = match to_outgoing(&queued) {
                Ok(outgoing) => outgoing,
                Err(reason) => {
                    fail(&inner, &instance, id, &reason).await;
                    continue;
                }
            };
            let wa_message_id = outgoing.wa_message_id.clone();
            match connection.send(outgoing).await {
                Ok(sent) => {
                    failures = 0;
                    last_sent = Some(tokio::time::Instant::now());
                    if sent.wa_message_id != wa_message_id {
                        tracing::warn!(instance = %instance.id, "the driver sent under another id than the one given");
                    }
                    let mut early = shared.early_receipts.lock().await;
                    match inner.store.mark_message_sent(id, sent.timestamp).await {
                        Ok(message) => {
                            let receipt = early.remove(&wa_message_id);
                            drop(early);
                            inner.meter.record(instance.subscription_id, instance.id, Metered::MessageSent);
                            inner.publish_logged(&instance, EventType::MessageSent, message_json(&message)).await;
                            if let Some((status, at)) = receipt {
                                let ids = [wa_message_id];
                                if let Ok(changed) = inner.store.apply_receipt(instance.id, &ids, status, at).await {
                                    for message in changed {
                                        let data = message_json(&message);
                                        inner.publish_logged(&instance, EventType::MessageStatus, data).await;
                                    }
                                }
                            }
                        }
                        Err(e) => tracing::error!(instance = %instance.id, error = %e, "sent message not recorded"),
                    }
                }
                Err(e) if e.is_transient() || e == DriverError::NotConnected => {
                    // Stays queued; the order is kept because nothing behind it is sent first.
                    failures += 1;
                    tracing::warn!(instance = %instance.id, error = %e, "send failed transiently; retrying");
                    tokio::time::sleep(crate::supervisor::backoff(&inner.config, failures)).await;
                    break;
                }
                Err(e) => fail(&inner, &instance, id, &e.to_string()).await,
            }
        }
    }
}

async fn fail(inner: &Inner, instance: &Instance, id: gw_core::MessageId, reason: &str) {
    match inner.store.mark_message_failed(id, reason, Timestamp::now()).await {
        Ok(message) => {
            inner.meter.record(instance.subscription_id, instance.id, Metered::MessageFailed);
            inner.publish_logged(instance, EventType::MessageStatus, message_json(&message)).await;
        }
        Err(e) => tracing::error!(instance = %instance.id, error = %e, "failed message not recorded"),
    }
}

/// Rebuilds the driver's message from the stored row.
fn to_outgoing(queued: &QueuedMessage) -> Result<OutgoingMessage, String> {
    let message = &queued.message;
    let content = &message.content;
    let field =
        |path: &[&str]| -> Option<&serde_json::Value> { path.iter().try_fold(content, |value, key| value.get(*key)) };
    let text_of = |path: &[&str]| field(path).and_then(|v| v.as_str()).map(str::to_owned);
    let malformed = || format!("stored {} message is malformed", message.kind);
    let body = match message.kind {
        MessageKind::Text => OutgoingContent::Text { body: message.text.clone().ok_or_else(malformed)? },
        MessageKind::Image | MessageKind::Video | MessageKind::Audio | MessageKind::Document | MessageKind::Sticker => {
            let info: gw_core::MediaInfo =
                serde_json::from_value(field(&["media"]).cloned().ok_or_else(malformed)?).map_err(|_| malformed())?;
            let bytes = queued.media.clone().ok_or_else(malformed)?;
            OutgoingContent::Media { kind: message.kind, info, bytes: bytes.into(), caption: message.text.clone() }
        }
        MessageKind::Location => OutgoingContent::Location {
            latitude: field(&["location", "latitude"]).and_then(|v| v.as_f64()).ok_or_else(malformed)?,
            longitude: field(&["location", "longitude"]).and_then(|v| v.as_f64()).ok_or_else(malformed)?,
            name: text_of(&["location", "name"]),
            address: text_of(&["location", "address"]),
        },
        MessageKind::ContactCard => OutgoingContent::ContactCard {
            display_name: text_of(&["contact", "display_name"]).ok_or_else(malformed)?,
            vcard: text_of(&["contact", "vcard"]).ok_or_else(malformed)?,
        },
        MessageKind::Reaction => OutgoingContent::Reaction {
            target_message_id: text_of(&["reaction", "message_id"]).ok_or_else(malformed)?,
            emoji: text_of(&["reaction", "emoji"]).unwrap_or_default(),
        },
        MessageKind::Other => return Err(malformed()),
    };
    // Every accepted outbound message has its id from the moment it was stored (migration 0008 gave one to those
    // queued before); sending without it would let a retry arrive twice.
    let wa_message_id =
        message.wa_message_id.clone().ok_or_else(|| format!("stored {} message has no WhatsApp id", message.kind))?;
    Ok(OutgoingMessage {
        wa_message_id,
        chat_jid: message.chat_jid.clone(),
        content: body,
        quoted_message_id: message.quoted_message_id.clone(),
    })
}

async fn update_instance(inner: &Inner, instance: &Instance, update: ConnectionUpdate) -> Instance {
    match inner.store.update_connection(instance.id, update).await {
        Ok(updated) => updated,
        Err(e) => {
            tracing::warn!(instance = %instance.id, error = %e, "instance status not recorded");
            instance.clone()
        }
    }
}

/// Records a status with its reason (`lastError`) and tells subscribers.
pub(crate) async fn record_status(inner: &Inner, instance: &Instance, status: InstanceStatus, reason: Option<&str>) {
    let now = Timestamp::now();
    let update = ConnectionUpdate {
        status: Some(status),
        last_error: reason.map(str::to_owned),
        last_disconnected_at: (instance.status == InstanceStatus::Connected).then_some(now),
        clear_qr_code: true,
        at: Some(now),
        ..Default::default()
    };
    let updated = update_instance(inner, instance, update).await;
    inner.publish_logged(&updated, EventType::ConnectionUpdate, connection_json(&updated)).await;
}
