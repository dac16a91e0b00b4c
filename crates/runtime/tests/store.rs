//! The model store: import, list, remove, Ollama models directories used in
//! place, and pulls from a fake Ollama registry (an axum server on
//! 127.0.0.1:0) including resume after an interrupted download and
//! rejection of a blob whose sha256 does not match.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use paddock_runtime::store::{ModelSource, ModelStore, StoreError};
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A small stand-in for a GGUF model blob.
fn blob() -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend((0..200_000u32).map(|i| (i % 251) as u8));
    b
}

#[derive(Clone)]
struct Registry {
    manifest: Arc<Vec<u8>>,
    blobs: Arc<Vec<(String, Vec<u8>)>>,
    /// Serve only this many bytes of the model blob, then break the connection.
    cut_after: Arc<Mutex<Option<usize>>>,
    ranges: Arc<Mutex<Vec<String>>>,
    blob_requests: Arc<AtomicUsize>,
}

async fn manifest_route(
    State(r): State<Registry>,
    Path((name, tag)): Path<(String, String)>,
) -> Response {
    if name == "tiny" && tag == "1m" {
        (StatusCode::OK, r.manifest.as_ref().clone()).into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

async fn blob_route(
    State(r): State<Registry>,
    Path((_, digest)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    r.blob_requests.fetch_add(1, Ordering::SeqCst);
    let Some((_, bytes)) = r.blobs.iter().find(|(d, _)| *d == digest) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut start = 0;
    if let Some(range) = headers.get("range").and_then(|v| v.to_str().ok()) {
        r.ranges.lock().unwrap().push(range.to_string());
        start = range
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse()
            .unwrap();
    }
    let body = bytes[start..].to_vec();
    let status = if start > 0 {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let cut = if body.len() > 1000 {
        r.cut_after.lock().unwrap().take()
    } else {
        None
    };
    if let Some(cut) = cut {
        // Send `cut` bytes of a longer body, then fail the stream.
        let len = body.len();
        let first = bytes::Bytes::from(body[..cut].to_vec());
        let stream = futures::stream::unfold(Some(first), |first| async move {
            match first {
                Some(first) => Some((Ok::<_, std::io::Error>(first), None)),
                None => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    Some((Err(std::io::Error::other("connection lost")), None))
                }
            }
        });
        return Response::builder()
            .status(status)
            .header("content-length", len)
            .body(Body::from_stream(stream))
            .unwrap();
    }
    (status, body).into_response()
}

/// Starts a fake registry serving `tiny:1m` whose model layer is `served`
/// but whose manifest promises `promised`'s digest.
async fn fake_registry(served: Vec<u8>, promised: &[u8]) -> (String, Registry) {
    let config = br#"{"model_format":"gguf"}"#.to_vec();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": sha(promised), "size": promised.len()}],
    });
    let registry = Registry {
        manifest: Arc::new(serde_json::to_vec(&manifest).unwrap()),
        blobs: Arc::new(vec![(sha(&config), config), (sha(promised), served)]),
        cut_after: Arc::default(),
        ranges: Arc::default(),
        blob_requests: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/v2/library/{name}/manifests/{tag}", get(manifest_route))
        .route("/v2/library/{name}/blobs/{digest}", get(blob_route))
        .with_state(registry.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, registry)
}

fn store(dir: &std::path::Path, registry: &str) -> ModelStore {
    ModelStore::open(dir)
        .unwrap()
        .with_ollama_dir(Some(dir.join("ollama")))
        .with_registry(registry)
}

#[tokio::test]
async fn pull_verifies_and_resumes_an_interrupted_download() {
    let data = tempfile::tempdir().unwrap();
    let bytes = blob();
    let (url, registry) = fake_registry(bytes.clone(), &bytes).await;
    let store = store(data.path(), &url);

    *registry.cut_after.lock().unwrap() = Some(50_000);
    let err = store.pull("tiny:1m", |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("interrupted"), "{err}");
    assert!(
        store.resolve("tiny:1m").is_err(),
        "no manifest after a failed pull"
    );

    let mut last = None;
    let resolved = store.pull("tiny:1m", |p| last = Some(p)).await.unwrap();
    assert_eq!(registry.ranges.lock().unwrap().as_slice(), ["bytes=50000-"]);
    assert_eq!(std::fs::read(&resolved.path).unwrap(), bytes);
    assert_eq!(resolved.name, "tiny:1m");
    assert_eq!(resolved.source, ModelSource::Store);
    assert_eq!(last.unwrap().status, "success");

    // A second pull finds every blob present and downloads nothing.
    let before = registry.blob_requests.load(Ordering::SeqCst);
    store.pull("tiny:1m", |_| {}).await.unwrap();
    assert_eq!(registry.blob_requests.load(Ordering::SeqCst), before);
    let listed: Vec<String> = store.list().unwrap().into_iter().map(|m| m.name).collect();
    assert_eq!(listed, ["tiny:1m"]);
}

#[tokio::test]
async fn pull_rejects_a_blob_that_does_not_match_its_digest() {
    let data = tempfile::tempdir().unwrap();
    let promised = blob();
    let mut tampered = promised.clone();
    tampered[1000] ^= 0xff;
    let (url, _) = fake_registry(tampered, &promised).await;
    let store = store(data.path(), &url);
    let err = store.pull("tiny:1m", |_| {}).await.unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(store.resolve("tiny:1m").is_err());
    let leftovers: Vec<_> = std::fs::read_dir(store.root().join("blobs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&sha(&promised)[7..]))
        .collect();
    assert!(
        leftovers.is_empty(),
        "the bad download was kept: {leftovers:?}"
    );
}

#[tokio::test]
async fn unknown_models_fail_with_a_message_that_says_where_it_looked() {
    let data = tempfile::tempdir().unwrap();
    let (url, _) = fake_registry(blob(), &blob()).await;
    let store = store(data.path(), &url);
    let err = store
        .resolve_or_pull("nosuch:1b", |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nosuch:1b") && err.contains("local store") && err.contains("no such model"),
        "{err}"
    );
    let offline = self::store(data.path(), "http://127.0.0.1:9");
    let err = offline
        .resolve_or_pull("nosuch:1b", |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot reach the registry"), "{err}");
    let err = offline
        .resolve("/no/such/file.gguf")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn import_list_and_remove() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("m.gguf");
    std::fs::write(&file, blob()).unwrap();
    let store = store(data.path(), "http://127.0.0.1:9");
    let resolved = store.import(&file, "tiny:1m").unwrap();
    assert!(resolved.path.starts_with(store.root()));
    assert_eq!(resolved.size, blob().len() as u64);
    assert_eq!(store.resolve("tiny:1m").unwrap().path, resolved.path);
    assert_eq!(store.list().unwrap()[0].name, "tiny:1m");
    std::fs::write(data.path().join("not.gguf"), b"hello").unwrap();
    assert!(store.import(&data.path().join("not.gguf"), "x:1").is_err());
    store.remove("tiny:1m").unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(!resolved.path.exists(), "unused blob deleted");
    assert!(store.remove("tiny:1m").is_err());
}

#[test]
fn models_in_an_ollama_directory_are_used_in_place() {
    let data = tempfile::tempdir().unwrap();
    let ollama = data.path().join("ollama");
    let bytes = blob();
    let digest = sha(&bytes);
    let blob_path = ollama.join("blobs").join(digest.replace(':', "-"));
    std::fs::create_dir_all(blob_path.parent().unwrap()).unwrap();
    std::fs::write(&blob_path, &bytes).unwrap();
    let manifest_dir = ollama.join("manifests/registry.ollama.ai/library/tiny");
    std::fs::create_dir_all(&manifest_dir).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha(b"{}"), "size": 2},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.template", "digest": sha(b"t"), "size": 1},
            {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": bytes.len()}
        ],
    });
    std::fs::write(manifest_dir.join("latest"), manifest.to_string()).unwrap();
    let store = store(data.path(), "http://127.0.0.1:9");
    let resolved = store.resolve("tiny").unwrap();
    assert_eq!(resolved.path, blob_path, "used in place, not copied");
    assert_eq!(resolved.source, ModelSource::Ollama);
    assert_eq!(resolved.name, "tiny:latest");
    assert!(
        store.list().unwrap().is_empty(),
        "the store itself is untouched"
    );
}
