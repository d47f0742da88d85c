//! `PrivatePostgres`: a PostgreSQL server of the test's own (a temporary data directory, a free loopback port), so
//! a test can stop and start the whole server (an outage) without touching the shared one other tests use.
//!
//! The server binaries come from the newest `/usr/lib/postgresql/<version>/bin` (Debian's layout, which CI installs).
//! PostgreSQL refuses to run as root, so when the tests run as root the server runs as the `postgres` user (through
//! `runuser`) in a directory handed to that user.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// A running (or stopped, between [`PrivatePostgres::stop`] and [`PrivatePostgres::start`]) private server. Dropping
/// it stops the server at once and removes its files.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
        || std::env::var("GW_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// The newest installed server's `bin` directory.
fn server_binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

impl PrivatePostgres {
    /// Creates and starts a server. `None` (with a notice) when no server binaries are installed and the PostgreSQL
    /// suite is not required; in CI a missing server fails the test.
    pub async fn start_new() -> Option<Self> {
        let Some(bin) = server_binaries() else {
            assert!(!required(), "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin");
            eprintln!("\n*** SKIPPED: PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin ***\n");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("gw-private-pg-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let as_postgres_user = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let server = Self { bin, dir, port: free_port(), as_postgres_user };
        if as_postgres_user {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&server.dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown of {} to postgres", server.dir.display());
        }
        let data = server.data();
        server.run("initdb", &["-D", path(&data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]).await;
        server.start().await;
        Some(server)
    }

    /// The URL of its `postgres` database (for creating test databases on it).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) on its port; returns once it accepts connections.
    pub async fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.run("pg_ctl", &["-D", path(&self.data()), "-l", path(&log), "-o", &options, "-w", "-t", "60", "start"])
            .await;
    }

    /// Stops the server the way an operator's restart does (`pg_ctl stop -m fast`: sessions are terminated, work in
    /// progress rolled back); returns once it is down.
    pub async fn stop(&self) {
        self.run("pg_ctl", &["-D", path(&self.data()), "-m", "fast", "-w", "-t", "60", "stop"]).await;
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> std::process::Command {
        let binary = self.bin.join(program);
        let mut command = if self.as_postgres_user {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(binary);
            command
        } else {
            std::process::Command::new(binary)
        };
        command.current_dir(&self.dir).stdin(Stdio::null());
        command
    }

    async fn run(&self, program: &str, args: &[&str]) {
        let mut command = Command::from(self.command(program));
        let output = command.args(args).output().await.unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}\n{}\nserver log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", path(&data), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
