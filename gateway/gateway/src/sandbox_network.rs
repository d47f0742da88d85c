//! The sandbox, embedded or shared: `gateway sandbox-network` runs the shared simulated network, and a node with
//! `sessions.sandbox_network` set dials it instead of running its own.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use gw_sessions::Driver;
use gw_sessions::sandbox::{RemoteSandbox, SandboxControl, SandboxDriver, SandboxNetwork};

use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to listen. The network has no authentication: keep it on loopback or a private network.
    #[arg(long, default_value = "127.0.0.1:7811")]
    listen: SocketAddr,
}

/// A node's sandbox: the engine's driver and the HTTP controls, over one network.
#[derive(Debug)]
pub struct Sandbox {
    pub driver: Arc<dyn Driver>,
    pub control: Arc<dyn SandboxControl>,
}

/// The node's sandbox, or `None` when the sandbox is disabled.
pub fn sandbox(settings: &Settings) -> anyhow::Result<Option<Sandbox>> {
    if !settings.sessions.sandbox {
        return Ok(None);
    }
    Ok(Some(match settings.sandbox_network()? {
        Some(addr) => {
            tracing::info!(addr, "the sandbox is the shared network");
            let remote = RemoteSandbox::new(addr);
            Sandbox { driver: remote.clone(), control: remote }
        }
        None => {
            let network = SandboxNetwork::new();
            Sandbox { driver: Arc::new(SandboxDriver::new(network.clone())), control: network }
        }
    }))
}

/// Runs the shared network until SIGINT or SIGTERM. Prints `sandbox network listening on <addr>` once bound.
pub fn run(args: &Args) -> ExitCode {
    // The default log settings (`RUST_LOG` overrides the level): the network reads no configuration.
    crate::telemetry::init(&Settings::default().log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("error: cannot listen on {}: {err}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(bound) => println!("sandbox network listening on {bound}"),
            Err(err) => {
                eprintln!("error: cannot read the bound address: {err}");
                return ExitCode::FAILURE;
            }
        }
        gw_sessions::sandbox::server::serve(listener, SandboxNetwork::new(), crate::shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}
