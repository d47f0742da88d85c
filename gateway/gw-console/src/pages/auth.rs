//! Sign-in and sign-out with the existing accounts (`Accounts::login`, the API's own flow).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gw_accounts::{AccountError, Principal};
use maud::{Markup, html};
use serde::Deserialize;

use super::Form;
use crate::ConsoleState;
use crate::error::ConsoleError;
use crate::layout;
use crate::session::{self, ClientIp, Csrf};

fn login_form(csrf: &Csrf, email: &str, error: Option<&str>) -> Markup {
    layout::bare(
        "Sign in",
        html! {
            h1 { "Sign in to the gateway" }
            @if let Some(error) = error {
                div.error role="alert" #login-error { (error) }
            }
            form method="post" action="/console/login" {
                (layout::csrf_field(csrf))
                label for="email" { "Email" }
                input #email type="email" name="email" autocomplete="username" required value=(email);
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub async fn login_page(principal: Option<axum::Extension<Principal>>, csrf: Csrf) -> Response {
    if principal.is_some() {
        return axum::response::Redirect::to("/console/").into_response();
    }
    login_form(&csrf, "", None).into_response()
}

#[derive(Debug, Deserialize)]
pub struct Credentials {
    email: String,
    password: String,
}

pub async fn login(
    State(state): State<ConsoleState>,
    ip: ClientIp,
    csrf: Csrf,
    headers: HeaderMap,
    Form(form): Form<Credentials>,
) -> Result<Response, ConsoleError> {
    match state.accounts.login(&form.email, &form.password, ip.0).await {
        Ok(session) => Ok(session::start(&state, session, session::redirect(&headers, "/console/"))),
        Err(error @ (AccountError::InvalidCredentials | AccountError::AccountInactive)) => {
            let page = login_form(&csrf, &form.email, Some(&format!("{}.", capital(&error.to_string()))));
            Ok((StatusCode::UNAUTHORIZED, page).into_response())
        }
        Err(AccountError::Throttled { retry_after }) => {
            let message = format!("Too many failed attempts; try again in {} seconds.", retry_after.as_secs().max(1));
            Ok((StatusCode::TOO_MANY_REQUESTS, login_form(&csrf, &form.email, Some(&message))).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

fn capital(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Ends the sign-in (its refresh token is revoked) and clears the cookies.
pub async fn logout(
    State(state): State<ConsoleState>,
    ip: ClientIp,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    if let Some(refresh) = session::refresh_token(&headers) {
        state.accounts.logout(refresh, ip.0).await?;
    }
    Ok(session::end(&state, session::redirect(&headers, "/console/login")))
}
