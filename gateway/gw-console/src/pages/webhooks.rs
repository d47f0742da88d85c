//! An instance's webhooks: endpoints with their event filter, test fire, the delivery log (attempts and
//! responses) and replay.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use gw_core::{EventType, InstanceId, WebhookConfigId, WebhookDeliveryId};
use gw_store::PageRequest;
use maud::{Markup, html};

use super::{Form, PageResult};
use crate::error::ConsoleError;
use crate::session::{self, Signed};
use crate::{ConsoleState, forms, layout};

pub async fn list(State(state): State<ConsoleState>, signed: Signed, Path(id): Path<String>) -> PageResult {
    let id: InstanceId = forms::id(&id)?;
    page(&state, &signed, id, None).await
}

async fn page(state: &ConsoleState, signed: &Signed, id: InstanceId, shown_once: Option<Markup>) -> PageResult {
    let caller = signed.caller();
    let instance = state.messaging.status(&caller, id).await?;
    let hooks = state.webhooks.list(&caller, id).await?;
    let base = format!("/console/instances/{id}/webhooks");
    Ok(layout::page(
        &format!("{}: webhooks", instance.name),
        signed,
        html! {
            (layout::instance_tabs(id, "Webhooks"))
            @if let Some(shown_once) = shown_once { (shown_once) }
            @if hooks.is_empty() {
                p { "No endpoints yet." }
            } @else {
                ul.cards #webhooks {
                    @for hook in &hooks {
                        li {
                            a href={ (base) "/" (hook.id) } { (hook.url) }
                            " " (layout::badge(if hook.is_active { "active" } else { "disabled" }))
                            p.muted {
                                "Events: " (hook.events.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
                                " · sent " (hook.total_sent) ", failed " (hook.total_failed)
                            }
                        }
                    }
                }
            }
            h2 { "New endpoint" }
            form.stack method="post" action=(base) {
                (layout::csrf_field(&signed.csrf))
                label for="hook-url" { "URL" }
                input #hook-url name="url" type="url" required placeholder="https://example.com/hooks/whatsapp";
                fieldset {
                    legend { "Events (none ticked: all)" }
                    @for event in EventType::ALL {
                        @let field = format!("event-{}", event.as_str().replace('.', "-"));
                        div.check {
                            input id=(field) type="checkbox" name="events" value=(event.as_str());
                            label for=(field) { (event.as_str()) }
                        }
                    }
                }
                button type="submit" { "Add endpoint" }
            }
        },
    ))
}

pub async fn create(
    State(state): State<ConsoleState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> PageResult {
    let id: InstanceId = forms::id(&id)?;
    let url = fields.iter().find(|(k, _)| k == "url").map(|(_, v)| v.clone()).unwrap_or_default();
    let events: Vec<String> = fields.iter().filter(|(k, _)| k == "events").map(|(_, v)| v.clone()).collect();
    let created = state.webhooks.create(&signed.caller(), id, url, (!events.is_empty()).then_some(events)).await?;
    let secret = layout::notice(html! {
        p { strong { "Signing secret (shown only once): " } code #webhook-secret { (created.secret) } }
        p { a href={ "/console/instances/" (id) "/webhooks/" (created.webhook.id) } { "Open the endpoint and send a test" } }
    });
    page(&state, &signed, id, Some(secret)).await
}

pub async fn show(
    State(state): State<ConsoleState>,
    signed: Signed,
    Path((id, hook)): Path<(String, String)>,
) -> PageResult {
    let (id, hook): (InstanceId, WebhookConfigId) = (forms::id(&id)?, forms::id(&hook)?);
    let caller = signed.caller();
    let config = state.webhooks.get(&caller, id, hook).await?;
    let deliveries = state.webhooks.deliveries(&caller, id, hook, PageRequest::first(50)).await?;
    let base = format!("/console/instances/{id}/webhooks/{hook}");
    Ok(layout::page(
        &config.url,
        &signed,
        html! {
            (layout::instance_tabs(id, "Webhooks"))
            dl.details {
                dt { "Events" } dd { (config.events.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")) }
                dt { "State" } dd { (layout::badge(if config.is_active { "active" } else { "disabled" })) @if let Some(why) = &config.disabled_reason { " " (why) } }
                dt { "Last error" } dd { (config.last_error.as_deref().unwrap_or("—")) }
            }
            form method="post" action={ (base) "/test" } hx-post={ (base) "/test" } hx-target="#test-log" hx-swap="afterbegin" {
                (layout::csrf_field(&signed.csrf))
                button.primary type="submit" { "Send a test event" }
            }
            h2 { "Test deliveries" }
            p.muted { "A test sends a signed webhook.test event now; it is not stored, so its result is listed here." }
            ol #test-log aria-live="polite" {}
            h2 { "Delivery log" }
            @if deliveries.items.is_empty() {
                p { "No deliveries yet." }
            }
            @for delivery in &deliveries.items {
                details.delivery {
                    summary {
                        (layout::badge(delivery.status.as_str())) " " (delivery.event_type) " · " (delivery.attempts) " attempt(s) · " (layout::when(Some(delivery.created_at)))
                    }
                    ol {
                        @for attempt in &delivery.attempt_log {
                            li {
                                (layout::when(Some(attempt.at))) ": "
                                @if let Some(code) = attempt.status_code { "HTTP " (code) } @else { "no response" }
                                " in " (attempt.latency_ms) " ms"
                                @if let Some(error) = &attempt.error { " · " (error) }
                                @if let Some(body) = &attempt.response_excerpt { pre { (body) } }
                            }
                        }
                    }
                    (layout::post_button(&signed.csrf, &format!("{base}/deliveries/{}/replay", delivery.id), "Replay", ""))
                }
            }
        },
    ))
}

/// Fires a test event and answers one entry of the page's test log.
pub async fn test_fire(
    State(state): State<ConsoleState>,
    signed: Signed,
    Path((id, hook)): Path<(String, String)>,
) -> PageResult {
    let (id, hook): (InstanceId, WebhookConfigId) = (forms::id(&id)?, forms::id(&hook)?);
    let fired = state.webhooks.test_fire(&signed.caller(), id, hook).await?;
    Ok(html! {
        li.test-delivery {
            (layout::badge(if fired.success { "delivered" } else { "failed" })) " webhook.test · "
            @if let Some(code) = fired.status_code { "HTTP " (code) } @else { "no response" }
            " in " (fired.latency_ms) " ms · " (layout::when(Some(gw_core::Timestamp::now())))
            @if let Some(error) = &fired.error { " · " (error) }
            @if let Some(body) = &fired.response_excerpt { pre { (body) } }
        }
    })
}

pub async fn replay(
    State(state): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path((id, hook, delivery)): Path<(String, String, String)>,
) -> Result<Response, ConsoleError> {
    let (id, hook, delivery): (InstanceId, WebhookConfigId, WebhookDeliveryId) =
        (forms::id(&id)?, forms::id(&hook)?, forms::id(&delivery)?);
    state.webhooks.replay(&signed.caller(), id, hook, delivery).await?;
    Ok(session::redirect(&headers, &format!("/console/instances/{id}/webhooks/{hook}")))
}
