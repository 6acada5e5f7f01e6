//! `hive-cli init`: the guide's buckets and the account's administrator, exactly as
//! `hive-api` does on its first start (the same functions), and idempotent.

use serde_json::json;

use hive_node::bootstrap::{AdminBootstrap, Claimant, bootstrap_admin};

use crate::cli::InitArgs;
use crate::context::Context;
use crate::error::CliError;
use crate::output::Table;

/// Run `init`.
pub async fn run(ctx: &Context, args: &InitArgs) -> Result<(), CliError> {
    let store = ctx.store().await?;
    let iam = ctx.iam_on(store.as_ref()).await?;
    let data_dir = &ctx.config.storage.data_dir;
    let claimant = Claimant::for_node(&ctx.config);
    let outcome = bootstrap_admin(&iam, data_dir, &claimant).await?;
    let vpc = crate::commands::vpc::init_default(ctx, store.clone()).await?;

    let names = ctx.config.iam.bucket_names();
    let mut table = Table::new(["BUCKET", "HISTORY", "TTL"]);
    let mut buckets = Vec::new();
    for b in names.configs(ctx.config.storage.replicas) {
        let ttl = b.ttl.map(|t| format!("{} s", t.as_secs()));
        table.row([
            b.name.clone(),
            b.history.to_string(),
            ttl.clone().unwrap_or_else(|| "-".into()),
        ]);
        buckets.push(json!({"name": b.name, "history": b.history, "ttl_seconds": b.ttl.map(|t| t.as_secs())}));
    }
    let (admin_line, admin_json) = match &outcome {
        AdminBootstrap::Created {
            path,
            access_key_id,
        } => (
            format!(
                "bootstrapped account {}: user admin, access key {access_key_id}; credentials written to {} (profile {})",
                hive_node::bootstrap::ACCOUNT_ID,
                path.display(),
                hive_node::bootstrap::ADMIN_PROFILE
            ),
            json!({"created": true, "access_key_id": access_key_id, "credentials_file": path}),
        ),
        AdminBootstrap::AlreadyDone => (
            format!(
                "account {} already bootstrapped; nothing changed",
                hive_node::bootstrap::ACCOUNT_ID
            ),
            json!({"created": false}),
        ),
    };
    let secret = match (&outcome, args.show_secret) {
        (AdminBootstrap::Created { path, .. }, true) => {
            Some(zeroize::Zeroizing::new(crate::error::read_input(path)?))
        }
        (AdminBootstrap::AlreadyDone, true) => {
            return Err(CliError::usage(
                "the administrator's secret was shown once, when it was created",
                format!(
                    "read {} or create a new key: hive-cli iam access-key create admin",
                    data_dir
                        .join(hive_node::bootstrap::ADMIN_CREDENTIALS_FILE)
                        .display()
                ),
            ));
        }
        _ => None,
    };
    let doc = json!({
        "store": ctx.config.storage.nats_url.as_deref().unwrap_or("embedded"),
        "data_dir": data_dir,
        "buckets": buckets,
        "admin": admin_json,
        "default_vpc": vpc,
        "credentials": secret.as_deref().map(|s| s.as_str()),
    });
    match ctx.printer.format {
        crate::output::Format::Json => ctx.printer.json(&doc),
        crate::output::Format::Table => {
            ctx.printer.emit(&table, &doc);
            ctx.printer.message(&admin_line, &doc);
            if let Some(v) = vpc.as_str() {
                ctx.printer.message(v, &doc);
            }
            if let Some(s) = &secret {
                ctx.printer.message(s.trim_end(), &doc);
            }
        }
    }
    Ok(())
}
