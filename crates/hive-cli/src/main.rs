//! `hive-cli`: see the crate documentation and `hive-cli --help`.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = hive_cli::cli::Cli::parse();
    // Logs go to stderr and stay quiet unless asked for (RUST_LOG=info).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hive-cli: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(hive_cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The command's own exit code, passed through silently (`lab vm exec`).
        Err(hive_cli::error::CliError::Lab(hive_cli::commands::lab::LabError::Exit(code))) => {
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("hive-cli: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
