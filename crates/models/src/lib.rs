//! paddock-models: the local model store and model resolution.
//!
//! The store lives in `<data-dir>/models` and uses Ollama's own layout:
//! `manifests/<host>/<namespace>/<model>/<tag>` (an OCI-style JSON manifest)
//! and `blobs/sha256-<hex>` (content-addressed files). Because the layout is
//! the same, an existing Ollama models directory (`$OLLAMA_MODELS` or
//! `~/.ollama/models`) is read in place with the same code, never copied.
//!
//! Pulls fetch the manifest and blobs from an Ollama registry, write blobs to
//! `sha256-<hex>-partial` first, resume an interrupted download with an HTTP
//! range request, and verify the sha256 before a blob takes its final name.
//! This module does not load models; it only says where their files are.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use paddock_core::models::{ModelCache, PullError};
use paddock_core::ModelId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The public Ollama registry.
pub const DEFAULT_REGISTRY: &str = "https://registry.ollama.ai";
/// The registry host names without one are filed under.
const DEFAULT_HOST: &str = "registry.ollama.ai";
const DEFAULT_NAMESPACE: &str = "library";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MODEL_MEDIA_TYPE: &str = "application/vnd.ollama.image.model";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";

/// What can go wrong finding, importing or fetching a model.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The name is not a valid model name.
    #[error("invalid model name {0:?}: use NAME or NAME:TAG (e.g. gemma3:270m)")]
    InvalidName(String),
    /// Nothing local matches the reference.
    #[error("model \"{name}\" not found: it is not a .gguf file, not in the local store ({store}) and not in the Ollama models directory ({ollama})")]
    NotFound {
        /// The reference asked for.
        name: String,
        /// The store directory searched.
        store: String,
        /// The Ollama models directory searched.
        ollama: String,
    },
    /// Not local, and the registry could not provide it.
    #[error("model \"{name}\" is not in the local store ({store}) or the Ollama models directory ({ollama}), and pulling it from {registry} failed: {reason}")]
    Unavailable {
        /// The reference asked for.
        name: String,
        /// The store directory searched.
        store: String,
        /// The Ollama models directory searched.
        ollama: String,
        /// The registry tried.
        registry: String,
        /// Why the pull failed.
        reason: String,
    },
    /// The registry could not be reached or did not provide the model.
    #[error("pulling \"{name}\" from {registry} failed: {reason}")]
    Registry {
        /// The name pulled.
        name: String,
        /// The registry asked.
        registry: String,
        /// What went wrong.
        reason: String,
        /// Whether pulling again may succeed (a download cut off, the
        /// registry answering 5xx); not when it cannot be reached at all,
        /// has no such model or sent an invalid manifest.
        transient: bool,
    },
    /// A downloaded blob did not hash to its digest; it was discarded.
    #[error("blob {digest} failed verification (got sha256:{actual}); the download was discarded, try again")]
    DigestMismatch {
        /// The digest the manifest promised.
        digest: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A manifest could not be read.
    #[error("invalid manifest {path}: {reason}")]
    BadManifest {
        /// The manifest file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing the store failed.
    #[error("model store i/o error at {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether trying again the same way fails the same way: everything
    /// but a transient registry failure and a blob that did not verify
    /// (both are downloaded again, resuming, by the next pull).
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self,
            StoreError::Registry {
                transient: true,
                ..
            } | StoreError::DigestMismatch { .. }
        )
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where a resolved model's file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSource {
    /// A `.gguf` path given directly.
    File,
    /// The paddock store.
    Store,
    /// An Ollama models directory, used in place.
    Ollama,
}

/// A model reference resolved to a GGUF file.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The name the API serves it under (`gemma3:270m`, or the file stem).
    pub name: String,
    /// The GGUF file.
    pub path: PathBuf,
    /// `sha256:<hex>` of the manifest (as Ollama reports it); empty for files.
    pub digest: String,
    /// Size of the GGUF file in bytes.
    pub size: u64,
    /// When the model was stored.
    pub modified_at: chrono::DateTime<chrono::Utc>,
    /// Where it was found.
    pub source: ModelSource,
}

/// Progress of a pull, reported to the caller's callback.
#[derive(Debug, Clone)]
pub struct PullProgress {
    /// What is happening (`pulling manifest`, `pulling <digest>`, `verifying`, `success`).
    pub status: String,
    /// The blob being fetched, if any.
    pub digest: Option<String>,
    /// Bytes of this blob in all.
    pub total: u64,
    /// Bytes of this blob on disk so far.
    pub completed: u64,
    /// Bytes of the whole model (every blob) on disk and in all; the
    /// total is 0 until the manifest has been read.
    pub overall: paddock_core::models::PullProgress,
}

/// A model name split into Ollama's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelName {
    host: String,
    namespace: String,
    model: String,
    tag: String,
}

impl ModelName {
    fn parse(name: &str) -> Result<Self, StoreError> {
        let invalid = || StoreError::InvalidName(name.to_string());
        let parts: Vec<&str> = name.split('/').collect();
        let (host, namespace, rest) = match parts.as_slice() {
            [m] => (DEFAULT_HOST, DEFAULT_NAMESPACE, *m),
            [ns, m] => (DEFAULT_HOST, *ns, *m),
            [h, ns, m] => (*h, *ns, *m),
            _ => return Err(invalid()),
        };
        let (model, tag) = rest.split_once(':').unwrap_or((rest, "latest"));
        let ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c))
        };
        if ![host, namespace, model, tag].iter().all(|p| ok(p)) || tag.contains(':') {
            return Err(invalid());
        }
        Ok(Self {
            host: host.to_string(),
            namespace: namespace.to_string(),
            model: model.to_string(),
            tag: tag.to_string(),
        })
    }

    /// The short form users type: `gemma3:270m`, `me/model:tag`.
    fn display(&self) -> String {
        match (self.host.as_str(), self.namespace.as_str()) {
            (DEFAULT_HOST, DEFAULT_NAMESPACE) => format!("{}:{}", self.model, self.tag),
            (DEFAULT_HOST, ns) => format!("{ns}/{}:{}", self.model, self.tag),
            (host, ns) => format!("{host}/{ns}/{}:{}", self.model, self.tag),
        }
    }

    fn manifest_in(&self, root: &Path) -> PathBuf {
        root.join("manifests")
            .join(&self.host)
            .join(&self.namespace)
            .join(&self.model)
            .join(&self.tag)
    }
}

/// An OCI-style manifest as Ollama writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    #[serde(default)]
    media_type: String,
    config: Layer,
    layers: Vec<Layer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Layer {
    media_type: String,
    digest: String,
    size: u64,
}

impl Manifest {
    fn model_layer(&self) -> Option<&Layer> {
        self.layers
            .iter()
            .find(|l| l.media_type == MODEL_MEDIA_TYPE)
    }
}

/// A model in the store, as `paddock models list` shows it.
#[derive(Debug, Clone)]
pub struct StoredModel {
    /// Its name (`gemma3:270m`).
    pub name: String,
    /// `sha256:<hex>` of its manifest.
    pub digest: String,
    /// Size of its model blob in bytes.
    pub size: u64,
    /// When its manifest was written.
    pub modified_at: chrono::DateTime<chrono::Utc>,
}

/// The local model store, plus the Ollama models directory and registry it
/// falls back to.
#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
    ollama_dir: PathBuf,
    registry: String,
}

/// `$OLLAMA_MODELS`, else `~/.ollama/models`.
#[must_use]
pub fn default_ollama_models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OLLAMA_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::home_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".ollama")
        .join("models")
}

impl ModelStore {
    /// Opens (creating if needed) the store under `data_dir/models`.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directories cannot be created.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let root = data_dir.join("models");
        for sub in ["blobs", "manifests"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(Self {
            root,
            ollama_dir: default_ollama_models_dir(),
            registry: DEFAULT_REGISTRY.to_string(),
        })
    }

    /// Uses `dir` as the Ollama models directory (`None` keeps the default).
    #[must_use]
    pub fn with_ollama_dir(mut self, dir: Option<PathBuf>) -> Self {
        if let Some(dir) = dir {
            self.ollama_dir = dir;
        }
        self
    }

    /// Reads this store only, no Ollama models directory: what a Docker
    /// container sees, which has the store mounted and nothing else.
    #[must_use]
    pub fn without_ollama_dir(mut self) -> Self {
        self.ollama_dir = self.root.clone();
        self
    }

    /// Pulls from `registry` (a base URL such as `https://registry.ollama.ai`).
    #[must_use]
    pub fn with_registry(mut self, registry: impl Into<String>) -> Self {
        self.registry = registry.into().trim_end_matches('/').to_string();
        self
    }

    /// The store directory (`<data-dir>/models`).
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(root: &Path, digest: &str) -> PathBuf {
        root.join("blobs").join(digest.replace(':', "-"))
    }

    fn not_found(&self, name: &str) -> StoreError {
        StoreError::NotFound {
            name: name.to_string(),
            store: self.root.display().to_string(),
            ollama: self.ollama_dir.display().to_string(),
        }
    }

    /// Finds `reference` locally: a `.gguf` path, then the store, then the
    /// Ollama models directory.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when nothing matches; others when a manifest
    /// or file cannot be read.
    pub fn resolve(&self, reference: &str) -> Result<ResolvedModel, StoreError> {
        let as_path = Path::new(reference);
        let looks_like_path = reference.ends_with(".gguf")
            || reference.starts_with('/')
            || reference.starts_with("./")
            || reference.starts_with("../");
        if looks_like_path || as_path.is_file() {
            if !as_path.is_file() {
                return Err(self.not_found(reference));
            }
            let meta = std::fs::metadata(as_path).map_err(io_err(as_path))?;
            let name = as_path.file_stem().map_or_else(
                || reference.to_string(),
                |s| s.to_string_lossy().into_owned(),
            );
            return Ok(ResolvedModel {
                name,
                path: as_path.to_path_buf(),
                digest: String::new(),
                size: meta.len(),
                modified_at: mtime(&meta),
                source: ModelSource::File,
            });
        }
        let name = ModelName::parse(reference)?;
        for (root, source) in [
            (&self.root, ModelSource::Store),
            (&self.ollama_dir, ModelSource::Ollama),
        ] {
            let manifest_path = name.manifest_in(root);
            if !manifest_path.is_file() {
                continue;
            }
            return Self::resolve_manifest(root, &manifest_path, &name, source);
        }
        Err(self.not_found(reference))
    }

    fn resolve_manifest(
        root: &Path,
        manifest_path: &Path,
        name: &ModelName,
        source: ModelSource,
    ) -> Result<ResolvedModel, StoreError> {
        let bytes = std::fs::read(manifest_path).map_err(io_err(manifest_path))?;
        let bad = |reason: String| StoreError::BadManifest {
            path: manifest_path.display().to_string(),
            reason,
        };
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        let layer = manifest
            .model_layer()
            .ok_or_else(|| bad("it has no model layer".into()))?;
        let path = Self::blob_path(root, &layer.digest);
        let meta = std::fs::metadata(&path)
            .map_err(|e| bad(format!("its model blob {} is missing: {e}", path.display())))?;
        let modified = std::fs::metadata(manifest_path).map_err(io_err(manifest_path))?;
        Ok(ResolvedModel {
            name: name.display(),
            path,
            digest: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            size: meta.len(),
            modified_at: mtime(&modified),
            source,
        })
    }

    /// Resolves `reference` locally, else pulls it from the registry.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it is neither local nor pullable.
    pub async fn resolve_or_pull(
        &self,
        reference: &str,
        progress: impl FnMut(PullProgress) + Send,
    ) -> Result<ResolvedModel, StoreError> {
        match self.resolve(reference) {
            Err(StoreError::NotFound { .. }) if ModelName::parse(reference).is_ok() => {}
            other => return other,
        }
        self.pull(reference, progress)
            .await
            .map_err(|e| StoreError::Unavailable {
                name: reference.to_string(),
                store: self.root.display().to_string(),
                ollama: self.ollama_dir.display().to_string(),
                registry: self.registry.clone(),
                reason: match e {
                    StoreError::Registry { reason, .. } => reason,
                    other => other.to_string(),
                },
            })
    }

    /// Copies the GGUF file `file` into the store under `name`.
    ///
    /// # Errors
    /// When the file is not a GGUF file, the name is invalid, or I/O fails.
    pub fn import(&self, file: &Path, name: &str) -> Result<ResolvedModel, StoreError> {
        let parsed = ModelName::parse(name)?;
        let mut source = std::fs::File::open(file).map_err(io_err(file))?;
        let mut magic = [0u8; 4];
        source.read_exact(&mut magic).map_err(io_err(file))?;
        if &magic != b"GGUF" {
            return Err(StoreError::Io {
                path: file.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a GGUF file"),
            });
        }
        let tmp = self
            .root
            .join("blobs")
            .join(format!("import-{}-partial", std::process::id()));
        let (digest, size) = copy_hashing(file, &tmp)?;
        let final_path = Self::blob_path(&self.root, &digest);
        std::fs::rename(&tmp, &final_path).map_err(io_err(&final_path))?;
        let config = serde_json::to_vec(&serde_json::json!({
            "model_format": "gguf", "file_type": "", "architecture": "", "source": "paddock models import"
        }))
        .unwrap_or_default();
        let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
        let config_path = Self::blob_path(&self.root, &config_digest);
        std::fs::write(&config_path, &config).map_err(io_err(&config_path))?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: MANIFEST_MEDIA_TYPE.into(),
            config: Layer {
                media_type: CONFIG_MEDIA_TYPE.into(),
                digest: config_digest,
                size: config.len() as u64,
            },
            layers: vec![Layer {
                media_type: MODEL_MEDIA_TYPE.into(),
                digest,
                size,
            }],
        };
        self.write_manifest(&parsed, &manifest)?;
        self.resolve(&parsed.display())
    }

    /// Copies `reference` (from the store or the Ollama directory) into
    /// the store of `dest` (a data directory): its manifest and every blob
    /// the manifest names (weights, template, parameters), so the copy
    /// resolves and serves exactly as the original. Blobs are hard-linked
    /// where they can be, else copied. What `paddock image build --model`
    /// puts in a model image.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the model is not local, or when it is
    /// a bare `.gguf` path (which has no manifest); others for I/O.
    pub fn export(&self, reference: &str, dest: &Path) -> Result<ResolvedModel, StoreError> {
        let name = ModelName::parse(reference)?;
        let (root, manifest_path) = [&self.root, &self.ollama_dir]
            .into_iter()
            .map(|root| (root, name.manifest_in(root)))
            .find(|(_, m)| m.is_file())
            .ok_or_else(|| self.not_found(reference))?;
        let bytes = std::fs::read(&manifest_path).map_err(io_err(&manifest_path))?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::BadManifest {
                path: manifest_path.display().to_string(),
                reason: e.to_string(),
            })?;
        let target = ModelStore::open(dest)?;
        for layer in std::iter::once(&manifest.config).chain(&manifest.layers) {
            let from = Self::blob_path(root, &layer.digest);
            let to = Self::blob_path(&target.root, &layer.digest);
            if to.is_file() {
                continue;
            }
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).map_err(io_err(&from))?;
            }
        }
        let out = name.manifest_in(&target.root);
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        std::fs::write(&out, &bytes).map_err(io_err(&out))?;
        target.resolve(&name.display())
    }

    fn write_manifest(&self, name: &ModelName, manifest: &Manifest) -> Result<(), StoreError> {
        let path = name.manifest_in(&self.root);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let tmp = path.with_extension("partial");
        let bytes = serde_json::to_vec(manifest).unwrap_or_default();
        std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// Pulls `name` from the registry into the store: manifest, then every
    /// blob (resumed, verified), then the manifest is written.
    ///
    /// # Errors
    /// [`StoreError::Registry`] when the registry fails or lacks the model,
    /// [`StoreError::DigestMismatch`] when a blob does not verify.
    pub async fn pull(
        &self,
        name: &str,
        mut progress: impl FnMut(PullProgress) + Send,
    ) -> Result<ResolvedModel, StoreError> {
        let parsed = ModelName::parse(name)?;
        let registry_err = |reason: String, transient: bool| StoreError::Registry {
            name: name.to_string(),
            registry: self.registry.clone(),
            reason,
            transient,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| registry_err(e.to_string(), false))?;
        let url = format!(
            "{}/v2/{}/{}/manifests/{}",
            self.registry, parsed.namespace, parsed.model, parsed.tag
        );
        progress(PullProgress {
            status: "pulling manifest".into(),
            digest: None,
            total: 0,
            completed: 0,
            overall: paddock_core::models::PullProgress::default(),
        });
        let response = client
            .get(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_MEDIA_TYPE)
            .send()
            .await
            .map_err(|e| registry_err(format!("cannot reach the registry: {e}"), false))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(registry_err("the registry has no such model".into(), false));
        }
        if !response.status().is_success() {
            return Err(registry_err(
                format!("the registry answered {}", response.status()),
                response.status().is_server_error(),
            ));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| registry_err(e.to_string(), true))?;
        let manifest: Manifest = serde_json::from_slice(&body)
            .map_err(|e| registry_err(format!("invalid manifest: {e}"), false))?;
        if manifest.model_layer().is_none() {
            return Err(registry_err(
                "the manifest has no model layer".into(),
                false,
            ));
        }
        let blobs_url = format!(
            "{}/v2/{}/{}/blobs",
            self.registry, parsed.namespace, parsed.model
        );
        let layers: Vec<&Layer> = std::iter::once(&manifest.config)
            .chain(&manifest.layers)
            .collect();
        let mut overall = paddock_core::models::PullProgress {
            completed: 0,
            total: layers.iter().map(|l| l.size).sum(),
        };
        for layer in layers {
            let before = overall.completed;
            self.fetch_blob(&client, &blobs_url, layer, &mut |mut p: PullProgress| {
                overall.completed = before + p.completed;
                p.overall = overall;
                progress(p);
            })
            .await
            .map_err(|e| match e {
                StoreError::Registry {
                    reason, transient, ..
                } => registry_err(reason, transient),
                other => other,
            })?;
            overall.completed = before + layer.size;
        }
        self.write_manifest(&parsed, &manifest)?;
        progress(PullProgress {
            status: "success".into(),
            digest: None,
            total: 0,
            completed: 0,
            overall,
        });
        self.resolve(&parsed.display())
    }

    /// Fetches one blob into the store, resuming a partial download;
    /// progress reports this blob's bytes (`overall` is the caller's).
    async fn fetch_blob(
        &self,
        client: &reqwest::Client,
        blobs_url: &str,
        layer: &Layer,
        progress: &mut (dyn FnMut(PullProgress) + Send),
    ) -> Result<(), StoreError> {
        let registry_err = |reason: String, transient: bool| StoreError::Registry {
            name: String::new(),
            registry: self.registry.clone(),
            reason,
            transient,
        };
        let Some(hex_digest) = layer
            .digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
        else {
            return Err(registry_err(
                format!("invalid digest {:?}", layer.digest),
                false,
            ));
        };
        let final_path = Self::blob_path(&self.root, &layer.digest);
        let report = |progress: &mut (dyn FnMut(PullProgress) + Send), completed| {
            progress(PullProgress {
                status: format!("pulling {}", &hex_digest[..12]),
                digest: Some(layer.digest.clone()),
                total: layer.size,
                completed,
                overall: paddock_core::models::PullProgress::default(),
            });
        };
        if final_path.is_file() {
            report(progress, layer.size);
            return Ok(());
        }
        let partial = final_path.with_file_name(format!("sha256-{hex_digest}-partial"));
        let mut hasher = Sha256::new();
        let mut have = 0u64;
        if let Ok(mut f) = std::fs::File::open(&partial) {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).map_err(io_err(&partial))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                have += n as u64;
            }
        }
        if have > layer.size {
            hasher = Sha256::new();
            have = 0;
        }
        let mut request = client.get(format!("{blobs_url}/{}", layer.digest));
        if have > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let response = request
            .send()
            .await
            .map_err(|e| registry_err(format!("downloading {}: {e}", layer.digest), true))?;
        if response.status() == reqwest::StatusCode::OK && have > 0 {
            // The server ignored the range: start over.
            hasher = Sha256::new();
            have = 0;
        } else if !response.status().is_success() {
            return Err(registry_err(
                format!(
                    "downloading {}: the registry answered {}",
                    layer.digest,
                    response.status()
                ),
                response.status() != reqwest::StatusCode::NOT_FOUND,
            ));
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&partial)
            .map_err(io_err(&partial))?;
        file.set_len(have).map_err(io_err(&partial))?;
        report(progress, have);
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                registry_err(
                    format!(
                        "download of {} interrupted at {have} bytes (it resumes on the next pull): {e}",
                        layer.digest
                    ),
                    true,
                )
            })?;
            file.write_all(&chunk).map_err(io_err(&partial))?;
            hasher.update(&chunk);
            have += chunk.len() as u64;
            report(progress, have);
        }
        file.flush().map_err(io_err(&partial))?;
        drop(file);
        let actual = hex::encode(hasher.finalize());
        if actual != hex_digest || have != layer.size {
            let _ = std::fs::remove_file(&partial);
            return Err(StoreError::DigestMismatch {
                digest: layer.digest.clone(),
                actual,
            });
        }
        std::fs::rename(&partial, &final_path).map_err(io_err(&final_path))
    }

    /// The models in the store (not the Ollama directory), by name.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the manifests cannot be read.
    pub fn list(&self) -> Result<Vec<StoredModel>, StoreError> {
        let mut out = Vec::new();
        for (name, path) in self.manifests()? {
            let Ok(resolved) = Self::resolve_manifest(&self.root, &path, &name, ModelSource::Store)
            else {
                continue;
            };
            out.push(StoredModel {
                name: resolved.name,
                digest: resolved.digest,
                size: resolved.size,
                modified_at: resolved.modified_at,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Every manifest in the store with its parsed name.
    fn manifests(&self) -> Result<Vec<(ModelName, PathBuf)>, StoreError> {
        let mut out = Vec::new();
        let base = self.root.join("manifests");
        for host in read_dirs(&base)? {
            for ns in read_dirs(&host)? {
                for model in read_dirs(&ns)? {
                    let entries = std::fs::read_dir(&model).map_err(io_err(&model))?;
                    for tag in entries.flatten() {
                        let path = tag.path();
                        let tag_name = tag.file_name().to_string_lossy().into_owned();
                        if !path.is_file() || tag_name.ends_with(".partial") {
                            continue;
                        }
                        let name = ModelName {
                            host: file_name(&host),
                            namespace: file_name(&ns),
                            model: file_name(&model),
                            tag: tag_name,
                        };
                        out.push((name, path));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Removes `name` from the store and deletes blobs no model uses.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the store has no such model.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        let parsed = ModelName::parse(name)?;
        let path = parsed.manifest_in(&self.root);
        if !path.is_file() {
            return Err(self.not_found(name));
        }
        std::fs::remove_file(&path).map_err(io_err(&path))?;
        let mut used = std::collections::HashSet::new();
        for (_, manifest_path) in self.manifests()? {
            let Ok(bytes) = std::fs::read(&manifest_path) else {
                continue;
            };
            let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
                continue;
            };
            for layer in std::iter::once(&manifest.config).chain(&manifest.layers) {
                used.insert(layer.digest.replace(':', "-"));
            }
        }
        let blobs = self.root.join("blobs");
        for entry in std::fs::read_dir(&blobs).map_err(io_err(&blobs))?.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with("sha256-") && !file.ends_with("-partial") && !used.contains(&file) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// The control plane's view of this store: the drivers' model servers
/// read it, so a model missing here is pulled before they launch.
#[async_trait::async_trait]
impl ModelCache for ModelStore {
    fn has(&self, model: &ModelId) -> bool {
        ModelName::parse(model.as_str()).is_ok() && self.resolve(model.as_str()).is_ok()
    }

    fn registry(&self) -> String {
        self.registry.clone()
    }

    async fn pull(
        &self,
        model: &ModelId,
        progress: &(dyn Fn(paddock_core::models::PullProgress) + Send + Sync),
    ) -> Result<(), PullError> {
        match ModelStore::pull(self, model.as_str(), |p| progress(p.overall)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(PullError {
                permanent: e.is_permanent(),
                message: match e {
                    // It names the model and the registry already.
                    StoreError::Registry { .. } => e.to_string(),
                    other => format!("pulling \"{model}\" from {} failed: {other}", self.registry),
                },
            }),
        }
    }
}

fn read_dirs(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    Ok(std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn mtime(meta: &std::fs::Metadata) -> chrono::DateTime<chrono::Utc> {
    meta.modified()
        .map_or_else(|_| chrono::Utc::now(), chrono::DateTime::from)
}

/// Copies `from` to `to`, returning `sha256:<hex>` and the size.
fn copy_hashing(from: &Path, to: &Path) -> Result<(String, u64), StoreError> {
    let mut src = std::fs::File::open(from).map_err(io_err(from))?;
    let mut dst = std::fs::File::create(to).map_err(io_err(to))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(io_err(from))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(io_err(to))?;
        size += n as u64;
    }
    dst.flush().map_err(io_err(to))?;
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), size))
}

#[cfg(feature = "testkit")]
pub mod testkit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ollama_names() {
        let n = ModelName::parse("gemma3:270m").unwrap();
        assert_eq!(
            (n.namespace.as_str(), n.model.as_str(), n.tag.as_str()),
            ("library", "gemma3", "270m")
        );
        assert_eq!(n.display(), "gemma3:270m");
        assert_eq!(
            ModelName::parse("llama3").unwrap().display(),
            "llama3:latest"
        );
        assert_eq!(
            ModelName::parse("me/tiny:q4").unwrap().display(),
            "me/tiny:q4"
        );
        assert!(ModelName::parse("../etc:passwd").is_err());
        assert!(ModelName::parse("a/b/c/d").is_err());
    }

    #[test]
    fn an_exported_model_resolves_the_same_in_its_new_store() {
        let dir = tempfile::tempdir().unwrap();
        let gguf = dir.path().join("tiny.gguf");
        std::fs::write(&gguf, b"GGUF and some weights").unwrap();
        let store = ModelStore::open(&dir.path().join("src")).unwrap();
        let original = store.import(&gguf, "me/tiny:q4").unwrap();
        let copy = store.export("me/tiny:q4", &dir.path().join("dst")).unwrap();
        assert_eq!(copy.name, "me/tiny:q4");
        assert_eq!(copy.digest, original.digest);
        assert_eq!(copy.size, original.size);
        assert!(copy.path.starts_with(dir.path().join("dst").join("models")));
        assert_eq!(std::fs::read(&copy.path).unwrap(), b"GGUF and some weights");
        // Exporting again is a no-op, and a model that is not there is named.
        store.export("me/tiny:q4", &dir.path().join("dst")).unwrap();
        assert!(matches!(
            store.export("me/absent:q4", &dir.path().join("dst")),
            Err(StoreError::NotFound { .. })
        ));
    }
}
