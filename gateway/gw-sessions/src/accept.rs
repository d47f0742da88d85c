//! The outbound path shared by API sends and plugin replies: validate, fetch media, run the pipeline, store and
//! charge in one transaction, wake the owner.

use std::sync::Arc;

use gw_core::{
    ContactCard, Direction, EventType, Instance, InstanceStatus, Location, MessageContent, MessageEvent, MessageId,
    Origin, OutboundContent, Reaction, Reply, Timestamp,
};
use gw_store::{Enqueued, NewOutboundMessage};

use crate::engine::{Accepted, EngineError};
use crate::media::FetchError;
use crate::meter::QuotaError;
use crate::send::{InvalidField, MediaRefused, SendContent, SendRequest, check_media, normalize_recipient};
use crate::state::Inner;

/// Statuses in which a send is accepted into the outbox. A paired instance that is briefly reconnecting still
/// accepts: its messages wait in the outbox (the point of having one).
fn accepts_sends(instance: &Instance) -> bool {
    match instance.status {
        InstanceStatus::Connected => true,
        InstanceStatus::Connecting | InstanceStatus::Disconnected => instance.phone.is_some(),
        _ => false,
    }
}

/// The outbound path shared by API sends and plugin replies.
pub(crate) async fn send_message(
    inner: &Arc<Inner>,
    instance: &Instance,
    request: SendRequest,
    origin: Origin,
) -> Result<Accepted, EngineError> {
    if !accepts_sends(instance) {
        return Err(EngineError::NotConnected { status: instance.status });
    }
    request.validate()?;
    let chat_jid = normalize_recipient("to", &request.to)?;
    if let SendContent::Media { kind, mime_type, data, .. } = &request.content {
        check_media(*kind, mime_type, data.len() as u64)?;
    }
    // A retry of an accepted request returns the first result and reserves nothing again (nor fetches again).
    if let Some(idem) = &request.idempotency
        && let Some((message, hash)) = inner.store.find_idempotent_message(instance.id, &idem.key).await?
    {
        return if hash.as_deref() == Some(idem.request_hash.as_slice()) {
            Ok(Accepted { message, replayed: true })
        } else {
            Err(EngineError::IdempotencyKeyReused)
        };
    }
    let request = fetch_media(inner, request).await?;
    let media_info = media_info(&request.content)?;
    let id = MessageId::new();
    let event = MessageEvent {
        direction: Direction::Outbound,
        subscription_id: instance.subscription_id,
        instance_id: instance.id,
        message_id: id,
        chat_jid: chat_jid.clone(),
        sender: instance.phone.clone().unwrap_or_default(),
        kind: request.kind(),
        text: request.text(),
        media: media_info.clone(),
        timestamp: Timestamp::now(),
        origin,
    };
    let outcome = inner.pipeline.process(event).await;
    let (text, dropped_reason) = match outcome.disposition {
        gw_core::Disposition::Deliver(event) => (event.text, None),
        gw_core::Disposition::Drop { reason, by } => {
            (request.text(), Some(by.map_or_else(|| reason.clone(), |by| format!("{by}: {reason}"))))
        }
    };
    let (content, media) = stored_content(&request.content, text.as_deref())?;
    let at = Timestamp::now();
    let new = NewOutboundMessage {
        id,
        instance_id: instance.id,
        // The quota is charged by the insert's own transaction (dropped messages and plugin replies included, as
        // every stored outbound row is): a send that fails or is abandoned before it is stored costs nothing, and
        // a replayed Idempotency-Key costs nothing again.
        charge_to: instance.subscription_id,
        wa_message_id: crate::driver::new_wa_message_id(),
        chat_jid,
        kind: request.kind(),
        content,
        text,
        quoted_message_id: request.quoted_message_id.clone(),
        media,
        idempotency_key: request.idempotency.as_ref().map(|i| i.key.clone()),
        request_hash: request.idempotency.as_ref().map(|i| i.request_hash.clone()),
        origin,
        dropped_reason: dropped_reason.clone(),
        at,
    };
    let enqueued = inner.store.enqueue_message(new).await.map_err(|err| match QuotaError::from_store(err, at) {
        Ok(refused) => EngineError::Quota(refused),
        Err(other) => EngineError::Store(other),
    })?;
    let accepted = match enqueued {
        Enqueued::Created(message) => Accepted { message, replayed: false },
        Enqueued::Replayed(message) => Accepted { message, replayed: true },
        Enqueued::KeyReused => return Err(EngineError::IdempotencyKeyReused),
    };
    if dropped_reason.is_some() {
        inner.publish_logged(instance, EventType::MessageDropped, crate::events::message_json(&accepted.message)).await;
    } else {
        inner.wake_outbox(instance.id).await;
    }
    send_replies(inner, instance, outcome.replies, origin).await;
    Ok(accepted)
}

/// Turns media named by URL into media with its bytes, within the kind's size limit. Anything the fetcher refuses
/// is the caller's bad input (422 naming `media.url`), an oversized body is a 413, and nothing is written.
async fn fetch_media(inner: &Inner, request: SendRequest) -> Result<SendRequest, EngineError> {
    let SendContent::MediaUrl { kind, url, mime_type, file_name, caption } = request.content else {
        return Ok(request);
    };
    let Some((limit, accepted)) = crate::send::media_policy(kind) else {
        return Err(MediaRefused::UnsupportedType {
            kind,
            mime_type: mime_type.unwrap_or_default(),
            accepted: String::new(),
        }
        .into());
    };
    // A declared type is checked before any traffic leaves.
    if let Some(declared) = &mime_type
        && !accepted.contains(&declared.as_str())
    {
        return Err(
            MediaRefused::UnsupportedType { kind, mime_type: declared.clone(), accepted: accepted.join(", ") }.into()
        );
    }
    let Some(fetcher) = &inner.media_fetcher else {
        return Err(InvalidField {
            field: "media.url",
            reason: "media by URL is not enabled on this gateway; send the bytes as media.data".into(),
        }
        .into());
    };
    let fetched = fetcher.fetch(&url, limit).await.map_err(|e| match e {
        FetchError::TooLarge { .. } => EngineError::Media(MediaRefused::TooLargeAtUrl { kind, limit }),
        FetchError::Refused(reason) => InvalidField { field: "media.url", reason }.into(),
        FetchError::Failed(reason) => {
            InvalidField { field: "media.url", reason: format!("could not be fetched: {reason}") }.into()
        }
    })?;
    let mime_type = mime_type.or(fetched.content_type).ok_or_else(|| InvalidField {
        field: "media.mime_type",
        reason: "the server sent no Content-Type; give the media type".into(),
    })?;
    Ok(SendRequest {
        content: SendContent::Media { kind, mime_type, file_name, data: fetched.bytes, caption },
        ..request
    })
}

/// Sends a plugin's replies through the same path as an API send, one hop deeper. Beyond the configured depth
/// replies are not sent: a reply cannot feed the chain that produced it forever. A reply the send path refuses
/// (quota exhausted, instance not connected, ...) is recorded as a `reply_refused` failure on the binding that
/// asked for it, where the tenant sees it, not only in the server's log.
pub(crate) async fn send_replies(inner: &Arc<Inner>, instance: &Instance, replies: Vec<Reply>, cause: Origin) {
    let depth = match cause {
        Origin::PluginReply { depth } => depth.saturating_add(1),
        Origin::Api | Origin::WhatsApp => 1,
    };
    for reply in replies {
        if depth > inner.config.max_reply_depth {
            tracing::warn!(instance = %instance.id, depth, "plugin reply not sent: reply depth limit reached");
            continue;
        }
        let binding = reply.binding_id;
        let request = SendRequest {
            to: reply.chat_jid,
            content: SendContent::Text { body: reply.text },
            quoted_message_id: reply.quoted_message_id,
            idempotency: None,
        };
        let result = Box::pin(send_message(inner, instance, request, Origin::PluginReply { depth })).await.map(|_| ());
        if let Err(e) = result {
            tracing::warn!(instance = %instance.id, binding = ?binding, error = %e, "plugin reply refused");
            if let Some(binding) = binding {
                let failure = gw_core::BindingFailure {
                    kind: gw_core::REPLY_REFUSED_KIND.into(),
                    message: format!("a reply was not sent: {e}"),
                    at: Timestamp::now(),
                };
                if let Err(error) = inner.store.record_plugin_failure(binding, &failure).await {
                    tracing::warn!(%binding, %error, "could not record a refused plugin reply");
                }
            }
        }
    }
}

/// The attachment's metadata, checked against its kind's limits; `None` for a send without bytes.
fn media_info(content: &SendContent) -> Result<Option<gw_core::MediaInfo>, MediaRefused> {
    match content {
        SendContent::Media { kind, mime_type, data, file_name, .. } => {
            attachment(*kind, mime_type, data, file_name.as_ref()).map(Some)
        }
        _ => Ok(None),
    }
}

fn attachment(
    kind: gw_core::MessageKind,
    mime_type: &str,
    data: &[u8],
    file_name: Option<&String>,
) -> Result<gw_core::MediaInfo, MediaRefused> {
    let mut info = check_media(kind, mime_type, data.len() as u64)?;
    info.file_name = file_name.cloned();
    Ok(info)
}

/// The stored payload of a send: what the API took, minus the bytes (those go to the `media` column). `text` is
/// the text after the pipeline (a plugin may have changed a reaction's emoji).
fn stored_content(content: &SendContent, text: Option<&str>) -> Result<(MessageContent, Option<Vec<u8>>), EngineError> {
    let outbound = match content {
        SendContent::Text { .. } => OutboundContent::Text {},
        SendContent::Media { kind, mime_type, data, file_name, .. } => {
            let media = attachment(*kind, mime_type, data, file_name.as_ref())?;
            return Ok((OutboundContent::Media { media }.into(), Some(data.clone())));
        }
        // `fetch_media` turns media by URL into bytes before anything is stored; storing the URL alone would make
        // a message that can never be sent.
        SendContent::MediaUrl { .. } => {
            return Err(InvalidField { field: "media.url", reason: "was not fetched".into() }.into());
        }
        SendContent::Location { latitude, longitude, name, address } => OutboundContent::Location {
            location: Location {
                latitude: *latitude,
                longitude: *longitude,
                name: name.clone(),
                address: address.clone(),
            },
        },
        SendContent::ContactCard { display_name, vcard } => OutboundContent::Contact {
            contact: ContactCard { display_name: display_name.clone(), vcard: vcard.clone() },
        },
        SendContent::Reaction { message_id, emoji } => OutboundContent::Reaction {
            reaction: Reaction { message_id: message_id.clone(), emoji: text.unwrap_or(emoji).to_owned() },
        },
    };
    Ok((outbound.into(), None))
}
