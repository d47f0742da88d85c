//! The gateway server as a library: configuration, first-run bootstrap, and [`Application`], which wires the store,
//! limiter, engine, plugin host, webhook dispatcher and HTTP edge together and serves them on a listener it is
//! given. The `gateway` binary is a thin command line over it; tests build the same application in-process on a
//! port-0 listener. Wiring only; the behaviour lives in the library crates.

pub mod bootstrap;
pub mod config;
mod edge;
mod live_events;
mod media;
pub mod plugin_run;
pub mod sandbox_network;
mod serve;
pub mod single_node;
mod startup;
pub mod telemetry;

pub use startup::{Application, migrate, shutdown_signal};
