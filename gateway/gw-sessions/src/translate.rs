//! Turns a driver's events into status changes, stored messages, receipts and published events.

use std::sync::Arc;

use gw_core::{EventType, Instance, InstanceStatus, MessageStatus, Timestamp};
use gw_store::{ConnectionUpdate, ContactUpsert};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::events::{connection_json, contact_json, message_json};
use crate::inbound::handle_inbound;
use crate::outbox::outbox_worker;
use crate::send::phone_of;
use crate::state::{Inner, Shared, Tenure};
use crate::supervision::Exit;
use crate::vault::StoreVault;
use crate::{AuthVault, Connection, DriverEvent, ReceiptKind};

#[allow(clippy::too_many_arguments)]
pub(crate) async fn on_event(
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
            *instance = update_instance(inner, Some(shared.tenure.as_ref()), instance, update).await;
            inner.publish_logged(instance, EventType::QrUpdated, json!({ "qr": code, "expires_at": expires_at })).await;
            inner.publish_logged(instance, EventType::ConnectionUpdate, connection_json(instance)).await;
        }
        DriverEvent::PairSuccess { jid, display_name, .. } => {
            tracing::info!(instance = %instance.id, "paired");
            // WhatsApp restarts the connection right after pairing; that reconnect must not wait for a backoff.
            *attempt = 0;
            let update = ConnectionUpdate { phone: phone_of(&jid), display_name, ..Default::default() };
            *instance = update_instance(inner, Some(shared.tenure.as_ref()), instance, update).await;
        }
        DriverEvent::PairError { reason } => {
            record_status(
                inner,
                Some(shared.tenure.as_ref()),
                instance,
                InstanceStatus::Failed,
                Some(&format!("pairing failed: {reason}")),
            )
            .await;
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
            *instance = update_instance(inner, Some(shared.tenure.as_ref()), instance, update).await;
            if let Ok(mut slot) = shared.connection.lock() {
                *slot = Some(connection.clone());
            }
            inner.publish_logged(instance, EventType::ConnectionUpdate, connection_json(instance)).await;
            if let Some(old) = outbox.take() {
                old.abort();
            }
            let worker = outbox_worker(inner.clone(), instance.clone(), connection.clone(), shared.clone());
            *outbox = Some(tokio::spawn(worker));
        }
        // The first drop after pairing or after being connected reconnects at once; repeated failures back off.
        DriverEvent::Disconnected { reason } if *attempt == 0 => return Some(Exit::Dropped(reason)),
        DriverEvent::Disconnected { reason } => return Some(Exit::Transient(reason)),
        DriverEvent::LoggedOut { reason } => {
            let _ = vault.invalidate().await;
            record_status(inner, Some(shared.tenure.as_ref()), instance, InstanceStatus::LoggedOut, Some(&reason))
                .await;
            return Some(Exit::Parked);
        }
        DriverEvent::StreamReplaced => {
            let reason = "this session was opened elsewhere (stream replaced); restart the instance to take it back";
            record_status(inner, Some(shared.tenure.as_ref()), instance, InstanceStatus::Replaced, Some(reason)).await;
            return Some(Exit::Parked);
        }
        DriverEvent::TemporaryBan { reason, until } => {
            let reason = match until {
                Some(until) => format!("temporarily banned until {until}: {reason}"),
                None => format!("banned: {reason}"),
            };
            record_status(inner, Some(shared.tenure.as_ref()), instance, InstanceStatus::Banned, Some(&reason)).await;
            return Some(Exit::Parked);
        }
        DriverEvent::Message(message) => handle_inbound(inner, &shared.tenure, instance, message).await,
        DriverEvent::Receipt { wa_message_ids, kind, at, .. } => {
            let status = match kind {
                ReceiptKind::Delivered => MessageStatus::Delivered,
                ReceiptKind::Read | ReceiptKind::Played => MessageStatus::Read,
            };
            let mut early = shared.early_receipts.lock().await;
            let applied =
                inner.store.apply_receipt(instance.id, &wa_message_ids, status, at, shared.tenure.fence()).await;
            shared.tenure.check(&applied);
            match applied {
                Ok(changed) => {
                    for id in &wa_message_ids {
                        if !changed.iter().any(|m| m.wa_message_id.as_ref() == Some(id)) {
                            if early.len() >= crate::state::MAX_EARLY_RECEIPTS {
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
                fence: shared.tenure.fence(),
                ..Default::default()
            };
            let upserted = inner.store.upsert_contact(upsert).await;
            shared.tenure.check(&upserted);
            match upserted {
                Ok(contact) => inner.publish_logged(instance, EventType::ContactUpdated, contact_json(&contact)).await,
                Err(e) => tracing::warn!(instance = %instance.id, error = %e, "contact not recorded"),
            }
        }
    }
    None
}

/// Writes a connection change under the session's fence (none for an operator's action with no session here).
pub(crate) async fn update_instance(
    inner: &Inner,
    tenure: Option<&Tenure>,
    instance: &Instance,
    update: ConnectionUpdate,
) -> Instance {
    let update = ConnectionUpdate { fence: tenure.and_then(Tenure::fence), ..update };
    let result = inner.store.update_connection(instance.id, update).await;
    if let Some(tenure) = tenure {
        tenure.check(&result);
    }
    match result {
        Ok(updated) => updated,
        Err(e) => {
            tracing::warn!(instance = %instance.id, error = %e, "instance status not recorded");
            instance.clone()
        }
    }
}

/// Records a status with its reason (`lastError`) and tells subscribers.
pub(crate) async fn record_status(
    inner: &Inner,
    tenure: Option<&Tenure>,
    instance: &Instance,
    status: InstanceStatus,
    reason: Option<&str>,
) {
    let now = Timestamp::now();
    let update = ConnectionUpdate {
        status: Some(status),
        last_error: reason.map(str::to_owned),
        last_disconnected_at: (instance.status == InstanceStatus::Connected).then_some(now),
        clear_qr_code: true,
        at: Some(now),
        ..Default::default()
    };
    let updated = update_instance(inner, tenure, instance, update).await;
    if tenure.is_some_and(Tenure::is_lost) {
        // Refused: the instance is another node's now, and its state is that node's to tell.
        return;
    }
    inner.publish_logged(&updated, EventType::ConnectionUpdate, connection_json(&updated)).await;
}
