//! What the end-to-end test binaries share: the real `paddock` binary and
//! `paddock serve` run in a process of its own.
#![allow(dead_code)]

use nix::sys::signal::Signal;
use paddock_server::testkit::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `paddock` binary under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_paddock"))
}

/// Runs a Python `script` with the test venv's `python`, the server's
/// `URL` and an API `KEY` in its environment; fails the test with its
/// output when it fails.
pub async fn run_python(python: &str, script: &str, url: &str, key: &str) {
    let out = tokio::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .env("URL", url)
        .env("KEY", key)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pids of runtimes under a data dir.
pub fn runtime_pids(root: &Path) -> Vec<i32> {
    let tag = format!("PADDOCK_DRIVER_ROOT={}", root.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            !zombie
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == tag.as_bytes()))
        })
        .collect()
}

/// `paddock serve` as a user runs it: the real binary in a process of its
/// own (so the test can signal it), on a data directory, with the test
/// model store, its log in `serve-N.log` beside the data.
pub struct Serve {
    pub child: std::process::Child,
    pub url: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
}

impl Serve {
    /// Starts `paddock serve` with extra environment `env` and waits until
    /// it listens.
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Serve {
        Self::start_with(data_dir, env, &[]).await
    }

    /// `start`, with more arguments for `paddock serve` (`--config FILE`).
    pub async fn start_with(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Serve {
        let logs = std::fs::read_dir(data_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("serve-"))
            })
            .count();
        let log_path = data_dir.join(format!("serve-{}.log", logs + 1));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = std::process::Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("PADDOCK_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("PADDOCK_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("PADDOCK_MODELS_DIR", test_model_store(bin()))
            .env("PADDOCK_DRIVER__REGISTRY", UNREACHABLE_REGISTRY)
            .env("PADDOCK_RECONCILE_INTERVAL_MS", "200")
            .env("PADDOCK_LOG", "info,sqlx=warn")
            .envs(env.iter().copied())
            .current_dir(data_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut serve = Serve {
            child,
            url: String::new(),
            client: reqwest::Client::new(),
            data_dir: data_dir.to_owned(),
        };
        for _ in 0..300 {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("paddock listening")) {
                let url = line.split_once("url=").expect("url in the log line").1;
                serve.url = url.split_whitespace().next().unwrap().to_owned();
                return serve;
            }
            assert!(
                serve.child.try_wait().unwrap().is_none(),
                "paddock serve exited:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("paddock serve did not listen; see {}", log_path.display());
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// The admin's access token (valid across restarts: same signing key).
    pub async fn admin_token(&self) -> String {
        let v = self
            .call(
                Method::POST,
                "/api/auth/login",
                None,
                Some(json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
            )
            .await;
        v["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn deploy_gemma(&self, token: &str) -> String {
        let v = self
            .call(
                Method::POST,
                "/api/models/deploy",
                Some(token),
                Some(json!({"model_name": "gemma3:270m", "fargate_resources": {"cpu": 1024, "memory": 2048}, "idle_timeout_minutes": 0})),
            )
            .await;
        v["instance_id"].as_str().unwrap().to_owned()
    }

    pub async fn wait_status(&self, token: &str, id: &str, status: &str) -> Value {
        for _ in 0..1200 {
            let v = self
                .call(
                    Method::GET,
                    &format!("/api/instances/{id}"),
                    Some(token),
                    None,
                )
                .await;
            if v["status"] == status {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{id} did not become {status}");
    }

    /// Sends `signal` and waits for paddock to exit; returns how it exited.
    /// (Dropping a `Serve` ends the runtimes under its data directory, so a
    /// test keeps it until its checks are done.)
    pub async fn stop(&mut self, signal: Signal) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("paddock serve did not exit within 30 s of {signal}");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // Leave nothing behind when a test fails.
        if self.child.try_wait().is_ok_and(|s| s.is_none()) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        kill_runtimes_under(&self.data_dir);
    }
}

/// The states an instance went through, with their reasons.
pub fn history(v: &Value) -> Vec<(String, String)> {
    v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["to"].as_str().unwrap().to_owned(),
                t["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}
