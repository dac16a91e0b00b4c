//! End to end on the real test model: the real `paddock` binary as the
//! runtime, the server in-process (so the test can move its clock) or, to
//! signal it, as `paddock serve` in a process of its own, real HTTP clients
//! and the official Python clients.

mod support;

use nix::sys::signal::Signal;
use paddock_server::testkit::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::time::Duration;
use support::{bin, history, runtime_pids, Serve};

async fn chat(s: &TestServer, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
    s.post(path, Some(key), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_chat_meter_and_stop() {
    let s = TestServer::start_with_runtime(bin()).await;
    let token = s.user_token("ana@example.com").await;
    let key = s.api_key(&token, "e2e").await;

    let id = s.deploy_gemma(&token, 15.0).await;
    let v = s.wait_status(&token, &id, "RUNNING", 120).await;
    let history: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["PENDING", "STARTING", "RUNNING"]);
    assert_eq!(runtime_pids(&s.data_dir).len(), 1);

    // Ollama chat, not streamed, by model name with the API key.
    let (st, v) = chat(
        &s,
        &key,
        "/api/chat",
        json!({"model": "gemma3:270m", "messages": [{"role": "user", "content": "Say hello"}], "stream": false, "options": {"num_predict": 8, "seed": 1}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(!v["message"]["content"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(v["done"], true);
    let completion = v["eval_count"].as_u64().unwrap();
    let prompt = v["prompt_eval_count"].as_u64().unwrap();
    assert!(completion > 0 && completion <= 8);

    // Streamed: NDJSON chunks arrive one by one, the last has the counts.
    let resp = s
        .client
        .post(format!("{}/models/{id}/api/generate", s.url))
        .bearer_auth(&key)
        .json(&json!({"model": "gemma3:270m", "prompt": "Once upon a time", "options": {"num_predict": 12}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-paddock-instance"], id.as_str());
    let mut chunks = 0;
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    use futures::StreamExt;
    while let Some(c) = stream.next().await {
        chunks += 1;
        body.extend_from_slice(&c.unwrap());
    }
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 2, "{text}");
    assert!(chunks > 1, "the stream arrived in one piece");
    assert_eq!(lines.last().unwrap()["done"], true);

    // A client that goes away mid-stream cancels the upstream request; the
    // gateway records it as 499 (client closed).
    let mut abandoned = s
        .client
        .post(format!("{}/api/generate", s.url))
        .bearer_auth(&key)
        .json(&json!({"model": "gemma3:270m", "prompt": "Tell a long story", "options": {"num_predict": 400}}))
        .send()
        .await
        .unwrap();
    abandoned.chunk().await.unwrap().expect("a first chunk");
    drop(abandoned);

    // OpenAI, not streamed.
    let (st, v) = chat(
        &s,
        &key,
        "/v1/chat/completions",
        json!({"model": "gemma3:270m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // One raw connection: two requests written back to back (pipelined),
    // both forwarded by the gateway's fast path, then a listing on the same
    // connection, which the router answers.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(s.url.trim_start_matches("http://"))
            .await
            .unwrap();
        let body = r#"{"model":"gemma3:270m"}"#;
        let show = format!(
            "POST /api/show HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let tags = format!(
            "GET /api/tags HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\nconnection: close\r\n\r\n"
        );
        tcp.write_all(format!("{show}{show}{tags}").as_bytes())
            .await
            .unwrap();
        let mut all = String::new();
        tcp.read_to_string(&mut all).await.unwrap();
        assert_eq!(all.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{all}");
        assert_eq!(
            all.matches(&format!("x-paddock-instance: {id}")).count(),
            2,
            "{all}"
        );
        assert!(all.ends_with("]}"), "the listing comes last: {all}");
    }

    // The gateway lists what the user deployed.
    let (_, tags) = s.get("/api/tags", &key).await;
    assert_eq!(tags["models"][0]["name"], "gemma3:270m");
    let (_, models) = s.get("/v1/models", &key).await;
    assert_eq!(models["data"][0]["id"], "gemma3:270m");
    let (_, ps) = s.get("/api/ps", &key).await;
    assert_eq!(ps["models"].as_array().unwrap().len(), 1);

    // Usage was recorded with the exact counts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (st, u) = s.get("/api/usage?days=1", &token).await;
    assert_eq!(st, StatusCode::OK, "{u}");
    let row = &u["by_model"][0];
    assert_eq!(row["model"], "gemma3:270m");
    // The chat, the streamed generate, the abandoned stream, the OpenAI
    // chat and the two shows.
    assert_eq!(row["requests"], 6);
    assert_eq!(row["errors"], 1, "{u}");
    assert!(row["prompt_tokens"].as_u64().unwrap() >= prompt);
    assert!(row["completion_tokens"].as_u64().unwrap() > completion);
    assert!(row["compute_seconds"].as_u64().is_some());
    let (_, inst) = s.get(&format!("/api/instances/{id}"), &token).await;
    assert!(inst["uptime_seconds"].as_u64().is_some());
    let (_, logs) = s
        .get(&format!("/api/instances/{id}/logs?lines=50"), &token)
        .await;
    assert!(!logs["lines"].as_array().unwrap().is_empty(), "{logs}");

    // Metrics count it.
    let m = s.metrics().await;
    assert!(m.contains("paddock_instances{state=\"RUNNING\"} 1"), "{m}");
    assert!(m.contains("route=\"/api/chat\""), "{m}");

    // Stop: STOPPING -> STOPPED and no process left.
    let (st, _) = s
        .post("/api/models/stop", Some(&token), json!({"instance_id": id}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    s.wait_status(&token, &id, "STOPPED", 30).await;
    assert!(runtime_pids(&s.data_dir).is_empty());
    let (st, v) = chat(
        &s,
        &key,
        "/api/chat",
        json!({"model": "gemma3:270m", "messages": []}),
    )
    .await;
    assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
    assert!(v["error"]["message"].as_str().unwrap().contains("deploy"));
    let (_, stopped) = s.get(&format!("/api/instances/{id}"), &token).await;
    assert_eq!(stopped["startable"], true, "{stopped}");

    // Started again: the same id and endpoint, the same key works, and the
    // history goes on.
    let (st, v) = s
        .post(
            &format!("/api/instances/{id}/start"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "PENDING", "{v}");
    assert_eq!(v["startable"], false, "{v}");
    let v = s.wait_status(&token, &id, "RUNNING", 120).await;
    assert_eq!(v["endpoint_url"], stopped["endpoint_url"]);
    assert_eq!(v["restart_count"], 0);
    let reasons: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"started by user"), "{reasons:?}");
    assert_eq!(
        reasons.iter().filter(|r| **r == "healthy").count(),
        2,
        "{reasons:?}"
    );
    let (st, v) = chat(
        &s,
        &key,
        &format!("/models/{id}/api/generate"),
        json!({"model": "gemma3:270m", "prompt": "The sky is", "stream": false, "options": {"num_predict": 4}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Starting what runs is a no-op; another user's is not found.
    let (st, v) = s
        .post(
            &format!("/api/instances/{id}/start"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::ACCEPTED, Some("RUNNING"))
    );
    let other = s.user_token("bea@example.com").await;
    let (st, v) = s
        .post(
            &format!("/api/instances/{id}/start"),
            Some(&other),
            json!({}),
        )
        .await;
    assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
    s.post(
        &format!("/api/instances/{id}/stop"),
        Some(&token),
        json!({}),
    )
    .await;
    s.wait_status(&token, &id, "STOPPED", 30).await;
    assert!(runtime_pids(&s.data_dir).is_empty());
}

/// A model that is not in the store and cannot be pulled fails at once,
/// with a reason naming the registry and the error, and is not restarted:
/// a restart would fail the same way. It can still be started by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_cannot_be_pulled_fails_once_and_is_not_restarted() {
    let s = TestServer::start_with_runtime(bin()).await;
    let token = s.user_token("noor@example.com").await;
    let (_, catalog) = s.get("/api/models/qwen2.5:0.5b", &token).await;
    assert_eq!(catalog["availability"], "download", "{catalog}");
    let (st, v) = s
        .post(
            "/api/models/deploy",
            Some(&token),
            json!({"model_name": "qwen2.5:0.5b", "fargate_resources": {"cpu": 1024, "memory": 2048}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["instance_id"].as_str().unwrap().to_owned();
    let v = s.wait_status(&token, &id, "FAILED", 60).await;
    let reason = v["status_reason"].as_str().unwrap();
    assert!(reason.contains(UNREACHABLE_REGISTRY), "{reason}");
    assert!(reason.contains("qwen2.5:0.5b"), "{reason}");
    assert!(reason.contains("cannot reach the registry"), "{reason}");
    assert!(reason.contains("not restarted"), "{reason}");
    assert_eq!(v["status_label"], "FAILED", "{v}");
    assert_eq!(v["startable"], true, "{v}");
    // Well past the first restart's backoff: still one failure, no restart.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        states(&s, &token, &id).await,
        ["PENDING", "PULLING", "FAILED"]
    );
    assert!(runtime_pids(&s.data_dir).is_empty());
}

/// The states an instance went through, oldest first.
async fn states(s: &TestServer, token: &str, id: &str) -> Vec<String> {
    let (_, v) = s.get(&format!("/api/instances/{id}"), token).await;
    history(&v).into_iter().map(|(to, _)| to).collect()
}

/// Waits until the instance is PULLING with `bytes` of the weights
/// downloaded (and the few bytes of the model's config).
async fn wait_pulled_to(s: &TestServer, token: &str, id: &str, bytes: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = s.get(&format!("/api/instances/{id}"), token).await;
        let config = paddock_models::testkit::CONFIG.len() as u64;
        if v["pull"]["completed_bytes"].as_u64() == Some(config + bytes) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} did not download {bytes} bytes: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A catalog model that is not on the host is downloaded on its first
/// deploy: the instance is PULLING with its bytes and percent, a second
/// instance of the model waits for the same download, both then run, the
/// model answers, and the next deploy finds it on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_not_on_the_host_is_pulled_once_and_kept() {
    let registry = registry_with_test_model().await;
    let size = std::fs::metadata(test_model_file()).unwrap().len();
    registry.hold_at(size / 2);
    let s = TestServer::start_pulling(bin(), &registry.url).await;
    let token = s.user_token("pia@example.com").await;
    let key = s.api_key(&token, "k").await;
    let (_, m) = s.get("/api/models/gemma3:270m", &token).await;
    assert_eq!(m["availability"], "download", "{m}");

    let first = s.deploy_gemma(&token, 0.0).await;
    let v = wait_pulled_to(&s, &token, &first, size / 2).await;
    assert_eq!(v["status"], "PULLING", "{v}");
    assert_eq!(v["status_label"], "pulling 50%", "{v}");
    assert_eq!(v["pull"]["percent"], 50, "{v}");
    let config = paddock_models::testkit::CONFIG.len() as u64;
    assert_eq!(
        v["pull"]["total_bytes"].as_u64(),
        Some(size + config),
        "{v}"
    );
    assert!(
        v["status_reason"].as_str().unwrap().contains(&registry.url),
        "{v}"
    );
    assert_eq!(v["uptime_seconds"], 0, "a download bills nothing");
    // A second instance of the model waits for the same download.
    let second = s.deploy_gemma(&token, 0.0).await;
    wait_pulled_to(&s, &token, &second, size / 2).await;

    registry.release();
    s.wait_status(&token, &first, "RUNNING", 180).await;
    s.wait_status(&token, &second, "RUNNING", 180).await;
    for id in [&first, &second] {
        assert_eq!(
            states(&s, &token, id).await,
            ["PENDING", "PULLING", "STARTING", "RUNNING"]
        );
    }
    // One download for both: the config blob and the weights, once each.
    assert_eq!(registry.blob_requests(), 2);
    let (st, v) = chat(
        &s,
        &key,
        "/api/generate",
        json!({"model": "gemma3:270m", "prompt": "The capital of France is", "stream": false, "options": {"num_predict": 6, "temperature": 0}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(!v["response"].as_str().unwrap().is_empty(), "{v}");

    // Kept for the next deploy: on the host, launched without a download.
    let (_, m) = s.get("/api/models/gemma3:270m", &token).await;
    assert_eq!(m["availability"], "on_host", "{m}");
    for id in [&first, &second] {
        s.post(
            &format!("/api/instances/{id}/stop"),
            Some(&token),
            json!({}),
        )
        .await;
    }
    let third = s.deploy_gemma(&token, 0.0).await;
    s.wait_status(&token, &third, "RUNNING", 180).await;
    assert_eq!(
        states(&s, &token, &third).await,
        ["PENDING", "STARTING", "RUNNING"]
    );
    assert_eq!(registry.blob_requests(), 2);
}

/// A request for a model whose download is under way waits for it, then
/// answers 503 saying how far it is. A download whose instances are all
/// stopped is cancelled and its part kept: starting the instance again
/// resumes it where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_download_resumes_when_started_again() {
    let registry = registry_with_test_model().await;
    let size = std::fs::metadata(test_model_file()).unwrap().len();
    registry.hold_at(size / 4);
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_runtime_pulling(test_config(dir.path()), bin(), &registry.url);
    config.reconciler.wake_timeout_secs = 1;
    let s = TestServer::start_in(dir.path(), config).await;
    let token = s.user_token("ravi@example.com").await;
    let key = s.api_key(&token, "k").await;
    let id = s.deploy_gemma(&token, 0.0).await;
    wait_pulled_to(&s, &token, &id, size / 4).await;
    let (st, v) = chat(
        &s,
        &key,
        "/api/generate",
        json!({"model": "gemma3:270m", "prompt": "Hi", "stream": false}),
    )
    .await;
    assert_error(st, &v, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("is downloading gemma3:270m (25% done)"),
        "{message}"
    );
    let (st, v) = s
        .post(
            &format!("/api/instances/{id}/stop"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "STOPPED", "nothing to release: {v}");
    let partial = || {
        std::fs::read_dir(s.data_dir.join("pulled/models/blobs"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with("-partial"))
            .map(|e| e.metadata().unwrap().len())
            .collect::<Vec<_>>()
    };
    assert_eq!(partial(), [size / 4], "the part downloaded is kept");
    // The reconcile pass the stop wakes (every 200 ms at the latest here)
    // cancels the download; only then is the registry let go.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    registry.release();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(partial(), [size / 4], "the cancelled download went on");
    let (_, m) = s.get("/api/models/gemma3:270m", &token).await;
    assert_eq!(m["availability"], "download", "{m}");

    s.post(
        &format!("/api/instances/{id}/start"),
        Some(&token),
        json!({}),
    )
    .await;
    s.wait_status(&token, &id, "RUNNING", 180).await;
    assert_eq!(registry.ranges(), [format!("bytes={}-", size / 4)]);
    assert_eq!(
        states(&s, &token, &id).await,
        ["PENDING", "PULLING", "STOPPED", "PENDING", "PULLING", "STARTING", "RUNNING"]
    );
    // A graceful stop ends the model server this test's directory holds.
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runtime_fails_and_is_restarted() {
    let s = TestServer::start_with_runtime(bin()).await;
    let token = s.user_token("ana@example.com").await;
    let id = s.deploy_gemma(&token, 0.0).await;
    s.wait_status(&token, &id, "RUNNING", 120).await;
    let pids = runtime_pids(&s.data_dir);
    assert_eq!(pids.len(), 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    s.wait_status(&token, &id, "FAILED", 30).await;
    let v = s.wait_status(&token, &id, "RUNNING", 120).await;
    assert_eq!(v["restart_count"], 1);
    let reasons: Vec<String> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(reasons.iter().any(|r| r.contains("exited")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("restart 1 of 3")),
        "{reasons:?}"
    );
    let new = runtime_pids(&s.data_dir);
    assert_eq!(new.len(), 1);
    assert_ne!(new[0], pids[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_adopts_running_instances() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut c = with_runtime(test_config(dir.path()), bin());
        c.driver.keep_instances_on_shutdown = true;
        c
    };
    let s = TestServer::start_in(dir.path(), config()).await;
    let token = s.user_token("ana@example.com").await;
    let key = s.api_key(&token, "k").await;
    let id = s.deploy_gemma(&token, 0.0).await;
    s.wait_status(&token, &id, "RUNNING", 120).await;
    // A request just before shutdown is still counted after the restart.
    let (st, v) = chat(
        &s,
        &key,
        "/api/generate",
        json!({"model": "gemma3:270m", "prompt": "Hi", "stream": false, "options": {"num_predict": 2}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let before = runtime_pids(dir.path());
    s.shutdown().await;

    // A stray runtime the store does not know is ended on start.
    let mut stray = std::process::Command::new(bin())
        .args([
            "runtime",
            "--model",
            "gemma3:270m",
            "--port",
            "0",
            "--threads",
            "1",
            "--data-dir",
        ])
        .arg(test_model_store(bin()))
        .env("PADDOCK_DRIVER_ROOT", dir.path())
        .env("PADDOCK_INSTANCE_ID", "i-stray")
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runtime_pids(dir.path()).len(), 2);
    let s = TestServer::start_in(dir.path(), config()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stray.wait();
    let v = s.wait_status(&token, &id, "RUNNING", 10).await;
    assert_eq!(runtime_pids(dir.path()), before, "no second process");
    assert_eq!(v["restart_count"], 0);
    let (st, v) = chat(
        &s,
        &key,
        "/api/generate",
        json!({"model": "gemma3:270m", "prompt": "Hi", "stream": false, "options": {"num_predict": 3}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, u) = s.get("/api/usage?days=1", &token).await;
    assert_eq!(u["totals"]["requests"], 2, "{u}");
    s.post("/api/models/stop", Some(&token), json!({"instance_id": id}))
        .await;
    s.wait_status(&token, &id, "STOPPED", 30).await;
    assert!(runtime_pids(dir.path()).is_empty());
    kill_runtimes_under(dir.path());
}

/// Ctrl-C (or SIGTERM) on `paddock serve` ends the model servers it runs:
/// none is left with no gateway in front of it. The instance keeps its
/// desired state, and the next start on the same data directory launches
/// it again, not as a crash to restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_ends_the_model_servers_and_the_next_start_relaunches_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(dir.path(), &[]).await;
    let token = serve.admin_token().await;
    let id = serve.deploy_gemma(&token).await;
    serve.wait_status(&token, &id, "RUNNING").await;
    let before = runtime_pids(dir.path());
    assert_eq!(before.len(), 1);

    let exit = serve.stop(Signal::SIGINT).await;
    assert!(exit.success(), "{exit}");
    assert!(
        runtime_pids(dir.path()).is_empty(),
        "a model server outlived paddock serve"
    );

    let mut serve = Serve::start(dir.path(), &[]).await;
    let v = serve.wait_status(&token, &id, "RUNNING").await;
    assert_eq!(v["restart_count"], 0, "{v}");
    let h = history(&v);
    assert!(
        h.iter().all(|(to, _)| to != "FAILED"),
        "counted as a crash: {h:?}"
    );
    let stopped = h
        .iter()
        .position(|(to, why)| to == "PENDING" && why == "paddock stopped")
        .unwrap_or_else(|| panic!("no record of the stop: {h:?}"));
    let after: Vec<&str> = h[stopped..].iter().map(|(to, _)| to.as_str()).collect();
    assert_eq!(after, ["PENDING", "STARTING", "RUNNING"]);
    let relaunched = runtime_pids(dir.path());
    assert_eq!(relaunched.len(), 1);
    assert_ne!(relaunched, before);

    // SIGTERM (a service manager's stop) does the same.
    let exit = serve.stop(Signal::SIGTERM).await;
    assert!(exit.success(), "{exit}");
    assert!(runtime_pids(dir.path()).is_empty());
}

/// With `keep_instances_on_shutdown`, a graceful stop leaves the model
/// servers running and the next start adopts them: the same process, no
/// relaunch, no gap for requests beyond the control plane's own restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_model_servers_outlive_a_graceful_stop_and_are_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let keep = [("PADDOCK_KEEP_INSTANCES_ON_SHUTDOWN", "true")];
    let mut serve = Serve::start(dir.path(), &keep).await;
    let token = serve.admin_token().await;
    let id = serve.deploy_gemma(&token).await;
    serve.wait_status(&token, &id, "RUNNING").await;
    let before = runtime_pids(dir.path());
    assert_eq!(before.len(), 1);

    let exit = serve.stop(Signal::SIGTERM).await;
    assert!(exit.success(), "{exit}");
    assert_eq!(runtime_pids(dir.path()), before, "the model server ended");

    let serve = Serve::start(dir.path(), &keep).await;
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
    assert_eq!(runtime_pids(dir.path()), before, "not the same process");
    assert_eq!(v["restart_count"], 0, "{v}");
    let h: Vec<String> = history(&v).into_iter().map(|(to, _)| to).collect();
    assert_eq!(h, ["PENDING", "STARTING", "RUNNING"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_sleep_and_wake_on_the_next_request() {
    let s = TestServer::start_with_runtime(bin()).await;
    let token = s.user_token("ana@example.com").await;
    let key = s.api_key(&token, "k").await;
    let id = s.deploy_gemma(&token, 1.0).await;
    s.wait_status(&token, &id, "RUNNING", 120).await;

    // An open stream is activity: moving the clock during it does not
    // put the instance to sleep.
    let body = json!({"model": "gemma3:270m", "prompt": "Count:", "options": {"num_predict": 40}});
    let resp = s
        .client
        .post(format!("{}/api/generate", s.url))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    s.clock.advance(Duration::from_secs(120));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, v) = s.get(&format!("/api/instances/{id}"), &token).await;
    assert_eq!(v["status"], "RUNNING");
    let _ = resp.text().await.unwrap();

    // Idle past the timeout: SLEEPING, the process is gone, the record stays.
    s.clock.advance(Duration::from_secs(61));
    let v = s.wait_status(&token, &id, "SLEEPING", 10).await;
    assert!(v["status_reason"].as_str().unwrap().contains("idle"));
    assert!(runtime_pids(&s.data_dir).is_empty());

    // Three concurrent requests share one wake and all get answers.
    let ask = |n: u64| {
        let client = s.client.clone();
        let url = format!("{}/api/generate", s.url);
        let key = key.clone();
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"model": "gemma3:270m", "prompt": format!("Number {n}"), "stream": false, "options": {"num_predict": 3}}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let (a, b, c) = tokio::join!(ask(1), ask(2), ask(3));
    assert_eq!([a, b, c], [StatusCode::OK; 3]);
    let (_, v) = s.get(&format!("/api/instances/{id}"), &token).await;
    assert_eq!(v["status"], "RUNNING");
    let wakes = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["reason"] == "woken by a request")
        .count();
    assert_eq!(wakes, 1, "{v}");
    assert_eq!(runtime_pids(&s.data_dir).len(), 1);
    let m = s.metrics().await;
    assert!(m.contains("paddock_instance_wakes_total 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_cannot_reach_each_others_instances() {
    let s = TestServer::start_with_runtime(bin()).await;
    let a = s.user_token("a@example.com").await;
    let b = s.user_token("b@example.com").await;
    let b_key = s.api_key(&b, "b").await;
    let id = s.deploy_gemma(&a, 0.0).await;
    s.wait_status(&a, &id, "RUNNING", 120).await;

    let body = json!({"model": "gemma3:270m", "prompt": "Hi", "stream": false, "options": {"num_predict": 2}});
    let (st, v) = chat(&s, &b_key, "/api/generate", body.clone()).await;
    assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
    let (st, v) = chat(
        &s,
        &b_key,
        &format!("/models/{id}/api/generate"),
        body.clone(),
    )
    .await;
    assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
    let (st, v) = s.get(&format!("/models/{id}/api/tags"), &b_key).await;
    assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
    let (_, v) = s.get("/api/tags", &b_key).await;
    assert!(v["models"].as_array().unwrap().is_empty());
    // The owner reaches it by id, under api/ and v1/ only.
    let (st, v) = s.get(&format!("/models/{id}/api/tags"), &a).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.get(&format!("/models/{id}/metrics"), &a).await;
    assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");

    // A key limited to another model cannot reach it either.
    let (_, k) = s
        .post(
            "/api/keys",
            Some(&a),
            json!({"name": "qwen only", "allowed_models": ["qwen2.5:0.5b"]}),
        )
        .await;
    let limited = k["secret"].as_str().unwrap();
    let (st, v) = chat(&s, limited, "/api/generate", body.clone()).await;
    assert_error(st, &v, StatusCode::FORBIDDEN, "forbidden");
    let (st, _) = chat(
        &s,
        limited,
        &format!("/models/{id}/api/generate"),
        body.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // No credentials at all.
    let (st, _) = s
        .call(Method::POST, "/api/generate", None, Some(body))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

/// The fast path keeps a connection's API key between requests; revoking
/// the key ends that at once. Programs keep their connections open and use
/// the key on several at once: after the DELETE answers, the next request
/// on each of them is refused, by model and by instance id alike, even
/// when the revocation lands while other requests are reading the key
/// (here: another user's revocation has just emptied the key cache).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_at_once_on_fast_path_connections() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let s = TestServer::start_with_runtime(bin()).await;
    let token = s.user_token("ana@example.com").await;
    let other = s.user_token("bob@example.com").await;
    let id = s.deploy_gemma(&token, 15.0).await;
    s.wait_status(&token, &id, "RUNNING", 120).await;
    let chat = json!({"model": "gemma3:270m", "messages": [{"role": "user", "content": "Hi"}], "stream": false, "options": {"num_predict": 1, "seed": 1}});
    let by_id = format!("/models/{id}/api/chat");
    let new_key = |token: &str, name: String| {
        let (s, token) = (&s, token.to_owned());
        async move {
            let (st, v) = s
                .post("/api/keys", Some(&token), json!({ "name": name }))
                .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
            (
                v["secret"].as_str().unwrap().to_owned(),
                v["key_id"].as_str().unwrap().to_owned(),
            )
        }
    };
    let revoke = |token: &str, key_id: String| {
        let (s, token) = (&s, token.to_owned());
        async move {
            let (st, v) = s
                .call(
                    Method::DELETE,
                    &format!("/api/keys/{key_id}"),
                    Some(&token),
                    None,
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
            assert_eq!(v["status"], "revoked");
        }
    };
    for round in 0..8u64 {
        let (key, key_id) = new_key(&token, format!("fast {round}")).await;
        let (_, other_id) = new_key(&other, format!("other {round}")).await;

        // One kept-alive connection per fast-path route, answered a few
        // times, so the fast path holds the key's principal.
        let mut conns = Vec::new();
        for path in ["/api/chat", by_id.as_str()] {
            let mut c = RawConnection::open(&s.url).await;
            for _ in 0..2 {
                let (st, got) = c.send("POST", path, &key, Some(&chat)).await;
                assert_eq!(st, StatusCode::OK, "{path}: {got}");
            }
            conns.push((path.to_owned(), c));
        }
        // Other programs keep using the key meanwhile.
        let revoked = Arc::new(AtomicBool::new(false));
        let users: Vec<_> = [
            "/api/auth/me",
            "/api/instances",
            "/api/auth/me",
            "/v1/models",
        ]
        .into_iter()
        .map(|path| {
            let (url, key, revoked) = (s.url.clone(), key.clone(), revoked.clone());
            tokio::spawn(async move {
                let mut c = RawConnection::open(&url).await;
                let mut after = Vec::new();
                while after.len() < 5 {
                    let sent_after = revoked.load(Ordering::SeqCst);
                    let (st, got) = c.send("GET", path, &key, None).await;
                    if sent_after {
                        after.push((path, st, got));
                    }
                }
                after
            })
        })
        .collect();
        tokio::time::sleep(Duration::from_millis(20 + round)).await;
        revoke(&other, other_id).await;
        revoke(&token, key_id.clone()).await;
        revoked.store(true, Ordering::SeqCst);

        for (path, c) in &mut conns {
            for _ in 0..2 {
                let (st, got) = c.send("POST", path, &key, Some(&chat)).await;
                assert_eq!(st, StatusCode::UNAUTHORIZED, "round {round}, {path}: {got}");
            }
        }
        for user in users {
            for (path, st, got) in user.await.unwrap() {
                assert_eq!(st, StatusCode::UNAUTHORIZED, "round {round}, {path}: {got}");
            }
        }
        let (_, v) = s.get("/api/keys", &token).await;
        let listed = v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key_id"] == key_id.as_str())
            .cloned()
            .unwrap();
        assert_eq!(listed["status"], "revoked", "round {round}: {listed}");
    }
    // The owner's session still reaches the instance.
    let (st, _) = s.get(&format!("/api/instances/{id}"), &token).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_clients_through_the_gateway() {
    let python = std::env::var("PADDOCK_TEST_PYTHON")
        .expect("PADDOCK_TEST_PYTHON is not set: run `eval \"$(scripts/test-assets)\"` (scripts/test does it)");
    let s = TestServer::start_with_runtime(bin()).await;
    let token = s.user_token("ana@example.com").await;
    let key = s.api_key(&token, "python").await;
    let id = s.deploy_gemma(&token, 0.0).await;
    s.wait_status(&token, &id, "RUNNING", 120).await;
    let script = r#"
import os, sys, ollama, openai
url, key = os.environ["URL"], os.environ["KEY"]
c = ollama.Client(host=url, headers={"Authorization": "Bearer " + key})
names = [m.model for m in c.list().models]
assert "gemma3:270m" in names, names
r = c.chat(model="gemma3:270m", messages=[{"role": "user", "content": "Hello"}], options={"num_predict": 6})
assert r.message.content, r
parts = [p.message.content for p in c.chat(model="gemma3:270m", messages=[{"role": "user", "content": "Hi"}], stream=True, options={"num_predict": 6})]
assert len(parts) > 1 and "".join(parts), parts
g = c.generate(model="gemma3:270m", prompt="The sky is", options={"num_predict": 4})
assert g.response, g
o = openai.OpenAI(base_url=url + "/v1", api_key=key)
assert "gemma3:270m" in [m.id for m in o.models.list().data]
r = o.chat.completions.create(model="gemma3:270m", messages=[{"role": "user", "content": "Hello"}], max_tokens=6)
assert r.choices[0].message.content and r.usage.completion_tokens > 0, r
chunks = [ch.choices[0].delta.content or "" for ch in o.chat.completions.create(model="gemma3:270m", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, stream=True) if ch.choices]
assert "".join(chunks), chunks
try:
    openai.OpenAI(base_url=url + "/v1", api_key="pdk_wrong").models.list()
    sys.exit("a wrong key was accepted")
except openai.AuthenticationError:
    pass
print("python clients ok")
"#;
    support::run_python(&python, script, &s.url, &key).await;
}

/// The process driver under the shared driver conformance suite, with its
/// runtime on a unix socket (the usual case) or, where the socket's path
/// would be too long, on a loopback port.
async fn process_driver_conformance_under(
    root: &std::path::Path,
    want_prefix: &'static str,
    keep_on_shutdown: bool,
) {
    use paddock_core::compute::ComputeSpec;
    use paddock_core::driver::LaunchSpec;
    use paddock_driver_process::{ProcessDriver, ProcessDriverConfig};
    let driver = ProcessDriver::new(ProcessDriverConfig {
        runtime_binary: bin().to_owned(),
        root: root.to_owned(),
        models_dir: test_model_store(bin()),
        parallel: 2,
        extra_args: Vec::new(),
        keep_on_shutdown,
    });
    let spec = LaunchSpec {
        instance_id: paddock_core::InstanceId::new("i-conformance"),
        model_id: paddock_core::ModelId::new("gemma3:270m"),
        spec: ComputeSpec::Cpu {
            vcpu_milli: 1000,
            memory_mb: 2048,
            spot: false,
        },
        threads: 1,
        ctx: 2048,
    };
    // The gateway's pool speaks to both kinds of endpoint.
    let pool = paddock_gateway::upstream::Pool::default();
    paddock_core::testkit::driver_conformance(&driver, spec, |endpoint| {
        let pool = pool.clone();
        async move {
            use std::os::unix::fs::PermissionsExt;
            assert!(endpoint.starts_with(want_prefix), "{endpoint}");
            if let Some(socket) = endpoint.strip_prefix("unix:") {
                // Only this user can reach the model server around the
                // gateway.
                let socket = std::path::Path::new(socket);
                let mode = |p: &std::path::Path| {
                    std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777)
                };
                if let Ok(m) = mode(socket) {
                    assert_eq!(m, 0o600, "{}", socket.display());
                    assert_eq!(mode(socket.parent().unwrap()).unwrap(), 0o700);
                }
            }
            pool.healthy(&endpoint).await
        }
    })
    .await;
    kill_runtimes_under(root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_driver_conformance() {
    let dir = tempfile::tempdir().unwrap();
    process_driver_conformance_under(dir.path(), "unix:/", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_driver_conformance_on_a_port_when_the_socket_path_is_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir
        .path()
        .join("a-data-directory-whose-path-is-too-long-for-a-unix-socket-address");
    // Also the other setting of the shutdown step (keep, not end).
    process_driver_conformance_under(&root, "http://127.0.0.1:", true).await;
}

/// A burst far larger than the model server's sequences completes: the
/// gateway queues what the model server cannot take at once (it used to
/// pass all of it on, and the model server refused what its own queue did
/// not hold), and the control plane stays responsive meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_chats_is_queued_not_refused() {
    const BURST: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_runtime(test_config(dir.path()), bin());
    // All of them wait if they must: on a shared two-core machine the
    // burst can take longer than the default queue timeout.
    config.gateway.queue_timeout_secs = 900;
    let s = TestServer::start_in(dir.path(), config).await;
    let _cleanup = KillOnDrop(dir.path().to_owned());
    let token = s.user_token("ana@example.com").await;
    let key = s.api_key(&token, "burst").await;
    let id = s.deploy_gemma(&token, 0.0).await;
    s.wait_status(&token, &id, "RUNNING", 120).await;

    let started = std::time::Instant::now();
    let chats = futures::future::join_all((0..BURST).map(|i| {
        // One connection per request, as 300 separate clients would.
        let client = reqwest::Client::new();
        let (url, key) = (s.url.clone(), key.clone());
        async move {
            let resp = client
                .post(format!("{url}/api/chat"))
                .bearer_auth(&key)
                .json(&json!({"model": "gemma3:270m", "messages": [{"role": "user", "content": format!("Count to {i}")}], "stream": false, "options": {"num_predict": 2, "seed": 1}}))
                .send()
                .await
                .expect("an answer");
            resp.status()
        }
    }));
    let done = std::sync::atomic::AtomicBool::new(false);
    let health = async {
        let mut slowest = Duration::ZERO;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let t = std::time::Instant::now();
            let st = s.client.get(format!("{}/healthz", s.url)).send().await;
            assert!(st.is_ok_and(|r| r.status() == StatusCode::OK));
            slowest = slowest.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slowest
    };
    let chats = async {
        let statuses = chats.await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        statuses
    };
    let (statuses, slowest_health) = tokio::join!(chats, health);
    let failed: Vec<_> = statuses.iter().filter(|s| !s.is_success()).collect();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    eprintln!(
        "burst: {BURST} chats in {:.1} s, slowest /healthz meanwhile {:.1} ms",
        started.elapsed().as_secs_f64(),
        slowest_health.as_secs_f64() * 1000.0
    );
}

/// Ends the runtimes under a data directory when dropped (a test that
/// made its own directory).
struct KillOnDrop(std::path::PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_runtimes_under(&self.0);
    }
}
