//! The `paddock` binary: parses the command line, loads config, picks the
//! backends in one place, and calls library functions. Client commands talk
//! to a paddock server over HTTP (see `client`).

mod aws;
mod backends;
mod client;
mod commands;
mod image;
mod table;

use anyhow::Result;

/// mimalloc rather than the system allocator: the gateway allocates small,
/// short-lived buffers on every proxied request, which glibc's malloc
/// spends a measurable share of the request's CPU on.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Run Ollama-compatible LLM instances on your own compute.
#[derive(Debug, Parser)]
#[command(name = "paddock", version, about)]
struct Cli {
    /// Server URL for client commands [default: the one saved by `login`, else http://127.0.0.1:8080].
    #[arg(long, global = true, env = "PADDOCK_URL")]
    url: Option<String>,
    /// A bearer token (API key) to use instead of the saved login.
    #[arg(long, global = true, env = "PADDOCK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the paddock server (API, gateway, web UI).
    Serve(ServeArgs),
    /// Serve one model over the Ollama and OpenAI APIs (what instances run).
    Runtime(paddock_runtime::cli::RuntimeArgs),
    /// Download a model from an Ollama registry into the local store.
    Pull(paddock_runtime::cli::PullArgs),
    /// Sign in to a paddock server and save the session.
    Login(commands::LoginArgs),
    /// Forget the saved session.
    Logout,
    /// The model catalog; `import`, `list` and `rm` manage local model files.
    Models {
        #[command(subcommand)]
        command: Option<commands::ModelsCmd>,
    },
    /// Deploy a model on a CPU or GPU size and wait until it runs.
    Deploy(commands::DeployArgs),
    /// List your instances.
    Ps {
        /// Everyone's instances (admins).
        #[arg(long)]
        all: bool,
    },
    /// Stop an instance.
    Stop { instance_id: String },
    /// Start a stopped, sleeping or failed instance again (same id and
    /// endpoint) and wait until it runs.
    Start {
        instance_id: String,
        /// Return at once instead of waiting for RUNNING.
        #[arg(long)]
        no_wait: bool,
    },
    /// Delete a stopped instance.
    Rm { instance_id: String },
    /// Show an instance with its state history.
    Show { instance_id: String },
    /// Print an instance's model-server log.
    Logs {
        instance_id: String,
        /// How many of the last lines.
        #[arg(long, short = 'n', default_value_t = 100)]
        lines: usize,
    },
    /// Chat with a deployed model through the gateway (streamed).
    Chat(commands::ChatArgs),
    /// Tokens and cost per day and model.
    Usage {
        /// Days back from today.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Everyone's usage (admins).
        #[arg(long)]
        all: bool,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: commands::KeysCmd,
    },
    /// Manage users (admins).
    Users {
        #[command(subcommand)]
        command: commands::UsersCmd,
    },
    /// CPU and GPU sizes with prices.
    Compute,
    /// Container images: `paddock image build [--model NAME]`.
    Image {
        #[command(subcommand)]
        command: image::ImageCmd,
    },
    /// Deploy paddock to AWS (CloudFormation, ECS, DynamoDB, Cognito):
    /// `paddock aws deploy --stack NAME --admin-email E`, `paddock aws destroy`.
    Aws {
        #[command(subcommand)]
        command: aws::AwsCmd,
    },
    /// Exit 0 when the runtime on $PADDOCK_RUNTIME_SOCKET (or a port)
    /// answers /api/version: the images' HEALTHCHECK.
    Healthcheck(image::HealthcheckArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Data directory (database, secrets, models) [default: ~/.local/share/paddock].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where instances run: process or docker [default: `[driver] kind`, else process].
    #[arg(long)]
    driver: Option<paddock_server::config::DriverKind>,
    /// A TOML config file [default: ./paddock.toml when present].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    print_config: bool,
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PADDOCK_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn serve(args: ServeArgs) -> Result<()> {
    let mut config = paddock_server::config::Config::load(args.config.as_deref())?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(kind) = args.driver {
        config.driver.kind = kind;
    }
    config.validate()?;
    if args.print_config {
        out!("{}", config.to_toml_masked());
        return Ok(());
    }
    init_tracing();
    for (old, new) in &config.deprecated_env {
        tracing::warn!(
            "{old} is deprecated and will stop working in the next release; set {new} instead"
        );
    }
    let shutdown = shutdown_signal()?;
    let services = backends::services(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    paddock_server::serve(config, services, listener, shutdown).await?;
    Ok(())
}

/// Resolves at the first Ctrl-C (SIGINT) or SIGTERM. The handlers are
/// installed when this is called, not when the future is first polled: a
/// signal that arrives while the server is still starting then stops it
/// gracefully too, instead of ending paddock at once and leaving the model
/// servers it launched behind.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            let name = tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            };
            tracing::info!(signal = name, "shutting down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let out = table::Output { json: cli.json };
    let client = || client::Client::new(cli.url.clone(), cli.token.clone());
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Runtime(args) => {
            init_tracing();
            match paddock_runtime::cli::run(args).await {
                // The status tells the driver not to restart it.
                Err(e) if e.restart_will_not_help() => {
                    eprintln!("error: {e}");
                    std::process::exit(paddock_core::driver::EXIT_WONT_FIX);
                }
                other => Ok(other?),
            }
        }
        Command::Pull(args) => Ok(paddock_runtime::cli::pull(args).await?),
        Command::Login(args) => commands::login(cli.url.clone(), args).await,
        Command::Logout => commands::logout(&mut client()).await,
        Command::Models { command } => commands::models(&mut client(), &out, command).await,
        Command::Deploy(args) => commands::deploy(&mut client(), &out, args).await,
        Command::Ps { all } => commands::ps(&mut client(), &out, all).await,
        Command::Stop { instance_id } => commands::stop(&mut client(), &out, &instance_id).await,
        Command::Start {
            instance_id,
            no_wait,
        } => commands::start(&mut client(), &out, &instance_id, no_wait).await,
        Command::Rm { instance_id } => commands::rm(&mut client(), &instance_id).await,
        Command::Show { instance_id } => commands::show(&mut client(), &out, &instance_id).await,
        Command::Logs { instance_id, lines } => {
            commands::logs(&mut client(), &out, &instance_id, lines).await
        }
        Command::Chat(args) => commands::chat(&mut client(), args).await,
        Command::Usage { days, all } => commands::usage(&mut client(), &out, days, all).await,
        Command::Keys { command } => commands::keys(&mut client(), &out, command).await,
        Command::Users { command } => commands::users(&mut client(), &out, command).await,
        Command::Compute => commands::compute(&mut client(), &out).await,
        Command::Image { command } => image::run(command),
        Command::Aws { command } => aws::run(command).await,
        Command::Healthcheck(args) => image::healthcheck(args).await,
    }
}
