//! Shared test harness: starts the real runtime (`paddock_runtime::serve`)
//! on 127.0.0.1:0 with the real test model, once per configuration per test
//! binary, each on its own thread with its own tokio runtime.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

/// The served name of the test model in every test server.
pub const MODEL: &str = "gemma3:270m";

/// The test model file; panics with instructions when the assets are missing.
pub fn test_model() -> PathBuf {
    let path = std::env::var_os("PADDOCK_TEST_MODEL").expect(
        "PADDOCK_TEST_MODEL is not set: run `eval \"$(scripts/test-assets)\"` before the runtime tests",
    );
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "PADDOCK_TEST_MODEL={} does not exist: run scripts/test-assets",
        path.display()
    );
    path
}

/// The Python with the `ollama` and `openai` packages.
pub fn test_python() -> PathBuf {
    std::env::var_os("PADDOCK_TEST_PYTHON")
        .map(PathBuf::from)
        .expect("PADDOCK_TEST_PYTHON is not set: run `eval \"$(scripts/test-assets)\"` before the runtime tests")
}

/// A running test server.
#[derive(Debug)]
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    _data: tempfile::TempDir,
}

/// Starts a server of its own (not shared with other tests).
pub fn start(parallel: usize, queue_depth: usize, ctx: u32) -> Server {
    let data = tempfile::tempdir().expect("temp dir");
    paddock_models::ModelStore::open(data.path())
        .expect("open store")
        .import(&test_model(), MODEL)
        .expect("import the test model");
    let mut config = paddock_runtime::RuntimeConfig::new(MODEL);
    config.data_dir = data.path().to_path_buf();
    config.ollama_models_dir = Some(data.path().join("no-ollama"));
    config.registry = "http://127.0.0.1:9".into();
    config.parallel = parallel;
    config.queue_depth = queue_depth;
    config.ctx = ctx;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr"))
                .expect("send addr");
            paddock_runtime::serve(config, listener, std::future::pending())
                .await
                .expect("serve");
        });
    });
    let addr = rx.recv().expect("server thread started");
    let server = Server {
        url: format!("http://{addr}"),
        _data: data,
    };
    wait_ready(&server.url);
    server
}

fn wait_ready(url: &str) {
    for _ in 0..600 {
        if probe(url) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the runtime did not answer /api/version within 60 s");
}

/// Whether `GET {url}/api/version` answers 200 (plain blocking HTTP/1.1).
fn probe(url: &str) -> bool {
    use std::io::{Read, Write};
    let host = url.trim_start_matches("http://");
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let request = format!("GET /api/version HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

/// The shared server: 8 parallel sequences.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| start(8, 16, 1024))
}

/// A server with one sequence and a one-deep queue, for capacity tests.
pub fn small_server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| start(1, 1, 512))
}

/// Runs an inline Python script with the test venv; returns its stdout.
pub fn python(script: &str, base_url: &str) -> String {
    let out = std::process::Command::new(test_python())
        .arg("-c")
        .arg(script)
        .env("BASE_URL", base_url)
        .env("MODEL", MODEL)
        .output()
        .expect("run the test python");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
