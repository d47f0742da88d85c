//! Number checks: which phone numbers are on WhatsApp, asked before sending (clients that send to numbers that
//! are not on WhatsApp get errors, and accounts that do it often get banned). Needs `contacts:read`.

use axum::extract::State;
use gw_core::InstanceId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{Caller, Json, Path};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
pub struct CheckNumbersRequest {
    /// 1 to 500 phone numbers in international format (`+15550001111`, `1 555 000 1111`) or phone-number JIDs.
    pub numbers: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NumberCheckDto {
    /// The number as it was given.
    pub number: String,
    /// The number in international format (`+` and digits).
    pub phone: String,
    pub on_whatsapp: bool,
    /// The phone-number JID to send to, when the number is on WhatsApp.
    pub jid: Option<String>,
    /// The account's LID, when WhatsApp named it.
    pub lid: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckNumbersDto {
    /// One answer per number given, in the same order.
    pub results: Vec<NumberCheckDto>,
}

/// Which of the numbers are on WhatsApp, with their JIDs. Answers are reused for a while
/// (`sessions.number_check_cache_secs`), so checking the same numbers again does not ask WhatsApp again.
#[utoipa::path(post, path = "/v1/instances/{id}/contacts/check", tag = "contacts", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = CheckNumbersRequest,
    responses((status = 200, body = CheckNumbersDto), crate::openapi::NotConnected, crate::openapi::DriverFailure))]
pub async fn check(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<InstanceId>,
    Json(body): Json<CheckNumbersRequest>,
) -> Result<Json<CheckNumbersDto>, ApiError> {
    let checks = state.messaging.check_numbers(&caller, id, &body.numbers).await?;
    let results = body
        .numbers
        .into_iter()
        .zip(checks)
        .map(|(number, check)| NumberCheckDto {
            number,
            phone: format!("+{}", check.phone),
            on_whatsapp: check.on_whatsapp,
            jid: check.jid,
            lid: check.lid,
        })
        .collect();
    Ok(Json(CheckNumbersDto { results }))
}
