//! `TestCluster`: one shared sandbox network process and N gateway nodes on one fresh PostgreSQL database (and
//! Redis, when `GW_TEST_REDIS_URL` is set, under a key prefix of its own), each on a free loopback port, with
//! helpers for the faults the cluster must survive: kill -9, SIGTERM, SIGSTOP/SIGCONT, restart.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{Backend, Database, Output, TestApp, gateway_command};

const START_DEADLINE: Duration = Duration::from_secs(60);

/// The `gateway sandbox-network` process the nodes dial.
#[derive(Debug)]
pub struct SandboxProcess {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub stderr: Output,
    child: Child,
}

impl SandboxProcess {
    pub async fn spawn(binary: &str) -> Self {
        let mut child = Command::new(crate::checked_binary(binary))
            .args(["sandbox-network", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sandbox-network");
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let stderr = Output::default();
        let stderr_buf = stderr.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                stderr_buf.push(&line);
            }
        });
        let mut lines = BufReader::new(out).lines();
        let addr = tokio::time::timeout(START_DEADLINE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("sandbox network listening on ") {
                    return Some(addr.trim().to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the sandbox network did not start\nstderr:\n{}", stderr.text()));
        // Keep draining stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { addr, stderr, child }
    }

    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

/// N gateway nodes on one database and one shared sandbox network.
#[derive(Debug)]
pub struct TestCluster {
    pub database: Database,
    pub sandbox: SandboxProcess,
    binary: String,
    /// Extra `GATEWAY_*` settings every node gets.
    env: Vec<(String, String)>,
    redis_prefix: String,
    nodes: Vec<Option<TestApp>>,
}

impl TestCluster {
    /// Starts the sandbox network and `n` nodes, one after the other (so the first generates the shared secrets
    /// in the data directory the nodes share). `None` when PostgreSQL is unreachable and skipping is allowed.
    pub async fn start(binary: &str, n: usize) -> Option<Self> {
        Self::start_with(binary, n, Vec::new()).await
    }

    pub async fn start_with(binary: &str, n: usize, env: Vec<(String, String)>) -> Option<Self> {
        let database = Database::create(Backend::Postgres).await?;
        Some(Self::start_on(binary, n, database, env).await)
    }

    /// As [`TestCluster::start_with`], on a database the test made (on a private server it stops and starts).
    pub async fn start_on(binary: &str, n: usize, database: Database, env: Vec<(String, String)>) -> Self {
        let sandbox = SandboxProcess::spawn(binary).await;
        let redis_prefix = format!("gw-cluster-{}:", uuid::Uuid::now_v7().simple());
        let mut cluster = Self { database, sandbox, binary: binary.to_owned(), env, redis_prefix, nodes: Vec::new() };
        for _ in 0..n {
            let node = cluster.spawn_node().await;
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    /// The command that starts a node of this cluster.
    pub fn command(&self) -> Command {
        let mut command = gateway_command(&self.binary, &self.database.url, &self.database.dir);
        command.env("GATEWAY_SESSIONS_SANDBOX_NETWORK", &self.sandbox.addr);
        if let Ok(redis) = std::env::var("GW_TEST_REDIS_URL")
            && !redis.is_empty()
        {
            command.env("GATEWAY_REDIS_URL", redis).env("GATEWAY_REDIS_KEY_PREFIX", &self.redis_prefix);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    async fn spawn_node(&self) -> TestApp {
        TestApp::spawn_with(self.command()).await
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`; panics if it was killed and not restarted.
    pub fn node(&self, i: usize) -> &TestApp {
        self.nodes[i].as_ref().unwrap_or_else(|| panic!("node {i} is down"))
    }

    /// The nodes that run, with their index.
    pub fn live(&self) -> impl Iterator<Item = (usize, &TestApp)> {
        self.nodes.iter().enumerate().filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    }

    /// `kill -9` of node `i`: no shutdown, no draining, as a crash.
    pub async fn kill(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            node.kill().await;
        }
    }

    /// Starts node `i` again (after [`TestCluster::kill`]) on a new port.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i).await;
        let node = self.spawn_node().await;
        self.nodes[i] = Some(node);
    }

    /// SIGTERM to node `i` (a drain: sessions stopped, leases given up) and its exit status.
    pub async fn stop(&mut self, i: usize) -> std::process::ExitStatus {
        let node = self.nodes[i].take().unwrap_or_else(|| panic!("node {i} is down"));
        node.terminate().await
    }

    /// Starts node `i` again after [`TestCluster::stop`] or [`TestCluster::kill`] (on a new port); returns once it
    /// is ready.
    pub async fn start_node(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} runs");
        let node = self.spawn_node().await;
        self.nodes[i] = Some(node);
    }

    /// SIGSTOP: the process stays, frozen (a GC pause, a stalled VM); its sockets stay open.
    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// SIGCONT after [`TestCluster::pause`].
    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    fn signal(&self, i: usize, signal: &str) {
        let pid = self.node(i).pid().expect("running");
        let status = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Stops every node and the network; the database goes with `self`.
    pub async fn shutdown(mut self) {
        for node in self.nodes.iter_mut() {
            if let Some(node) = node.take() {
                // A paused node would never exit on SIGTERM; SIGCONT is harmless for a running one.
                if let Some(pid) = node.pid() {
                    let _ = std::process::Command::new("kill").args(["-CONT", &pid.to_string()]).status();
                }
                node.kill().await;
            }
        }
        self.sandbox.kill().await;
        // The database is dropped with `self` (TestDatabase drops it even when a test panics).
    }
}
