//! Test harness (feature `testkit`): a real paddock server on 127.0.0.1:0
//! with a real SQLite file, the process driver, a clock the test can move
//! and a mailer whose codes the test can read. Used by this crate's tests
//! and by the end-to-end tests that run real models.

#![allow(missing_docs)]

use crate::config::{Config, Secret};
use crate::Services;
use paddock_core::models::ModelCache;
use paddock_core::Clock;
use paddock_driver_process::{ProcessDriver, ProcessDriverConfig};
use paddock_identity_builtin::mailer::MemoryMailer;
use paddock_identity_builtin::{BuiltinIdentity, BuiltinSettings};
pub use paddock_models::testkit::FakeRegistry;
use paddock_store_sqlite::SqliteStore;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::oneshot;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "Adm1n-password!";
pub const PASSWORD: &str = "Str0ng-pass!";

/// The registry the test servers' runtimes pull from: nothing listens there.
pub const UNREACHABLE_REGISTRY: &str = "http://127.0.0.1:9";

/// A running test server.
#[derive(Debug)]
pub struct TestServer {
    pub url: String,
    pub mailer: Arc<MemoryMailer>,
    pub clock: Clock,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    pub driver: Arc<ProcessDriver>,
    dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A config for tests: loopback, a known admin, and a runtime binary that
/// does not exist unless the test names the real one ([`with_runtime`]).
pub fn test_config(data_dir: &Path) -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: data_dir.to_owned(),
        ..Config::default()
    };
    c.identity.admin_email = ADMIN_EMAIL.into();
    c.identity.admin_password = Some(Secret::new(ADMIN_PASSWORD));
    c.driver.runtime_binary = Some(PathBuf::from("/nonexistent/paddock"));
    // Tests reach nothing but loopback: a model that is not in the store
    // is pulled from a port where nothing listens, unless the test starts
    // a registry of its own ([`registry_with_test_model`]).
    c.driver.registry = UNREACHABLE_REGISTRY.into();
    c.reconciler.interval_ms = 200;
    c.reconciler.restart_backoff_secs = 1;
    c
}

/// Points a config at the real `paddock` binary and the shared test model
/// store, so deployed instances run the real model.
pub fn with_runtime(mut config: Config, paddock_bin: &Path) -> Config {
    config.driver.runtime_binary = Some(paddock_bin.to_owned());
    config.driver.models_dir = Some(test_model_store(paddock_bin));
    config.driver.runtime_parallel = 4;
    config
}

/// Points a config at the real `paddock` binary and an empty model store
/// of its own that pulls from `registry`: every model is downloaded on
/// its first deploy.
pub fn with_runtime_pulling(config: Config, paddock_bin: &Path, registry: &str) -> Config {
    let mut config = with_runtime(config, paddock_bin);
    config.driver.models_dir = Some(config.data_dir.join("pulled"));
    config.driver.registry = registry.to_owned();
    config
}

/// Puts a stand-in for `model` (a few bytes with GGUF's magic) into the
/// store at `models_dir`, for servers whose model server is a fake that
/// loads nothing: the model is on the host, so nothing is pulled.
pub fn put_stub_model(models_dir: &Path, model: &str) {
    let file = models_dir.join("stub.gguf");
    std::fs::write(&file, b"GGUF, a stand-in").expect("write the stub model");
    paddock_models::ModelStore::open(models_dir)
        .expect("the model store")
        .import(&file, model)
        .expect("import the stub model");
}

/// The test model file (`PADDOCK_TEST_MODEL`).
pub fn test_model_file() -> PathBuf {
    PathBuf::from(std::env::var("PADDOCK_TEST_MODEL").unwrap_or_else(|_| {
        panic!("PADDOCK_TEST_MODEL is not set: run `eval \"$(scripts/test-assets)\"` (scripts/test does it)")
    }))
}

/// A fake Ollama registry on a loopback port serving the test model as
/// `gemma3:270m`.
pub async fn registry_with_test_model() -> FakeRegistry {
    let registry = FakeRegistry::start().await;
    registry.add_model_file("gemma3:270m", &test_model_file());
    registry
}

/// A model store (shared by all tests) holding the test model as
/// `gemma3:270m`, imported with `paddock_bin` on first use from
/// `PADDOCK_TEST_MODEL`.
pub fn test_model_store(paddock_bin: &Path) -> PathBuf {
    let model = test_model_file();
    let store = model
        .parent()
        .map(|d| d.join("store"))
        .unwrap_or_else(|| PathBuf::from("/var/tmp/paddock-test-assets/store"));
    let listed = std::process::Command::new(paddock_bin)
        .args(["models", "list", "--data-dir"])
        .arg(&store)
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("gemma3:270m"));
    if !listed {
        let status = std::process::Command::new(paddock_bin)
            .args(["models", "import"])
            .arg(&model)
            .args(["--name", "gemma3:270m", "--data-dir"])
            .arg(&store)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "importing the test model into {} failed",
            store.display()
        );
    }
    store
}

impl TestServer {
    /// A server on a fresh data directory (runtime launches fail: no binary).
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_owned();
        let mut s = Self::start_in(&path, test_config(&path)).await;
        s.dir = Some(dir);
        s
    }

    /// A server on a fresh data directory that runs the real model with `paddock_bin`.
    pub async fn start_with_runtime(paddock_bin: &Path) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_owned();
        let mut s = Self::start_in(&path, with_runtime(test_config(&path), paddock_bin)).await;
        s.dir = Some(dir);
        s
    }

    /// A server on a fresh data directory that runs the real model with
    /// `paddock_bin` from an empty model store of its own, so every model
    /// is pulled from `registry` on its first deploy
    /// ([`with_runtime_pulling`]).
    pub async fn start_pulling(paddock_bin: &Path, registry: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_owned();
        let config = with_runtime_pulling(test_config(&path), paddock_bin, registry);
        let mut s = Self::start_in(&path, config).await;
        s.dir = Some(dir);
        s
    }

    /// Starts (or restarts) a server on an existing data directory.
    pub async fn start_in(data_dir: &Path, config: Config) -> TestServer {
        let store = SqliteStore::open(&data_dir.join("paddock.db"))
            .await
            .expect("open store");
        let driver = Arc::new(ProcessDriver::new(ProcessDriverConfig {
            runtime_binary: config
                .driver
                .runtime_binary
                .clone()
                .unwrap_or_else(|| PathBuf::from("/nonexistent/paddock")),
            root: data_dir.to_owned(),
            models_dir: config.models_dir(),
            parallel: config.driver.runtime_parallel,
            extra_args: vec!["--registry".into(), config.driver.registry.clone()],
            keep_on_shutdown: config.driver.keep_instances_on_shutdown,
        }));
        let mailer = Arc::new(MemoryMailer::default());
        let clock = Clock::system();
        let store = Arc::new(store);
        let key = paddock_identity_builtin::signing_key::load_or_create_key(
            &data_dir.join("secrets").join("jwt.key"),
        )
        .expect("signing key");
        let identity = Arc::new(BuiltinIdentity::new(
            store.clone(),
            store.clone(),
            mailer.clone(),
            clock.clone(),
            &key,
            BuiltinSettings {
                access_ttl_secs: config.identity.access_token_ttl_secs,
                refresh_ttl_secs: config.identity.refresh_token_ttl_secs,
                confirmation_ttl_secs: config.identity.confirmation_ttl_secs,
                login_max_failures: config.identity.login_max_failures,
                login_lockout_secs: config.identity.login_lockout_secs,
            },
        ));
        let models = paddock_models::ModelStore::open(&config.models_dir())
            .expect("the model store")
            .with_registry(config.driver.registry.clone());
        // A server whose runtime cannot run (no binary) gets a stand-in for
        // gemma3:270m in its store: the model is on the host, so its
        // instances launch, and fail, at once rather than pulling first.
        let runs_models = config
            .driver
            .runtime_binary
            .as_deref()
            .is_some_and(Path::is_file);
        if !runs_models && !models.has(&paddock_core::ModelId::new("gemma3:270m")) {
            put_stub_model(&config.models_dir(), "gemma3:270m");
        }
        let models: Option<Arc<dyn ModelCache>> = Some(Arc::new(models));
        let services = Services {
            store,
            identity,
            driver: driver.clone(),
            models,
            clock: clock.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            crate::serve(config, services, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("server");
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
            driver,
            dir: None,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server gracefully (its instances' model servers end unless
    /// the config keeps them) and returns the data directory if this server
    /// owned it.
    pub async fn shutdown(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.dir.take()
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
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
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
            .post(
                "/api/auth/confirm",
                None,
                json!({"email": email, "code": code}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        self.login(email, PASSWORD).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Value {
        let (s, v) = self
            .post(
                "/api/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// An access token for a new confirmed user.
    pub async fn user_token(&self, email: &str) -> String {
        self.user(email).await["access_token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await["access_token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// An API key secret for the holder of `token`.
    pub async fn api_key(&self, token: &str, name: &str) -> String {
        let (s, v) = self
            .post("/api/keys", Some(token), json!({"name": name}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["secret"].as_str().expect("secret").to_owned()
    }

    /// Deploys gemma3:270m on 1 vCPU / 2 GiB and returns the instance id.
    pub async fn deploy_gemma(&self, token: &str, idle_minutes: f64) -> String {
        let (s, v) = self
            .post(
                "/api/models/deploy",
                Some(token),
                json!({"model_name": "gemma3:270m", "fargate_resources": {"cpu": 1024, "memory": 2048}, "idle_timeout_minutes": idle_minutes}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        v["instance_id"].as_str().expect("id").to_owned()
    }

    /// Waits until the instance has `status` (or panics after `secs`).
    pub async fn wait_status(&self, token: &str, id: &str, status: &str, secs: u64) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let (_, v) = self.get(&format!("/api/instances/{id}"), token).await;
            if v["status"] == status {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{id} did not become {status} in {secs}s: {v}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Leave no model server behind when a test ends or panics.
        if let Some(dir) = &self.dir {
            kill_runtimes_under(dir.path());
        }
    }
}

/// Ends every runtime process launched with `root` as its driver root.
pub fn kill_runtimes_under(root: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let tag = format!("PADDOCK_DRIVER_ROOT={}", root.display());
        if env.split(|b| *b == 0).any(|kv| kv == tag.as_bytes()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Asserts an error response has our shape and the expected code.
pub fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], json!(code), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// One client connection kept open across requests, its HTTP/1.1 written
/// by hand: the way a program reuses a connection, so that a test can see
/// how that one connection is answered after something changed (the fast
/// path keeps what it learnt about a connection's API key).
#[derive(Debug)]
pub struct RawConnection {
    stream: tokio::net::TcpStream,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
}

impl RawConnection {
    /// Connects to a server at `url` (`http://host:port`).
    pub async fn open(url: &str) -> RawConnection {
        let addr = url.trim_start_matches("http://");
        RawConnection {
            stream: tokio::net::TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    /// Sends one request with `Authorization: Bearer token` (and `body` as
    /// JSON) and reads its whole response: the status and the body.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (StatusCode, String) {
        use tokio::io::AsyncWriteExt;
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: paddock\r\nauthorization: Bearer {token}\r\n"
        );
        if !body.is_empty() {
            req.push_str("content-type: application/json\r\n");
        }
        req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
        self.stream
            .write_all(req.as_bytes())
            .await
            .expect("send a request");
        self.response().await
    }

    /// Reads until `buf` holds at least `n` bytes.
    async fn fill(&mut self, n: usize) {
        use tokio::io::AsyncReadExt;
        while self.buf.len() < n {
            let mut chunk = [0u8; 8192];
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(60),
                self.stream.read(&mut chunk),
            )
            .await
            .expect("the server answers within a minute")
            .expect("read a response");
            assert!(read > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..read]);
        }
    }

    /// Reads up to and including the next CRLF, without it.
    async fn line(&mut self) -> Vec<u8> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..at].to_vec();
                self.buf.drain(..at + 2);
                return line;
            }
            let have = self.buf.len();
            self.fill(have + 1).await;
        }
    }

    /// Reads one response: the head, then a sized or chunked body.
    async fn response(&mut self) -> (StatusCode, String) {
        let (status, length, chunked) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut head = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) =
                head.parse(&self.buf).expect("a valid response head")
            {
                let header = |name: &str| {
                    head.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
                };
                let length = header("content-length").map(|v| v.parse::<usize>().expect("length"));
                let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
                let status = StatusCode::from_u16(head.code.expect("status")).expect("status");
                self.buf.drain(..len);
                break (status, length, chunked);
            }
            let have = self.buf.len();
            self.fill(have + 1).await;
        };
        let mut body = Vec::new();
        if chunked {
            loop {
                let size = self.line().await;
                let size = String::from_utf8_lossy(&size);
                let size = size.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16).expect("a chunk size");
                if size == 0 {
                    // Trailers, if any, up to the empty line.
                    while !self.line().await.is_empty() {}
                    break;
                }
                self.fill(size + 2).await;
                body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
            }
        } else {
            let n = length.unwrap_or(0);
            self.fill(n).await;
            body.extend(self.buf.drain(..n));
        }
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}
