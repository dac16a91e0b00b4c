//! A stand-alone `paddock runtime` for trying the runtime (and for the
//! benchmark) before the `paddock` binary wires it in:
//! `cargo run --release -p paddock-runtime --example paddock-runtime -- --model gemma3:270m`.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "paddock-runtime")]
struct Cli {
    #[command(flatten)]
    args: paddock_runtime::cli::RuntimeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,llama_cpp_2=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    paddock_runtime::cli::run(Cli::parse().args).await?;
    Ok(())
}
