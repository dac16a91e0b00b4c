//! Runtime configuration: what `paddock runtime` serves and how.

use std::path::PathBuf;

/// Everything [`crate::serve`] needs to load and serve one model.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The model reference: a `.gguf` path, a store name (`gemma3:270m`), a
    /// name in the Ollama models directory, or a registry name to pull.
    pub model: String,
    /// Address to listen on (informational for [`crate::serve`], which takes
    /// a bound listener; used by [`crate::cli::run`] to bind).
    pub host: String,
    /// Port to listen on (see `host`).
    pub port: u16,
    /// CPU threads llama.cpp uses for decoding; defaults to physical cores.
    pub threads: usize,
    /// Context length, in tokens, of each sequence (prompt plus answer).
    pub ctx: u32,
    /// How many sequences decode together in one batch.
    pub parallel: usize,
    /// How many requests may wait for a free sequence before new ones get
    /// 503 with `Retry-After`.
    pub queue_depth: usize,
    /// The paddock data directory; the model store lives in `models/` below it.
    pub data_dir: PathBuf,
    /// An Ollama models directory whose models are used in place; `None`
    /// means `$OLLAMA_MODELS` or `~/.ollama/models`.
    pub ollama_models_dir: Option<PathBuf>,
    /// Base URL of the Ollama registry names are pulled from.
    pub registry: String,
}

impl RuntimeConfig {
    /// A configuration with the defaults of `paddock runtime` for `model`.
    #[must_use]
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            host: "127.0.0.1".into(),
            port: 11434,
            threads: default_threads(),
            ctx: 4096,
            parallel: 4,
            queue_depth: 64,
            data_dir: default_data_dir(),
            ollama_models_dir: None,
            registry: paddock_models::DEFAULT_REGISTRY.into(),
        }
    }
}

/// The default paddock data directory: `$PADDOCK_DATA_DIR`, else
/// `dirs::data_dir()/paddock`, else `./paddock-data`.
#[must_use]
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PADDOCK_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::data_dir().map_or_else(|| PathBuf::from("paddock-data"), |d| d.join("paddock"))
}

/// The number of physical CPU cores (llama.cpp decodes fastest with one
/// thread per core), falling back to the number of logical CPUs.
#[must_use]
pub fn default_threads() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return logical;
    };
    let mut cores = std::collections::HashSet::new();
    let mut physical = String::new();
    for line in cpuinfo.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "physical id" => physical = value.trim().to_string(),
            "core id" => {
                cores.insert((physical.clone(), value.trim().to_string()));
            }
            _ => {}
        }
    }
    if cores.is_empty() {
        logical
    } else {
        cores.len().min(logical)
    }
}
