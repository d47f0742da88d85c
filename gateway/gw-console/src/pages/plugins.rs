//! Plugins: the list, creation, versions (upload, activate, roll back), and an instance's bindings with their
//! order, fail mode, errors and logs.

use axum::extract::{Multipart, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use gw_core::{BindingDirection, FailurePolicy, InstanceId, PluginId};
use gw_services::{Bind, CreatePlugin};
use gw_store::PageRequest;
use maud::{Markup, html};
use serde::Deserialize;

use super::{Form, PageResult};
use crate::error::ConsoleError;
use crate::session::{self, Signed};
use crate::{ConsoleState, forms, layout};

pub async fn list(State(state): State<ConsoleState>, signed: Signed) -> PageResult {
    let plugins = state.plugins.list(&signed.caller(), PageRequest::first(PageRequest::MAX_LIMIT)).await?;
    Ok(layout::page(
        "Plugins",
        &signed,
        html! {
            @if plugins.items.is_empty() {
                p { "No plugins yet. A plugin is a WebAssembly component that sees every message of the instances it is bound to." }
            } @else {
                div.scroll {
                    table #plugins {
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Active version" } th scope="col" { "Latest" } th scope="col" { "Description" } } }
                        tbody {
                            @for plugin in &plugins.items {
                                tr {
                                    td { a href={ "/console/plugins/" (plugin.id) } { (plugin.name) } }
                                    td { (plugin.active_version.map(|v| v.to_string()).unwrap_or_else(|| "none".into())) }
                                    td { (plugin.latest_version) }
                                    td { (plugin.description.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "New plugin" }
            form.stack method="post" action="/console/plugins" {
                (layout::csrf_field(&signed.csrf))
                label for="plugin-name" { "Name" }
                input #plugin-name name="name" required maxlength="100";
                label for="plugin-description" { "Description" }
                input #plugin-description name="description" maxlength="1000";
                @if signed.is_operator() {
                    label for="plugin-subscription" { "Subscription id" }
                    input #plugin-subscription name="subscription_id" required;
                }
                button type="submit" { "Create plugin" }
            }
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct NewPlugin {
    name: String,
    #[serde(default, deserialize_with = "forms::blank_is_none")]
    description: Option<String>,
    #[serde(default, deserialize_with = "forms::blank_is_none")]
    subscription_id: Option<String>,
}

pub async fn create(
    State(state): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<NewPlugin>,
) -> Result<Response, ConsoleError> {
    let new = CreatePlugin {
        name: &form.name,
        description: form.description,
        subscription_id: form.subscription_id.as_deref(),
    };
    let plugin = state.plugins.create(&signed.caller(), new).await?;
    Ok(session::redirect(&headers, &format!("/console/plugins/{}", plugin.id)))
}

pub async fn show(State(state): State<ConsoleState>, signed: Signed, Path(id): Path<String>) -> PageResult {
    let id: PluginId = forms::id(&id)?;
    plugin_page(&state, &signed, id, None).await
}

async fn plugin_page(state: &ConsoleState, signed: &Signed, id: PluginId, notice: Option<Markup>) -> PageResult {
    let caller = signed.caller();
    let plugin = state.plugins.get(&caller, id).await?;
    let (versions, active) = state.plugins.versions(&caller, id).await?;
    let base = format!("/console/plugins/{id}");
    Ok(layout::page(
        &plugin.name,
        signed,
        html! {
            @if let Some(notice) = notice { (notice) }
            @if let Some(description) = &plugin.description { p { (description) } }
            h2 { "Upload a version" }
            form.stack method="post" action={ (base) "/versions" } enctype="multipart/form-data" hx-post={ (base) "/versions" } hx-encoding="multipart/form-data" hx-target="body" {
                (layout::csrf_field(&signed.csrf))
                label for="plugin-file" { "Component (.wasm)" }
                input #plugin-file type="file" name="file" accept=".wasm,application/wasm" required;
                button type="submit" { "Upload" }
            }
            h2 { "Versions" }
            @if versions.is_empty() {
                p { "No versions yet." }
            } @else {
                div.scroll {
                    table #versions {
                        thead { tr { th scope="col" { "Version" } th scope="col" { "Size" } th scope="col" { "SHA-256" } th scope="col" { "Uploaded" } th scope="col" { span.visually-hidden { "Actions" } } } }
                        tbody {
                            @for version in &versions {
                                tr {
                                    td { (version.version) @if active == Some(version.version) { " " (layout::badge("active")) } }
                                    td { (version.size_bytes) " bytes" }
                                    td { code { (&version.sha256[..version.sha256.len().min(12)]) "…" } }
                                    td { (layout::when(Some(version.created_at))) }
                                    td {
                                        @if active != Some(version.version) {
                                            form.inline method="post" action={ (base) "/activate" } {
                                                (layout::csrf_field(&signed.csrf))
                                                input type="hidden" name="version" value=(version.version);
                                                button type="submit" { @if active.is_some_and(|a| a > version.version) { "Roll back to " } @else { "Activate " } (version.version) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// Reads the `file` field of the form (the CSRF check ran on the header htmx sends).
pub async fn upload(
    State(state): State<ConsoleState>,
    signed: Signed,
    Path(id): Path<String>,
    mut form: Multipart,
) -> PageResult {
    let id: PluginId = forms::id(&id)?;
    let read = |limit: u64| async move {
        while let Some(field) = form.next_field().await.map_err(|e| ConsoleError::Invalid(e.body_text()))? {
            if field.name() == Some("file") {
                let bytes = field.bytes().await.map_err(|e| ConsoleError::Invalid(e.body_text()))?;
                if bytes.len() as u64 > limit {
                    return Err(ConsoleError::Invalid(format!(
                        "the component is larger than your limit of {limit} bytes"
                    )));
                }
                return Ok(bytes.to_vec());
            }
        }
        Err(ConsoleError::Invalid("choose a .wasm file to upload".into()))
    };
    let (version, _) = state.plugins.upload(&signed.caller(), id, read).await?;
    let notice = layout::notice(html! { p #uploaded { "Version " (version.version) " uploaded and checked." } });
    plugin_page(&state, &signed, id, Some(notice)).await
}

#[derive(Debug, Deserialize)]
pub struct Activate {
    version: i32,
}

pub async fn activate(
    State(state): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Activate>,
) -> Result<Response, ConsoleError> {
    let id: PluginId = forms::id(&id)?;
    state.plugins.activate(&signed.caller(), id, form.version).await?;
    Ok(session::redirect(&headers, &format!("/console/plugins/{id}")))
}

pub async fn bindings(State(state): State<ConsoleState>, signed: Signed, Path(id): Path<String>) -> PageResult {
    let id: InstanceId = forms::id(&id)?;
    let caller = signed.caller();
    let instance = state.messaging.status(&caller, id).await?;
    let bindings = state.plugins.bindings(&caller, id).await?;
    let plugins = state.plugins.list(&caller, PageRequest::first(PageRequest::MAX_LIMIT)).await?;
    let name_of =
        |plugin: PluginId| plugins.items.iter().find(|p| p.id == plugin).map_or("(unknown)", |p| p.name.as_str());
    let mut logs = Vec::with_capacity(bindings.len());
    for binding in &bindings {
        logs.push(state.plugins.logs(&caller, id, binding.id, PageRequest::first(20)).await?.items);
    }
    Ok(layout::page(
        &format!("{}: plugins", instance.name),
        &signed,
        html! {
            (layout::instance_tabs(id, "Plugins"))
            @if bindings.is_empty() {
                p { "No plugins bound: messages pass unchanged." }
            } @else {
                ol.cards #bindings {
                    @for (binding, logs) in bindings.iter().zip(&logs) {
                        li {
                            strong { (name_of(binding.plugin_id)) }
                            " · position " (binding.position)
                            " · " (direction_name(binding.direction))
                            " · " (policy_name(binding.failure_policy))
                            " " (layout::badge(if binding.enabled { "enabled" } else { "disabled" }))
                            p.muted { (binding.error_count) " error(s)" @if let Some(error) = &binding.last_error { ", last: " (error) " " (layout::when(binding.last_error_at)) } }
                            @if !logs.is_empty() {
                                details {
                                    summary { "Logs (" (logs.len()) ")" }
                                    ul { @for entry in logs { li { (layout::when(Some(entry.at))) " [" (entry.level) "] " (entry.message) } } }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Bind a plugin" }
            @if plugins.items.is_empty() {
                p { a href="/console/plugins" { "Create and upload a plugin first." } }
            } @else {
                form.stack method="post" action={ "/console/instances/" (id) "/plugins" } {
                    (layout::csrf_field(&signed.csrf))
                    label for="bind-plugin" { "Plugin" }
                    select #bind-plugin name="plugin_id" {
                        @for plugin in &plugins.items { option value=(plugin.id) { (plugin.name) } }
                    }
                    label for="bind-position" { "Position (lower runs first)" }
                    input #bind-position name="position" type="number" min="0" max=(gw_services::MAX_BINDING_POSITION) value="0";
                    label for="bind-direction" { "Messages" }
                    select #bind-direction name="direction" {
                        option value="both" { "both" } option value="inbound" { "inbound" } option value="outbound" { "outbound" }
                    }
                    label for="bind-policy" { "When the plugin fails" }
                    select #bind-policy name="failure_policy" {
                        option value="fail_open" { "fail open: skip it, deliver the message" }
                        option value="fail_closed" { "fail closed: drop the message" }
                    }
                    button type="submit" { "Bind" }
                }
            }
        },
    ))
}

fn direction_name(direction: BindingDirection) -> &'static str {
    match direction {
        BindingDirection::Inbound => "inbound",
        BindingDirection::Outbound => "outbound",
        BindingDirection::Both => "both",
    }
}

fn policy_name(policy: FailurePolicy) -> &'static str {
    match policy {
        FailurePolicy::FailOpen => "fail open",
        FailurePolicy::FailClosed => "fail closed",
    }
}

#[derive(Debug, Deserialize)]
pub struct NewBinding {
    plugin_id: String,
    position: Option<i32>,
    direction: String,
    failure_policy: String,
}

pub async fn bind(
    State(state): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<NewBinding>,
) -> Result<Response, ConsoleError> {
    let id: InstanceId = forms::id(&id)?;
    let direction = match form.direction.as_str() {
        "inbound" => BindingDirection::Inbound,
        "outbound" => BindingDirection::Outbound,
        "both" => BindingDirection::Both,
        _ => return Err(ConsoleError::Invalid("messages: inbound, outbound or both".into())),
    };
    let failure_policy = match form.failure_policy.as_str() {
        "fail_open" => FailurePolicy::FailOpen,
        "fail_closed" => FailurePolicy::FailClosed,
        _ => return Err(ConsoleError::Invalid("when the plugin fails: fail_open or fail_closed".into())),
    };
    let bind = Bind {
        plugin_id: form.plugin_id,
        version: None,
        position: form.position,
        direction,
        config: serde_json::json!({}),
        enabled: true,
        failure_policy,
    };
    state.plugins.bind(&signed.caller(), id, bind).await?;
    Ok(session::redirect(&headers, &format!("/console/instances/{id}/plugins")))
}
