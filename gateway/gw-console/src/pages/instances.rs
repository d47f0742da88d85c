//! Instances: the list, creation, and one instance's page with its live status and QR code, session actions,
//! pairing code, and recent messages with a test send.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use gw_accounts::CreateInstance;
use gw_core::{DriverKind, Instance, InstanceId, InstanceStatus, SubscriptionId};
use gw_store::PageRequest;
use maud::{Markup, html};
use serde::Deserialize;

use super::{Form, PageResult};
use crate::error::ConsoleError;
use crate::session::{self, Signed};
use crate::{ConsoleState, forms, layout};

pub async fn index(headers: HeaderMap) -> Response {
    session::redirect(&headers, "/console/instances")
}

pub async fn list(State(state): State<ConsoleState>, signed: Signed) -> PageResult {
    let page = state.accounts.list_instances(&signed.principal, PageRequest::first(PageRequest::MAX_LIMIT)).await?;
    Ok(layout::page(
        "Instances",
        &signed,
        html! {
            @if page.items.is_empty() {
                p { "No instances yet: create one below, then connect it and scan its QR code." }
            } @else {
                div.scroll {
                    table {
                        caption.visually-hidden { "Your instances" }
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Status" } th scope="col" { "Phone" } th scope="col" { "Driver" } } }
                        tbody {
                            @for instance in &page.items {
                                tr {
                                    td { a href={ "/console/instances/" (instance.id) } { (instance.name) } }
                                    td { (layout::badge(instance.status.as_str())) }
                                    td { (instance.phone.as_deref().unwrap_or("—")) }
                                    td { (instance.driver.as_str()) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "New instance" }
            form.stack method="post" action="/console/instances" {
                (layout::csrf_field(&signed.csrf))
                label for="instance-name" { "Name" }
                input #instance-name name="name" required maxlength="100";
                label for="instance-driver" { "Driver" }
                select #instance-driver name="driver" {
                    option value="sandbox" selected { "sandbox (simulated WhatsApp)" }
                    option value="whatsapp" { "whatsapp" }
                }
                @if signed.is_operator() {
                    label for="instance-subscription" { "Subscription id" }
                    input #instance-subscription name="subscription_id" required;
                }
                button type="submit" { "Create instance" }
            }
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct NewInstance {
    name: String,
    driver: String,
    #[serde(default, deserialize_with = "forms::blank_is_none")]
    subscription_id: Option<String>,
}

pub async fn create(
    State(state): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<NewInstance>,
) -> Result<Response, ConsoleError> {
    let driver: DriverKind =
        form.driver.parse().map_err(|e: gw_core::ParseEnumError| ConsoleError::Invalid(e.to_string()))?;
    let subscription_id = form
        .subscription_id
        .map(|raw| {
            raw.parse::<SubscriptionId>().map_err(|_| ConsoleError::Invalid("the subscription id is not an id".into()))
        })
        .transpose()?;
    let new = CreateInstance { name: form.name, driver, settings: serde_json::json!({}), subscription_id };
    let instance = state.accounts.create_instance(&signed.principal, new).await?;
    Ok(session::redirect(&headers, &format!("/console/instances/{}", instance.id)))
}

pub async fn show(State(state): State<ConsoleState>, signed: Signed, Path(id): Path<String>) -> PageResult {
    let id: InstanceId = forms::id(&id)?;
    let instance = state.messaging.status(&signed.caller(), id).await?;
    let live = live_panel(&state, &signed, &instance).await?;
    let base = format!("/console/instances/{id}");
    Ok(layout::page(
        &instance.name,
        &signed,
        html! {
            (layout::instance_tabs(id, "Overview"))
            (live)
            h2 { "Session" }
            div.actions {
                (layout::post_button(&signed.csrf, &format!("{base}/connect"), "Connect", "primary"))
                (layout::post_button(&signed.csrf, &format!("{base}/restart"), "Restart", ""))
                (layout::post_button(&signed.csrf, &format!("{base}/logout"), "Log out of WhatsApp", "danger"))
            }
            h2 { "Pair with a code instead" }
            form.stack method="post" action={ (base) "/pair-code" } hx-post={ (base) "/pair-code" } hx-target="#pair-result" {
                (layout::csrf_field(&signed.csrf))
                label for="pair-phone" { "Phone number (with country code)" }
                input #pair-phone name="phone" type="tel" required placeholder="+15550100";
                button type="submit" { "Get a pairing code" }
            }
            div #pair-result aria-live="polite" {}
            h2 { "Details" }
            dl.details {
                dt { "Id" } dd { code { (instance.id) } }
                dt { "Driver" } dd { (instance.driver.as_str()) }
                dt { "Created" } dd { (layout::when(Some(instance.created_at))) }
                dt { "Last connected" } dd { (layout::when(instance.last_connected_at)) }
                dt { "Connection attempts" } dd { (instance.connection_attempts) }
            }
        },
    ))
}

/// The status panel alone, which replaces itself every second: the QR code while pairing, "connected" the moment
/// the phone scans.
pub async fn live(State(state): State<ConsoleState>, signed: Signed, Path(id): Path<String>) -> PageResult {
    let id: InstanceId = forms::id(&id)?;
    let instance = state.messaging.status(&signed.caller(), id).await?;
    live_panel(&state, &signed, &instance).await
}

async fn live_panel(state: &ConsoleState, signed: &Signed, instance: &Instance) -> PageResult {
    let qr = match instance.status {
        InstanceStatus::Qr => match state.messaging.qr(&signed.caller(), instance.id).await {
            Ok((payload, expiry)) => Some((qr_svg(&payload)?, expiry)),
            // Paired between the two reads: the next refresh shows it.
            Err(gw_services::MessagingError::NotPairing(_)) => None,
            Err(error) => return Err(error.into()),
        },
        _ => None,
    };
    Ok(html! {
        section #live hx-get={ "/console/instances/" (instance.id) "/live" } hx-trigger="every 1s" hx-swap="outerHTML" aria-labelledby="live-title" {
            h2 #live-title { "Status" }
            p #status aria-live="polite" data-status=(instance.status.as_str()) {
                (layout::badge(instance.status.as_str()))
                @if instance.status == InstanceStatus::Connected {
                    " Connected"
                    @if let Some(phone) = &instance.phone { " as " (phone) }
                    @if let Some(name) = &instance.display_name { " (" (name) ")" }
                }
            }
            @if let Some(error) = &instance.last_error {
                p.error #last-error { "Last error: " (error) " " (layout::when(instance.last_error_at)) }
            }
            @if let Some((svg, expiry)) = qr {
                figure.qr #qr {
                    div role="img" aria-label="QR code to scan with WhatsApp on the phone" { (layout::svg(svg)) }
                    figcaption { "Open WhatsApp on the phone, Linked devices, Link a device, and scan. Expires " (layout::when(expiry)) "; a new code appears by itself." }
                }
            }
            @if matches!(instance.status, InstanceStatus::Created | InstanceStatus::LoggedOut) {
                p { "Not connected. Press Connect to show a QR code." }
            }
        }
    })
}

fn qr_svg(payload: &str) -> Result<String, ConsoleError> {
    let code = qrcode::QrCode::new(payload.as_bytes()).map_err(|e| ConsoleError::Internal(format!("QR code: {e}")))?;
    let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(240, 240).quiet_zone(true).build();
    // Inline in HTML: without the XML declaration.
    Ok(svg.find("<svg").map(|at| svg[at..].to_owned()).unwrap_or(svg))
}

async fn session_action<F, Fut>(headers: &HeaderMap, id: &str, action: F) -> Result<Response, ConsoleError>
where
    F: FnOnce(InstanceId) -> Fut,
    Fut: Future<Output = Result<Instance, gw_services::MessagingError>>,
{
    let id: InstanceId = forms::id(id)?;
    action(id).await?;
    Ok(session::redirect(headers, &format!("/console/instances/{id}")))
}

pub async fn connect(
    State(state): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let caller = signed.caller();
    session_action(&headers, &id, |id| async move { state.messaging.connect(&caller, id).await }).await
}

pub async fn restart(
    State(state): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let caller = signed.caller();
    session_action(&headers, &id, |id| async move { state.messaging.restart(&caller, id).await }).await
}

pub async fn logout(
    State(state): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let caller = signed.caller();
    session_action(&headers, &id, |id| async move { state.messaging.logout(&caller, id).await }).await
}

#[derive(Debug, Deserialize)]
pub struct Phone {
    phone: String,
}

pub async fn pair_code(
    State(state): State<ConsoleState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<Phone>,
) -> PageResult {
    let id: InstanceId = forms::id(&id)?;
    let code = state.messaging.pair_code(&signed.caller(), id, &form.phone).await?;
    Ok(layout::notice(
        html! { p { "On the phone: Linked devices, Link with phone number, then enter " strong.code { (code) } } },
    ))
}

#[derive(Debug, Deserialize)]
pub struct ChatQuery {
    #[serde(default, deserialize_with = "forms::blank_is_none")]
    chat: Option<String>,
}

pub async fn messages(
    State(state): State<ConsoleState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(query): Query<ChatQuery>,
) -> PageResult {
    let id: InstanceId = forms::id(&id)?;
    let caller = signed.caller();
    let instance = state.messaging.status(&caller, id).await?;
    let page = state.messaging.list_messages(&caller, id, query.chat.as_deref(), PageRequest::first(50)).await?;
    Ok(layout::page(
        &format!("{}: messages", instance.name),
        &signed,
        messages_body(&signed, id, &query, &page.items, None),
    ))
}

fn messages_body(
    signed: &Signed,
    id: InstanceId,
    query: &ChatQuery,
    messages: &[gw_core::Message],
    sent: Option<Markup>,
) -> Markup {
    html! {
        (layout::instance_tabs(id, "Messages"))
        @if let Some(sent) = sent { (sent) }
        h2 { "Send a test message" }
        form.stack method="post" action={ "/console/instances/" (id) "/messages" } {
            (layout::csrf_field(&signed.csrf))
            label for="send-to" { "To (phone number or JID)" }
            input #send-to name="to" required;
            label for="send-text" { "Text" }
            textarea #send-text name="text" required rows="3" {}
            button type="submit" { "Send" }
        }
        h2 { "Recent messages" }
        form.inline-form method="get" action={ "/console/instances/" (id) "/messages" } {
            label for="chat-filter" { "Chat" }
            input #chat-filter name="chat" value=(query.chat.as_deref().unwrap_or("")) placeholder="all chats";
            button type="submit" { "Filter" }
        }
        @if messages.is_empty() {
            p { "No messages yet." }
        } @else {
            div.scroll {
                table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Chat" } th scope="col" { "Direction" } th scope="col" { "Text" } th scope="col" { "Status" } } }
                    tbody {
                        @for message in messages {
                            tr {
                                td { (layout::when(Some(message.created_at))) }
                                td { a href={ "?chat=" (message.chat_jid) } { (message.chat_jid) } }
                                td { (message.direction.as_str()) }
                                td { (message.text.as_deref().unwrap_or(message.kind.as_str())) }
                                td { (layout::badge(message.status.as_str())) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct TestMessage {
    to: String,
    text: String,
}

pub async fn send(
    State(state): State<ConsoleState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<TestMessage>,
) -> Result<impl IntoResponse, ConsoleError> {
    let id: InstanceId = forms::id(&id)?;
    let caller = signed.caller();
    let request = gw_sessions::SendRequest {
        to: form.to,
        content: gw_sessions::SendContent::Text { body: form.text },
        quoted_message_id: None,
        idempotency: None,
    };
    let accepted = state.messaging.send(&caller, id, || Ok::<_, ConsoleError>(request)).await?;
    let instance = state.messaging.status(&caller, id).await?;
    let page = state.messaging.list_messages(&caller, id, None, PageRequest::first(50)).await?;
    let sent = layout::notice(
        html! { p { "Queued: message " code { (accepted.message.id) } " to " (accepted.message.chat_jid) "." } },
    );
    Ok(layout::page(
        &format!("{}: messages", instance.name),
        &signed,
        messages_body(&signed, id, &ChatQuery { chat: None }, &page.items, Some(sent)),
    ))
}
