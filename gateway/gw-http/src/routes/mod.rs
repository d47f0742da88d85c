//! The endpoints, one module per resource.

pub mod audit;
pub mod auth;
pub mod health;
pub mod instances;
pub mod problems;
pub mod subscriptions;
