//! `hive-cli ovs ...`: the setup guide's bridge, ports and flows, done and checked by the tool
//! (or printed with `--dry-run`), and drift repair.

use std::time::Duration;

use serde_json::json;

use hive_node::netsync::{NetSyncOptions, SwitchFacts, compiled_program, read_switch_facts};
use hive_ovs::{DryRunSwitch, HostConfig, OvsSwitch, Switch, host_plan};

use crate::cli::OvsCommand;
use crate::context::Context;
use crate::error::CliError;

/// The host side (gateway address, forwarding, NAT) per `[vpc]`.
fn host(ctx: &Context) -> HostConfig {
    let vpc = &ctx.config.vpc;
    HostConfig {
        gateway: vpc.gateway_ip,
        prefix_len: vpc.default_subnet_cidr.prefix(),
        nat_enabled: vpc.nat_enabled,
        ..HostConfig::default()
    }
}

/// Run an `ovs` command.
pub async fn run(ctx: &Context, command: &OvsCommand) -> Result<(), CliError> {
    let store = ctx.store().await?;
    let repo = crate::commands::vpc::repo_on(ctx, store.as_ref()).await?;
    repo.bootstrap_default(&ctx.account, &ctx.config.vpc)
        .await?;
    let ovs = NetSyncOptions::from_config(&ctx.config.vpc).ovs;
    let plan = host_plan(&host(ctx))?;
    match command {
        OvsCommand::Setup { dry_run: true, .. } => {
            let switch = DryRunSwitch::new(ovs)?;
            switch.ensure_bridge()?;
            let program = compiled_program(&repo, &SwitchFacts::default(), &ctx.config.vpc)
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?;
            switch.install(&program)?;
            let script = format!(
                "# switch\n{}\n# host (as root)\n{plan}",
                switch.script().trim_end()
            );
            ctx.printer.message(
                script.trim_end(),
                &json!({"switch": switch.script(), "host": plan.to_string()}),
            );
        }
        OvsCommand::Setup {
            dry_run: false,
            apply_host,
        } => {
            let apply_host = *apply_host;
            let report = tokio::task::spawn_blocking(move || -> Result<_, CliError> {
                let switch = OvsSwitch::new(ovs)?;
                switch.check()?;
                let state = switch.ensure_bridge()?;
                let host_steps = apply_host.then(|| plan.apply(Duration::from_secs(10)));
                let facts = read_switch_facts(&switch)?;
                Ok((switch, state, facts, host_steps))
            })
            .await
            .map_err(|e| CliError::Failed(e.to_string()))??;
            let (switch, state, facts, host_steps) = report;
            let facts = crate::commands::vpc::with_remotes(ctx, store.as_ref(), facts).await?;
            let program = compiled_program(&repo, &facts, &ctx.config.vpc)
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?;
            let installed = tokio::task::spawn_blocking(move || switch.install(&program))
                .await
                .map_err(|e| CliError::Failed(e.to_string()))??;
            let host_text = match &host_steps {
                None => format!(
                    "host side (apply with --apply-host as root, or by hand):\n{}",
                    host_plan(&host(ctx))?
                ),
                Some(Ok(ran)) if ran.is_empty() => "host side already as planned".to_owned(),
                Some(Ok(ran)) => format!("host: {}", ran.join("; ")),
                Some(Err(e)) => format!(
                    "host side not applied ({e}); run as root, or by hand:\n{}",
                    host_plan(&host(ctx))?
                ),
            };
            ctx.printer.message(
                &format!(
                    "bridge {} ready (fail_mode {}, datapath {}), {installed} flows installed, {} bound port(s)\n{host_text}",
                    state.name,
                    state.fail_mode,
                    state.datapath_type,
                    facts.ports.len()
                ),
                &json!({"bridge": state.name, "fail_mode": state.fail_mode, "flows": installed, "bound_ports": facts.ports.len(), "host": host_text}),
            );
        }
        OvsCommand::Reconcile => {
            let (switch, facts) = tokio::task::spawn_blocking(move || -> Result<_, CliError> {
                let switch = OvsSwitch::new(ovs)?;
                switch.check()?;
                let facts = read_switch_facts(&switch)?;
                Ok((switch, facts))
            })
            .await
            .map_err(|e| CliError::Failed(e.to_string()))??;
            let facts = crate::commands::vpc::with_remotes(ctx, store.as_ref(), facts).await?;
            let program = compiled_program(&repo, &facts, &ctx.config.vpc)
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?;
            let report = tokio::task::spawn_blocking(move || switch.reconcile(&program))
                .await
                .map_err(|e| CliError::Failed(e.to_string()))??;
            ctx.printer.message(
                &if report.is_clean() {
                    "no drift: the bridge already matched the compiled program".to_owned()
                } else {
                    format!(
                        "repaired: {} missing flow(s) restored, {} rogue flow(s) removed, {} rewritten",
                        report.missing.len(),
                        report.rogue.len(),
                        report.changed.len()
                    )
                },
                &json!({"clean": report.is_clean(), "restored": report.missing.len(), "removed": report.rogue.len(), "rewritten": report.changed.len()}),
            );
        }
    }
    Ok(())
}
