//! The web console in a real browser: headless Chromium driven over WebDriver (`chromedriver`, started here on a
//! free port) against the real `gateway` binary on SQLite. One browser session walks a tenant through the console
//! (sign in, create and pair an instance, a key, a webhook with a test delivery, a plugin upload and binding); a
//! second sign-in checks that another tenant's instance is not there. With `UPDATE_CONSOLE_SCREENSHOTS=1` the walk
//! also saves `docs/screenshots/*.png` at a desktop and a phone width.
//!
//! Without `chromedriver` the browser test prints `SKIPPED: browser` (and fails when `CI` is set).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use gw_e2e::{Backend, Database, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, gateway_command};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway");
const PASSWORD: &str = "a long enough password";
/// How long the browser may take to show what a step expects.
const STEP: Duration = Duration::from_secs(20);

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    _child: tokio::process::Child,
    url: String,
}

impl Driver {
    /// `None` when chromedriver is not installed (and `CI` is not set).
    async fn start() -> Option<Self> {
        let Some(binary) = ["chromedriver", "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        else {
            assert!(std::env::var_os("CI").is_none(), "chromedriver (Debian's chromium-driver) is required in CI");
            println!("SKIPPED: browser (chromedriver not installed)");
            return None;
        };
        // chromedriver cannot report a port it picked itself: take a free one and hand it over.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = tokio::process::Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        let client = reqwest::Client::new();
        gw_test_support::eventually("chromedriver to answer", || async {
            let ready = client.get(&status).send().await.ok()?.json::<Value>().await.ok()?;
            (ready["value"]["ready"] == true).then_some(())
        })
        .await;
        Some(Self { _child: child, url })
    }

    async fn browser(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]}),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

/// A signed-in API client (for set-up and for what a phone does: the sandbox scan).
struct Api<'a> {
    app: &'a TestApp,
    token: String,
}

impl<'a> Api<'a> {
    async fn login(app: &'a TestApp, email: &str, password: &str) -> Self {
        let response = app.client.post(app.url("/v1/auth/login")).json(&json!({"email": email, "password": password}));
        let body: Value = response.send().await.unwrap().json().await.unwrap();
        Self { app, token: body["access_token"].as_str().expect("token").to_owned() }
    }

    async fn call(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let request = self.app.client.request(method, self.app.url(path)).bearer_auth(&self.token).json(&body);
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// A subscription with an owner and a member; answers their emails.
async fn tenant(operator: &Api<'_>, name: &str) -> (String, String) {
    let (_, subscription) =
        operator.call(Method::POST, "/v1/subscriptions", json!({"name": name, "tier": "pro"})).await;
    let sid = subscription["id"].as_str().expect("id").to_owned();
    let mut emails = Vec::new();
    for role in ["owner", "member"] {
        let email = format!("{role}@{}.test", name.to_lowercase());
        let user = json!({"email": email, "password": PASSWORD, "name": role, "role": role});
        let (status, body) = operator.call(Method::POST, &format!("/v1/subscriptions/{sid}/users"), user).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        emails.push(email);
    }
    (emails[0].clone(), emails[1].clone())
}

/// A tenant's webhook receiver: answers 200 and reports each request's body.
async fn receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 8192];
                // Headers, then as many body bytes as Content-Length says.
                loop {
                    let Ok(read) = socket.read(&mut buffer).await else { return };
                    if read == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..read]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= length {
                            let _ = tx.send(body.to_owned());
                            break;
                        }
                    }
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nreceived")
                    .await;
            });
        }
    });
    (url, rx)
}

/// Saves screenshots when asked to (`UPDATE_CONSOLE_SCREENSHOTS=1`).
struct Screens {
    dir: Option<PathBuf>,
}

impl Screens {
    fn from_env() -> Self {
        let dir = std::env::var_os("UPDATE_CONSOLE_SCREENSHOTS")
            .map(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots"));
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).unwrap();
        }
        Self { dir }
    }

    async fn take(&self, browser: &Client, name: &str) {
        if let Some(dir) = &self.dir {
            std::fs::write(dir.join(format!("{name}.png")), browser.screenshot().await.unwrap()).unwrap();
        }
    }
}

async fn wait_for(browser: &Client, css: &str) -> fantoccini::elements::Element {
    match browser.wait().at_most(STEP).for_element(Locator::Css(css)).await {
        Ok(element) => element,
        Err(error) => {
            let page = browser.source().await.unwrap_or_default();
            panic!("no `{css}` within {STEP:?} ({error}); the page:\n{page}")
        }
    }
}

async fn fill(browser: &Client, css: &str, text: &str) {
    wait_for(browser, css).await.send_keys(text).await.unwrap();
}

async fn click(browser: &Client, css: &str) {
    wait_for(browser, css).await.click().await.unwrap();
}

/// Waits until the page's `<h1>` says `title` (a navigation finished).
async fn heading(browser: &Client, title: &str) {
    let xpath = format!("//h1[normalize-space()={title:?}]");
    if let Err(error) = browser.wait().at_most(STEP).for_element(Locator::XPath(&xpath)).await {
        let page = browser.source().await.unwrap_or_default();
        panic!("no heading {title:?} within {STEP:?} ({error}); the page:\n{page}")
    }
}

async fn sign_in(browser: &Client, base: &str, email: &str, password: &str) {
    browser.goto(&format!("{base}/console/")).await.unwrap();
    heading(browser, "Sign in to the gateway").await;
    fill(browser, "#email", email).await;
    fill(browser, "#password", password).await;
    click(browser, "form button[type=submit]").await;
    heading(browser, "Instances").await;
}

async fn sign_out(browser: &Client) {
    click(browser, "header form button").await;
    heading(browser, "Sign in to the gateway").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_pairs_and_configures_an_instance_in_the_browser_and_others_cannot_see_it() {
    let Some(driver) = Driver::start().await else { return };
    let database = Database::create(Backend::Sqlite).await.expect("sqlite");
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command
        .env("GATEWAY_CONSOLE_SECURE_COOKIES", "false")
        .env("GATEWAY_WEBHOOKS_ALLOW_HTTP", "true")
        .env("GATEWAY_WEBHOOKS_ALLOW_PRIVATE_CIDRS", "[\"127.0.0.0/8\"]");
    let app = TestApp::spawn_with(command).await;
    let operator = Api::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (owner_email, _) = tenant(&operator, "Acme").await;
    let (_, other_member_email) = tenant(&operator, "Globex").await;
    let owner = Api::login(&app, &owner_email, PASSWORD).await;
    let screens = Screens::from_env();
    let browser = driver.browser().await;
    let base = app.base.trim_end_matches('/').to_owned();

    // Sign in; an anonymous visit lands on the sign-in page.
    browser.goto(&format!("{base}/console/")).await.unwrap();
    heading(&browser, "Sign in to the gateway").await;
    screens.take(&browser, "sign-in").await;
    sign_in(&browser, &base, &owner_email, PASSWORD).await;

    // Create an instance, connect it: the QR code appears by itself.
    fill(&browser, "#instance-name", "Front desk").await;
    click(&browser, "form.stack button[type=submit]").await;
    heading(&browser, "Front desk").await;
    let url = browser.current_url().await.unwrap();
    let iid = url.path().rsplit('/').next().unwrap().to_owned();
    click(&browser, "form[action$='/connect'] button").await;
    wait_for(&browser, "#qr svg").await;
    screens.take(&browser, "instance-qr").await;

    // The phone scans (the sandbox's control API); the page turns to "connected" without a reload.
    browser.execute("window.consoleMarker = 'same page';", vec![]).await.unwrap();
    let (status, scanned) = owner
        .call(Method::POST, &format!("/v1/sandbox/instances/{iid}/scan"), json!({"display_name": "Front desk"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{scanned}");
    let connected = wait_for(&browser, "#status[data-status='connected']").await;
    assert!(connected.text().await.unwrap().contains("Connected"), "{}", connected.text().await.unwrap());
    let marker = browser.execute("return window.consoleMarker;", vec![]).await.unwrap();
    assert_eq!(marker, json!("same page"), "the page was reloaded");
    assert!(browser.find(Locator::Css("#qr")).await.is_err(), "the QR code is gone once paired");
    screens.take(&browser, "instance-connected").await;

    // A key with one scope: its secret is shown once and works against the API.
    browser.goto(&format!("{base}/console/instances/{iid}/keys")).await.unwrap();
    heading(&browser, "Front desk: API keys").await;
    fill(&browser, "#key-name", "crm").await;
    click(&browser, "#scope-instance-manage").await;
    click(&browser, "form.stack button[type=submit]").await;
    let secret = wait_for(&browser, "#new-key-secret").await.text().await.unwrap();
    screens.take(&browser, "api-key-created").await;
    let with_key = app
        .client
        .get(app.url(&format!("/v1/instances/{iid}/status")))
        .header("x-api-key", secret.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(with_key.status(), StatusCode::OK, "the key shown works");
    browser.refresh().await.unwrap();
    heading(&browser, "Front desk: API keys").await;
    let table = wait_for(&browser, "#keys").await.text().await.unwrap();
    assert!(table.contains("crm") && table.contains("instance:manage"), "{table}");
    assert!(browser.find(Locator::Css("#new-key-secret")).await.is_err(), "a key's secret is shown only once");
    assert!(!browser.source().await.unwrap().contains(secret.trim()), "nor anywhere else on the page");

    // A webhook; a test fire reaches the receiver and is listed with its response.
    let (hook_url, mut received) = receiver().await;
    browser.goto(&format!("{base}/console/instances/{iid}/webhooks")).await.unwrap();
    heading(&browser, "Front desk: webhooks").await;
    fill(&browser, "#hook-url", &hook_url).await;
    click(&browser, "#event-message-received").await;
    click(&browser, "form.stack button[type=submit]").await;
    wait_for(&browser, "#webhook-secret").await;
    click(&browser, "#webhooks a").await;
    heading(&browser, &hook_url).await;
    click(&browser, "form[action$='/test'] button").await;
    let delivery = wait_for(&browser, "#test-log li.test-delivery").await.text().await.unwrap();
    assert!(delivery.contains("HTTP 200") && delivery.contains("received"), "{delivery}");
    let body = tokio::time::timeout(STEP, received.recv()).await.expect("the receiver got the test").unwrap();
    assert!(body.contains("webhook.test"), "{body}");
    screens.take(&browser, "webhook-test").await;

    // A plugin: created, a version uploaded from a file, bound to the instance.
    browser.goto(&format!("{base}/console/plugins")).await.unwrap();
    heading(&browser, "Plugins").await;
    fill(&browser, "#plugin-name", "responder").await;
    click(&browser, "form.stack button[type=submit]").await;
    heading(&browser, "responder").await;
    let guest = gw_plugins::guests::path("keyword_responder").expect("the keyword_responder guest");
    fill(&browser, "#plugin-file", guest).await;
    click(&browser, "form[action$='/versions'] button").await;
    let uploaded = wait_for(&browser, "#uploaded").await.text().await.unwrap();
    assert!(uploaded.contains("Version 1"), "{uploaded}");
    assert!(wait_for(&browser, "#versions").await.text().await.unwrap().contains("active"));
    screens.take(&browser, "plugin-versions").await;
    browser.goto(&format!("{base}/console/instances/{iid}/plugins")).await.unwrap();
    heading(&browser, "Front desk: plugins").await;
    wait_for(&browser, "#bind-policy").await.select_by_value("fail_closed").await.unwrap();
    click(&browser, "form.stack button[type=submit]").await;
    let bound = wait_for(&browser, "#bindings li").await.text().await.unwrap();
    assert!(bound.contains("responder") && bound.contains("fail closed"), "{bound}");
    let (_, bindings) = owner.call(Method::GET, &format!("/v1/instances/{iid}/plugins"), Value::Null).await;
    assert_eq!(bindings.as_array().map(Vec::len), Some(1), "the API sees the binding: {bindings}");
    screens.take(&browser, "plugin-bindings").await;

    browser.goto(&format!("{base}/console/usage")).await.unwrap();
    heading(&browser, "Usage").await;
    wait_for(&browser, "svg.chart").await;
    screens.take(&browser, "usage").await;

    // Phone width: the pages stay in one column.
    if screens.dir.is_some() {
        browser.set_window_size(390, 844).await.unwrap();
        for (path, name) in [("", "phone-instance"), ("/keys", "phone-keys")] {
            browser.goto(&format!("{base}/console/instances/{iid}{path}")).await.unwrap();
            wait_for(&browser, "main h1").await;
            screens.take(&browser, name).await;
        }
        browser.set_window_size(1280, 900).await.unwrap();
    }

    // Another tenant's member: the instance is neither listed nor reachable (the same page as a missing one).
    sign_out(&browser).await;
    sign_in(&browser, &base, &other_member_email, PASSWORD).await;
    let list = wait_for(&browser, "main").await.text().await.unwrap();
    assert!(!list.contains("Front desk"), "{list}");
    for path in ["", "/keys", "/webhooks", "/plugins", "/messages"] {
        browser.goto(&format!("{base}/console/instances/{iid}{path}")).await.unwrap();
        let page = wait_for(&browser, "main").await.text().await.unwrap();
        assert!(page.contains("Not Found") && !page.contains("Front desk"), "{path}: {page}");
    }
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_anonymous_console_requests_change_nothing() {
    let database = Database::create(Backend::Sqlite).await.expect("sqlite");
    let mut command = gateway_command(GATEWAY, &database.url, &database.dir);
    command.env("GATEWAY_CONSOLE_SECURE_COOKIES", "false");
    let app = TestApp::spawn_with(command).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // The sign-in page sets the CSRF cookie: HttpOnly, SameSite=Strict, scoped to the console.
    let page = client.get(app.url("/console/login")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/console"));
    let csrf = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
    let form = [("email", OPERATOR_EMAIL), ("password", OPERATOR_PASSWORD)];

    // Without the token, or with another one, a sign-in is refused before it is tried.
    let forged = client.post(app.url("/console/login")).header("cookie", format!("gw_console_csrf={csrf}"));
    let response = forged.form(&form).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("set-cookie").is_none(), "no session");
    let wrong = client
        .post(app.url("/console/login"))
        .header("cookie", format!("gw_console_csrf={csrf}"))
        .header("x-csrf-token", "0".repeat(64));
    assert_eq!(wrong.form(&form).send().await.unwrap().status(), StatusCode::FORBIDDEN);

    // With it, the sign-in works and sets the session cookies.
    let signed = client
        .post(app.url("/console/login"))
        .header("cookie", format!("gw_console_csrf={csrf}"))
        .form(&[("email", OPERATOR_EMAIL), ("password", OPERATOR_PASSWORD), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let cookies: Vec<String> = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    let session = format!("gw_console_csrf={csrf}; {}", cookies.join("; "));

    // A signed-in request without the token changes nothing.
    let create = client
        .post(app.url("/console/instances"))
        .header("cookie", &session)
        .form(&[("name", "forged"), ("driver", "sandbox")])
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), StatusCode::FORBIDDEN);
    let operator = Api::login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (_, instances) = operator.call(Method::GET, "/v1/instances", Value::Null).await;
    assert_eq!(instances["items"].as_array().map(Vec::len), Some(0), "{instances}");

    // Anonymous pages go to the sign-in; unknown console paths are the console's 404 page, not a problem.
    let anonymous = client.get(app.url("/console/instances")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()["location"], "/console/login");
    let missing = client.get(app.url("/console/nowhere")).header("cookie", &session).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let htmx = client.get(app.url("/console/assets/htmx-2.0.11.min.js")).send().await.unwrap();
    assert_eq!(htmx.status(), StatusCode::OK, "assets are served without a session");
}
