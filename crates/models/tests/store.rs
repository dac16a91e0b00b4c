//! The model store: import, list, remove, Ollama models directories used in
//! place, and pulls from a fake Ollama registry (the testkit's, on
//! 127.0.0.1:0) including resume after an interrupted download, rejection
//! of a blob whose sha256 does not match, progress over the whole model,
//! and which failures a pull again would not fix.

use paddock_core::models::ModelCache;
use paddock_core::ModelId;
use paddock_models::testkit::{digest_of as sha, FakeRegistry};
use paddock_models::{ModelSource, ModelStore, StoreError};
use std::sync::{Arc, Mutex};

/// A small stand-in for a GGUF model blob.
fn blob() -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend((0..200_000u32).map(|i| (i % 251) as u8));
    b
}

/// A fake registry serving `tiny:1m` with [`blob`] as its weights.
async fn registry() -> FakeRegistry {
    let r = FakeRegistry::start().await;
    r.add_model("tiny:1m", blob());
    r
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
    let registry = registry().await;
    let store = store(data.path(), &registry.url);

    registry.cut_next_after(50_000);
    let err = store.pull("tiny:1m", |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("interrupted"), "{err}");
    assert!(!err.is_permanent(), "a cut-off download is pulled again");
    assert!(
        store.resolve("tiny:1m").is_err(),
        "no manifest after a failed pull"
    );

    let mut last = None;
    let resolved = store.pull("tiny:1m", |p| last = Some(p)).await.unwrap();
    assert_eq!(registry.ranges(), ["bytes=50000-"]);
    assert_eq!(std::fs::read(&resolved.path).unwrap(), bytes);
    assert_eq!(resolved.name, "tiny:1m");
    assert_eq!(resolved.source, ModelSource::Store);
    assert_eq!(last.unwrap().status, "success");

    // A second pull finds every blob present and downloads nothing.
    let before = registry.blob_requests();
    store.pull("tiny:1m", |_| {}).await.unwrap();
    assert_eq!(registry.blob_requests(), before);
    let listed: Vec<String> = store.list().unwrap().into_iter().map(|m| m.name).collect();
    assert_eq!(listed, ["tiny:1m"]);
}

#[tokio::test]
async fn progress_counts_the_whole_model_and_the_cache_sees_it_arrive() {
    let data = tempfile::tempdir().unwrap();
    let registry = registry().await;
    let store = store(data.path(), &registry.url);
    let model = ModelId::new("tiny:1m");
    assert!(!store.has(&model));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    ModelCache::pull(&store, &model, &move |p| log.lock().unwrap().push(p))
        .await
        .unwrap();
    assert!(store.has(&model));
    let seen = seen.lock().unwrap();
    // The config blob and the weights, counted as one total.
    let total = (blob().len() + paddock_models::testkit::CONFIG.len()) as u64;
    let last = seen.last().unwrap();
    assert_eq!((last.completed, last.total), (total, total));
    assert!(
        seen.windows(2).all(|w| w[0].completed <= w[1].completed),
        "progress never goes back"
    );
    assert!(seen
        .iter()
        .any(|p| p.total == total && p.completed < total / 2));
}

#[tokio::test]
async fn failures_a_pull_again_would_not_fix_are_permanent() {
    let data = tempfile::tempdir().unwrap();
    let registry = registry().await;
    let store = store(data.path(), &registry.url);
    let missing = ModelCache::pull(&store, &ModelId::new("nosuch:1b"), &|_| {})
        .await
        .unwrap_err();
    assert!(missing.permanent);
    assert!(
        missing.message.contains(&registry.url) && missing.message.contains("no such model"),
        "{}",
        missing.message
    );
    let offline = self::store(data.path(), "http://127.0.0.1:9");
    let unreachable = ModelCache::pull(&offline, &ModelId::new("tiny:1m"), &|_| {})
        .await
        .unwrap_err();
    assert!(unreachable.permanent);
    assert!(
        unreachable.message.contains("http://127.0.0.1:9")
            && unreachable.message.contains("cannot reach the registry"),
        "{}",
        unreachable.message
    );
}

#[tokio::test]
async fn pull_rejects_a_blob_that_does_not_match_its_digest() {
    let data = tempfile::tempdir().unwrap();
    let promised = blob();
    let mut tampered = promised.clone();
    tampered[1000] ^= 0xff;
    let registry = FakeRegistry::start().await;
    registry.add_tampered("tiny:1m", tampered, &promised);
    let store = store(data.path(), &registry.url);
    let err = store.pull("tiny:1m", |_| {}).await.unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(!err.is_permanent());
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
    let registry = registry().await;
    let store = store(data.path(), &registry.url);
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
    // A store that reads only itself (a Docker container's) lacks it.
    assert!(!ModelCache::has(
        &store.without_ollama_dir(),
        &ModelId::new("tiny")
    ));
}
