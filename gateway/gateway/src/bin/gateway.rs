//! The `gateway` binary: parses the command line, reads configuration, and runs the [`Application`] the library
//! builds until SIGINT or SIGTERM. The wiring lives in the library so tests can build the same application
//! in-process.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gateway::config::Settings;
use gateway::{Application, plugin_run, sandbox_network, telemetry};

/// Exit code for a configuration that cannot be used (EX_USAGE).
const EXIT_CONFIG: u8 = 64;
/// Exit code when another process already serves the SQLite database (EX_TEMPFAIL: it may start once that one
/// stopped).
const EXIT_LOCKED: u8 = 75;

#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "Multi-tenant WhatsApp API gateway")]
struct Cli {
    /// A TOML configuration file (GATEWAY_* environment variables override it).
    #[arg(long, global = true, env = "GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Plugin tools for authors.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run the simulated WhatsApp network that several nodes share (`sessions.sandbox_network`); for tests and
    /// demos of a cluster.
    SandboxNetwork(sandbox_network::Args),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Run a plugin component on one event and print the verdict, logs and fuel used as JSON.
    Run(plugin_run::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The local runner needs no configuration, store or runtime.
    if let Some(Command::Plugin(PluginCommand::Run(args))) = &cli.command {
        return match plugin_run::run(args) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    // The shared sandbox needs no configuration or store either.
    if let Some(Command::SandboxNetwork(args)) = &cli.command {
        return sandbox_network::run(args);
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: invalid configuration: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    telemetry::init(&settings.log);
    let service_links = gateway::config::ignored_service_links();
    if !service_links.is_empty() {
        tracing::info!(
            variables = %service_links.join(","),
            "ignoring Kubernetes service-link variables (set enableServiceLinks: false to not receive them)"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(settings).await,
            Command::Migrate => gateway::migrate(settings).await,
            Command::Plugin(_) | Command::SandboxNetwork(_) => Ok(()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, the chain of causes, no backtrace.
            eprintln!("error: {err:#}");
            if err.downcast_ref::<gateway::single_node::AlreadyServed>().is_some() {
                return ExitCode::from(EXIT_LOCKED);
            }
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let addr = settings.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let app = Application::build(settings, listener).await?;
    let bound = app.local_addr();
    tracing::info!(%bound, "listening");
    // The end-to-end harness reads the bound address from this line.
    println!("gateway listening on http://{bound}");
    app.run_until_stopped(gateway::shutdown_signal()).await
}
