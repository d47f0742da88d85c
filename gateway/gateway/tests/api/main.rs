//! Router tests against the application built in-process (`gateway::Application`), on both store backends.

mod helpers;

use helpers::{As, Database, InProcessApp, problem_type};
use reqwest::{Method, StatusCode};
use serde_json::json;

macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let database = super::Database::create(super::helpers::Backend::Sqlite).await.expect("sqlite");
                    super::$name(&database).await;
                    database.cleanup().await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(database) = super::Database::create(super::helpers::Backend::Postgres).await else {
                        return;
                    };
                    super::$name(&database).await;
                    database.cleanup().await;
                }
            )+
        }
    };
}

on_both_backends!(builds_serves_and_stops_in_process);

async fn builds_serves_and_stops_in_process(database: &Database) {
    let app = InProcessApp::spawn(database).await;
    let (status, ready) = As::anonymous(&app).call(Method::GET, "/readyz", None).await;
    let backend = if database.url.starts_with("sqlite") { "sqlite" } else { "postgres" };
    assert_eq!((status, ready), (StatusCode::OK, json!({"status": "ready", "database": backend})));
    let (status, missing) = As::anonymous(&app).call(Method::GET, "/no/such/thing", None).await;
    assert_eq!((status, problem_type(&missing)), (StatusCode::NOT_FOUND, "/problems/route-not-found"));
    let operator = As::operator(&app).await;
    let (status, me) = operator.call(Method::GET, "/v1/me", None).await;
    assert_eq!((status, me["email"].as_str()), (StatusCode::OK, Some(helpers::OPERATOR_EMAIL)));
    app.stop().await;
}
