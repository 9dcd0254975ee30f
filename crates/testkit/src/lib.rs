//! The test harness: `spawn_app(Backend::Sqlite | Backend::Postgres)` starts the real app
//! on port 0 with a fresh database (a temporary SQLite file, or a PostgreSQL database
//! named by a uuid), a manual clock, and the demo county's units and users.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use baton::app::{self, Running};
use baton::config::{Config, Mode};
use baton_domain::clock::ManualClock;
use baton_store::{Db, Store};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the tests find PostgreSQL (CI starts it; see .ci/run).
pub fn pg_admin_url() -> String {
    std::env::var("BATON_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

pub struct TestApp {
    pub base: String,
    pub store: Store,
    pub clock: Arc<ManualClock>,
    pub config: Config,
    pub backend: Backend,
    running: Option<Running>,
    pg: Option<(Db, String)>,
    _dir: tempfile::TempDir,
}

/// 10 Nov 2022, 09:00 in Huguan: the morning of the county meeting.
/// The bearer token the test server's `/metrics` requires.
pub const METRICS_TOKEN: &str = "test-metrics-token";

pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2022-11-10T09:00:00+08:00").unwrap().with_timezone(&Utc)
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    fresh(backend).await.spawn().await
}

/// A fresh, empty database and the config that names it, before Baton opens it: an upgrade
/// test migrates it part way and writes what an older Baton left (`Fresh::spawn` then starts
/// the app on it, which migrates the rest).
pub struct Fresh {
    pub config: Config,
    backend: Backend,
    pg: Option<(Db, String)>,
    dir: tempfile::TempDir,
}

pub async fn fresh(backend: Backend) -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, pg) = match backend {
        Backend::Sqlite => (None, None),
        Backend::Postgres => {
            let admin_url = pg_admin_url();
            let admin = Db::open_postgres(&admin_url, &Default::default()).await.expect("PostgreSQL is not reachable; set BATON_TEST_PG_URL");
            let name = format!("baton_test_{}", uuid::Uuid::now_v7().simple());
            admin.execute_raw(&format!("CREATE DATABASE {name}")).await.unwrap();
            let url = format!("{}/{name}", &admin_url[..admin_url.rfind('/').unwrap()]);
            (Some(url), Some((admin, name)))
        }
    };
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().to_path_buf(),
        database_url,
        key_file: dir.path().join("keys.json"),
        log_format: "text".into(),
        secure_cookies: false,
        max_connections: 4,
        mode: Mode::Development,
        metrics_token: Some(METRICS_TOKEN.into()),
    };
    Fresh { config, backend, pg, dir }
}

impl Fresh {
    /// Open the database as Baton does (migrating it), with the demo county, a manual clock at
    /// [`t0`], and the server on port 0.
    pub async fn spawn(self) -> TestApp {
        let Fresh { config, backend, pg, dir } = self;
        let clock = Arc::new(ManualClock::new(t0()));
        let store = app::open_store(&config, clock.clone()).await.unwrap();
        baton::demo::build(&store, &baton::demo::DemoOptions { villages: false }).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = app::start(store.clone(), &config, listener).await.unwrap();
        TestApp { base: format!("http://{}", running.addr), store, clock, config, backend, running: Some(running), pg, _dir: dir }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sign in through the API as a demo user.
    pub async fn login(&self, username: &str) -> Session {
        self.login_with(username, baton::demo::DEMO_PASSWORD).await.unwrap_or_else(|(s, b)| panic!("login {username}: {s} {b}"))
    }

    pub async fn login_with(&self, username: &str, password: &str) -> Result<Session, (StatusCode, Value)> {
        let http = reqwest::Client::new();
        let r =
            http.post(self.url("/api/v1/auth/login")).json(&serde_json::json!({"username": username, "password": password})).send().await.unwrap();
        let status = r.status();
        let cookie = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).map(|v| v.split(';').next().unwrap_or("").to_string());
        let body: Value = r.json().await.unwrap();
        if !status.is_success() {
            return Err((status, body));
        }
        Ok(Session { http, base: self.base.clone(), cookie: cookie.unwrap(), csrf: body["csrf"].as_str().unwrap().to_string(), bearer: None, body })
    }

    /// A client that sends nothing but what each call adds.
    pub fn anonymous(&self) -> Session {
        Session { http: reqwest::Client::new(), base: self.base.clone(), cookie: String::new(), csrf: String::new(), bearer: None, body: Value::Null }
    }

    /// Stop the server and drop the database.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        if let Some((admin, name)) = self.pg.take() {
            let _ = admin.execute_raw(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            admin.close().await;
        }
    }

    /// Stop the server (keeping the database), then start it again on the same data.
    pub async fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        let store = app::open_store(&self.config, self.clock.clone()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = app::start(store.clone(), &self.config, listener).await.unwrap();
        self.base = format!("http://{}", running.addr);
        self.store = store;
        self.running = Some(running);
    }
}

/// A signed-in client: session cookie plus CSRF header, or a bearer token.
#[derive(Clone)]
pub struct Session {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: String,
    pub csrf: String,
    pub bearer: Option<String>,
    /// The login response.
    pub body: Value,
}

impl Session {
    pub fn with_bearer(&self, token: &str) -> Session {
        Session {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            cookie: String::new(),
            csrf: String::new(),
            bearer: Some(token.to_string()),
            body: Value::Null,
        }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if !self.cookie.is_empty() {
            r = r.header("cookie", &self.cookie).header("x-csrf-token", &self.csrf);
        }
        if let Some(b) = &self.bearer {
            r = r.bearer_auth(b);
        }
        r
    }

    pub fn raw(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.req(method, path)
    }

    async fn done(r: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = r.send().await.unwrap();
        let s = resp.status();
        let text = resp.text().await.unwrap();
        (s, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        Self::done(self.req(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        Self::done(self.req(reqwest::Method::POST, path).json(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        Self::done(self.req(reqwest::Method::PUT, path).json(&body)).await
    }
}

/// Run the same async test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body($crate::Backend::Postgres).await
            }
        }
    };
}
