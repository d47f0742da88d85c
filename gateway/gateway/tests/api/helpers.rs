//! `InProcessApp`: the gateway built by [`gateway::Application::build`] inside the test process, on a port-0
//! listener and a fresh database, driven over HTTP. No binary is spawned, so a failing assertion shows the server's
//! state in the same process and a test starts in milliseconds.

use gateway::Application;
use gateway::config::{Secret, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub use gw_e2e::{Backend, Database, OPERATOR_EMAIL, OPERATOR_PASSWORD};

/// A running in-process gateway; stops (drains and closes the store) when [`InProcessApp::stop`] is awaited.
#[derive(Debug)]
pub struct InProcessApp {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The settings the end-to-end harness gives the binary: loopback, port 0, the test operator, the sandbox driver.
pub fn settings(database: &Database) -> Settings {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.database.url = database.url.clone();
    settings.data_dir = database.dir.display().to_string();
    settings.admin.email = OPERATOR_EMAIL.into();
    settings.admin.password = Some(Secret::new(OPERATOR_PASSWORD.into()));
    settings
}

impl InProcessApp {
    pub async fn spawn(database: &Database) -> Self {
        Self::spawn_with(settings(database)).await
    }

    pub async fn spawn_with(settings: Settings) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let app = Application::build(settings, listener).await.expect("the application builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().build().expect("client");
        Self { base, client, stop: Some(stop), task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Graceful shutdown, as on SIGTERM; fails the test if draining fails.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("server task").expect("clean shutdown");
    }
}

/// A client for one signed-in principal (or none).
#[derive(Debug)]
pub struct As<'a> {
    app: &'a InProcessApp,
    token: Option<String>,
}

impl<'a> As<'a> {
    pub fn anonymous(app: &'a InProcessApp) -> Self {
        Self { app, token: None }
    }

    pub async fn login(app: &'a InProcessApp, email: &str, password: &str) -> Self {
        let (status, body) = Self::anonymous(app)
            .call(Method::POST, "/v1/auth/login", Some(json!({"email": email, "password": password})))
            .await;
        assert_eq!(status, StatusCode::OK, "login {email}: {body}");
        Self { app, token: Some(body["access_token"].as_str().expect("access token").to_owned()) }
    }

    pub async fn operator(app: &'a InProcessApp) -> Self {
        Self::login(app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.app.client.request(method, self.app.url(path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

pub fn problem_type(body: &Value) -> &str {
    body["type"].as_str().unwrap_or("<no problem type>")
}
