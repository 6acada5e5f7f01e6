//! `hive-api`: Hive's AWS-compatible endpoint.
//!
//! ```text
//! hive-api [--config hive.toml] [--data-dir DIR] [--listen ADDR] [--nats-url URL]
//! ```
//! Configuration precedence (later wins): defaults < `hive.toml` < `HIVE_*` environment
//! < secret files (`HIVE_*_FILE`) < flags; see `hive_api::config`. Listens on 127.0.0.1:8700
//! unless told otherwise and stops gracefully on SIGTERM or Ctrl-C. On first start it
//! bootstraps the administrator into `<data-dir>/admin-credentials` (see `hive_api::bootstrap`);
//! the composition lives in `hive_api::node`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hive_api::config::{Config, Overrides};
use hive_api::server::shutdown_signal;

/// Hive's AWS-compatible endpoint (IAM, STS, EC2 networking).
#[derive(Debug, Parser)]
#[command(name = "hive-api", version)]
struct Cli {
    /// Configuration file (hive.toml).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Directory of the embedded store (overrides [storage] data_dir and HIVE_DATA_DIR).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8700).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// NATS server URL: use JetStream KV instead of the embedded store.
    #[arg(long, value_name = "URL")]
    nats_url: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let flags = Overrides {
        data_dir: cli.data_dir,
        listen: cli.listen,
        nats_url: cli.nats_url,
    };
    let config = match Config::load(cli.config.as_deref(), |k| std::env::var(k).ok(), &flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hive-api: {e}");
            return ExitCode::from(2);
        }
    };
    // Held until main returns: dropping it flushes the log.
    let _log_guard = hive_api::telemetry::init(config.server.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hive-api: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(hive_api::node::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("hive-api: {message}");
            ExitCode::FAILURE
        }
    }
}
