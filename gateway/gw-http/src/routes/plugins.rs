//! Tenants' WebAssembly plugins: named plugins of a subscription and their uploaded versions (`/v1/plugins`), and
//! bindings of a plugin to an instance with their errors and logs (`/v1/instances/{id}/plugins`).
//!
//! Users need an owner's role for changes (members read); API keys need the `plugins:write` scope, which reaches the
//! plugins of the key's subscription and the bindings of the key's own instance. Every change that alters what an
//! instance runs tells the plugin host to forget that instance's chain; events already running finish on the chain
//! they started with.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use futures::StreamExt;
use gw_core::{BindingDirection, FailurePolicy, InstanceId, PluginBindingId, PluginId, PluginRejection};
use gw_services::{Bind, CreatePlugin, Rebind};
use gw_store::{Plugin, PluginBinding, PluginLogEntry, PluginVersion};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::dto::PageDto;
use crate::error::{ApiError, ProblemBody, ProblemType};
use crate::extract::{Caller, Json, PageQuery, Path, Query};
use crate::state::AppState;

/// The largest upload any tier could allow, plus room for multipart framing: the route's hard ceiling. The
/// subscription's own limit is enforced while the body is read.
pub const MAX_PLUGIN_UPLOAD_BYTES: usize = 64 * 1024 * 1024;

// ---- shapes ----------------------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginDto {
    pub id: String,
    pub subscription_id: String,
    pub name: String,
    pub description: Option<String>,
    /// The version new events run (bindings that pin a version excepted); `null` before the first upload.
    pub active_version: Option<i32>,
    /// The highest version uploaded so far (0 before the first upload).
    pub latest_version: i32,
    pub created_at: crate::dto::Time,
    pub updated_at: crate::dto::Time,
}

impl From<Plugin> for PluginDto {
    fn from(p: Plugin) -> Self {
        Self {
            id: p.id.to_string(),
            subscription_id: p.subscription_id.to_string(),
            name: p.name,
            description: p.description,
            active_version: p.active_version,
            latest_version: p.latest_version,
            created_at: p.created_at.into(),
            updated_at: p.updated_at.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginVersionDto {
    pub id: String,
    pub plugin_id: String,
    pub version: i32,
    /// Lower-case hex SHA-256 of the component: identical uploads share it (and one compiled artefact).
    pub sha256: String,
    pub size_bytes: i64,
    pub uploaded_by: Option<String>,
    pub created_at: crate::dto::Time,
    /// Whether this is the plugin's active version.
    pub active: bool,
}

fn version_dto(v: PluginVersion, active: Option<i32>) -> PluginVersionDto {
    PluginVersionDto {
        id: v.id.to_string(),
        plugin_id: v.plugin_id.to_string(),
        version: v.version,
        sha256: v.sha256,
        size_bytes: v.size_bytes,
        uploaded_by: v.uploaded_by.map(|u| u.to_string()),
        created_at: v.created_at.into(),
        active: active == Some(v.version),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginBindingDto {
    pub id: String,
    pub instance_id: String,
    pub plugin_id: String,
    /// The pinned version's id; `null` follows the plugin's active version.
    pub pinned_version_id: Option<String>,
    /// Lower runs first.
    pub position: i32,
    /// `inbound`, `outbound` or `both`.
    #[schema(value_type = gw_core::BindingDirection)]
    pub direction: String,
    #[schema(value_type = Object)]
    pub config: Value,
    pub enabled: bool,
    /// `fail_open` (a failing plugin is skipped) or `fail_closed` (its message is dropped).
    #[schema(value_type = gw_core::FailurePolicy)]
    pub failure_policy: String,
    /// Calls that trapped, timed out or hit a limit.
    pub error_count: i64,
    pub last_error: Option<String>,
    // The kinds of `gw_core::PLUGIN_FAILURE_KINDS`.
    /// `trap`, `timeout`, `fuel_exhausted`, `memory_limit`, `invalid_verdict`, `load_failed`, `host_error` or
    /// `reply_refused`.
    pub last_error_kind: Option<String>,
    pub last_error_at: Option<crate::dto::Time>,
    pub created_at: crate::dto::Time,
    pub updated_at: crate::dto::Time,
}

fn direction_name(d: BindingDirection) -> &'static str {
    match d {
        BindingDirection::Inbound => "inbound",
        BindingDirection::Outbound => "outbound",
        BindingDirection::Both => "both",
    }
}

fn policy_name(p: FailurePolicy) -> &'static str {
    match p {
        FailurePolicy::FailOpen => "fail_open",
        FailurePolicy::FailClosed => "fail_closed",
    }
}

impl From<PluginBinding> for PluginBindingDto {
    fn from(b: PluginBinding) -> Self {
        Self {
            id: b.id.to_string(),
            instance_id: b.instance_id.to_string(),
            plugin_id: b.plugin_id.to_string(),
            pinned_version_id: b.version_id.map(|v| v.to_string()),
            position: b.position,
            direction: direction_name(b.direction).into(),
            config: b.config,
            enabled: b.enabled,
            failure_policy: policy_name(b.failure_policy).into(),
            error_count: b.error_count,
            last_error: b.last_error,
            last_error_kind: b.last_error_kind,
            last_error_at: b.last_error_at.map(crate::dto::Time),
            created_at: b.created_at.into(),
            updated_at: b.updated_at.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginLogDto {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    pub message: String,
    pub at: crate::dto::Time,
}

impl From<PluginLogEntry> for PluginLogDto {
    fn from(l: PluginLogEntry) -> Self {
        Self { level: l.level, message: l.message, at: l.at.into() }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePluginRequest {
    /// Unique within the subscription; 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: String,
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    /// Operators name the subscription; tenants may omit it (their own).
    #[schema(value_type = Option<uuid::Uuid>)]
    pub subscription_id: Option<String>,
}

fn default_config() -> Value {
    Value::Object(Default::default())
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindPluginRequest {
    #[schema(value_type = uuid::Uuid)]
    pub plugin_id: String,
    /// Pin a version number; omitted, the binding follows the plugin's active version.
    pub version: Option<i32>,
    /// Lower runs first (0 to 1,000,000); omitted, after the instance's last binding.
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub position: Option<i32>,
    /// Default `both`.
    pub direction: Option<BindingDirection>,
    /// Handed to the plugin with every message. Default `{}`.
    #[serde(default = "default_config")]
    #[schema(value_type = Object)]
    pub config: Value,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Default `fail_open`.
    pub failure_policy: Option<FailurePolicy>,
}

/// `null` and absent differ: absent leaves the field alone, `null` clears it.
fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBindingRequest {
    /// A version number to pin, or `null` to follow the active version again.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i32>)]
    pub version: Option<Option<i32>>,
    pub position: Option<i32>,
    pub direction: Option<BindingDirection>,
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    pub enabled: Option<bool>,
    pub failure_policy: Option<FailurePolicy>,
    /// Clears `error_count` and the last error.
    #[serde(default)]
    pub reset_errors: bool,
}

// ---- plugins ---------------------------------------------------------------------------------------------------

/// Creates a named plugin; upload its code as versions. Refused beyond the tier's `plugin_max_count`.
#[utoipa::path(post, path = "/v1/plugins", tag = "plugins", security(("bearer" = []), ("api_key" = [])),
    request_body = CreatePluginRequest, responses(
    (status = 404, description = "not-found: no such subscription (`subscription_id`)", body = ProblemBody, content_type = "application/problem+json"),
    (status = 201, body = PluginDto),
    (status = 409, body = ProblemBody, content_type = "application/problem+json"),
    (status = 422, body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreatePluginRequest>,
) -> Result<(StatusCode, Json<PluginDto>), ApiError> {
    let new = CreatePlugin {
        name: &body.name,
        description: body.description,
        subscription_id: body.subscription_id.as_deref(),
    };
    let plugin = state.plugins.create(&caller, new).await?;
    Ok((StatusCode::CREATED, Json(plugin.into())))
}

/// The caller's plugins (an operator's: every subscription's).
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins", security(("bearer" = []), ("api_key" = [])),
    params(PageQuery), responses((status = 200, body = PageDto<PluginDto>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<PageQuery>,
) -> Result<Json<PageDto<PluginDto>>, ApiError> {
    let page = query.page_request()?;
    let page = state.plugins.list(&caller, page).await?;
    Ok(Json(PageDto::from_page(page, Into::into)))
}

#[utoipa::path(get, path = "/v1/plugins/{id}", tag = "plugins", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = PluginDto),
    (status = 404, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<PluginId>,
) -> Result<Json<PluginDto>, ApiError> {
    Ok(Json(state.plugins.get(&caller, id).await?.into()))
}

/// Deletes the plugin with its versions, bindings, logs and stored data; bound instances stop running it.
#[utoipa::path(delete, path = "/v1/plugins/{id}", tag = "plugins", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 204),
    (status = 404, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<PluginId>,
) -> Result<StatusCode, ApiError> {
    state.plugins.delete(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- versions --------------------------------------------------------------------------------------------------

fn too_large(max: u64) -> ApiError {
    ApiError::PluginRejected(PluginRejection {
        kind: gw_core::RejectionKind::TooLarge,
        message: format!("the component is larger than this subscription's limit of {max} bytes"),
    })
}

fn is_media_type(headers: &HeaderMap, wanted: &[&str]) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| wanted.iter().any(|w| m.trim().eq_ignore_ascii_case(w)))
}

/// Reads the component from a raw body or a multipart `file` field, refusing it once it passes `max` bytes: an
/// oversized upload is never buffered. The rest of an oversized body is read and discarded (up to the route's
/// ceiling) before the refusal goes out, because HTTP/1 clients still sending a body often miss a response sent
/// before they finished and report a broken connection instead of the 413.
async fn read_component(request: Request, max: u64) -> Result<Vec<u8>, ApiError> {
    let headers = request.headers().clone();
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let ceiling = MAX_PLUGIN_UPLOAD_BYTES as u64;
    if declared.is_some_and(|len| len > ceiling) {
        return Err(too_large(max));
    }
    let mut bytes = Vec::new();
    let mut oversized = false;
    let mut keep = |chunk: &[u8], bytes: &mut Vec<u8>| {
        if oversized || (bytes.len() + chunk.len()) as u64 > max {
            oversized = true;
            bytes.clear();
        } else {
            bytes.extend_from_slice(chunk);
        }
        oversized
    };
    if is_media_type(&headers, &["application/wasm", "application/octet-stream"]) {
        let mut seen = 0u64;
        let mut stream = request.into_body().into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
            seen += chunk.len() as u64;
            if keep(&chunk, &mut bytes) && seen > ceiling {
                break;
            }
        }
        return if oversized { Err(too_large(max)) } else { Ok(bytes) };
    }
    if is_media_type(&headers, &["multipart/form-data"]) {
        let mut multipart =
            Multipart::from_request(request, &()).await.map_err(|e| ApiError::bad_request(e.body_text()))?;
        let mut found = false;
        while let Some(mut field) = multipart.next_field().await.map_err(|e| multipart_error(e, max))? {
            let is_file = field.name() == Some("file") && !found;
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, max))? {
                if is_file {
                    keep(&chunk, &mut bytes);
                }
            }
            found |= is_file;
        }
        return match (found, oversized) {
            (_, true) => Err(too_large(max)),
            (true, false) => Ok(bytes),
            (false, false) => {
                Err(ApiError::invalid("file", "a multipart upload needs a `file` field with the component"))
            }
        };
    }
    Err(ApiError::Problem(
        &ProblemType::UNSUPPORTED_MEDIA_TYPE,
        "upload the component as application/wasm (raw body) or multipart/form-data (field `file`)".into(),
    ))
}

fn multipart_error(err: axum::extract::multipart::MultipartError, max: u64) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE { too_large(max) } else { ApiError::bad_request(err.body_text()) }
}

/// A WebAssembly component's bytes.
#[derive(Debug)]
pub struct ComponentBytes;

impl utoipa::PartialSchema for ComponentBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
                utoipa::openapi::schema::KnownFormat::Binary,
            )))
            .into()
    }
}

impl ToSchema for ComponentBytes {}

/// An upload as a form (it only describes the form in the document; the handler reads the form itself).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    pub file: ComponentBytes,
}

/// Uploads a new version: a WebAssembly component of the plugin world, as `application/wasm` or a multipart
/// `file` field. It is checked, compiled (cached by SHA-256) and tried under the tier's limits before it is
/// stored. The plugin's first version becomes active; later ones wait for `…/activate`.
#[utoipa::path(post, path = "/v1/plugins/{id}/versions", tag = "plugins", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)),
    request_body(description = "the component's bytes, raw or as the `file` field of a form",
        content((ComponentBytes = "application/wasm"), (ComponentBytes = "application/octet-stream"), (UploadForm = "multipart/form-data"))),
    responses(
    (status = 415, description = "unsupported-media-type: not one of the three content types", body = ProblemBody, content_type = "application/problem+json"),
    (status = 201, body = PluginVersionDto),
    (status = 413, body = ProblemBody, content_type = "application/problem+json"),
    (status = 422, body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<PluginId>,
    request: Request<Body>,
) -> Result<(StatusCode, Json<PluginVersionDto>), ApiError> {
    let (version, active) = state.plugins.upload(&caller, id, |max| read_component(request, max)).await?;
    Ok((StatusCode::CREATED, Json(version_dto(version, active))))
}

/// The plugin's versions, newest first.
#[utoipa::path(get, path = "/v1/plugins/{id}/versions", tag = "plugins", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Vec<PluginVersionDto>)))]
pub async fn list_versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<PluginId>,
) -> Result<Json<Vec<PluginVersionDto>>, ApiError> {
    let (versions, active) = state.plugins.versions(&caller, id).await?;
    Ok(Json(versions.into_iter().map(|v| version_dto(v, active)).collect()))
}

/// Makes a version the active one (an earlier one: a rollback), without a restart. Events already running finish
/// on the version they started with; the next ones run this one.
#[utoipa::path(post, path = "/v1/plugins/{id}/versions/{version}/activate", tag = "plugins",
    security(("bearer" = []), ("api_key" = [])), params(("id" = uuid::Uuid, Path), ("version" = i32, Path)),
    responses((status = 200, body = PluginDto),
    (status = 404, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, version)): Path<(PluginId, i32)>,
) -> Result<Json<PluginDto>, ApiError> {
    Ok(Json(state.plugins.activate(&caller, id, version).await?.into()))
}

// ---- bindings --------------------------------------------------------------------------------------------------

/// Binds a plugin of the instance's subscription to the instance.
#[utoipa::path(post, path = "/v1/instances/{id}/plugins", tag = "plugins", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = BindPluginRequest, responses(
    (status = 201, body = PluginBindingDto),
    (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    (status = 409, body = ProblemBody, content_type = "application/problem+json"),
))]
pub async fn bind(
    State(state): State<AppState>,
    caller: Caller,
    Path(instance_id): Path<InstanceId>,
    Json(body): Json<BindPluginRequest>,
) -> Result<(StatusCode, Json<PluginBindingDto>), ApiError> {
    let bind = Bind {
        plugin_id: body.plugin_id,
        version: body.version,
        position: body.position,
        direction: body.direction.unwrap_or(BindingDirection::Both),
        config: body.config,
        enabled: body.enabled,
        failure_policy: body.failure_policy.unwrap_or(FailurePolicy::FailOpen),
    };
    let binding = state.plugins.bind(&caller, instance_id, bind).await?;
    Ok((StatusCode::CREATED, Json(binding.into())))
}

/// The instance's bindings in chain order, with their error counts.
#[utoipa::path(get, path = "/v1/instances/{id}/plugins", tag = "plugins", security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Vec<PluginBindingDto>)))]
pub async fn list_bindings(
    State(state): State<AppState>,
    caller: Caller,
    Path(instance_id): Path<InstanceId>,
) -> Result<Json<Vec<PluginBindingDto>>, ApiError> {
    let bindings = state.plugins.bindings(&caller, instance_id).await?;
    Ok(Json(bindings.into_iter().map(Into::into).collect()))
}

/// One binding: its settings, error count and last error (kind, message, time).
#[utoipa::path(get, path = "/v1/instances/{id}/plugins/{binding_id}", tag = "plugins",
    security(("bearer" = []), ("api_key" = [])), params(("id" = uuid::Uuid, Path), ("binding_id" = uuid::Uuid, Path)),
    responses((status = 200, body = PluginBindingDto),
    (status = 404, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn get_binding(
    State(state): State<AppState>,
    caller: Caller,
    Path((instance_id, binding_id)): Path<(InstanceId, PluginBindingId)>,
) -> Result<Json<PluginBindingDto>, ApiError> {
    Ok(Json(state.plugins.binding(&caller, instance_id, binding_id).await?.into()))
}

/// Changes a binding: pin or unpin a version, move it (reorder), switch direction, config, enabled or failure
/// policy, or reset its error count.
#[utoipa::path(patch, path = "/v1/instances/{id}/plugins/{binding_id}", tag = "plugins",
    security(("bearer" = []), ("api_key" = [])), params(("id" = uuid::Uuid, Path), ("binding_id" = uuid::Uuid, Path)),
    request_body = UpdateBindingRequest, responses((status = 200, body = PluginBindingDto),
    (status = 404, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn update_binding(
    State(state): State<AppState>,
    caller: Caller,
    Path((instance_id, binding_id)): Path<(InstanceId, PluginBindingId)>,
    Json(body): Json<UpdateBindingRequest>,
) -> Result<Json<PluginBindingDto>, ApiError> {
    let change = Rebind {
        version: body.version,
        position: body.position,
        direction: body.direction,
        config: body.config,
        enabled: body.enabled,
        failure_policy: body.failure_policy,
        reset_errors: body.reset_errors,
    };
    let binding = state.plugins.rebind(&caller, instance_id, binding_id, change).await?;
    Ok(Json(binding.into()))
}

#[utoipa::path(delete, path = "/v1/instances/{id}/plugins/{binding_id}", tag = "plugins",
    security(("bearer" = []), ("api_key" = [])), params(("id" = uuid::Uuid, Path), ("binding_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn unbind(
    State(state): State<AppState>,
    caller: Caller,
    Path((instance_id, binding_id)): Path<(InstanceId, PluginBindingId)>,
) -> Result<StatusCode, ApiError> {
    state.plugins.unbind(&caller, instance_id, binding_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What the plugin logged through the host, newest first (the last 500 lines per binding are kept; the host also
/// rate-limits lines per call).
#[utoipa::path(get, path = "/v1/instances/{id}/plugins/{binding_id}/logs", tag = "plugins",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = uuid::Uuid, Path), ("binding_id" = uuid::Uuid, Path), PageQuery),
    responses((status = 200, body = PageDto<PluginLogDto>),
    (status = 404, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path((instance_id, binding_id)): Path<(InstanceId, PluginBindingId)>,
    Query(query): Query<PageQuery>,
) -> Result<Json<PageDto<PluginLogDto>>, ApiError> {
    let page = query.page_request()?;
    let page = state.plugins.logs(&caller, instance_id, binding_id, page).await?;
    Ok(Json(PageDto::from_page(page, Into::into)))
}
