//! Webhook delivery: events bound for tenants' endpoints, signed (Standard Webhooks), sent, retried and
//! dead-lettered.
//!
//! - [`WebhookSink`] is an [`gw_core::EventSink`]: it writes one outbox row per subscribed, active endpoint before
//!   it returns, so the session engine acknowledges nothing that is not durable.
//! - [`Dispatcher`] claims due rows in batches (any number of nodes; the store makes claims exclusive), sends them
//!   with bounded concurrency overall and per endpoint, and records each attempt: 2xx succeeds, 410 disables the
//!   endpoint, anything else (other statuses, 3xx, timeouts, refused addresses) retries on the schedule with
//!   jitter, then dead-letters. An endpoint failing without a success for longer than the configured window is
//!   disabled, with an audit row and a `webhook.disabled` event.
//!
//! Architecture invariant: no HTTP framework and no SQL here; outbound HTTP goes through `gw-egress` only, so
//! every request passes the SSRF guard.

mod dispatcher;
mod metrics;
mod signing;
mod sink;

pub use dispatcher::{Dispatcher, DispatcherConfig, DispatcherHandle, TestFire, envelope};
pub use metrics::{Metrics, MetricsSnapshot};
pub use signing::{SecretFormatError, SigningSecret, VerifyError, signature_header, verify};
pub use sink::WebhookSink;
