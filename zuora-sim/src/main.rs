//! The `zuora-sim` binary: the AQuA simulator as a server, for curl, other clients and the end-to-end tests.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use zuora_sim::{SimConfig, Simulator};

/// A local simulator of Zuora's AQuA batch-query API (see zuora-sim/README.md).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long)]
    listen: Option<String>,
    /// Configuration file (TOML); see zuora-sim/sim.example.toml for every key.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of the generated data.
    #[arg(long)]
    seed: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            toml::from_str::<SimConfig>(&text).with_context(|| format!("configuration {}", path.display()))?
        }
        None => SimConfig { listen: "127.0.0.1:8080".to_owned(), ..SimConfig::default() },
    };
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    if let Some(seed) = cli.seed {
        config.seed = seed;
    }
    let sim = Simulator::start(config).await?;
    println!("zuora-sim listening on {}", sim.base_url());
    shutdown_signal().await;
    sim.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}
