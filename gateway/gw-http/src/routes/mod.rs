//! The endpoints, one module per resource.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod cluster;
pub mod docs;
pub mod health;
pub mod instances;
pub mod numbers;
pub mod plugins;
pub mod problems;
pub mod sandbox;
pub mod sessions;
pub mod subscriptions;
pub mod usage;
pub mod webhooks;
