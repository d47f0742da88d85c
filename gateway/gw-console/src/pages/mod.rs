//! The console's pages, a module per area. Each handler parses its input, calls the domain service with the
//! signed-in caller, and renders the result (or redirects after a change).

pub mod admin;
pub mod auth;
pub mod instances;
pub mod keys;
pub mod plugins;
pub mod usage;
pub mod webhooks;

use axum::extract::{FromRequest, Request};
use maud::Markup;
use serde::de::DeserializeOwned;

use crate::error::ConsoleError;

/// What a page handler answers.
pub type PageResult = Result<Markup, ConsoleError>;

/// `axum::Form` whose rejection is the console's friendly error.
#[derive(Debug)]
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Form::<T>::from_request(request, state)
            .await
            .map(|axum::Form(value)| Form(value))
            .map_err(|rejection| ConsoleError::Invalid(rejection.body_text()))
    }
}
