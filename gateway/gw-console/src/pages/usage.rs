//! Usage: messages this month against the quota, and an instance's daily statistics as an inline SVG chart.

use axum::extract::{Query, State};
use chrono::{Days, Utc};
use gw_core::{InstanceId, MessageStat, Timestamp};
use gw_store::PageRequest;
use maud::{Markup, html};
use serde::Deserialize;

use super::PageResult;
use crate::error::ConsoleError;
use crate::session::Signed;
use crate::{ConsoleState, forms, layout};

/// The chart's span.
const DAYS: u64 = 30;

#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    #[serde(default, deserialize_with = "forms::blank_is_none")]
    instance: Option<String>,
}

pub async fn page(State(state): State<ConsoleState>, signed: Signed, Query(query): Query<UsageQuery>) -> PageResult {
    let caller = signed.caller();
    let quota = match signed.principal.subscription_id {
        Some(subscription) => {
            Some(state.usage.subscription(&signed.principal, subscription, Timestamp::now().period()).await?.0)
        }
        None => None,
    };
    let instances =
        state.accounts.list_instances(&signed.principal, PageRequest::first(PageRequest::MAX_LIMIT)).await?;
    let chosen = match &query.instance {
        Some(raw) => Some(forms::id::<InstanceId>(raw)?),
        None => instances.items.first().map(|i| i.id),
    };
    let stats = match chosen {
        Some(id) => {
            let today = Utc::now().date_naive();
            let from = today.checked_sub_days(Days::new(DAYS - 1)).unwrap_or(today);
            Some(state.usage.stats(&caller, id, || Ok::<_, ConsoleError>((from, today))).await?)
        }
        None => None,
    };
    Ok(layout::page(
        "Usage",
        &signed,
        html! {
            @if let Some(subscription) = &quota {
                h2 { "This month" }
                @let share = if subscription.monthly_messages > 0 { subscription.messages_used as f64 / subscription.monthly_messages as f64 } else { 0.0 };
                p { label for="quota" { (subscription.messages_used) " of " (subscription.monthly_messages) " messages (" (format!("{:.0}", share * 100.0)) " %)" } }
                meter #quota min="0" max=(subscription.monthly_messages) value=(subscription.messages_used) high=((subscription.monthly_messages as f64 * 0.9) as i64) {}
                p.muted { (subscription.current_instances) " of " (subscription.max_instances) " instances · tier " (subscription.tier.as_str()) }
            }
            h2 { "Daily messages, last " (DAYS) " days" }
            form.inline-form method="get" action="/console/usage" {
                label for="usage-instance" { "Instance" }
                select #usage-instance name="instance" {
                    @for instance in &instances.items {
                        option value=(instance.id) selected[Some(instance.id) == chosen] { (instance.name) }
                    }
                }
                button type="submit" { "Show" }
            }
            @match &stats {
                Some((from, to, days)) => (chart(*from, *to, days)),
                None => p { "No instances yet." },
            }
        },
    ))
}

/// Bars of sent and received messages per day, with a table of the same numbers for screen readers and copying.
fn chart(from: chrono::NaiveDate, to: chrono::NaiveDate, days: &[MessageStat]) -> Markup {
    let dates: Vec<chrono::NaiveDate> = from.iter_days().take_while(|d| *d <= to).collect();
    let of = |date: chrono::NaiveDate| days.iter().find(|s| s.date == date);
    let max = days.iter().map(|s| s.messages_sent.max(s.messages_received)).max().unwrap_or(0).max(1);
    let (width, height, bar) = (dates.len() as i64 * 12, 120_i64, 5_i64);
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {width} {h}" preserveAspectRatio="none" role="img" aria-labelledby="chart-title"><title id="chart-title">Messages sent and received per day from {from} to {to}</title>"#,
        h = height + 2
    );
    for (i, date) in dates.iter().enumerate() {
        let (sent, received) = of(*date).map_or((0, 0), |s| (s.messages_sent, s.messages_received));
        let x = i as i64 * 12;
        for (offset, value, class) in [(1, sent, "sent"), (1 + bar, received, "received")] {
            let h = value * height / max;
            svg.push_str(&format!(
                r#"<rect class="{class}" x="{}" y="{}" width="{bar}" height="{h}"><title>{date}: {value} {class}</title></rect>"#,
                x + offset,
                height - h
            ));
        }
    }
    svg.push_str("</svg>");
    html! {
        figure {
            (layout::svg(svg))
            figcaption { span.key.sent { "sent" } " " span.key.received { "received" } " · the busiest day: " (max) }
        }
        details {
            summary { "The numbers" }
            div.scroll {
                table {
                    thead { tr { th scope="col" { "Day" } th scope="col" { "Sent" } th scope="col" { "Received" } th scope="col" { "Failed" } th scope="col" { "API calls" } } }
                    tbody {
                        @for stat in days {
                            tr { td { (stat.date) } td { (stat.messages_sent) } td { (stat.messages_received) } td { (stat.messages_failed) } td { (stat.api_calls) } }
                        }
                    }
                }
            }
        }
    }
}
