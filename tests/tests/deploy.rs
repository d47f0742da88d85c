//! The deploy files, run: the binary under Kubernetes' service-link variables, and three nodes behind nginx started
//! by `deploy/local-cluster.sh` (PostgreSQL, Redis and nginx on loopback). The cluster test needs `nginx` and `psql`
//! (Debian packages, installed by `.ci/run`) and the test PostgreSQL; it skips loudly without them unless `CI` is set.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gw_e2e::{Backend, Database, TestApp, gateway_command};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::GATEWAY;

/// The variables Kubernetes injects into every pod for a Service named `gateway` (without
/// `enableServiceLinks: false`): the binary must start with them, not exit 64 as it did.
#[tokio::test]
async fn kubernetes_service_links_do_not_stop_the_gateway() {
    let database = Database::create(Backend::Sqlite).await.expect("sqlite");
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command
        .env("GATEWAY_LOG_LEVEL", "info")
        .env("GATEWAY_PORT", "tcp://10.96.0.10:80")
        .env("GATEWAY_PORT_80_TCP", "tcp://10.96.0.10:80")
        .env("GATEWAY_PORT_80_TCP_ADDR", "10.96.0.10")
        .env("GATEWAY_PORT_80_TCP_PORT", "80")
        .env("GATEWAY_PORT_80_TCP_PROTO", "tcp")
        .env("GATEWAY_SERVICE_HOST", "10.96.0.10")
        .env("GATEWAY_SERVICE_PORT", "80")
        .env("GATEWAY_SERVICE_PORT_HTTP", "80");
    let app = TestApp::spawn_with(command).await;
    let logs = format!("{}{}", app.stdout.text(), app.stderr.text());
    assert!(logs.contains("ignoring Kubernetes service-link variables"), "one log line says so: {logs}");
    assert!(logs.contains("GATEWAY_PORT_80_TCP_PROTO"), "naming them: {logs}");
    let status = app.terminate().await;
    assert!(status.success(), "{status:?}");
}

fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

fn installed(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program} || test -x /usr/sbin/{program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `count` consecutive free loopback ports (checked by binding them), for the cluster's nodes and nginx.
fn free_ports(count: u16) -> u16 {
    for _ in 0..100 {
        let base = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        if base.checked_add(count).is_none() {
            continue;
        }
        let taken: Result<Vec<_>, _> =
            (base..base + count).map(|port| std::net::TcpListener::bind(("127.0.0.1", port))).collect();
        if taken.is_ok() {
            return base;
        }
    }
    panic!("no {count} consecutive free ports on loopback");
}

/// The cluster the script started; stopped (and its database dropped) when dropped, even after a failed assert.
struct Cluster {
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Cluster {
    fn script(&self, args: &[&str]) -> std::process::Output {
        let mut command = std::process::Command::new(repository().join("deploy/local-cluster.sh"));
        command.args(args).envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command.output().expect("run deploy/local-cluster.sh")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.script(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three nodes started by the script on one fresh PostgreSQL database and the test Redis, behind nginx: an
/// operator creates a tenant, an instance and an API key through nginx; the instance is read through nginx with
/// the key until every node has answered (nginx's log names the node of each request), and each node also answers
/// directly with the same instance. `status` reports all up; `stop` leaves nothing running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_behind_nginx_from_the_local_cluster_script() {
    let postgres = std::env::var("GW_TEST_POSTGRES_URL").ok();
    let missing: Vec<&str> = ["nginx", "psql", "openssl", "curl"].into_iter().filter(|p| !installed(p)).collect();
    if !missing.is_empty() || postgres.is_none() {
        assert!(!required(), "CI must run the local cluster: missing {missing:?}, GW_TEST_POSTGRES_URL {postgres:?}");
        eprintln!("\n*** SKIPPED: local cluster (missing {missing:?}, GW_TEST_POSTGRES_URL {postgres:?}) ***\n");
        return;
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let dir = std::env::temp_dir().join(format!("gw-local-cluster-{}-{stamp}", std::process::id()));
    let base = free_ports(4);
    let mut env = vec![
        ("CLUSTER_DIR".to_owned(), dir.display().to_string()),
        ("GATEWAY_BIN".to_owned(), GATEWAY.to_owned()),
        ("BASE_PORT".to_owned(), base.to_string()),
        ("POSTGRES_URL".to_owned(), postgres.unwrap_or_default()),
    ];
    if let Ok(redis) = std::env::var("GW_TEST_REDIS_URL") {
        env.push(("REDIS_URL".to_owned(), redis));
    }
    let cluster = Cluster { dir: dir.clone(), env };
    let started = cluster.script(&["start", "3"]);
    let stdout = String::from_utf8_lossy(&started.stdout).into_owned();
    let logs = || {
        ["node-1.log", "node-2.log", "node-3.log", "nginx-error.log"]
            .iter()
            .map(|f| format!("--- {f}\n{}", std::fs::read_to_string(dir.join(f)).unwrap_or_default()))
            .collect::<String>()
    };
    assert!(
        started.status.success(),
        "start failed\nstdout:\n{stdout}\nstderr:\n{}\n{}",
        String::from_utf8_lossy(&started.stderr),
        logs()
    );
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {stdout}"))
            .trim()
            .to_owned()
    };
    let (lb, email, password) = (field("url"), field("operator_email"), field("operator_password"));
    let nodes: Vec<String> = field("nodes").split_whitespace().map(str::to_owned).collect();
    assert_eq!(nodes.len(), 3);

    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let call = |method: reqwest::Method, url: String, token: Option<&str>, body: Option<Value>| {
        let mut request = client.request(method, url);
        if let Some(token) = token {
            request =
                if token.starts_with("gwk_") { request.header("x-api-key", token) } else { request.bearer_auth(token) };
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.expect("request");
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    use reqwest::Method;
    let (status, login) =
        call(Method::POST, format!("{lb}/v1/auth/login"), None, Some(json!({"email": email, "password": password})))
            .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let token = login["access_token"].as_str().expect("token").to_owned();
    let (status, subscription) = call(
        Method::POST,
        format!("{lb}/v1/subscriptions"),
        Some(&token),
        Some(json!({"name": "Cluster", "tier": "pro"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{subscription}");
    let (status, instance) = call(
        Method::POST,
        format!("{lb}/v1/instances"),
        Some(&token),
        Some(json!({"name": "through-nginx", "subscription_id": subscription["id"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{instance}");
    let iid = instance["id"].as_str().expect("id").to_owned();
    let (status, key) = call(
        Method::POST,
        format!("{lb}/v1/instances/{iid}/api-keys"),
        Some(&token),
        Some(json!({"name": "cluster", "permissions": ["messages:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let key = key["key"].as_str().expect("key shown once").to_owned();

    // Through nginx until each node has served a read (round robin: three requests normally suffice).
    let upstreams = || -> BTreeSet<String> {
        std::fs::read_to_string(dir.join("nginx-access.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("/v1/key"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    };
    for _ in 0..30 {
        let (status, body) = call(Method::GET, format!("{lb}/v1/key"), Some(&key), None).await;
        assert_eq!((status, body["instance_id"].as_str()), (StatusCode::OK, Some(iid.as_str())), "{body}");
        if upstreams().len() == 3 {
            break;
        }
    }
    let expected: BTreeSet<String> = nodes.iter().map(|n| n.trim_start_matches("http://").to_owned()).collect();
    assert_eq!(upstreams(), expected, "every node answered through nginx");
    for node in &nodes {
        let (status, read) = call(Method::GET, format!("{node}/v1/instances/{iid}"), Some(&token), None).await;
        assert_eq!((status, read["name"].as_str()), (StatusCode::OK, Some("through-nginx")), "{node}: {read}");
    }

    let status = cluster.script(&["status"]);
    let report = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.status.success(), "{report}");
    assert_eq!(report.matches(" ready").count(), 3, "{report}");
    let pids: Vec<String> = ["node-1.pid", "node-2.pid", "node-3.pid", "nginx.pid"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).expect("pid file").trim().to_owned())
        .collect();
    let stopped = cluster.script(&["stop"]);
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
    for pid in pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "process {pid} still runs after stop");
    }
    assert!(!cluster.script(&["status"]).status.success(), "status reports the cluster down");
}
