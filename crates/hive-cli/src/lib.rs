//! # hive-cli — Hive's operator tool
//!
//! Replaces the setup guide's manual `ovs-vsctl`, `ovs-ofctl` and `nats kv` steps, checks
//! them, and administers everything the API does — composing the crates directly on the
//! embedded store (`--data-dir`) or JetStream (`--nats-url`), with the server's configuration
//! and precedence (`hive_node::config`).
//!
//! - `init`: buckets, the account and its admin (the server's own bootstrap), the default
//!   network.
//! - `iam`: accounts, users, groups, roles, policies, attachments, access keys (with `import`),
//!   `simulate` (the server's decision path), `lint` (`hive_iam::policy::lint`), `reseal`.
//! - `vpc`: VPCs, subnets, groups and rules, interfaces (the server's repository), `flows`
//!   (the program the switch sync would install; `--diff` against the bridge), `trace` (the
//!   reference model, and `ofproto/trace` with `--ovs`).
//! - `ovs setup` / `ovs reconcile`, `doctor`, `completions`.
//! - `lab`: a whole cluster in one box as root (NATS, node namespaces with Open vSwitch and
//!   `hive-api`, VMs as namespaces; see `commands::lab`).
//!
//! Output is a table for people and JSON with `--output json`; colour only on a terminal;
//! exit code 0 on success, 1 when a command fails or finds problems, 2 on usage errors.

pub mod cli;
pub mod commands;
pub mod context;
pub mod error;
pub mod output;

use clap::CommandFactory as _;

use crate::cli::{Cli, Command};
use crate::context::Context;
use crate::error::CliError;

/// Run the parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Completions { shell } = &cli.command {
        let mut command = Cli::command();
        clap_complete::generate(*shell, &mut command, "hive-cli", &mut std::io::stdout());
        return Ok(());
    }
    // The lab builds its own cluster: no node configuration or store of the caller's applies.
    if let Command::Lab(c) = &cli.command {
        return commands::lab::run(&output::Printer::new(cli.global.output), c)
            .await
            .map_err(Into::into);
    }
    let ctx = Context::load(&cli.global)?;
    match &cli.command {
        Command::Init(args) => commands::init::run(&ctx, args).await,
        Command::Iam(c) => commands::iam::run(&ctx, c).await,
        Command::Vpc(c) => commands::vpc::run(&ctx, c).await,
        Command::Ovs(c) => commands::ovs::run(&ctx, c).await,
        Command::Doctor(args) => commands::doctor::run(&ctx, args).await,
        Command::Completions { .. } | Command::Lab(_) => Ok(()),
    }
}
