//! Commands for an instance whose session runs on another node. The node that received the request writes the
//! command (the row is the truth) and wakes the owner; the owner executes it and records the outcome, which the
//! receiving node waits for when the caller needs an answer (a pairing code), up to a deadline.

use std::sync::Arc;
use std::time::Duration;

use gw_core::{InstanceCommandId, InstanceId};
use gw_store::{CommandOutcome, InstanceCommand, InstanceCommandKind, StoreError};
use tokio::sync::oneshot;

use crate::state::{Inner, Tenure};
use crate::supervision::Command;
use crate::{Connection, DriverError, Presence};

/// How often the receiving node looks for the owner's answer.
const ANSWER_POLL: Duration = Duration::from_millis(20);

/// Writes the command for the instance's owner and wakes it.
pub(crate) async fn forward(
    inner: &Inner,
    instance_id: InstanceId,
    kind: InstanceCommandKind,
) -> Result<InstanceCommandId, StoreError> {
    let command = InstanceCommand { id: InstanceCommandId::new(), instance_id, kind };
    inner.store.enqueue_command(&command).await?;
    if let Err(error) = inner.store.wake_instance(instance_id).await {
        // The owner's slow poll finds the command anyway.
        tracing::warn!(instance = %instance_id, %error, "owner not woken; its poll will find the command");
    }
    Ok(command.id)
}

/// The owner's answer, or `None` if it did not come within the configured wait.
pub(crate) async fn answer(inner: &Inner, id: InstanceCommandId) -> Result<Option<CommandOutcome>, StoreError> {
    let deadline = tokio::time::Instant::now() + inner.config.cluster.command_wait;
    loop {
        match inner.store.command_outcome(id).await? {
            CommandOutcome::Pending if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(ANSWER_POLL).await;
            }
            CommandOutcome::Pending => return Ok(None),
            outcome => return Ok(Some(outcome)),
        }
    }
}

/// Executes the instance's pending commands here (this node runs its session) and records each outcome.
pub(crate) async fn execute_pending(inner: Arc<Inner>, instance_id: InstanceId) {
    let commands = match inner.store.take_commands(instance_id).await {
        Ok(commands) => commands,
        Err(error) => {
            tracing::warn!(instance = %instance_id, %error, "commands not readable; the next wake-up retries");
            return;
        }
    };
    for command in commands {
        let outcome = execute(&inner, instance_id, command.kind).await;
        if let Err(error) = inner.store.complete_command(command.id, &outcome).await {
            tracing::warn!(instance = %instance_id, %error, "command outcome not recorded");
        }
    }
}

/// The recorded reason of a command refused because the session does not run here (or is not connected).
pub(crate) const NOT_CONNECTED: &str = "not connected";

async fn execute(inner: &Arc<Inner>, instance_id: InstanceId, kind: InstanceCommandKind) -> CommandOutcome {
    let not_here = || CommandOutcome::Failed(NOT_CONNECTED.into());
    match kind {
        InstanceCommandKind::Connect { pair_phone } => {
            inner.command(instance_id, Command::Connect { pair_phone }, Some(Tenure::default()));
            CommandOutcome::Done(None)
        }
        InstanceCommandKind::Restart => {
            inner.command(instance_id, Command::Restart, Some(Tenure::default()));
            CommandOutcome::Done(None)
        }
        InstanceCommandKind::Logout => {
            let (reply, done) = oneshot::channel();
            if !inner.command(instance_id, Command::Logout { reply }, None) {
                return not_here();
            }
            match done.await {
                Ok(Ok(())) => CommandOutcome::Done(None),
                Ok(Err(e)) => CommandOutcome::Failed(e.to_string()),
                Err(_) => not_here(),
            }
        }
        InstanceCommandKind::PairCode { phone } => {
            let (reply, done) = oneshot::channel();
            if !inner.command(instance_id, Command::PairCode { phone, reply }, None) {
                return not_here();
            }
            match done.await {
                Ok(Ok(code)) => CommandOutcome::Done(Some(code)),
                Ok(Err(e)) => CommandOutcome::Failed(e.to_string()),
                Err(_) => not_here(),
            }
        }
        InstanceCommandKind::MarkRead { chat_jid, wa_message_ids } => {
            on_connection(inner, instance_id, |c| async move { c.mark_read(&chat_jid, &wa_message_ids).await }).await
        }
        InstanceCommandKind::Presence { chat_jid, presence } => {
            let Ok(presence) = serde_json::from_value::<Presence>(serde_json::Value::String(presence.clone())) else {
                return CommandOutcome::Failed(format!("unknown presence {presence}"));
            };
            on_connection(inner, instance_id, |c| async move { c.send_presence(&chat_jid, presence).await }).await
        }
        InstanceCommandKind::Block { jid, blocked } => {
            on_connection(inner, instance_id, |c| async move { c.set_blocked(&jid, blocked).await }).await
        }
        InstanceCommandKind::CheckNumbers { phones } => {
            let Some(connection) = inner.connection(instance_id) else { return not_here() };
            match connection.check_numbers(&phones).await {
                Ok(checks) => match serde_json::to_string(&checks) {
                    Ok(answer) => CommandOutcome::Done(Some(answer)),
                    Err(e) => CommandOutcome::Failed(e.to_string()),
                },
                Err(DriverError::NotConnected) => not_here(),
                Err(e) => CommandOutcome::Failed(e.to_string()),
            }
        }
    }
}

/// Runs `call` on the instance's live connection here and records its result.
async fn on_connection<F, Fut>(inner: &Inner, instance_id: InstanceId, call: F) -> CommandOutcome
where
    F: FnOnce(Arc<dyn Connection>) -> Fut,
    Fut: std::future::Future<Output = Result<(), DriverError>>,
{
    let Some(connection) = inner.connection(instance_id) else {
        return CommandOutcome::Failed(NOT_CONNECTED.into());
    };
    match call(connection).await {
        Ok(()) => CommandOutcome::Done(None),
        Err(DriverError::NotConnected) => CommandOutcome::Failed(NOT_CONNECTED.into()),
        Err(e) => CommandOutcome::Failed(e.to_string()),
    }
}
