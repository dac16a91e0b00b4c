//! A real paddock server on 127.0.0.1:0 with a real SQLite file, a clock the
//! test can move, and a mailer whose codes the test can read.

#![allow(dead_code)]

use paddock_server::clock::Clock;
use paddock_server::config::{Config, Secret};
use paddock_server::mailer::MemoryMailer;
use paddock_server::Services;
use paddock_store_sqlite::SqliteStore;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "Adm1n-password!";
pub const PASSWORD: &str = "Str0ng-pass!";

pub struct TestServer {
    pub url: String,
    pub mailer: Arc<MemoryMailer>,
    pub clock: Clock,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn test_config(data_dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        admin_email: ADMIN_EMAIL.into(),
        admin_password: Some(Secret::new(ADMIN_PASSWORD)),
        ..Config::default()
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let mut s = Self::start_in(&path, test_config(&path)).await;
        s._dir = Some(dir);
        s
    }

    /// Starts (or restarts) a server on an existing data directory.
    pub async fn start_in(data_dir: &std::path::Path, config: Config) -> TestServer {
        let store = SqliteStore::open(&data_dir.join("paddock.db")).await.unwrap();
        let mailer = Arc::new(MemoryMailer::default());
        let clock = Clock::system();
        let services = Services {
            store: Arc::new(store),
            mailer: mailer.clone(),
            clock: clock.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            paddock_server::serve(config, services, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client.get(format!("{url}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        TestServer {
            url,
            mailer,
            clock,
            client,
            data_dir: data_dir.to_owned(),
            _dir: None,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        self._dir.take()
    }

    /// Sends a request and returns the status and JSON body (Null if none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{}", self.url, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Signs up, confirms with the mailed code, logs in; returns the tokens.
    pub async fn user(&self, email: &str) -> Value {
        let (s, v) = self
            .post(
                "/api/auth/signup",
                None,
                json!({"email": email, "password": PASSWORD, "confirmPassword": PASSWORD}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let code = self.mailer.last_code(email).expect("a code was mailed");
        let (s, v) = self
            .post("/api/auth/confirm", None, json!({"email": email, "code": code}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        self.login(email, PASSWORD).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Value {
        let (s, v) = self
            .post("/api/auth/login", None, json!({"email": email, "password": password}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// An access token for a new confirmed user.
    pub async fn user_token(&self, email: &str) -> String {
        self.user(email).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Asserts an error response has our shape and the expected code.
pub fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], json!(code), "{body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}
