//! Webhook delivery: events bound for tenants' endpoints, signed (Standard Webhooks), sent, retried and
//! dead-lettered.
//!
//! - [`WebhookSink`] is an [`gw_core::EventSink`]: it writes one outbox row per subscribed, active endpoint before
//!   it returns, so the session engine acknowledges nothing that is not durable.
//! - [`Dispatcher`] claims due rows in batches under a short lease (any number of nodes; the store makes claims
//!   exclusive) and renews the leases of everything it holds in one store call per third of a lease, so a slow
//!   attempt never loses its row while the node lives and a crashed node's rows are taken over within a lease
//!   (counted and logged as recovered). It sends them with bounded concurrency overall and per endpoint, and
//!   records each attempt: 2xx succeeds, 410 disables the endpoint, anything else (other statuses, 3xx, timeouts,
//!   refused addresses) retries on the schedule with jitter, then dead-letters. An endpoint failing without a
//!   success for longer than the configured window is disabled, with an audit row and a `webhook.disabled` event.
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
