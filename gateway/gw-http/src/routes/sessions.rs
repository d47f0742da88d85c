//! The session engine's API: instance lifecycle (connect, QR, pairing code, logout, restart), messages, chats,
//! contacts, groups and the live event stream. Users need an owner's role for changes; API keys need the scope
//! each endpoint names and must belong to the instance in the path (another instance's key gets 404).

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures::Stream;
use gw_accounts::Action;
use gw_core::{ContactId, Instance, InstanceId, MessageId, MessageKind};
use gw_services::{KeyScope, Need};
use gw_sessions::{Idempotency, Presence, SendContent, SendRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;
use utoipa::ToSchema;

use crate::dto::PageDto;
use crate::error::{ApiError, ProblemBody};
use crate::extract::{Caller, Json, PageQuery, Path, Query};
use crate::state::AppState;

/// The instance named in the path, if the caller may do `action` (users) or holds `scope` (API keys): the sandbox
/// routes' way into [`gw_services::Messaging::instance`].
pub(crate) async fn instance_for(
    state: &AppState,
    caller: &Caller,
    id: InstanceId,
    action: Action,
    scope: &str,
) -> Result<Instance, ApiError> {
    let scope: KeyScope = scope.parse().map_err(|e: gw_core::ParseEnumError| ApiError::Internal(e.to_string()))?;
    Ok(state.messaging.instance(caller, id, Need::new(action, scope)).await?)
}

/// The instance's connection state, as lifecycle calls answer it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionDto {
    pub id: String,
    #[schema(value_type = gw_core::InstanceStatus)]
    pub status: String,
    pub phone: Option<String>,
    pub display_name: Option<String>,
    pub qr_code: Option<String>,
    pub qr_code_expiry: Option<crate::dto::Time>,
    pub connection_attempts: i32,
    pub last_error: Option<String>,
    pub last_error_at: Option<crate::dto::Time>,
    pub last_connected_at: Option<crate::dto::Time>,
    pub last_disconnected_at: Option<crate::dto::Time>,
}

impl From<Instance> for ConnectionDto {
    fn from(i: Instance) -> Self {
        Self {
            id: i.id.to_string(),
            status: i.status.to_string(),
            phone: i.phone,
            display_name: i.display_name,
            qr_code: i.qr_code,
            qr_code_expiry: i.qr_code_expiry.map(crate::dto::Time),
            connection_attempts: i.connection_attempts,
            last_error: i.last_error,
            last_error_at: i.last_error_at.map(crate::dto::Time),
            last_connected_at: i.last_connected_at.map(crate::dto::Time),
            last_disconnected_at: i.last_disconnected_at.map(crate::dto::Time),
        }
    }
}

/// Starts connecting: a new instance shows a QR code (`GET …/qr`), a paired one reconnects. Idempotent.
#[utoipa::path(post, path = "/v1/instances/{id}/connect", tag = "sessions", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 202, body = ConnectionDto),
    (status = 404, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn connect(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
) -> Result<(StatusCode, Json<ConnectionDto>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(state.messaging.connect(&caller, id).await?.into())))
}

/// Drops the connection and connects again at once (also takes back a `replaced` or `banned` session).
#[utoipa::path(post, path = "/v1/instances/{id}/restart", tag = "sessions", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 202, body = ConnectionDto)))]
pub async fn restart(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
) -> Result<(StatusCode, Json<ConnectionDto>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(state.messaging.restart(&caller, id).await?.into())))
}

/// Logs out on WhatsApp's side and forgets the session; the next connect needs a new pairing.
#[utoipa::path(post, path = "/v1/instances/{id}/logout", tag = "sessions", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = ConnectionDto), crate::openapi::NotConnected, crate::openapi::DriverFailure))]
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
) -> Result<Json<ConnectionDto>, ApiError> {
    Ok(Json(state.messaging.logout(&caller, id).await?.into()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QrDto {
    /// The raw QR payload; render it yourself or fetch `…/qr.png`.
    pub qr: String,
    pub expires_at: Option<crate::dto::Time>,
}

async fn current_qr(
    state: &AppState,
    caller: &Caller,
    id: InstanceId,
) -> Result<(String, Option<crate::dto::Time>), ApiError> {
    let (qr, expires_at) = state.messaging.qr(caller, id).await?;
    Ok((qr, expires_at.map(crate::dto::Time)))
}

/// The QR code to scan while the instance is `qr`.
#[utoipa::path(get, path = "/v1/instances/{id}/qr", tag = "sessions", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = QrDto),
    (status = 409, description = "not-pairing", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn qr(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
) -> Result<Json<QrDto>, ApiError> {
    let (qr, expires_at) = current_qr(&state, &caller, id).await?;
    Ok(Json(QrDto { qr, expires_at }))
}

/// The QR code as a PNG image.
#[utoipa::path(get, path = "/v1/instances/{id}/qr.png", tag = "sessions", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, content_type = "image/png", description = "the QR code"),
    (status = 409, description = "not-pairing", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn qr_png(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
) -> Result<Response, ApiError> {
    let (qr, _) = current_qr(&state, &caller, id).await?;
    let png = crate::qr_png::render(&qr).map_err(|e| ApiError::Internal(format!("QR code: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "no-store")], png).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PairCodeRequest {
    /// The account's phone number in international format.
    pub phone: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PairCodeDto {
    /// Type it on the phone: WhatsApp > Linked devices > Link with phone number.
    pub code: String,
}

/// Asks for a pairing code instead of a QR code, while the instance is waiting to be paired.
#[utoipa::path(post, path = "/v1/instances/{id}/pair-code", tag = "sessions", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = PairCodeRequest, responses((status = 200, body = PairCodeDto),
    (status = 409, body = ProblemBody, content_type = "application/problem+json"),
    (status = 422, body = ProblemBody, content_type = "application/problem+json"), crate::openapi::DriverFailure))]
pub async fn pair_code(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
    Json(body): Json<PairCodeRequest>,
) -> Result<Json<PairCodeDto>, ApiError> {
    let code = state.messaging.pair_code(&caller, id, &body.phone).await?;
    Ok(Json(PairCodeDto { code }))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct MediaBody {
    /// The bytes, base64-encoded. Give either `data` or `url`.
    pub data: Option<String>,
    /// An `https://` (or `http://`) URL the gateway fetches before accepting the send, through the same egress
    /// guard as webhooks (no private, loopback or metadata addresses unless the operator allows them).
    pub url: Option<String>,
    /// Required with `data`; with `url`, defaults to the response's `Content-Type`.
    pub mime_type: Option<String>,
    pub file_name: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct LocationBody {
    pub latitude: f64,
    pub longitude: f64,
    pub name: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ContactCardBody {
    pub display_name: String,
    pub vcard: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ReactionBody {
    /// WhatsApp id of the message reacted to.
    pub message_id: String,
    /// One emoji; empty removes the reaction.
    pub emoji: String,
}

/// The kinds of message the API sends (`type` of a send).
pub const SEND_KINDS: [&str; 8] = ["text", "image", "video", "audio", "document", "location", "contact", "reaction"];

/// A schema that is a string out of a fixed list (the server parses these names itself).
macro_rules! string_schema {
    ($(#[$doc:meta])* $name:ident = $values:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some($values))
                    .into()
            }
        }

        impl ToSchema for $name {}
    };
}

string_schema!(
    /// The schema of a send's `type`.
    SendKind = SEND_KINDS
);

/// The presences a chat can be shown (`gw_sessions::Presence`'s spellings).
pub const PRESENCES: [&str; 5] = ["composing", "recording", "paused", "available", "unavailable"];

string_schema!(
    /// The schema of a presence.
    PresenceName = PRESENCES
);

/// A message to send. `type` says which other member carries it.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct SendMessageRequest {
    /// A phone number in international format (`+1 555 0100`) or a JID (`…@s.whatsapp.net`, `…@lid`, `…@g.us`).
    pub to: String,
    /// Default `text`; the member of the same name carries the content (`text` also captions media).
    #[serde(rename = "type")]
    #[schema(value_type = Option<SendKind>)]
    pub kind: Option<String>,
    /// The text, or a media caption.
    pub text: Option<String>,
    pub media: Option<MediaBody>,
    pub location: Option<LocationBody>,
    pub contact: Option<ContactCardBody>,
    pub reaction: Option<ReactionBody>,
    /// WhatsApp id of the message this one replies to.
    pub quoted_message_id: Option<String>,
}

/// The public message, the same shape webhooks and the event stream carry.
pub use gw_core::PublicMessage as MessageDto;

fn required<T>(value: Option<T>, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::invalid(field, "required for this message type"))
}

fn to_send_request(body: SendMessageRequest, idempotency: Option<Idempotency>) -> Result<SendRequest, ApiError> {
    let kind = body.kind.as_deref().unwrap_or("text");
    let content = match kind {
        "text" => SendContent::Text { body: required(body.text, "text")? },
        "image" | "video" | "audio" | "document" => {
            let media = required(body.media, "media")?;
            let kind: MessageKind = kind.parse().map_err(|_| ApiError::invalid("type", "unknown message type"))?;
            match (media.data, media.url) {
                (Some(data), None) => {
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(data.as_bytes())
                        .map_err(|_| ApiError::invalid("media.data", "not valid base64"))?;
                    SendContent::Media {
                        kind,
                        mime_type: required(media.mime_type, "media.mime_type")?,
                        file_name: media.file_name,
                        data,
                        caption: body.text,
                    }
                }
                (None, Some(url)) => SendContent::MediaUrl {
                    kind,
                    url,
                    mime_type: media.mime_type,
                    file_name: media.file_name,
                    caption: body.text,
                },
                _ => return Err(ApiError::invalid("media", "give exactly one of data (base64) or url")),
            }
        }
        "location" => {
            let l = required(body.location, "location")?;
            SendContent::Location { latitude: l.latitude, longitude: l.longitude, name: l.name, address: l.address }
        }
        "contact" => {
            let c = required(body.contact, "contact")?;
            SendContent::ContactCard { display_name: c.display_name, vcard: c.vcard }
        }
        "reaction" => {
            let r = required(body.reaction, "reaction")?;
            SendContent::Reaction { message_id: r.message_id, emoji: r.emoji }
        }
        other => {
            return Err(ApiError::invalid(
                "type",
                format!("{other:?} is not one of text, image, video, audio, document, location, contact, reaction"),
            ));
        }
    };
    Ok(SendRequest { to: body.to, content, quoted_message_id: body.quoted_message_id, idempotency })
}

/// Queues a message in the instance's durable outbox and answers 202 with its id. With an `Idempotency-Key`
/// header, a retried request returns the first result instead of sending twice. Messages leave in order, at the
/// instance's pace (`settings.send_interval_ms`, `settings.typing_delay_ms`).
#[utoipa::path(post, path = "/v1/instances/{id}/messages", tag = "messages", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path), ("Idempotency-Key" = Option<String>, Header)), request_body = SendMessageRequest, responses(
    (status = 202, body = MessageDto),
    (status = 409, description = "instance-not-connected", body = ProblemBody, content_type = "application/problem+json"),
    (status = 413, description = "media-too-large", body = ProblemBody, content_type = "application/problem+json"),
    (status = 415, description = "unsupported-media", body = ProblemBody, content_type = "application/problem+json"),
    (status = 422, description = "validation or idempotency-key-reused", body = ProblemBody, content_type = "application/problem+json"),
    (status = 429, description = "rate-limited or quota-exceeded", body = ProblemBody, content_type = "application/problem+json"),
    crate::openapi::DriverFailure,
))]
pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, [(&'static str, &'static str); 1], Json<MessageDto>), ApiError> {
    let parse = || {
        let idempotency = match headers.get("idempotency-key") {
            None => None,
            Some(value) => {
                let key = value.to_str().map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))?;
                Some(Idempotency { key: key.to_owned(), request_hash: sha2::Sha256::digest(&body).to_vec() })
            }
        };
        let request: SendMessageRequest = crate::extract::parse_json(&headers, &body)?;
        to_send_request(request, idempotency)
    };
    let accepted = state.messaging.send(&caller, id, parse).await?;
    let replayed = if accepted.replayed { "true" } else { "false" };
    Ok((StatusCode::ACCEPTED, [("idempotent-replayed", replayed)], Json(accepted.message.into())))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct MessageListQuery {
    /// Only this chat's messages.
    pub chat: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// The instance's messages, oldest first, optionally of one chat.
#[utoipa::path(get, path = "/v1/instances/{id}/messages", tag = "messages", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path), MessageListQuery), responses((status = 200, body = PageDto<MessageDto>)))]
pub async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
    Query(query): Query<MessageListQuery>,
) -> Result<Json<PageDto<MessageDto>>, ApiError> {
    let page = PageQuery { cursor: query.cursor, limit: query.limit }.page_request()?;
    let page = state.messaging.list_messages(&caller, id, query.chat.as_deref(), page).await?;
    Ok(Json(PageDto::from_page(page, Into::into)))
}

/// One message and its status.
#[utoipa::path(get, path = "/v1/instances/{id}/messages/{message_id}", tag = "messages", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path), ("message_id" = uuid::Uuid, Path)), responses((status = 200, body = MessageDto),
    (status = 404, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn get_message(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, message_id)): Path<(InstanceId, MessageId)>,
) -> Result<Json<MessageDto>, ApiError> {
    Ok(Json(state.messaging.message(&caller, id, message_id).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MarkReadRequest {
    /// WhatsApp ids of the chat's messages to mark read.
    #[schema(min_items = 1, max_items = 100)]
    pub message_ids: Vec<String>,
}

/// Marks messages of a chat as read (blue ticks for the sender).
#[utoipa::path(post, path = "/v1/instances/{id}/chats/{chat}/read", tag = "messages", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path), ("chat" = String, Path)), request_body = MarkReadRequest, responses((status = 204), crate::openapi::NotConnected, crate::openapi::DriverFailure))]
pub async fn mark_read(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, chat)): Path<(InstanceId, String)>,
    Json(body): Json<MarkReadRequest>,
) -> Result<StatusCode, ApiError> {
    state.messaging.mark_read(&caller, id, &chat, &body.message_ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PresenceRequest {
    /// `composing` is "typing…".
    #[schema(value_type = PresenceName)]
    pub presence: String,
}

/// Shows "typing…" (or another presence) in a chat.
#[utoipa::path(post, path = "/v1/instances/{id}/chats/{chat}/presence", tag = "messages", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path), ("chat" = String, Path)), request_body = PresenceRequest, responses((status = 204), crate::openapi::NotConnected, crate::openapi::DriverFailure))]
pub async fn presence(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, chat)): Path<(InstanceId, String)>,
    Json(body): Json<PresenceRequest>,
) -> Result<StatusCode, ApiError> {
    let presence: Presence = serde_json::from_value(Value::String(body.presence))
        .map_err(|_| ApiError::invalid("presence", "one of composing, recording, paused, available, unavailable"))?;
    state.messaging.presence(&caller, id, &chat, presence).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactDto {
    pub id: String,
    /// The phone-number JID when known, otherwise the LID.
    pub jid: String,
    pub lid: Option<String>,
    pub phone: Option<String>,
    pub name: Option<String>,
    pub notify: Option<String>,
    pub is_blocked: bool,
    pub is_group: bool,
    pub group_admin: bool,
    pub last_message_at: Option<crate::dto::Time>,
    pub profile_picture_url: Option<String>,
    pub status: Option<String>,
}

impl From<gw_core::Contact> for ContactDto {
    fn from(c: gw_core::Contact) -> Self {
        Self {
            id: c.id.to_string(),
            phone: gw_sessions::phone_of(&c.jid),
            jid: c.jid,
            lid: c.lid,
            name: c.name,
            notify: c.notify,
            is_blocked: c.is_blocked,
            is_group: c.is_group,
            group_admin: c.group_admin,
            last_message_at: c.last_message_at.map(crate::dto::Time),
            profile_picture_url: c.profile_picture_url,
            status: c.status,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ContactListQuery {
    /// Matches JID, name or push name, case-insensitively.
    pub search: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// The instance's contacts, paged and searchable.
#[utoipa::path(get, path = "/v1/instances/{id}/contacts", tag = "contacts", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path), ContactListQuery), responses((status = 200, body = PageDto<ContactDto>)))]
pub async fn list_contacts(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
    Query(query): Query<ContactListQuery>,
) -> Result<Json<PageDto<ContactDto>>, ApiError> {
    let page = PageQuery { cursor: query.cursor, limit: query.limit }.page_request()?;
    let page = state.messaging.list_contacts(&caller, id, query.search.as_deref(), page).await?;
    Ok(Json(PageDto::from_page(page, Into::into)))
}

/// One contact.
#[utoipa::path(get, path = "/v1/instances/{id}/contacts/{contact_id}", tag = "contacts", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path), ("contact_id" = uuid::Uuid, Path)), responses((status = 200, body = ContactDto)))]
pub async fn get_contact(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, contact_id)): Path<(InstanceId, ContactId)>,
) -> Result<Json<ContactDto>, ApiError> {
    Ok(Json(state.messaging.contact(&caller, id, contact_id).await?.into()))
}

async fn set_blocked(
    state: &AppState,
    caller: &Caller,
    id: InstanceId,
    contact_id: ContactId,
    blocked: bool,
) -> Result<Json<ContactDto>, ApiError> {
    Ok(Json(state.messaging.set_blocked(caller, id, contact_id, blocked).await?.into()))
}

/// Blocks the contact on WhatsApp.
#[utoipa::path(post, path = "/v1/instances/{id}/contacts/{contact_id}/block", tag = "contacts", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path), ("contact_id" = uuid::Uuid, Path)), responses((status = 200, body = ContactDto), crate::openapi::NotConnected, crate::openapi::DriverFailure))]
pub async fn block(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, contact_id)): Path<(InstanceId, ContactId)>,
) -> Result<Json<ContactDto>, ApiError> {
    set_blocked(&state, &caller, id, contact_id, true).await
}

/// Unblocks the contact on WhatsApp.
#[utoipa::path(post, path = "/v1/instances/{id}/contacts/{contact_id}/unblock", tag = "contacts", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path), ("contact_id" = uuid::Uuid, Path)), responses((status = 200, body = ContactDto), crate::openapi::NotConnected, crate::openapi::DriverFailure))]
pub async fn unblock(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, contact_id)): Path<(InstanceId, ContactId)>,
) -> Result<Json<ContactDto>, ApiError> {
    set_blocked(&state, &caller, id, contact_id, false).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupDto {
    pub jid: String,
    pub subject: String,
    pub participants: Vec<String>,
    pub admins: Vec<String>,
}

/// The groups the instance's account belongs to. Send to one with `to: "<group jid>"`.
#[utoipa::path(get, path = "/v1/instances/{id}/groups", tag = "contacts", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Vec<GroupDto>), crate::openapi::NotConnected, crate::openapi::DriverFailure))]
pub async fn groups(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
) -> Result<Json<Vec<GroupDto>>, ApiError> {
    let groups = state.messaging.groups(&caller, id).await?;
    Ok(Json(
        groups
            .into_iter()
            .map(|g| GroupDto { jid: g.jid, subject: g.subject, participants: g.participants, admins: g.admins })
            .collect(),
    ))
}

/// The SSE event that tells a client this node may have missed other nodes' events (its relay's connection to the
/// database dropped and came back): the client should read the state it cares about from the API again.
pub const RESYNC_EVENT: &str = "resync";

/// The instance's events as Server-Sent Events (`event:` is the event type, `id:` its stable id, `data:` the JSON
/// envelope). Live only: events before the connection are not replayed (webhooks are the durable channel). Besides
/// the events: `lagged` when this stream fell behind, `resync` when this node's relay missed other nodes' events.
#[utoipa::path(get, path = "/v1/instances/{id}/events", tag = "sessions", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, content_type = "text/event-stream", description = "event stream")))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let live = state.messaging.events(&caller, id).await?;
    let instance_id = live.instance_id;
    let stream = futures::stream::unfold((live.events, live.gaps), move |(mut receiver, mut gaps)| async move {
        loop {
            let received = tokio::select! {
                received = receiver.recv() => received,
                changed = gaps.changed(), if gaps.has_changed().is_ok() => {
                    if changed.is_ok() {
                        let sse = Event::default().event(RESYNC_EVENT).data(r#"{"reason":"relay_reconnected"}"#);
                        return Some((Ok(sse), (receiver, gaps)));
                    }
                    continue;
                }
            };
            match received {
                Ok(event) if event.instance_id == instance_id => {
                    let data = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
                    let sse = Event::default().event(event.event_type.as_str()).id(event.id.to_string()).data(data);
                    return Some((Ok(sse), (receiver, gaps)));
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    let sse = Event::default().event("lagged").data(format!("{{\"missed\":{missed}}}"));
                    return Some((Ok(sse), (receiver, gaps)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented spellings are the ones the server parses.
    #[test]
    fn documented_presences_and_send_kinds_are_accepted() {
        for name in PRESENCES {
            assert!(serde_json::from_value::<Presence>(Value::String(name.into())).is_ok(), "{name}");
        }
        for kind in SEND_KINDS {
            let body = SendMessageRequest {
                to: "+15550001111".into(),
                kind: Some(kind.into()),
                text: Some("hi".into()),
                media: Some(MediaBody {
                    data: Some("aGk=".into()),
                    url: None,
                    mime_type: Some("image/png".into()),
                    file_name: None,
                }),
                location: Some(LocationBody { latitude: 0.0, longitude: 0.0, name: None, address: None }),
                contact: Some(ContactCardBody { display_name: "A".into(), vcard: "BEGIN:VCARD".into() }),
                reaction: Some(ReactionBody { message_id: "X".into(), emoji: "+".into() }),
                quoted_message_id: None,
            };
            assert!(to_send_request(body, None).is_ok(), "{kind}");
        }
    }
}
