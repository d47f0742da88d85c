//! An instance's API keys: create with scopes (the secret shown once), rotate, revoke, usage.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use gw_accounts::CreateApiKey;
use gw_core::{ApiKeyId, InstanceId, KeyScope};
use gw_store::PageRequest;
use maud::{Markup, html};

use super::{Form, PageResult};
use crate::error::ConsoleError;
use crate::session::{self, Signed};
use crate::{ConsoleState, forms, layout};

/// A rotated-out key stays valid this long, so clients can move to the new one.
const ROTATION_GRACE: chrono::Duration = chrono::Duration::hours(24);

pub async fn list(State(state): State<ConsoleState>, signed: Signed, Path(id): Path<String>) -> PageResult {
    let id: InstanceId = forms::id(&id)?;
    page(&state, &signed, id, None).await
}

async fn page(state: &ConsoleState, signed: &Signed, id: InstanceId, shown_once: Option<Markup>) -> PageResult {
    let instance = state.messaging.status(&signed.caller(), id).await?;
    let keys = state.accounts.list_api_keys(&signed.principal, id, PageRequest::first(PageRequest::MAX_LIMIT)).await?;
    let base = format!("/console/instances/{id}/keys");
    Ok(layout::page(
        &format!("{}: API keys", instance.name),
        signed,
        html! {
            (layout::instance_tabs(id, "API keys"))
            @if let Some(shown_once) = shown_once { (shown_once) }
            @if keys.items.is_empty() {
                p { "No keys yet." }
            } @else {
                div.scroll {
                    table #keys {
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Scopes" } th scope="col" { "State" } th scope="col" { "Used" } th scope="col" { "Last used" } th scope="col" { "Expires" } th scope="col" { span.visually-hidden { "Actions" } } } }
                        tbody {
                            @for key in &keys.items {
                                tr {
                                    td { (key.name) }
                                    td { (key.permissions.join(", ")) }
                                    td { (layout::badge(if key.is_active { "active" } else { "revoked" })) }
                                    td { (key.usage_count) }
                                    td { (layout::when(key.last_used_at)) }
                                    td { (layout::when(key.expires_at)) }
                                    td.actions {
                                        @if key.is_active {
                                            (layout::post_button(&signed.csrf, &format!("{base}/{}/rotate", key.id), "Rotate", ""))
                                            (layout::post_button(&signed.csrf, &format!("{base}/{}/revoke", key.id), "Revoke", "danger"))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "New key" }
            form.stack method="post" action=(base) {
                (layout::csrf_field(&signed.csrf))
                label for="key-name" { "Name" }
                input #key-name name="name" required maxlength="100";
                fieldset {
                    legend { "Scopes" }
                    @for scope in KeyScope::ALL {
                        @let field = format!("scope-{}", scope.as_str().replace(':', "-"));
                        div.check {
                            input id=(field) type="checkbox" name="scopes" value=(scope.as_str());
                            label for=(field) { (scope.as_str()) }
                        }
                    }
                }
                button type="submit" { "Create key" }
            }
        },
    ))
}

fn secret_once(secret: &str) -> Markup {
    layout::notice(html! {
        p { strong { "Copy this key now: it is shown only once." } }
        p { code #new-key-secret { (secret) } }
    })
}

pub async fn create(
    State(state): State<ConsoleState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> PageResult {
    let id: InstanceId = forms::id(&id)?;
    let values = |name: &str| -> Vec<String> {
        fields.iter().filter(|(key, _)| key == name).map(|(_, value)| value.clone()).collect()
    };
    let new = CreateApiKey {
        name: values("name").into_iter().next().unwrap_or_default(),
        permissions: values("scopes"),
        expires_at: None,
        rate_limit: None,
    };
    let (_, secret) = state.accounts.create_api_key(&signed.principal, id, new).await?;
    page(&state, &signed, id, Some(secret_once(secret.expose()))).await
}

pub async fn rotate(
    State(state): State<ConsoleState>,
    signed: Signed,
    Path((id, key)): Path<(String, String)>,
) -> PageResult {
    let (id, key): (InstanceId, ApiKeyId) = (forms::id(&id)?, forms::id(&key)?);
    let rotated = state.accounts.rotate_api_key(&signed.principal, id, key, ROTATION_GRACE).await?;
    page(&state, &signed, id, Some(secret_once(rotated.secret.expose()))).await
}

pub async fn revoke(
    State(state): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    let (id, key): (InstanceId, ApiKeyId) = (forms::id(&id)?, forms::id(&key)?);
    state.accounts.revoke_api_key(&signed.principal, id, key).await?;
    Ok(session::redirect(&headers, &format!("/console/instances/{id}/keys")))
}
