//! paddock runtime: serves one model over the Ollama and OpenAI HTTP APIs.
//!
//! This crate owns everything between a model reference (a `.gguf` path, a
//! name in the local store, a name in an Ollama models directory, or a name
//! to pull from an Ollama registry) and an HTTP listener answering Ollama
//! (`/api/*`) and OpenAI (`/v1/*`) requests on that model:
//!
//! - the content-addressed local model store, registry pulls and the
//!   read-only view of an existing Ollama models directory are the
//!   `paddock-models` crate, which the control plane shares;
//! - `engine`: the batch scheduler, one OS thread that owns the llama.cpp
//!   context and decodes every active sequence together (continuous batching);
//! - `api`: the axum routes, in Ollama's and OpenAI's wire formats;
//! - [`cli`]: the clap arguments and entry points that the `paddock` binary
//!   wires in as `paddock runtime`, `paddock pull` and `paddock models`.
//!
//! It does not know about users, instances or the gateway: the control plane
//! starts it as a child process and talks to it over loopback HTTP.

mod api;
pub mod cli;
mod config;
mod engine;
mod error;
mod metrics;
mod template;

pub use config::{default_data_dir, default_threads, RuntimeConfig};
pub use error::RuntimeError;

use std::future::Future;
use std::sync::Arc;

/// Loads the model that `config` names (pulling it first when it is neither a
/// file, in the store, nor in the Ollama models directory), then serves the
/// Ollama and OpenAI APIs on `listener` until `shutdown` completes.
///
/// # Errors
/// [`RuntimeError`] when the model cannot be found, fetched or loaded, or the
/// listener fails.
pub async fn serve<L>(
    config: RuntimeConfig,
    listener: L,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RuntimeError>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let resolved = paddock_models::ModelStore::open(&config.data_dir)?
        .with_ollama_dir(config.ollama_models_dir.clone())
        .with_registry(config.registry.clone())
        .resolve_or_pull(&config.model, |_| {})
        .await?;
    let loaded = tokio::task::spawn_blocking(move || engine::Engine::start(&resolved, &config))
        .await
        .map_err(|e| RuntimeError::Load(format!("model loader panicked: {e}")))??;
    let state = api::AppState::new(Arc::new(loaded));
    let app = api::router(state);
    tracing::info!(addr = ?listener.local_addr()?, "paddock runtime listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
