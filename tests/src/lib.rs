//! `TestApp`: the real `gateway` binary on a free port, on a fresh SQLite file or a fresh PostgreSQL database,
//! driven over HTTP. Readiness is awaited by polling with a deadline, never by sleeping a fixed time.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub mod cluster;
pub mod load;
pub mod private_postgres;
pub use cluster::{SandboxProcess, TestCluster};
pub use private_postgres::PrivatePostgres;

/// The operator password the harness configures.
pub const OPERATOR_EMAIL: &str = "ops@gateway.test";
pub const OPERATOR_PASSWORD: &str = "operator password for tests";
const START_DEADLINE: Duration = Duration::from_secs(60);

pub use gw_test_support::{Backend, TestDatabase as Database};

/// The `gateway` binary under test: the test target passes `env!("CARGO_BIN_EXE_gateway")`, which Cargo sets after
/// building the binary for this very run, so the tests never pick up a stale build.
pub(crate) fn checked_binary(binary: &str) -> PathBuf {
    let binary = PathBuf::from(binary);
    assert!(binary.exists(), "{} is missing", binary.display());
    binary
}

/// Output a child process has written so far.
#[derive(Debug, Clone, Default)]
pub struct Output(Arc<Mutex<String>>);

impl Output {
    pub fn text(&self) -> String {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn push(&self, line: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.push_str(line);
            s.push('\n');
        }
    }
}

/// A running gateway.
#[derive(Debug)]
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub stdout: Output,
    pub stderr: Output,
    child: Child,
}

/// A gateway command with the harness's environment: a clean `GATEWAY_*` set, JSON logs, the test operator.
pub fn gateway_command(binary: &str, database_url: &str, workdir: &Path) -> Command {
    let mut command = Command::new(checked_binary(binary));
    for (key, _) in std::env::vars() {
        if key.starts_with("GATEWAY_") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(workdir)
        .env("GATEWAY_SERVER_LISTEN", "127.0.0.1:0")
        .env("GATEWAY_DATABASE_URL", database_url)
        .env("GATEWAY_LOG_FORMAT", "json")
        .env("GATEWAY_LOG_LEVEL", "warn")
        .env("GATEWAY_ADMIN_EMAIL", OPERATOR_EMAIL)
        .env("GATEWAY_ADMIN_PASSWORD", OPERATOR_PASSWORD)
        // A killed node's instances move to the next process after the lease: short, so restarts in tests are quick.
        .env("GATEWAY_CLUSTER_LEASE_TTL_MS", "2000")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

impl TestApp {
    /// Starts the gateway on `database` and waits until it answers `/readyz`.
    pub async fn spawn(binary: &str, database: &Database) -> Self {
        Self::spawn_with(gateway_command(binary, &database.url, &database.dir)).await
    }

    pub async fn spawn_with(mut command: Command) -> Self {
        let mut child = command.arg("serve").spawn().expect("spawn gateway");
        let stdout = Output::default();
        let stderr = Output::default();
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel::<String>();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let stdout_buf = stdout.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            let mut addr_tx = Some(addr_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("gateway listening on ")
                    && let Some(tx) = addr_tx.take()
                {
                    let _ = tx.send(addr.trim().to_owned());
                }
                stdout_buf.push(&line);
            }
        });
        let stderr_buf = stderr.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                stderr_buf.push(&line);
            }
        });
        let base = match tokio::time::timeout(START_DEADLINE, addr_rx).await {
            Ok(Ok(base)) => base,
            _ => panic!(
                "gateway did not start within {START_DEADLINE:?}\nstdout:\n{}\nstderr:\n{}",
                stdout.text(),
                stderr.text()
            ),
        };
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        let app = Self { base, client, stdout, stderr, child };
        app.wait_ready().await;
        app
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if let Ok(response) = self.client.get(self.url("/readyz")).send().await
                && response.status().is_success()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway never became ready\nstderr:\n{}",
                self.stderr.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id, while it runs (for signals: SIGSTOP, SIGCONT).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Kills the gateway with SIGKILL (`kill -9`: no shutdown, no draining, as a crash) and waits until it is gone.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("kill -9");
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.expect("dies in time").expect("wait");
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.expect("exits in time").expect("wait")
    }
}

/// Runs a gateway command to completion (for commands that exit by themselves) with a deadline.
pub async fn run_to_exit(mut command: Command) -> (Option<i32>, String, String) {
    let output =
        tokio::time::timeout(Duration::from_secs(60), command.output()).await.expect("exits in time").expect("run");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
