//! Operator pages: subscriptions with their tiers and use, a subscription's users, and the audit log with
//! filters. The services refuse tenants (a tenant sees the friendly 403), as the API does.

use axum::extract::{Path, Query, State};
use gw_core::{AuditAction, AuditResource, SubscriptionId};
use gw_store::{AuditFilter, PageRequest};
use maud::html;
use serde::Deserialize;

use super::PageResult;
use crate::error::ConsoleError;
use crate::session::Signed;
use crate::{ConsoleState, forms, layout};

pub async fn subscriptions(State(state): State<ConsoleState>, signed: Signed) -> PageResult {
    let page = state.accounts.list_subscriptions(&signed.principal, PageRequest::first(PageRequest::MAX_LIMIT)).await?;
    Ok(layout::page(
        "Subscriptions",
        &signed,
        html! {
            div.scroll {
                table #subscriptions {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Tier" } th scope="col" { "Instances" } th scope="col" { "Messages this month" } th scope="col" { "State" } th scope="col" { "Id" } } }
                    tbody {
                        @for subscription in &page.items {
                            tr {
                                td { a href={ "/console/admin/subscriptions/" (subscription.id) "/users" } { (subscription.name) } }
                                td { (subscription.tier.as_str()) }
                                td { (subscription.current_instances) " / " (subscription.max_instances) }
                                td { (subscription.messages_used) " / " (subscription.monthly_messages) }
                                td { (layout::badge(if subscription.is_active { "active" } else { "inactive" })) }
                                td { code { (subscription.id) } }
                            }
                        }
                    }
                }
            }
        },
    ))
}

pub async fn users(State(state): State<ConsoleState>, signed: Signed, Path(id): Path<String>) -> PageResult {
    let id: SubscriptionId = forms::id(&id)?;
    let page = state.accounts.list_users(&signed.principal, id, PageRequest::first(PageRequest::MAX_LIMIT)).await?;
    Ok(layout::page(
        "Users",
        &signed,
        html! {
            div.scroll {
                table #users {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "State" } th scope="col" { "Last sign-in" } } }
                    tbody {
                        @for user in &page.items {
                            tr {
                                td { (user.name) }
                                td { (user.email.as_str()) }
                                td { (user.role.as_str()) }
                                td { (layout::badge(if user.is_active { "active" } else { "inactive" })) }
                                td { (layout::when(user.last_login_at)) }
                            }
                        }
                    }
                }
            }
        },
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default, deserialize_with = "forms::blank_is_none")]
    action: Option<String>,
    #[serde(default, deserialize_with = "forms::blank_is_none")]
    resource: Option<String>,
    #[serde(default, deserialize_with = "forms::blank_is_none")]
    subscription: Option<String>,
}

pub async fn audit(State(state): State<ConsoleState>, signed: Signed, Query(query): Query<AuditQuery>) -> PageResult {
    let invalid = |what: &str| ConsoleError::Invalid(format!("unknown {what}"));
    let filter = AuditFilter {
        action: query.action.as_deref().map(|a| a.parse::<AuditAction>().map_err(|_| invalid("action"))).transpose()?,
        resource: query
            .resource
            .as_deref()
            .map(|r| r.parse::<AuditResource>().map_err(|_| invalid("resource")))
            .transpose()?,
        subscription_id: query.subscription.as_deref().map(forms::id::<SubscriptionId>).transpose()?,
        ..AuditFilter::default()
    };
    let page = state.accounts.list_audit(&signed.principal, filter, PageRequest::first(PageRequest::MAX_LIMIT)).await?;
    Ok(layout::page(
        "Audit log",
        &signed,
        html! {
            form.inline-form method="get" action="/console/admin/audit" {
                label for="audit-action" { "Action" }
                select #audit-action name="action" {
                    option value="" { "any" }
                    @for action in AuditAction::ALL { option value=(action.as_str()) selected[query.action.as_deref() == Some(action.as_str())] { (action.as_str()) } }
                }
                label for="audit-resource" { "Resource" }
                select #audit-resource name="resource" {
                    option value="" { "any" }
                    @for resource in AuditResource::ALL { option value=(resource.as_str()) selected[query.resource.as_deref() == Some(resource.as_str())] { (resource.as_str()) } }
                }
                label for="audit-subscription" { "Subscription id" }
                input #audit-subscription name="subscription" value=(query.subscription.as_deref().unwrap_or(""));
                button type="submit" { "Filter" }
            }
            div.scroll {
                table #audit {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Action" } th scope="col" { "Resource" } th scope="col" { "By" } th scope="col" { "From" } } }
                    tbody {
                        @for entry in &page.items {
                            tr {
                                td { (layout::when(Some(entry.timestamp))) }
                                td { (entry.action.as_str()) }
                                td { (entry.resource.as_str()) " " code { (entry.resource_id.as_deref().unwrap_or("")) } }
                                td { @if let Some(user) = entry.user_id { "user " code { (user) } } @else if let Some(key) = entry.api_key_id { "key " code { (key) } } }
                                td { (entry.ip_address.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        },
    ))
}
