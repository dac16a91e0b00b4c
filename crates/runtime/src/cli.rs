//! Command-line arguments and entry points for `paddock runtime`,
//! `paddock pull` and `paddock models import|list|rm`. The `paddock` binary
//! flattens these into its own clap tree and calls the matching function.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use crate::{default_data_dir, default_threads, RuntimeConfig, RuntimeError};
use paddock_models::{ModelStore, PullProgress, DEFAULT_REGISTRY};

/// `paddock runtime`: serve one model over the Ollama and OpenAI APIs.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// The model: a .gguf path, a store name (gemma3:270m), a name in the
    /// Ollama models directory, or a registry name to pull.
    #[arg(long, env = "PADDOCK_MODEL")]
    pub model: String,
    /// Address to listen on; keep it on loopback or a private network.
    #[arg(long, default_value = "127.0.0.1", env = "PADDOCK_RUNTIME_HOST")]
    pub host: String,
    /// Port to listen on (Ollama's default).
    #[arg(long, default_value_t = 11434, env = "PADDOCK_RUNTIME_PORT")]
    pub port: u16,
    /// Listen on this unix socket instead of host:port (made with mode
    /// 0600, so only this user can connect; the process and Docker
    /// drivers' choice).
    #[arg(long, env = "PADDOCK_RUNTIME_SOCKET")]
    pub socket: Option<PathBuf>,
    /// CPU threads for decoding [default: physical cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Context length of each sequence, in tokens.
    #[arg(long, default_value_t = 4096)]
    pub ctx: u32,
    /// Sequences decoded together (concurrent requests served at once).
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Requests that may wait for a free sequence before new ones get 503.
    #[arg(long, default_value_t = 64)]
    pub queue_depth: usize,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Where models are stored and fetched from; shared by every store command.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// paddock's data directory (the same as `paddock serve`'s).
    #[arg(long, env = "PADDOCK_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Ollama models directory to use models from in place
    /// [default: $OLLAMA_MODELS or ~/.ollama/models].
    #[arg(long)]
    pub ollama_models_dir: Option<PathBuf>,
    /// Base URL of the Ollama registry to pull from.
    #[arg(long, env = "PADDOCK_REGISTRY", default_value = DEFAULT_REGISTRY)]
    pub registry: String,
}

impl StoreArgs {
    /// Opens the store these arguments name.
    ///
    /// # Errors
    /// When its directories cannot be made.
    pub fn open(&self) -> Result<ModelStore, RuntimeError> {
        Ok(ModelStore::open(&self.data_dir)?
            .with_ollama_dir(self.ollama_models_dir.clone())
            .with_registry(self.registry.clone()))
    }
}

impl From<RuntimeArgs> for RuntimeConfig {
    fn from(a: RuntimeArgs) -> Self {
        Self {
            model: a.model,
            host: a.host,
            port: a.port,
            threads: a.threads.unwrap_or_else(default_threads),
            ctx: a.ctx,
            parallel: a.parallel,
            queue_depth: a.queue_depth,
            data_dir: a.store.data_dir,
            ollama_models_dir: a.store.ollama_models_dir,
            registry: a.store.registry,
        }
    }
}

/// Runs `paddock runtime` until Ctrl-C or SIGTERM.
///
/// # Errors
/// When the address cannot be bound or the model cannot be loaded.
pub async fn run(args: RuntimeArgs) -> Result<(), RuntimeError> {
    let socket = args.socket.clone();
    let config = RuntimeConfig::from(args);
    // Pull first with a progress bar, so `serve` finds the model locally.
    let store = ModelStore::open(&config.data_dir)?
        .with_ollama_dir(config.ollama_models_dir.clone())
        .with_registry(config.registry.clone());
    if store.resolve(&config.model).is_err() {
        let bar = Bar::new();
        store
            .resolve_or_pull(&config.model, |p| bar.update(&p))
            .await?;
        bar.finish();
    }
    match socket {
        Some(path) => {
            let listener = bind_unix(&path)?;
            let served = crate::serve(config, listener, shutdown_signal()).await;
            let _ = std::fs::remove_file(&path);
            served
        }
        None => {
            use axum::serve::ListenerExt;
            // Streamed chunks are small writes: without TCP_NODELAY each
            // one after the first waits for the client's delayed ACK.
            let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
                .await?
                .tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
            crate::serve(config, listener, shutdown_signal()).await
        }
    }
}

/// Binds a unix socket at `path` readable and writable by this user only.
/// A socket left there by a runtime that was killed is replaced; any other
/// file is not.
fn bind_unix(path: &std::path::Path) -> Result<tokio::net::UnixListener, RuntimeError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `paddock pull NAME`: fetch a model from an Ollama registry into the store.
#[derive(Debug, Clone, clap::Args)]
pub struct PullArgs {
    /// The model name, e.g. gemma3:270m.
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Pulls a model with a progress bar on stderr.
///
/// # Errors
/// When the registry cannot provide the model or a blob fails verification.
pub async fn pull(args: PullArgs) -> Result<(), RuntimeError> {
    let store = args.store.open()?;
    let bar = Bar::new();
    let resolved = store.pull(&args.name, |p| bar.update(&p)).await?;
    bar.finish();
    println!(
        "pulled {} ({} bytes) into {}",
        resolved.name,
        resolved.size,
        store.root().display()
    );
    Ok(())
}

/// `paddock models import|list|rm`: manage the local model store.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ModelsCommand {
    /// Copy a local GGUF file into the store under a name.
    Import {
        /// The .gguf file.
        file: PathBuf,
        /// The name to store it under, e.g. gemma3:270m.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the models in the store.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a model from the store (and blobs no other model uses).
    Rm {
        /// The model name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Runs a `paddock models` store command, printing its result.
///
/// # Errors
/// When the store cannot be read or written, or the model does not exist.
pub async fn models(cmd: ModelsCommand) -> Result<(), RuntimeError> {
    tokio::task::spawn_blocking(move || match cmd {
        ModelsCommand::Import { file, name, store } => {
            let resolved = store.open()?.import(&file, &name)?;
            println!(
                "imported {} as {} ({} bytes)",
                file.display(),
                resolved.name,
                resolved.size
            );
            Ok(())
        }
        ModelsCommand::List { store } => {
            let models = store.open()?.list()?;
            println!("{:<40} {:<14} {:>10}  MODIFIED", "NAME", "ID", "SIZE");
            for m in models {
                let id = m
                    .digest
                    .trim_start_matches("sha256:")
                    .get(..12)
                    .unwrap_or("")
                    .to_string();
                #[allow(clippy::cast_precision_loss)]
                let size = format!("{:.0} MB", m.size as f64 / 1e6);
                println!(
                    "{:<40} {:<14} {:>10}  {}",
                    m.name,
                    id,
                    size,
                    m.modified_at.format("%Y-%m-%d %H:%M")
                );
            }
            Ok(())
        }
        ModelsCommand::Rm { name, store } => {
            store.open()?.remove(&name)?;
            println!("deleted '{name}'");
            Ok(())
        }
    })
    .await
    .map_err(|e| RuntimeError::Io(std::io::Error::other(e)))?
}

/// A download progress bar on stderr.
struct Bar(ProgressBar);

impl Bar {
    fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Self(bar)
    }

    /// One bar for the whole model (every blob), named by the blob
    /// being fetched.
    fn update(&self, p: &PullProgress) {
        self.0.set_message(p.status.clone());
        if p.overall.total > 0 {
            self.0.set_length(p.overall.total);
            self.0.set_position(p.overall.completed);
        }
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
