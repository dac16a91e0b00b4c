//! A fake Ollama registry for tests (feature `testkit`): an axum server on
//! 127.0.0.1:0 answering the two routes a pull uses
//! (`/v2/<namespace>/<model>/manifests/<tag>` and `.../blobs/<digest>`),
//! with range requests, and knobs a test turns: cut the next download off
//! after some bytes, hold every download at some byte until released (to
//! watch a pull in progress), or serve a blob that does not match its
//! digest. It records the ranges asked for and counts blob requests.

#![allow(missing_docs)]

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Where a blob's bytes come from.
#[derive(Debug, Clone)]
enum Blob {
    Bytes(bytes::Bytes),
    /// A file, read as it is served (a real model is hundreds of MB).
    File(PathBuf),
}

impl Blob {
    fn len(&self) -> u64 {
        match self {
            Blob::Bytes(b) => b.len() as u64,
            Blob::File(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
        }
    }

    /// Up to `max` bytes from `offset`.
    fn read(&self, offset: u64, max: usize) -> std::io::Result<bytes::Bytes> {
        match self {
            Blob::Bytes(b) => {
                let start = (offset as usize).min(b.len());
                let end = (start + max).min(b.len());
                Ok(b.slice(start..end))
            }
            Blob::File(p) => {
                let f = std::fs::File::open(p)?;
                let mut buf = vec![0u8; max];
                let n = f.read_at(&mut buf, offset)?;
                buf.truncate(n);
                Ok(buf.into())
            }
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// `namespace/model:tag` → manifest JSON.
    manifests: Mutex<HashMap<String, Vec<u8>>>,
    blobs: Mutex<HashMap<String, Blob>>,
    /// Serve only this many bytes of the next large blob, then fail.
    cut_after: Mutex<Option<u64>>,
    /// Pause every blob at this byte until [`FakeRegistry::release`].
    hold_at: Mutex<Option<u64>>,
    released: tokio::sync::Notify,
    ranges: Mutex<Vec<String>>,
    blob_requests: AtomicUsize,
}

/// A fake registry serving what the test adds to it.
#[derive(Debug, Clone)]
pub struct FakeRegistry {
    /// Its base URL (`http://127.0.0.1:<port>`), what a store pulls from.
    pub url: String,
    inner: Arc<Inner>,
}

/// The config blob every model served here has (a pull downloads it
/// before the weights).
pub const CONFIG: &[u8] = br#"{"model_format":"gguf"}"#;

impl FakeRegistry {
    /// Starts one on a free loopback port.
    pub async fn start() -> FakeRegistry {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .route(
                "/v2/{namespace}/{name}/manifests/{tag}",
                get(manifest_route),
            )
            .route("/v2/{namespace}/{name}/blobs/{digest}", get(blob_route))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake registry");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeRegistry { url, inner }
    }

    /// Serves `name` (`model:tag` or `namespace/model:tag`) with `model`
    /// as its weights.
    pub fn add_model(&self, name: &str, model: Vec<u8>) {
        let digest = digest_of(&model);
        self.add(name, digest, Blob::Bytes(model.into()));
    }

    /// Serves `name` with the file at `path` as its weights (hashed once
    /// here, read as it is served).
    pub fn add_model_file(&self, name: &str, path: &std::path::Path) {
        let mut hasher = Sha256::new();
        let mut f = std::fs::File::open(path).expect("open the model file");
        std::io::copy(&mut f, &mut hasher).expect("read the model file");
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        self.add(name, digest, Blob::File(path.to_owned()));
    }

    /// Serves `name` with a manifest that promises `promised` but a blob
    /// of `served` bytes under its digest (a download that fails
    /// verification).
    pub fn add_tampered(&self, name: &str, served: Vec<u8>, promised: &[u8]) {
        let manifest = self.manifest(digest_of(promised), promised.len() as u64);
        self.inner
            .blobs
            .lock()
            .unwrap()
            .insert(digest_of(promised), Blob::Bytes(served.into()));
        self.insert_manifest(name, manifest);
    }

    fn add(&self, name: &str, digest: String, blob: Blob) {
        let manifest = self.manifest(digest.clone(), blob.len());
        self.inner.blobs.lock().unwrap().insert(digest, blob);
        self.insert_manifest(name, manifest);
    }

    fn manifest(&self, digest: String, size: u64) -> Vec<u8> {
        self.inner.blobs.lock().unwrap().insert(
            digest_of(CONFIG),
            Blob::Bytes(bytes::Bytes::from_static(CONFIG)),
        );
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest_of(CONFIG), "size": CONFIG.len()},
            "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": size}],
        }))
        .expect("manifest JSON")
    }

    fn insert_manifest(&self, name: &str, manifest: Vec<u8>) {
        let key = if name.contains('/') {
            name.to_owned()
        } else {
            format!("library/{name}")
        };
        let key = if key.contains(':') {
            key
        } else {
            format!("{key}:latest")
        };
        self.inner.manifests.lock().unwrap().insert(key, manifest);
    }

    /// The next blob of more than 1,000 bytes is cut off after `bytes`.
    pub fn cut_next_after(&self, bytes: u64) {
        *self.inner.cut_after.lock().unwrap() = Some(bytes);
    }

    /// Every blob download pauses at byte `at` until [`Self::release`].
    pub fn hold_at(&self, at: u64) {
        *self.inner.hold_at.lock().unwrap() = Some(at);
    }

    /// Lets held downloads go on, and holds no more.
    pub fn release(&self) {
        *self.inner.hold_at.lock().unwrap() = None;
        self.inner.released.notify_waiters();
    }

    /// The `Range` headers blob requests carried, in order.
    pub fn ranges(&self) -> Vec<String> {
        self.inner.ranges.lock().unwrap().clone()
    }

    /// How many blob requests it answered.
    pub fn blob_requests(&self) -> usize {
        self.inner.blob_requests.load(Ordering::SeqCst)
    }
}

async fn manifest_route(
    State(r): State<Arc<Inner>>,
    Path((namespace, name, tag)): Path<(String, String, String)>,
) -> Response {
    let key = format!("{namespace}/{name}:{tag}");
    match r.manifests.lock().unwrap().get(&key) {
        Some(m) => (StatusCode::OK, m.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Bytes per chunk of a blob's body.
const CHUNK: usize = 1 << 20;

async fn blob_route(
    State(r): State<Arc<Inner>>,
    Path((_, _, digest)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    r.blob_requests.fetch_add(1, Ordering::SeqCst);
    let Some(blob) = r.blobs.lock().unwrap().get(&digest).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut start = 0u64;
    if let Some(range) = headers.get("range").and_then(|v| v.to_str().ok()) {
        r.ranges.lock().unwrap().push(range.to_string());
        start = range
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse()
            .unwrap_or(0);
    }
    let len = blob.len();
    let status = if start > 0 {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let cut = if len - start > 1000 {
        r.cut_after.lock().unwrap().take().map(|c| start + c)
    } else {
        None
    };
    // Sent chunk by chunk: at `cut` the stream fails, at the hold it
    // waits for a release.
    let stream = futures::stream::unfold(start, move |offset| {
        let (blob, r) = (blob.clone(), r.clone());
        async move {
            if offset >= len {
                return None;
            }
            if cut.is_some_and(|c| offset >= c) {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                return Some((Err(std::io::Error::other("connection lost")), len));
            }
            loop {
                let released = r.released.notified();
                match *r.hold_at.lock().unwrap() {
                    Some(at) if offset >= at => {}
                    _ => break,
                }
                released.await;
            }
            let mut end = len.min(offset + CHUNK as u64);
            if let Some(c) = cut {
                end = end.min(c);
            }
            if let Some(at) = *r.hold_at.lock().unwrap() {
                if at > offset {
                    end = end.min(at);
                }
            }
            match blob.read(offset, (end - offset) as usize) {
                Ok(b) if !b.is_empty() => {
                    let next = offset + b.len() as u64;
                    Some((Ok(b), next))
                }
                Ok(_) => None,
                Err(e) => Some((Err(e), len)),
            }
        }
    });
    Response::builder()
        .status(status)
        .header("content-length", len - start)
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
