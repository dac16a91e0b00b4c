//! The gateway's public door under hostile or broken peers: raw clients
//! that send odd framing, trickle, stop reading or open too many
//! connections, and a model server (`fixtures/fake_runtime.py`, started by
//! the real process driver) that answers badly. Every case is one a
//! hardening review reproduced against a live server.

mod common;

use common::*;
use paddock_core::store::{Store, UsageQuery};
use paddock_server::config::Config;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server whose instances run the fake model server, with one user, an
/// API key and a RUNNING instance of gemma3:270m.
struct Fake {
    s: TestServer,
    addr: String,
    token: String,
    key: String,
    instance: String,
    models: tempfile::TempDir,
    dir: tempfile::TempDir,
}

impl Drop for Fake {
    fn drop(&mut self) {
        kill_runtimes_under(self.dir.path());
    }
}

async fn fake(tweak: impl FnOnce(&mut Config)) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.driver.runtime_binary =
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_runtime.py"));
    config.driver.models_dir = Some(models.path().to_owned());
    put_stub_model(models.path(), "gemma3:270m");
    tweak(&mut config);
    let s = TestServer::start_in(dir.path(), config).await;
    let token = s.user_token("ana@example.com").await;
    let key = s.api_key(&token, "gateway").await;
    let instance = s.deploy_gemma(&token, 0.0).await;
    s.wait_status(&token, &instance, "RUNNING", 30).await;
    let addr = s.url.trim_start_matches("http://").to_owned();
    Fake {
        s,
        addr,
        token,
        key,
        instance,
        models,
        dir,
    }
}

impl Fake {
    /// The requests the model server received, as `<path> <prompt>` lines.
    fn upstream_log(&self) -> Vec<String> {
        read_lines(&self.models.path().join("requests.log"))
    }

    /// A by-model generate request with `prompt`, sized, keep-alive.
    fn generate(&self, prompt: &str) -> Vec<u8> {
        let body = json!({"model": "gemma3:270m", "prompt": prompt}).to_string();
        format!(
            "POST /api/generate HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.key,
            body.len()
        )
        .into_bytes()
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// One response read from `c`: status, head and body (sized bodies only;
/// anything else is read to the close).
async fn response(c: &mut (impl AsyncRead + Unpin)) -> (u16, String, Value) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let mut body = buf[head_end..].to_vec();
    match length {
        Some(n) => {
            while body.len() < n {
                let mut chunk = vec![0u8; n - body.len()];
                let got = c.read(&mut chunk).await.unwrap();
                assert!(got > 0, "body cut short");
                body.extend_from_slice(&chunk[..got]);
            }
        }
        None => {
            let _ = c.read_to_end(&mut body).await;
        }
    }
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, head, json)
}

/// Sends `bytes` on a new connection and reads one response.
async fn exchange(addr: &str, bytes: impl AsRef<[u8]>) -> (u16, String, Value) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(bytes.as_ref()).await.unwrap();
    response(&mut c).await
}

/// Waits until the server closes `c`, reading (and dropping) what it sends.
async fn closed_within(c: &mut (impl AsyncRead + Unpin), limit: Duration) -> Duration {
    let started = Instant::now();
    let mut sink = vec![0u8; 65536];
    loop {
        match tokio::time::timeout_at((started + limit).into(), c.read(&mut sink)).await {
            Err(_) => panic!("still open after {limit:?}"),
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_is_digits_and_authorization_is_one_header() {
    let f = fake(|_| {}).await;
    let ok = f.generate("hello");
    let (status, _, v) = exchange(&f.addr, &ok).await;
    assert_eq!(status, 200, "{v}");
    let text = String::from_utf8(ok).unwrap();
    let length = text.split("content-length: ").nth(1).unwrap();
    let length = &length[..length.find('\r').unwrap()];
    // A sign, or non-ASCII whitespace after the digits, is no length:
    // refused on both doors, never forwarded.
    for bad in [format!("+{length}"), format!("{length}\u{a0}")] {
        let sent = text.replace(
            &format!("content-length: {length}"),
            &format!("content-length: {bad}"),
        );
        let (status, _, _) = exchange(&f.addr, sent.as_bytes()).await;
        assert_eq!(status, 400, "{bad:?}");
    }
    // Two Authorization headers: refused, whichever door.
    let twice = text.replace(
        "authorization:",
        &format!("authorization: Bearer {}\r\nauthorization:", f.key),
    );
    let (status, _, v) = exchange(&f.addr, twice.as_bytes()).await;
    assert_error_json(status, &v, 400, "bad_request");
    let get = format!(
        "GET /api/instances HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {0}\r\nauthorization: Bearer {0}\r\n\r\n",
        f.key
    );
    let (status, _, v) = exchange(&f.addr, get.as_bytes()).await;
    assert_error_json(status, &v, 400, "bad_request");
    assert_eq!(f.upstream_log(), ["/api/generate hello"]);
}

fn assert_error_json(status: u16, v: &Value, want: u16, code: &str) {
    assert_eq!(status, want, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_request_body_is_400_and_only_size_is_413() {
    let f = fake(|c| c.gateway.body_limit_bytes = 1024).await;
    let head = format!(
        "POST /api/generate HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        f.key
    );
    for body in ["zz\r\n{}\r\n0\r\n\r\n", "2;a\nb\r\n{}\r\n0\r\n\r\n"] {
        let (status, _, v) = exchange(&f.addr, format!("{head}{body}").as_bytes()).await;
        assert_error_json(status, &v, 400, "bad_request");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("could not be read"), "{message}");
    }
    // Over the limit, chunked or sized.
    let big = format!(
        "{{\"model\":\"gemma3:270m\",\"prompt\":\"{}\"}}",
        "x".repeat(2000)
    );
    let chunked = format!("{head}{:x}\r\n{big}\r\n0\r\n\r\n", big.len());
    let (status, _, v) = exchange(&f.addr, chunked.as_bytes()).await;
    assert_error_json(status, &v, 413, "payload_too_large");
    let sized = String::from_utf8(f.generate(&"x".repeat(2000))).unwrap();
    let (status, _, v) = exchange(&f.addr, sized.as_bytes()).await;
    assert_error_json(status, &v, 413, "payload_too_large");
    assert!(f.upstream_log().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_are_cut_off_and_bad_keys_answered_before_the_body() {
    let f = fake(|c| c.gateway.client_timeout_secs = 1).await;
    // A login whose body trickles in, a byte at a time, never whole: 408
    // once the request has taken the client timeout, then closed.
    let mut c = TcpStream::connect(&f.addr).await.unwrap();
    c.write_all(b"POST /api/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    let started = Instant::now();
    let (mut rd, mut wr) = c.split();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(b" ").await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let (status, head, _) = tokio::select! {
        r = response(&mut rd) => r,
        () = trickle => unreachable!(),
    };
    assert_eq!(status, 408, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    closed_within(&mut rd, Duration::from_secs(5)).await;

    // The same on the gateway's own path: the connection is closed once the
    // request has taken the client timeout.
    let mut c = TcpStream::connect(&f.addr).await.unwrap();
    let whole = f.generate("never");
    c.write_all(&whole[..whole.len() - 5]).await.unwrap();
    let waited = closed_within(&mut c, Duration::from_secs(5)).await;
    assert!(waited >= Duration::from_millis(900), "{waited:?}");

    // A bad key with a large body still to come: 401 at once.
    let mut c = TcpStream::connect(&f.addr).await.unwrap();
    c.write_all(b"POST /api/generate HTTP/1.1\r\nhost: x\r\nauthorization: Bearer pdk_wrong\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{")
        .await
        .unwrap();
    let started = Instant::now();
    let (status, _, v) = response(&mut c).await;
    assert_error_json(status, &v, 401, "unauthorized");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "answered before the client timeout"
    );
    assert!(f.upstream_log().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_let_go() {
    let f = fake(|c| c.gateway.client_timeout_secs = 1).await;
    let mut c = TcpStream::connect(&f.addr).await.unwrap();
    c.write_all(&f.generate("endless")).await.unwrap();
    // Never read: the socket buffers fill, the gateway's writes stall,
    // and after the client timeout it lets go of both sides.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f
        .upstream_log()
        .contains(&"endless: gateway gone".to_owned())
    {
        assert!(
            Instant::now() < deadline,
            "the gateway still holds the stream"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(c);
    // The server still answers.
    let (status, _, _) = exchange(&f.addr, &f.generate("after")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_wait_for_a_free_one() {
    let mut f = fake(|c| c.gateway.max_connections = Some(3)).await;
    // The set-up's client keeps its connections: let them go first.
    f.s.client = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let health = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(&f.addr).await.unwrap();
        c.write_all(health).await.unwrap();
        assert_eq!(response(&mut c).await.0, 200);
        open.push(c);
    }
    // A fourth is queued by the kernel, not served...
    let mut fourth = TcpStream::connect(&f.addr).await.unwrap();
    fourth.write_all(health).await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), fourth.peek(&mut byte)).await;
    assert!(early.is_err(), "served over the limit");
    // ...until one of the three closes.
    drop(open.pop());
    assert_eq!(response(&mut fourth).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_server_that_answers_badly_gets_a_502_that_names_no_path() {
    let f = fake(|_| {}).await;
    let (status, _, v) = exchange(&f.addr, &f.generate("malformed-chunk")).await;
    assert_error_json(status, &v, 502, "bad_gateway");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains(&f.instance), "{message}");
    let data_dir = f.dir.path().to_str().unwrap();
    assert!(
        !message.contains(data_dir) && !message.contains(".sock"),
        "{message}"
    );

    // A request the model server read and then dropped is not sent again.
    let mut c = TcpStream::connect(&f.addr).await.unwrap();
    c.write_all(&f.generate("close-on-second")).await.unwrap();
    assert_eq!(response(&mut c).await.0, 200);
    c.write_all(&f.generate("close-on-second")).await.unwrap();
    let (status, _, v) = response(&mut c).await;
    assert_error_json(status, &v, 502, "bad_gateway");
    let sent = f
        .upstream_log()
        .iter()
        .filter(|l| l.ends_with("close-on-second"))
        .count();
    assert_eq!(sent, 2, "{:?}", f.upstream_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_records_name_the_route_not_the_raw_path() {
    let f = fake(|_| {}).await;
    let body = json!({"prompt": "p"}).to_string();
    let long = format!("/api/{}", "y".repeat(5000));
    for path in ["/api/generate?x=1", "/api/%67enerate", long.as_str()] {
        let target = format!("/models/{}{path}", f.instance);
        // Sized (the fast path) and chunked (hyper and the router).
        let sized = format!(
            "POST {target} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: {}\r\n\r\n{body}",
            f.key,
            body.len()
        );
        let chunked = format!(
            "POST {target} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            f.key,
            body.len()
        );
        for sent in [sized, chunked] {
            exchange(&f.addr, sent.as_bytes()).await;
        }
    }
    // The usage query flushes the writer first.
    let (st, _) = f.s.get("/api/usage?days=1", &f.token).await;
    assert_eq!(st, reqwest::StatusCode::OK);
    let store = paddock_store_sqlite::SqliteStore::open(&f.dir.path().join("paddock.db"))
        .await
        .unwrap();
    let routes: Vec<String> = store
        .list_usage(&UsageQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.route)
        .collect();
    assert_eq!(
        routes,
        [
            "/api/generate",
            "/api/generate",
            "/models/{instance_id}/{*rest}",
            "/models/{instance_id}/{*rest}",
            "/models/{instance_id}/{*rest}",
            "/models/{instance_id}/{*rest}",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_waits_for_free_sequences_in_a_bounded_queue() {
    let f = fake(|c| {
        c.driver.runtime_parallel = 2;
        c.gateway.queue_per_instance = 3;
        c.gateway.queue_timeout_secs = 4;
    })
    .await;
    // Two run, three wait their turn (the last for 2 s), the sixth finds
    // the queue full. Each takes a second: long enough that all six have
    // arrived before the first two end, even on a busy machine.
    let burst = (0..6).map(|_| exchange(&f.addr, f.generate("sleep:1")));
    let mut answers: Vec<(u16, String)> = futures::future::join_all(burst)
        .await
        .into_iter()
        .map(|(status, head, _)| (status, head))
        .collect();
    answers.sort();
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 503]);
    assert!(answers[5].1.contains("retry-after: 2"), "{}", answers[5].1);

    // Nothing comes free in time: 503 after the queue timeout.
    let slow = (0..3).map(|_| exchange(&f.addr, f.generate("sleep:6")));
    let started = Instant::now();
    let mut statuses: Vec<u16> = futures::future::join_all(slow)
        .await
        .into_iter()
        .map(|(s, _, _)| s)
        .collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503]);
    assert!(started.elapsed() >= Duration::from_secs(4));

    let metrics = f.s.metrics().await;
    assert!(
        metrics.contains("paddock_gateway_queue_waiting 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("paddock_gateway_queue_rejected_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("paddock_gateway_queue_wait_seconds_count"),
        "{metrics}"
    );
}

/// A by-model chat request: a system prompt and `turns` user messages.
fn chat(key: &str, system: &str, turns: &[&str]) -> Vec<u8> {
    let mut messages = vec![json!({"role": "system", "content": system})];
    for (k, t) in turns.iter().enumerate() {
        if k > 0 {
            messages.push(json!({"role": "assistant", "content": format!("answer {k}")}));
        }
        messages.push(json!({"role": "user", "content": t}));
    }
    let body = json!({"model": "gemma3:270m", "messages": messages}).to_string();
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The instances that served the chat requests, in order.
async fn chat_instances(f: &Fake) -> Vec<String> {
    // The usage query flushes the writer first.
    let (st, _) = f.s.get("/api/usage?days=1", &f.token).await;
    assert_eq!(st, reqwest::StatusCode::OK);
    let store = paddock_store_sqlite::SqliteStore::open(&f.dir.path().join("paddock.db"))
        .await
        .unwrap();
    let mut rows: Vec<_> = store
        .list_usage(&UsageQuery::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.route == "/v1/chat/completions")
        .collect();
    rows.sort_by_key(|r| r.at);
    rows.into_iter()
        .map(|r| r.instance_id.as_str().to_owned())
        .collect()
}

/// Keeps `n` requests in flight on `instance` for `secs` seconds.
fn hold(f: &Fake, instance: &str, n: usize, secs: u32) -> Vec<tokio::task::JoinHandle<u16>> {
    (0..n)
        .map(|_| {
            let body = json!({"prompt": format!("sleep:{secs}")}).to_string();
            let req = format!(
                "POST /models/{instance}/api/generate HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: {}\r\n\r\n{body}",
                f.key,
                body.len()
            );
            let addr = f.addr.clone();
            tokio::spawn(async move { exchange(&addr, req).await.0 })
        })
        .collect()
}

async fn two_instances(cache_affinity: bool) -> (Fake, [String; 2]) {
    let f = fake(|c| {
        c.driver.runtime_parallel = 8;
        c.gateway.cache_affinity = cache_affinity;
    })
    .await;
    let second = f.s.deploy_gemma(&f.token, 0.0).await;
    f.s.wait_status(&f.token, &second, "RUNNING", 30).await;
    let ids = [f.instance.clone(), second];
    (f, ids)
}

/// Sends a conversation's first turn; returns the instance that served it
/// and the other one.
async fn first_turn(f: &Fake, ids: &[String; 2], system: &str) -> (String, String) {
    assert_eq!(
        exchange(&f.addr, chat(&f.key, system, &["q1"])).await.0,
        200
    );
    let first = chat_instances(f).await[0].clone();
    let other = ids.iter().find(|i| **i != first).unwrap().clone();
    (first, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_stays_on_the_instance_that_read_its_beginning() {
    let (f, ids) = two_instances(true).await;
    let system = "You keep the lighthouse.";
    let (first, other) = first_turn(&f, &ids, system).await;

    // Its instance is busier now, but not much: the next turn, and a new
    // conversation with the same system prompt, still go there.
    let held = hold(&f, &first, 1, 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        exchange(&f.addr, chat(&f.key, system, &["q1", "q2"]))
            .await
            .0,
        200
    );
    assert_eq!(
        exchange(&f.addr, chat(&f.key, system, &["other q"]))
            .await
            .0,
        200
    );
    // Another system prompt has no instance yet: the least busy.
    assert_eq!(
        exchange(&f.addr, chat(&f.key, "Another role.", &["q"]))
            .await
            .0,
        200
    );
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    // Much busier (3 in flight against none): the conversation moves, and
    // stays where it moved.
    let held = hold(&f, &first, 3, 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let turn3 = chat(&f.key, system, &["q1", "q2", "q3"]);
    assert_eq!(exchange(&f.addr, &turn3).await.0, 200);
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    assert_eq!(
        exchange(&f.addr, chat(&f.key, system, &["q1", "q2", "q3", "q4"]))
            .await
            .0,
        200
    );
    assert_eq!(
        chat_instances(&f).await,
        [first.as_str(), &first, &first, &other, &other, &other]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cache_affinity_every_request_goes_to_the_least_busy() {
    let (f, ids) = two_instances(false).await;
    let system = "You keep the lighthouse.";
    let (first, other) = first_turn(&f, &ids, system).await;
    let held = hold(&f, &first, 1, 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        exchange(&f.addr, chat(&f.key, system, &["q1", "q2"]))
            .await
            .0,
        200
    );
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    assert_eq!(chat_instances(&f).await, [first.as_str(), &other]);
}
