//! The page shell (head, navigation, the CSRF header htmx sends) and small shared pieces.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::assets;
use crate::session::{CSRF_FIELD, Csrf, Signed};

/// htmx swaps error responses too (a refused form shows why in place) and sends the CSRF header everywhere.
const HTMX_CONFIG: &str =
    r#"{"responseHandling":[{"code":"204","swap":false},{"code":"[2345]..","swap":true}],"historyCacheSize":0}"#;

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="htmx-config" content=(HTMX_CONFIG);
            title { (title) " · Gateway console" }
            link rel="stylesheet" href=(assets::CSS);
            script src=(assets::HTMX) defer {}
        }
    }
}

/// A page of a signed-in user.
pub fn page(title: &str, signed: &Signed, body: Markup) -> Markup {
    let headers = format!(r#"{{"x-csrf-token":"{}"}}"#, signed.csrf.0);
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body hx-boost="true" hx-headers=(headers) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console/" { "Gateway" }
                    nav aria-label="Main" {
                        ul {
                            li { a href="/console/instances" { "Instances" } }
                            li { a href="/console/plugins" { "Plugins" } }
                            li { a href="/console/usage" { "Usage" } }
                            @if signed.is_operator() {
                                li { a href="/console/admin/subscriptions" { "Subscriptions" } }
                                li { a href="/console/admin/audit" { "Audit log" } }
                            }
                        }
                    }
                    form method="post" action="/console/logout" {
                        (csrf_field(&signed.csrf))
                        button.link type="submit" { "Sign out" }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page without navigation: sign-in and errors.
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                main #main.narrow { (body) }
            }
        }
    }
}

pub fn csrf_field(csrf: &Csrf) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(csrf.0); }
}

/// A button that posts to `action` (a form of its own, so it works without script too).
pub fn post_button(csrf: &Csrf, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf_field(csrf))
            button class=(class) type="submit" { (label) }
        }
    }
}

/// A status word with a colour that never carries the meaning alone (the word is always there).
pub fn badge(text: &str) -> Markup {
    html! { span class={ "badge badge-" (text) } { (text) } }
}

pub fn when(at: Option<gw_core::Timestamp>) -> Markup {
    match at {
        Some(at) => {
            html! { time datetime=(at) { (chrono::DateTime::<chrono::Utc>::from(at).format("%Y-%m-%d %H:%M:%S UTC")) } }
        }
        None => html! { "—" },
    }
}

/// The instance's own navigation.
pub fn instance_tabs(id: gw_core::InstanceId, current: &str) -> Markup {
    let tabs = [
        ("", "Overview"),
        ("/messages", "Messages"),
        ("/keys", "API keys"),
        ("/webhooks", "Webhooks"),
        ("/plugins", "Plugins"),
    ];
    html! {
        nav.tabs aria-label="Instance" {
            @for (path, label) in tabs {
                @let href = format!("/console/instances/{id}{path}");
                @if label == current {
                    a href=(href) aria-current="page" { (label) }
                } @else {
                    a href=(href) { (label) }
                }
            }
        }
    }
}

/// A notice shown once (a new key's secret, a test fire's result).
pub fn notice(body: Markup) -> Markup {
    html! { div.notice role="status" { (body) } }
}

/// Raw SVG produced by this crate (the QR code, the usage chart).
pub fn svg(markup: String) -> Markup {
    PreEscaped(markup)
}
