//! The sandbox's control API: plays the phone and the rest of the simulated WhatsApp network. Only for sandbox
//! instances, only when the node enables the sandbox (`sandbox.enabled`, on by default in development).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use gw_accounts::Action;
use gw_core::{DriverKind, Instance, InstanceId};
use gw_sessions::sandbox::{SandboxControl, SandboxError, SandboxInbound};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ProblemBody, ProblemType};
use crate::extract::{Caller, Json, Path, Query};
use crate::routes::sessions::instance_for;
use crate::state::AppState;

/// How long an injected message may take to be stored before the call answers `acknowledged: false`.
const ACK_WAIT: Duration = Duration::from_secs(10);

fn network(state: &AppState) -> Result<Arc<dyn SandboxControl>, ApiError> {
    state
        .sandbox
        .clone()
        .ok_or_else(|| ApiError::Problem(&ProblemType::SANDBOX_DISABLED, "the sandbox is disabled on this node".into()))
}

async fn sandbox_instance(state: &AppState, caller: &Caller, id: InstanceId) -> Result<Instance, ApiError> {
    let instance = instance_for(state, caller, id, Action::ManageInstances, "instance:manage").await?;
    if instance.driver != DriverKind::Sandbox {
        return Err(ApiError::invalid("id", "not a sandbox instance"));
    }
    Ok(instance)
}

impl From<SandboxError> for ApiError {
    fn from(err: SandboxError) -> Self {
        match err {
            SandboxError::NotPairing => ApiError::Problem(&ProblemType::NOT_PAIRING, err.to_string()),
            SandboxError::NotConnected => ApiError::Problem(&ProblemType::INSTANCE_NOT_CONNECTED, err.to_string()),
            SandboxError::Vault(cause) => ApiError::Internal(cause),
            SandboxError::Unavailable(cause) | SandboxError::Unreachable(cause) => ApiError::Unavailable(cause),
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ScanRequest {
    /// The account's display name after pairing.
    pub display_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScanDto {
    /// The JID the sandbox gave the account.
    pub jid: String,
}

/// Plays the phone scanning the instance's QR code (or typing its pairing code). The instance gets a `+1 555`
/// number and connects.
#[utoipa::path(post, path = "/v1/sandbox/instances/{id}/scan", tag = "sandbox", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = ScanRequest, responses((status = 200, body = ScanDto),
    (status = 409, description = "not-pairing", body = ProblemBody, content_type = "application/problem+json")))]
pub async fn scan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<ScanDto>, ApiError> {
    let network = network(&state)?;
    let instance = sandbox_instance(&state, &caller, id).await?;
    // The body is optional.
    let request: ScanRequest =
        if body.is_empty() { ScanRequest::default() } else { crate::extract::parse_json(&headers, &body)? };
    let display_name = request.display_name;
    let jid = network.scan(instance.id, display_name).await?;
    Ok(Json(ScanDto { jid }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct InboundRequest {
    /// The simulated sender's phone number or JID.
    pub from: String,
    /// Send under this LID (`…@lid`), with `from` as its phone-number mapping, as WhatsApp does for many users.
    pub from_lid: Option<String>,
    pub push_name: Option<String>,
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboundDto {
    pub wa_message_id: String,
    /// The gateway stored the message (and WhatsApp would now get its acknowledgement).
    pub acknowledged: bool,
}

/// Delivers a message from a simulated contact to the instance, and answers once the gateway stored it.
#[utoipa::path(post, path = "/v1/sandbox/instances/{id}/inbound", tag = "sandbox", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = InboundRequest, responses((status = 202, body = InboundDto), crate::openapi::NotConnected))]
pub async fn inbound(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
    Json(body): Json<InboundRequest>,
) -> Result<(StatusCode, Json<InboundDto>), ApiError> {
    let network = network(&state)?;
    let instance = sandbox_instance(&state, &caller, id).await?;
    let from = gw_sessions::normalize_recipient("from", &body.from)?;
    let from_lid = body.from_lid.as_deref().map(|lid| gw_sessions::normalize_recipient("from_lid", lid)).transpose()?;
    if body.text.trim().is_empty() {
        return Err(ApiError::invalid("text", "must not be empty"));
    }
    let message =
        SandboxInbound { instance_id: instance.id, from, from_lid, push_name: body.push_name, text: body.text };
    let outcome = network.inbound(message, ACK_WAIT).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(InboundDto { wa_message_id: outcome.wa_message_id, acknowledged: outcome.acknowledged }),
    ))
}

/// Simulates a network blip: the connection drops and the engine reconnects by itself.
#[utoipa::path(post, path = "/v1/sandbox/instances/{id}/drop", tag = "sandbox", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 204), crate::openapi::NotConnected))]
pub async fn drop_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
) -> Result<StatusCode, ApiError> {
    let network = network(&state)?;
    network.drop_connection(sandbox_instance(&state, &caller, id).await?.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Simulates the phone removing this linked device: the instance ends `logged_out`.
#[utoipa::path(post, path = "/v1/sandbox/instances/{id}/unlink", tag = "sandbox", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 204), crate::openapi::NotConnected))]
pub async fn unlink(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
) -> Result<StatusCode, ApiError> {
    let network = network(&state)?;
    network.unlink(sandbox_instance(&state, &caller, id).await?.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Simulates the same session opened elsewhere: the instance ends `replaced`.
#[utoipa::path(post, path = "/v1/sandbox/instances/{id}/replace", tag = "sandbox", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 204), crate::openapi::NotConnected))]
pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
) -> Result<StatusCode, ApiError> {
    let network = network(&state)?;
    network.replace(sandbox_instance(&state, &caller, id).await?.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateGroupRequest {
    pub subject: String,
    /// Phone numbers or JIDs of the members (sandbox accounts or simulated contacts).
    pub participants: Vec<String>,
    #[serde(default)]
    pub admins: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupCreatedDto {
    pub jid: String,
}

/// Creates a group on the sandbox network.
#[utoipa::path(post, path = "/v1/sandbox/groups", tag = "sandbox", security(("bearer" = [])),
    request_body = CreateGroupRequest, responses((status = 201, body = GroupCreatedDto)))]
pub async fn create_group(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateGroupRequest>,
) -> Result<(StatusCode, Json<GroupCreatedDto>), ApiError> {
    let network = network(&state)?;
    if matches!(caller, Caller::Key(_)) {
        return Err(ApiError::Problem(&ProblemType::FORBIDDEN, "sign in as a user to shape the sandbox".into()));
    }
    if body.subject.trim().is_empty() || body.participants.is_empty() || body.participants.len() > 256 {
        return Err(ApiError::invalid("participants", "a subject and 1 to 256 participants"));
    }
    let normalize = |list: &[String], field: &'static str| -> Result<Vec<String>, ApiError> {
        list.iter().map(|p| gw_sessions::normalize_recipient(field, p).map_err(ApiError::from)).collect()
    };
    let participants = normalize(&body.participants, "participants")?;
    let admins = normalize(&body.admins, "admins")?;
    let jid = network.create_group(body.subject.trim().to_owned(), participants, admins).await?;
    Ok((StatusCode::CREATED, Json(GroupCreatedDto { jid })))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SetOnWhatsAppRequest {
    /// Phone numbers in international format (or phone-number JIDs), 1 to 500.
    pub numbers: Vec<String>,
    /// `false`: the numbers are not on WhatsApp (checks say so, sends to them fail); `true` undoes it.
    pub on_whatsapp: bool,
}

/// Sets whether numbers are on WhatsApp on the sandbox network (every number is, until told otherwise).
#[utoipa::path(post, path = "/v1/sandbox/numbers", tag = "sandbox", security(("bearer" = [])),
    request_body = SetOnWhatsAppRequest, responses((status = 204)))]
pub async fn set_on_whatsapp(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<SetOnWhatsAppRequest>,
) -> Result<StatusCode, ApiError> {
    let network = network(&state)?;
    if matches!(caller, Caller::Key(_)) {
        return Err(ApiError::Problem(&ProblemType::FORBIDDEN, "sign in as a user to shape the sandbox".into()));
    }
    if body.numbers.is_empty() || body.numbers.len() > gw_services::MAX_NUMBER_CHECK {
        return Err(ApiError::invalid("numbers", "1 to 500 phone numbers"));
    }
    let phones = body
        .numbers
        .iter()
        .map(|n| {
            let jid = gw_sessions::normalize_recipient("numbers", n)?;
            Ok(jid.strip_suffix("@s.whatsapp.net").map(str::to_owned))
        })
        .collect::<Result<Option<Vec<String>>, gw_sessions::InvalidField>>()?
        .ok_or_else(|| ApiError::invalid("numbers", "phone numbers only"))?;
    network.set_on_whatsapp(phones, body.on_whatsapp).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeliveriesQuery {
    /// The recipient's phone number or JID (a sandbox account or a simulated contact).
    pub to: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxDeliveryDto {
    pub wa_message_id: String,
    pub kind: gw_core::MessageKind,
    pub text: Option<String>,
    /// How often the instance sent this id; delivered once all the same. More than 1 shows a resend after a
    /// node crashed between sending and recording the message.
    pub copies: u32,
}

/// What the recipient `to` got from this instance on the sandbox network, oldest first: each WhatsApp message id
/// once, however often it was sent (a retry after a crash is not delivered again; `copies` counts the sends). The
/// same through every node.
#[utoipa::path(get, path = "/v1/sandbox/instances/{id}/deliveries", tag = "sandbox", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), DeliveriesQuery), responses((status = 200, body = Vec<SandboxDeliveryDto>), crate::openapi::NotConnected))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<Vec<SandboxDeliveryDto>>, ApiError> {
    let network = network(&state)?;
    let instance = sandbox_instance(&state, &caller, id).await?;
    let to = gw_sessions::normalize_recipient("to", &query.to)?;
    // Scoped to what this instance sent: another tenant's messages to the same recipient stay hidden.
    let Some(phone) = instance.phone.as_deref() else {
        return Err(ApiError::Problem(&ProblemType::INSTANCE_NOT_CONNECTED, "the instance was never paired".into()));
    };
    let from = format!("{}@s.whatsapp.net", phone.trim_start_matches('+'));
    let got = network.received(to).await?;
    Ok(Json(
        got.into_iter()
            .filter(|d| d.from == from)
            .map(|d| SandboxDeliveryDto {
                wa_message_id: d.wa_message_id,
                kind: d.kind,
                text: d.text,
                copies: d.copies,
            })
            .collect(),
    ))
}
