//! End-to-end: cluster ownership through the real binary. A second process on one SQLite file refuses to start; the
//! operator sees the nodes and each instance's owner on both backends; on PostgreSQL two nodes share the instances,
//! and a killed node's instance moves to the survivor once its lease expires.

use gw_e2e::{Backend, Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, gateway_command, run_to_exit};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{As, GATEWAY, eventually, paired_instance, problem_type, tenant};

on_both_backends!(operators_see_the_nodes_and_each_instances_owner);

/// The exit code the binary documents for "another process serves this SQLite database".
const EXIT_LOCKED: i32 = 75;
const PASSWORD: &str = "a long enough password";

async fn nodes(operator: &As<'_>) -> Vec<Value> {
    let (status, body) = operator.call(Method::GET, "/v1/cluster/nodes", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().expect("items").clone()
}

async fn owner_node(owner: &As<'_>, iid: &str) -> Value {
    let (status, body) = owner.call(Method::GET, &format!("/v1/instances/{iid}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["owner_node"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_one_sqlite_file_refuses_to_start() {
    let database = Database::create(Backend::Sqlite).await.expect("sqlite");
    let first = TestApp::spawn(GATEWAY, &database).await;
    let mut second = gateway_command(GATEWAY, &database.url, &database.dir);
    second.arg("serve");
    let (code, _, stderr) = run_to_exit(second).await;
    assert_eq!(code, Some(EXIT_LOCKED), "stderr: {stderr}");
    assert!(stderr.contains("another gateway process is serving the SQLite database"), "{stderr}");
    assert!(stderr.contains("PostgreSQL"), "the message says how to run several nodes: {stderr}");
    // The first one is untouched, and once it is gone the file is free again.
    let operator = As::login(&first, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    assert_eq!(nodes(&operator).await.len(), 1);
    assert!(first.terminate().await.success());
    let again = TestApp::spawn(GATEWAY, &database).await;
    again.terminate().await;
    database.cleanup().await;
}

async fn operators_see_the_nodes_and_each_instances_owner(database: &Database) {
    let app = TestApp::spawn(GATEWAY, database).await;
    let operator = As::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let listed = nodes(&operator).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let node = &listed[0];
    let node_id = node["id"].as_str().expect("id").to_owned();
    assert_eq!(format!("http://{}", node["address"].as_str().expect("address")), app.url(""));
    assert!(node["started_at"].is_string() && node["heartbeat_at"].is_string());
    assert_eq!(node["instances"], 0);

    let (_, owner_email, member_email) = tenant(&operator, "Cluster").await;
    let owner = As::login(&app, &owner_email, PASSWORD).await;
    let member = As::login(&app, &member_email, PASSWORD).await;
    for tenant_user in [&owner, &member] {
        let (status, body) = tenant_user.call(Method::GET, "/v1/cluster/nodes", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(problem_type(&body).ends_with("/forbidden"), "{body}");
    }
    let (status, body) = As::anonymous(&app).call(Method::GET, "/v1/cluster/nodes", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // An instance nobody runs has no owner; a connected one is owned by the node running it.
    let (status, idle) = owner.call(Method::POST, "/v1/instances", Some(serde_json::json!({"name": "idle"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{idle}");
    assert_eq!(owner_node(&owner, idle["id"].as_str().expect("id")).await, Value::Null);
    let (iid, _) = paired_instance(&owner, "owned").await;
    assert_eq!(owner_node(&owner, &iid).await, Value::String(node_id.clone()));
    eventually("the node to count its session", || async {
        let listed = nodes(&operator).await;
        (listed.len() == 1 && listed[0]["instances"] == 1).then_some(())
    })
    .await;
    assert!(app.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_database_and_a_killed_nodes_instance_moves() {
    let Some(database) = Database::create(Backend::Postgres).await else { return };
    let spawn = || async {
        let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
        command.env("GATEWAY_CLUSTER_LEASE_TTL_MS", "2000");
        TestApp::spawn_with(command).await
    };
    let first = spawn().await;
    let second = spawn().await;
    let operator = As::login(&second, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, owner_email, _) = tenant(&operator, "Failover").await;
    let on_first = As::login(&first, &owner_email, PASSWORD).await;
    let on_second = As::login(&second, &owner_email, PASSWORD).await;
    let ids: Vec<String> = eventually("both nodes listed", || async {
        let listed = nodes(&operator).await;
        (listed.len() == 2).then(|| listed.iter().map(|n| n["id"].as_str().expect("id").to_owned()).collect())
    })
    .await;

    // Paired through the first node, which therefore runs it; both nodes answer the same owner.
    let (iid, _) = paired_instance(&on_first, "moving").await;
    let first_owner = owner_node(&on_first, &iid).await;
    assert!(ids.iter().any(|id| first_owner == *id), "{first_owner} is one of {ids:?}");
    assert_eq!(owner_node(&on_second, &iid).await, first_owner, "every node answers from the database");

    // kill -9: no drain, the lease runs out, the survivor takes the instance and connects it.
    first.kill().await;
    let second_id = ids.iter().find(|id| first_owner != **id).expect("the survivor").clone();
    eventually("the survivor to own and connect the instance", || async {
        let (_, body) = on_second.call(Method::GET, &format!("/v1/instances/{iid}"), None).await;
        (body["owner_node"] == second_id.as_str() && body["status"] == "connected").then_some(())
    })
    .await;
    eventually("the killed node to drop out of the list", || async {
        (nodes(&operator).await.len() == 1).then_some(())
    })
    .await;
    assert!(second.terminate().await.success());
    database.cleanup().await;
}
