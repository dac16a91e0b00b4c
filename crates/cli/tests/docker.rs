//! The images and the Docker driver on the real Docker engine. These tests
//! fail, not skip, when the engine cannot be reached.
//!
//! The first test to need the images builds them from a clean state: the
//! paddock images and `debian:bookworm-slim` are removed first, so the
//! build has to make the base with debootstrap, as on an offline machine.
//! Containers are reached only through a unix socket in a bind-mounted
//! directory or a port published on 127.0.0.1, never a bridge address.

mod support;

use nix::sys::signal::Signal;
use paddock_core::compute::ComputeSpec;
use paddock_core::driver::{ComputeDriver, LaunchSpec, Observed};
use paddock_driver_docker::{DockerDriver, DockerDriverConfig, Reach};
use paddock_server::testkit::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{bin, Serve};

const MODEL_IMAGE: &str = "paddock-model:gemma3-270m";

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI");
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The output of `paddock image build`, run once per test binary from a
/// clean state.
fn images() -> &'static str {
    static BUILT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let info = Command::new("docker").arg("info").output();
        assert!(
            info.as_ref().is_ok_and(|o| o.status.success()),
            "the Docker engine is not reachable (`docker info` failed): these tests need it"
        );
        let paddock = paddock_driver_docker::default_image();
        for image in [MODEL_IMAGE, paddock.as_str(), "debian:bookworm-slim"] {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
        let out = Command::new(bin())
            .args(["image", "build", "--model", "gemma3:270m", "--data-dir"])
            .arg(test_model_store(bin()))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "paddock image build failed:\n{text}");
        text
    })
}

/// Containers of the root `id`, running or not.
fn containers_of(root_id: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=paddock.root={root_id}"),
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

fn root_id(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("docker-root-id"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Removes every container of a data directory's root (a failed test
/// leaves nothing running).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(id) = std::fs::read_to_string(self.0.join("docker-root-id")) {
            let ids = containers_of(id.trim());
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.iter().map(String::as_str));
                let _ = Command::new("docker").args(&args).output();
            }
        }
    }
}

/// One HTTP/1.1 request over a unix socket; the status and the body.
async fn over_socket(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut r = rest;
        while let Some((size, tail)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            r = &tail[n + 2..];
        }
        out
    } else {
        rest.to_owned()
    };
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_build_offline_and_a_model_image_serves_on_its_socket() {
    let out = images();
    assert!(
        out.contains("making it with debootstrap"),
        "the base was not made: {out}"
    );
    // The paddock image: the binary, a non-root user, the runtime's port,
    // a health check and OCI labels.
    let paddock = paddock_driver_docker::default_image();
    let config: Value = serde_json::from_str(&docker(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config}}",
        &paddock,
    ]))
    .unwrap();
    assert_eq!(config["User"], "paddock");
    assert!(config["ExposedPorts"]["11434/tcp"].is_object(), "{config}");
    assert_eq!(
        config["Healthcheck"]["Test"],
        json!(["CMD", "/usr/local/bin/paddock", "healthcheck"])
    );
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "paddock");
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    // The model image carries the model's name, sha256 and size.
    let labels: Value = serde_json::from_str(&docker(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Labels}}",
        MODEL_IMAGE,
    ]))
    .unwrap();
    let model = std::fs::metadata(std::env::var("PADDOCK_TEST_MODEL").unwrap()).unwrap();
    assert_eq!(labels["paddock.model.name"], "gemma3:270m");
    assert_eq!(labels["paddock.model.size"], model.len().to_string());
    assert!(
        labels["paddock.model.sha256"]
            .as_str()
            .unwrap()
            .starts_with("a5fd3b62"),
        "{labels}"
    );

    // `docker run` of the model image serves the model with no mount of
    // the store and no network, on a socket in a mounted directory.
    let dir = tempfile::tempdir().unwrap();
    let sock_dir = dir.path().join("sock");
    std::fs::create_dir(&sock_dir).unwrap();
    std::os::unix::fs::chown(&sock_dir, Some(10001), Some(10001)).unwrap();
    let name = format!("paddock-test-run-{}", std::process::id());
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "-v",
        &format!("{}:/run/paddock", sock_dir.display()),
        "-e",
        "PADDOCK_RUNTIME_SOCKET=/run/paddock/runtime.sock",
        "--health-interval",
        "1s",
        MODEL_IMAGE,
    ]);
    let socket = sock_dir.join("runtime.sock");
    let mut healthy = false;
    for _ in 0..600 {
        let state = docker(&["inspect", "-f", "{{.State.Health.Status}}", &name]);
        if state == "healthy" {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = docker(&["logs", &name]);
    assert!(healthy, "never healthy: {logs}");
    let (status, body) = over_socket(&socket, "GET", "/api/version", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["version"].is_string());
    let (status, body) = over_socket(
        &socket,
        "POST",
        "/api/generate",
        r#"{"model":"gemma3:270m","prompt":"The capital of France is","stream":false,"options":{"num_predict":4,"temperature":0}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["done"], true, "{v}");
    assert!(v["eval_count"].as_u64().unwrap() > 0, "{v}");
    docker(&["rm", "-f", &name]);
}

fn driver_config(root: &Path, reach: Reach, model_images: bool) -> DockerDriverConfig {
    DockerDriverConfig {
        root: root.to_owned(),
        models_dir: test_model_store(bin()),
        image: paddock_driver_docker::default_image(),
        model_images,
        parallel: 2,
        reach,
        keep_on_shutdown: false,
    }
}

fn spec(id: &str, memory_mb: u32) -> LaunchSpec {
    LaunchSpec {
        instance_id: paddock_core::InstanceId::new(id),
        model_id: paddock_core::ModelId::new("gemma3:270m"),
        spec: ComputeSpec::Cpu {
            vcpu_milli: 1000,
            memory_mb,
            spot: false,
        },
        threads: 1,
        ctx: 2048,
    }
}

/// The Docker driver under the shared conformance suite, reached as the
/// test asks; `want` is the endpoint's prefix.
async fn conformance(reach: Reach, model_images: bool, want: &'static str) {
    images();
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_owned());
    let driver = DockerDriver::connect(driver_config(dir.path(), reach, model_images))
        .await
        .unwrap();
    let pool = paddock_gateway::upstream::Pool::default();
    paddock_core::testkit::driver_conformance(&driver, spec("i-conformance", 2048), |endpoint| {
        let pool = pool.clone();
        async move {
            use std::os::unix::fs::PermissionsExt;
            assert!(endpoint.starts_with(want), "{endpoint}");
            if let Some(socket) = endpoint.strip_prefix("unix:") {
                // Only this server's user can reach the model server.
                let dir = Path::new(socket).parent().unwrap();
                let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o700, "{}", dir.display());
            }
            pool.healthy(&endpoint).await
        }
    })
    .await;
    assert!(containers_of(driver.root_id()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_driver_conformance_on_a_socket_with_the_model_image() {
    conformance(Reach::Auto, true, "unix:/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_driver_conformance_on_a_loopback_port_with_the_store_mounted() {
    conformance(Reach::Port, false, "http://127.0.0.1:").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_is_reported_out_of_memory() {
    images();
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_owned());
    let driver = DockerDriver::connect(driver_config(dir.path(), Reach::Auto, true))
        .await
        .unwrap();
    // The weights and a long context's cache need more than this.
    let mut small = spec("i-small", 128);
    small.ctx = 16384;
    let h = driver.launch(&small).await.unwrap();
    let mut reason = None;
    for _ in 0..600 {
        if let Observed::Exited { reason: r, .. } = driver.status(&h).await.unwrap() {
            reason = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason = reason.expect("the container was not killed");
    assert!(
        reason.starts_with("out of memory at 128 MiB: choose a larger size"),
        "{reason}"
    );
    driver.stop(&h).await.unwrap();
    assert!(containers_of(driver.root_id()).is_empty());
}

async fn docker_serve(dir: &Path, keep: bool) -> Serve {
    let mut env = vec![("PADDOCK_DRIVER__KIND", "docker")];
    if keep {
        env.push(("PADDOCK_DRIVER__KEEP_INSTANCES_ON_SHUTDOWN", "true"));
    }
    Serve::start(dir, &env).await
}

/// The one container of `root`, and that there is one.
fn the_container(root: &str) -> String {
    let ids = containers_of(root);
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_chat_and_stop_through_paddock_serve_on_docker() {
    images();
    let python = std::env::var("PADDOCK_TEST_PYTHON")
        .expect("PADDOCK_TEST_PYTHON is not set: run `eval \"$(scripts/test-assets)\"` (scripts/test does it)");
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_owned());
    let serve = docker_serve(dir.path(), false).await;
    let token = serve.admin_token().await;
    let key = serve
        .call(
            Method::POST,
            "/api/keys",
            Some(&token),
            Some(json!({"name": "docker"})),
        )
        .await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    // This engine has no NVIDIA runtime: a GPU size is refused at once.
    let resp = serve
        .client
        .post(format!("{}/api/models/deploy", serve.url))
        .bearer_auth(&token)
        .json(&json!({"model_name": "gemma3:270m", "instance_type": "g4dn.xlarge"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("docker driver, which has no GPU"),
        "{v}"
    );
    let id = serve.deploy_gemma(&token).await;
    let v = serve.wait_status(&token, &id, "RUNNING").await;
    assert_eq!(v["restart_count"], 0, "{v}");
    let container = the_container(&root_id(dir.path()));
    let image = docker(&["inspect", "-f", "{{.Config.Image}}", &container]);
    assert_eq!(image, MODEL_IMAGE);
    let limits = docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NetworkMode}}",
        &container,
    ]);
    assert_eq!(limits, "1000000000 2147483648 2147483648 none");

    // The official clients, through the gateway.
    let script = r#"
import os, ollama, openai
url, key = os.environ["URL"], os.environ["KEY"]
c = ollama.Client(host=url, headers={"Authorization": "Bearer " + key})
r = c.chat(model="gemma3:270m", messages=[{"role": "user", "content": "Hello"}], options={"num_predict": 6})
assert r.message.content, r
g = c.generate(model="gemma3:270m", prompt="The sky is", options={"num_predict": 4})
assert g.response, g
o = openai.OpenAI(base_url=url + "/v1", api_key=key)
r = o.chat.completions.create(model="gemma3:270m", messages=[{"role": "user", "content": "Hello"}], max_tokens=6)
assert r.choices[0].message.content and r.usage.completion_tokens > 0, r
chunks = [ch.choices[0].delta.content or "" for ch in o.chat.completions.create(model="gemma3:270m", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, stream=True) if ch.choices]
assert "".join(chunks), chunks
print("ok")
"#;
    support::run_python(&python, script, &serve.url, &key).await;
    // The model server's log comes from the engine.
    let logs = serve
        .call(
            Method::GET,
            &format!("/api/instances/{id}/logs"),
            Some(&token),
            None,
        )
        .await;
    assert!(logs.to_string().contains("model loaded"), "{logs}");

    serve
        .call(
            Method::POST,
            "/api/models/stop",
            Some(&token),
            Some(json!({"instance_id": id})),
        )
        .await;
    serve.wait_status(&token, &id, "STOPPED").await;
    assert!(
        containers_of(&root_id(dir.path())).is_empty(),
        "a container was left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_container_is_restarted_and_a_restarted_server_adopts_it() {
    images();
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_owned());
    let mut serve = docker_serve(dir.path(), true).await;
    let token = serve.admin_token().await;
    let id = serve.deploy_gemma(&token).await;
    serve.wait_status(&token, &id, "RUNNING").await;
    let root = root_id(dir.path());
    let first = the_container(&root);

    // Killed: FAILED, then restarted by the reconciler in a new container.
    docker(&["kill", &first]);
    serve.wait_status(&token, &id, "FAILED").await;
    let v = serve.wait_status(&token, &id, "RUNNING").await;
    assert_eq!(v["restart_count"], 1, "{v}");
    let second = the_container(&root);
    assert_ne!(second, first);

    // A stray container with this root's labels, unknown to the store.
    let stray = docker(&[
        "run",
        "-d",
        "--label",
        &format!("paddock.root={root}"),
        "--label",
        "paddock.instance=i-stray",
        "--network",
        "none",
        "--entrypoint",
        "sleep",
        &paddock_driver_docker::default_image(),
        "300",
    ]);
    assert_eq!(containers_of(&root).len(), 2);

    // Restarted: the running container is adopted, not duplicated, and the
    // stray one is removed.
    let exit = serve.stop(Signal::SIGTERM).await;
    assert!(exit.success(), "{exit}");
    let serve = docker_serve(dir.path(), true).await;
    let mut left = Vec::new();
    for _ in 0..100 {
        left = containers_of(&root);
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(second.starts_with(&left[0]), "{left:?} is not {second}");
    assert!(!stray.starts_with(&left[0]));
    let v = serve
        .call(
            Method::POST,
            "/api/generate",
            Some(&token),
            Some(json!({"model": "gemma3:270m", "prompt": "Hi", "stream": false, "options": {"num_predict": 2}})),
        )
        .await;
    assert_eq!(v["done"], true, "{v}");
    let v = serve.wait_status(&token, &id, "RUNNING").await;
    assert_eq!(v["restart_count"], 1, "{v}");
    serve
        .call(
            Method::POST,
            "/api/models/stop",
            Some(&token),
            Some(json!({"instance_id": id})),
        )
        .await;
    serve.wait_status(&token, &id, "STOPPED").await;
    assert!(containers_of(&root).is_empty());
}
