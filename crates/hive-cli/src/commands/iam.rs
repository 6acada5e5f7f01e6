//! `hive-cli iam ...`: the identity plane administered directly on the store, through the
//! same repository and policy engine the server uses.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use hive_iam::identity::{EntityKind, KeyStatus, Principal, arn, parse_arn};
use hive_iam::policy::lint::lint;
use hive_iam::policy::{DecisionEffect, PolicyKind};
use hive_iam::seal::{SealKey, SecretString};
use hive_iam_store::{IamRepo, Target};

use crate::cli::{
    AccessKeyCommand, AccountCommand, AttachArgs, GroupCommand, IamCommand, LintArgs, NewEntity,
    PathPrefix, PolicyCommand, PolicyKindArg, ResealArgs, RoleCommand, SimulateArgs, UserCommand,
};
use crate::context::Context;
use crate::error::{CliError, read_input};
use crate::output::{Format, Table};

/// Run an `iam` command.
pub async fn run(ctx: &Context, command: &IamCommand) -> Result<(), CliError> {
    // Linting needs no store.
    if let IamCommand::Lint(args) = command {
        return lint_file(ctx, args);
    }
    let iam = ctx.iam().await?;
    let acct = ctx.account.as_str();
    match command {
        IamCommand::Lint(_) => Ok(()),
        IamCommand::Account(AccountCommand::Create {
            account_id,
            credentials_file,
        }) => create_account(ctx, &iam, account_id, credentials_file.as_deref()).await,
        IamCommand::User(c) => user(ctx, &iam, acct, c).await,
        IamCommand::Group(c) => group(ctx, &iam, acct, c).await,
        IamCommand::Role(c) => role(ctx, &iam, acct, c).await,
        IamCommand::Policy(c) => policy(ctx, &iam, acct, c).await,
        IamCommand::Attach(a) => {
            let (target, policy_arn) = attach_target(acct, a);
            iam.attach_policy(acct, &target, &policy_arn).await?;
            done(
                ctx,
                &format!("attached {policy_arn}"),
                json!({"attached": policy_arn}),
            );
            Ok(())
        }
        IamCommand::Detach(a) => {
            let (target, policy_arn) = attach_target(acct, a);
            iam.detach_policy(acct, &target, &policy_arn).await?;
            done(
                ctx,
                &format!("detached {policy_arn}"),
                json!({"detached": policy_arn}),
            );
            Ok(())
        }
        IamCommand::AccessKey(c) => access_key(ctx, &iam, acct, c).await,
        IamCommand::Simulate(a) => simulate(ctx, &iam, acct, a).await,
        IamCommand::Reseal(a) => reseal(ctx, &iam, a).await,
    }
}

fn done(ctx: &Context, text: &str, json: Value) {
    ctx.printer.message(text, &json);
}

/// "created <arn>", or the new record as JSON.
fn created(ctx: &Context, arn: &str, record: &impl serde::Serialize) {
    let json = serde_json::to_value(record).unwrap_or(Value::Null);
    done(ctx, &format!("created {arn}"), json);
}

/// "deleted <kind> <name>", or `{"deleted": name}`.
fn deleted(ctx: &Context, kind: &str, name: &str) {
    done(
        ctx,
        &format!("deleted {kind} {name}"),
        json!({ "deleted": name }),
    );
}

/// A policy named by ARN or by name (in the account, path `/`).
fn policy_arn(acct: &str, policy: &str) -> String {
    if policy.starts_with("arn:") {
        policy.to_owned()
    } else {
        arn(acct, EntityKind::Policy, "/", policy)
    }
}

fn attach_target(acct: &str, a: &AttachArgs) -> (Target, String) {
    let target = match (&a.user, &a.group, &a.role) {
        (Some(u), _, _) => Target::User(u.clone()),
        (_, Some(g), _) => Target::Group(g.clone()),
        (_, _, Some(r)) => Target::Role(r.clone()),
        // clap's ArgGroup requires exactly one of them.
        _ => Target::User(String::new()),
    };
    (target, policy_arn(acct, &a.policy))
}

async fn create_account(
    ctx: &Context,
    iam: &IamRepo,
    account_id: &str,
    credentials_file: Option<&Path>,
) -> Result<(), CliError> {
    let path = credentials_file.map(Path::to_owned).unwrap_or_else(|| {
        ctx.config
            .storage
            .data_dir
            .join(format!("credentials-{account_id}"))
    });
    let profile = format!("hive-{account_id}");
    // The credentials file is written before the account is recorded as bootstrapped.
    let claimant = hive_node::bootstrap::Claimant::for_node(&ctx.config);
    let made = hive_node::bootstrap::bootstrap_account(iam, account_id, &claimant, |key| {
        let id = &key.record.access_key_id;
        write_credentials(&path, &profile, id, &key.secret_access_key).map(|()| id.clone())
    })
    .await?;
    match made {
        None => done(
            ctx,
            &format!("account {account_id} exists already; nothing changed"),
            json!({"account_id": account_id, "created": false}),
        ),
        Some(access_key_id) => done(
            ctx,
            &format!(
                "created account {account_id} with user admin (group administrators, policy AdministratorAccess); credentials in {} (profile {profile})",
                path.display()
            ),
            json!({"account_id": account_id, "created": true, "access_key_id": access_key_id, "credentials_file": path, "profile": profile}),
        ),
    }
    Ok(())
}

/// Write one profile in AWS shared-credentials format, mode 0600, never replacing a file.
fn write_credentials(
    path: &Path,
    profile: &str,
    access_key_id: &str,
    secret: &SecretString,
) -> Result<(), CliError> {
    let text = zeroize::Zeroizing::new(format!(
        "[{profile}]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {}\n",
        secret.expose()
    ));
    hive_node::bootstrap::write_exclusive(path, text.as_bytes()).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::usage(
                format!("{} exists already", path.display()),
                "choose another file with --credentials-file",
            )
        } else {
            CliError::File {
                path: path.to_owned(),
                source,
            }
        }
    })
}

async fn user(ctx: &Context, iam: &IamRepo, acct: &str, c: &UserCommand) -> Result<(), CliError> {
    match c {
        UserCommand::List(PathPrefix { path_prefix }) => {
            let users = iam.list_users(acct, Some(path_prefix)).await?;
            let mut t = Table::new(["NAME", "USER ID", "ARN", "GROUPS", "KEYS", "CREATED"]);
            for u in &users {
                t.row([
                    u.username.clone(),
                    u.user_id.clone(),
                    u.arn.clone(),
                    u.groups.join(","),
                    u.access_keys.len().to_string(),
                    timestamp(u.created_at),
                ]);
            }
            ctx.printer.emit(&t, &users);
        }
        UserCommand::Create(NewEntity { name, path }) => {
            let u = iam
                .create_user(acct, name, path.as_deref(), Vec::new())
                .await?;
            created(ctx, &u.arn, &u);
        }
        UserCommand::Show { name } => {
            let u = iam.get_user(acct, name).await?;
            let mut t = Table::new(["FIELD", "VALUE"]);
            t.row(["name", u.username.as_str()])
                .row(["arn", u.arn.as_str()])
                .row(["user id", u.user_id.as_str()])
                .row(["path", u.path.as_str()])
                .row(["groups", u.groups.join(", ").as_str()])
                .row(["policies", u.policies.join(", ").as_str()])
                .row([
                    "inline policies",
                    u.inline_policies
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                        .as_str(),
                ])
                .row(["access keys", u.access_keys.join(", ").as_str()])
                .row([
                    "permissions boundary",
                    u.permissions_boundary.as_deref().unwrap_or("-"),
                ])
                .row(["created", timestamp(u.created_at).as_str()]);
            ctx.printer.emit(&t, &u);
        }
        UserCommand::Delete { name } => {
            iam.delete_user(acct, name).await?;
            deleted(ctx, "user", name);
        }
    }
    Ok(())
}

async fn group(ctx: &Context, iam: &IamRepo, acct: &str, c: &GroupCommand) -> Result<(), CliError> {
    match c {
        GroupCommand::List(PathPrefix { path_prefix }) => {
            let groups = iam.list_groups(acct, Some(path_prefix)).await?;
            let mut t = Table::new(["NAME", "ARN", "MEMBERS", "POLICIES"]);
            for g in &groups {
                t.row([
                    g.group_name.clone(),
                    g.arn.clone(),
                    g.members.join(","),
                    g.policies.join(","),
                ]);
            }
            ctx.printer.emit(&t, &groups);
        }
        GroupCommand::Create(NewEntity { name, path }) => {
            let g = iam.create_group(acct, name, path.as_deref()).await?;
            created(ctx, &g.arn, &g);
        }
        GroupCommand::Delete { name } => {
            iam.delete_group(acct, name).await?;
            deleted(ctx, "group", name);
        }
        GroupCommand::AddUser { group, user } => {
            iam.add_user_to_group(acct, group, user).await?;
            done(
                ctx,
                &format!("added {user} to {group}"),
                json!({"group": group, "added": user}),
            );
        }
        GroupCommand::RemoveUser { group, user } => {
            iam.remove_user_from_group(acct, group, user).await?;
            done(
                ctx,
                &format!("removed {user} from {group}"),
                json!({"group": group, "removed": user}),
            );
        }
    }
    Ok(())
}

async fn role(ctx: &Context, iam: &IamRepo, acct: &str, c: &RoleCommand) -> Result<(), CliError> {
    match c {
        RoleCommand::List(PathPrefix { path_prefix }) => {
            let roles = iam.list_roles(acct, Some(path_prefix)).await?;
            let mut t = Table::new(["NAME", "ROLE ID", "ARN", "MAX SESSION", "POLICIES"]);
            for r in &roles {
                t.row([
                    r.role_name.clone(),
                    r.role_id.clone(),
                    r.arn.clone(),
                    format!("{} s", r.max_session_duration),
                    r.policies.join(","),
                ]);
            }
            ctx.printer.emit(&t, &roles);
        }
        RoleCommand::Create {
            name,
            trust_policy,
            path,
            description,
            max_session_duration,
        } => {
            let doc = read_input(trust_policy)?;
            let r = iam
                .create_role(
                    acct,
                    name,
                    path.as_deref(),
                    &doc,
                    description.as_deref(),
                    *max_session_duration,
                    Vec::new(),
                )
                .await?;
            created(ctx, &r.arn, &r);
        }
        RoleCommand::Delete { name } => {
            iam.delete_role(acct, name).await?;
            deleted(ctx, "role", name);
        }
    }
    Ok(())
}

async fn policy(
    ctx: &Context,
    iam: &IamRepo,
    acct: &str,
    c: &PolicyCommand,
) -> Result<(), CliError> {
    match c {
        PolicyCommand::List => {
            let policies = iam.list_policies(acct, None).await?;
            let mut t = Table::new(["NAME", "ARN", "DEFAULT", "ATTACHMENTS"]);
            for p in &policies {
                t.row([
                    p.policy_name.clone(),
                    p.arn.clone(),
                    p.default_version_id().to_owned(),
                    p.attachments.len().to_string(),
                ]);
            }
            ctx.printer.emit(&t, &policies);
        }
        PolicyCommand::Create {
            name,
            file,
            path,
            description,
        } => {
            let doc = read_input(file)?;
            let report = lint(&doc, PolicyKind::Identity);
            if let Some(e) = report.error {
                return Err(CliError::usage(
                    format!("{}: {}", e.code, e.message),
                    format!(
                        "check the document with: hive-cli iam lint {}",
                        file.display()
                    ),
                ));
            }
            for w in &report.warnings {
                eprintln!("warning [{}]: {}", w.rule, w.message);
            }
            let p = iam
                .create_policy(
                    acct,
                    name,
                    path.as_deref(),
                    &doc,
                    description.as_deref(),
                    Vec::new(),
                )
                .await?;
            created(ctx, &p.arn, &p);
        }
        PolicyCommand::Show { policy } => {
            let p = iam.get_policy(&policy_arn(acct, policy)).await?;
            match ctx.printer.format {
                Format::Json => ctx.printer.json(&p),
                Format::Table => {
                    let mut t = Table::new(["FIELD", "VALUE"]);
                    t.row(["name", p.policy_name.as_str()])
                        .row(["arn", p.arn.as_str()])
                        .row(["default version", p.default_version_id()])
                        .row(["attached to", p.attachments.join(", ").as_str()]);
                    ctx.printer.emit(&t, &p);
                    if let Some(v) = p.default_version() {
                        done(ctx, &v.document, Value::Null);
                    }
                }
            }
        }
        PolicyCommand::Delete { policy } => {
            let arn = policy_arn(acct, policy);
            iam.delete_policy(&arn).await?;
            done(ctx, &format!("deleted {arn}"), json!({"deleted": arn}));
        }
    }
    Ok(())
}

async fn access_key(
    ctx: &Context,
    iam: &IamRepo,
    acct: &str,
    c: &AccessKeyCommand,
) -> Result<(), CliError> {
    match c {
        AccessKeyCommand::Create {
            user,
            credentials_file,
            profile,
            show_secret,
        } => {
            let key = iam.create_access_key(acct, user).await?;
            let path = credentials_file.clone().unwrap_or_else(|| {
                ctx.config
                    .storage
                    .data_dir
                    .join(format!("credentials-{user}"))
            });
            let profile = profile.clone().unwrap_or_else(|| user.clone());
            let id = key.record.access_key_id.clone();
            if let Err(e) = write_credentials(&path, &profile, &id, &key.secret_access_key) {
                // Nobody could ever use the key: take it back.
                let _ = iam.delete_access_key(acct, user, &id).await;
                return Err(e);
            }
            let secret = show_secret.then(|| key.secret_access_key.expose().to_owned());
            let mut text = format!(
                "created access key {id} for {user}; credentials in {} (profile {profile})",
                path.display()
            );
            if let Some(s) = &secret {
                text.push_str(&format!("\nsecret access key: {s}"));
            }
            done(
                ctx,
                &text,
                json!({"access_key_id": id, "user": user, "credentials_file": path, "profile": profile, "secret_access_key": secret}),
            );
        }
        AccessKeyCommand::List { user } => {
            let keys = iam.list_access_keys(acct, user).await?;
            let mut t = Table::new(["ACCESS KEY ID", "STATUS", "CREATED", "LAST USED", "SEALED"]);
            let mut out = Vec::new();
            for k in &keys {
                let last = k
                    .last_used
                    .as_ref()
                    .map(|l| timestamp(l.time))
                    .unwrap_or_else(|| "never".into());
                let sealed = k.secret_access_key_sealed.is_some() && k.secret_access_key.is_none();
                t.row([
                    k.access_key_id.clone(),
                    k.status.as_str().to_owned(),
                    timestamp(k.created_at),
                    last.clone(),
                    if sealed {
                        "yes".into()
                    } else {
                        "NO: run hive-cli iam reseal".to_owned()
                    },
                ]);
                // Never the sealed or clear secret, not even in JSON.
                out.push(json!({"access_key_id": k.access_key_id, "user": k.username, "status": k.status.as_str(), "created_at": timestamp(k.created_at), "last_used": last, "sealed": sealed}));
            }
            ctx.printer.emit(&t, &out);
        }
        AccessKeyCommand::Deactivate { access_key_id } => {
            set_status(ctx, iam, acct, access_key_id, KeyStatus::Inactive).await?;
        }
        AccessKeyCommand::Activate { access_key_id } => {
            set_status(ctx, iam, acct, access_key_id, KeyStatus::Active).await?;
        }
        AccessKeyCommand::Delete { access_key_id } => {
            let k = iam.get_access_key(acct, access_key_id).await?;
            iam.delete_access_key(acct, &k.username, access_key_id)
                .await?;
            done(
                ctx,
                &format!("deleted access key {access_key_id}"),
                json!({"deleted": access_key_id}),
            );
        }
        AccessKeyCommand::Import {
            user,
            access_key_id,
            secret_file,
        } => {
            let path = secret_file.clone().unwrap_or_else(|| PathBuf::from("-"));
            let text = zeroize::Zeroizing::new(read_input(&path)?);
            let secret = SecretString::new(text.trim());
            let key = iam
                .import_access_key(acct, user, access_key_id, secret)
                .await?;
            done(
                ctx,
                &format!(
                    "imported access key {} for {user} (sealed)",
                    key.record.access_key_id
                ),
                json!({"access_key_id": key.record.access_key_id, "user": user}),
            );
        }
    }
    Ok(())
}

async fn set_status(
    ctx: &Context,
    iam: &IamRepo,
    acct: &str,
    access_key_id: &str,
    status: KeyStatus,
) -> Result<(), CliError> {
    let k = iam.get_access_key(acct, access_key_id).await?;
    iam.update_access_key(acct, &k.username, access_key_id, status)
        .await?;
    done(
        ctx,
        &format!("access key {access_key_id} is {}", status.as_str()),
        json!({"access_key_id": access_key_id, "status": status.as_str()}),
    );
    Ok(())
}

/// The principal named on the command line: a user or role ARN, or a user name.
async fn principal(iam: &IamRepo, acct: &str, name: &str) -> Result<Principal, CliError> {
    let (kind, entity) = if name.starts_with("arn:") {
        match parse_arn(name) {
            Some(p) if matches!(p.kind, EntityKind::User | EntityKind::Role) => (p.kind, p.name),
            _ => {
                return Err(CliError::usage(
                    format!("{name} is not a user or role ARN"),
                    "pass arn:aws:iam::<account>:user/<name>, arn:aws:iam::<account>:role/<name> or a user name",
                ));
            }
        }
    } else {
        (EntityKind::User, name.to_owned())
    };
    Ok(if kind == EntityKind::User {
        let u = iam.get_user(acct, &entity).await?;
        Principal::User {
            account_id: u.account_id,
            username: u.username,
            user_id: u.user_id,
            arn: u.arn,
        }
    } else {
        let r = iam.get_role(acct, &entity).await?;
        Principal::AssumedRole {
            account_id: r.account_id,
            role_name: r.role_name,
            role_id: r.role_id,
            session_name: "hive-cli-simulate".into(),
            role_arn: r.arn,
        }
    })
}

async fn simulate(
    ctx: &Context,
    iam: &IamRepo,
    acct: &str,
    a: &SimulateArgs,
) -> Result<(), CliError> {
    let who = principal(iam, acct, &a.principal).await?;
    let compiled = iam
        .effective_policies(&who, None)
        .await?
        .compile()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let mut context: Vec<(String, Vec<String>)> = Vec::new();
    for kv in &a.context {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(CliError::usage(
                format!("--context {kv}: expected KEY=VALUE"),
                "for example --context aws:SourceIp=10.0.1.5",
            ));
        };
        match context.iter_mut().find(|(key, _)| key == k) {
            Some((_, values)) => values.push(v.to_owned()),
            None => context.push((k.to_owned(), vec![v.to_owned()])),
        }
    }
    let mut t = Table::new(["ACTION", "RESOURCE", "DECISION", "DECIDED BY"]);
    let mut out = Vec::new();
    let mut denied = false;
    for action in &a.actions {
        let mut req = hive_iam::request::request_context(
            &who,
            &[] as &[(String, String)],
            action,
            &a.resource,
            &hive_iam::request::Environment::at(time::OffsetDateTime::now_utc()),
        );
        for (k, values) in &context {
            req.set_values(k, values.iter().map(String::as_str));
        }
        let decision = compiled.authorize(&req);
        let word = match decision.effect {
            DecisionEffect::Allow => "allowed",
            DecisionEffect::ExplicitDeny => "explicitDeny",
            DecisionEffect::ImplicitDeny => "implicitDeny",
        };
        denied |= decision.effect != DecisionEffect::Allow;
        let statements: Vec<Value> = decision
            .matched
            .iter()
            .map(|m| json!({"policy": m.policy.to_string(), "sid": m.sid.as_deref(), "statement": m.index, "effect": m.effect.as_str()}))
            .collect();
        let by = decision
            .matched
            .iter()
            .map(|m| match &m.sid {
                Some(sid) => format!("{} ({sid})", m.policy),
                None => format!("{} (statement {})", m.policy, m.index),
            })
            .collect::<Vec<_>>()
            .join("; ");
        let message = decision.access_denied_message(&who.arn(), action, &a.resource);
        t.row([
            action.clone(),
            a.resource.clone(),
            word.to_owned(),
            if by.is_empty() {
                message.clone().unwrap_or_default()
            } else {
                by
            },
        ]);
        out.push(json!({"action": action, "resource": a.resource, "decision": word, "matched_statements": statements, "message": message}));
    }
    ctx.printer
        .emit(&t, &json!({"principal": who.arn(), "results": out}));
    if denied {
        return Err(CliError::Failed("denied".into()));
    }
    Ok(())
}

fn lint_file(ctx: &Context, a: &LintArgs) -> Result<(), CliError> {
    let text = read_input(&a.file)?;
    let kind = match a.kind {
        PolicyKindArg::Identity => PolicyKind::Identity,
        PolicyKindArg::Trust => PolicyKind::Trust,
        PolicyKindArg::Resource => PolicyKind::Resource,
    };
    let report = lint(&text, kind);
    let mut t = Table::new(["LEVEL", "RULE", "STATEMENT", "MESSAGE"]);
    if let Some(e) = &report.error {
        t.row(["error", e.code, "-", e.message.as_str()]);
    }
    for w in &report.warnings {
        let at = match (&w.sid, w.statement) {
            (Some(sid), _) => sid.clone(),
            (None, Some(i)) => format!("#{i}"),
            (None, None) => "-".into(),
        };
        t.row([
            "warning".to_owned(),
            w.rule.id().to_owned(),
            at,
            w.message.clone(),
        ]);
    }
    let json = json!({
        "file": a.file,
        "valid": report.is_valid(),
        "error": report.error.as_ref().map(|e| json!({"code": e.code, "message": e.message})),
        "warnings": report.warnings.iter().map(|w| json!({"rule": w.rule.id(), "statement": w.statement, "sid": w.sid, "message": w.message})).collect::<Vec<_>>(),
    });
    if t.is_empty() {
        ctx.printer
            .message(&format!("{}: valid, no warnings", a.file.display()), &json);
    } else {
        ctx.printer.emit(&t, &json);
    }
    if let Some(e) = report.error {
        return Err(CliError::Failed(format!("{}: {}", e.code, e.message)));
    }
    if a.strict && !report.warnings.is_empty() {
        return Err(CliError::Failed(format!(
            "{} warning(s) with --strict",
            report.warnings.len()
        )));
    }
    Ok(())
}

async fn reseal(ctx: &Context, iam: &IamRepo, a: &ResealArgs) -> Result<(), CliError> {
    // Rotation: the new key seals, the current one still opens what it sealed.
    let rotated;
    let iam = match &a.new_key_file {
        None => iam,
        Some(path) => {
            let new_key = if path.exists() {
                SealKey::from_file(path).map_err(|e| {
                    CliError::usage(
                        format!("{}: {e}", path.display()),
                        "the key file must hold 64 hex characters",
                    )
                })?
            } else {
                let (key, hex) = SealKey::generate(&mut rand::rngs::OsRng);
                let text = zeroize::Zeroizing::new(format!("{}\n", hex.expose()));
                hive_node::bootstrap::write_exclusive(path, text.as_bytes()).map_err(|source| {
                    CliError::File {
                        path: path.clone(),
                        source,
                    }
                })?;
                key
            };
            let current = hive_node::bootstrap::load_keyring(&ctx.config)?;
            let store = ctx.store().await?;
            let buckets = ctx
                .config
                .iam
                .bucket_names()
                .open_all(store.as_ref(), ctx.config.storage.replicas)
                .await?;
            rotated = IamRepo::new(buckets, current.rotate(new_key));
            &rotated
        }
    };
    let pending = iam.keys_needing_reseal().await?;
    if a.dry_run {
        let mut t = Table::new(["ACCESS KEY ID"]);
        for id in &pending {
            t.row([id.as_str()]);
        }
        ctx.printer.emit(&t, &json!({"pending": pending}));
        return Ok(());
    }
    let bar = progress(ctx, pending.len() as u64, "resealing");
    let mut resealed = 0usize;
    for id in &pending {
        if iam.reseal_key(id).await? {
            resealed += 1;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut text = format!("resealed {resealed} of {} access keys", pending.len());
    if let Some(path) = &a.new_key_file {
        text.push_str(&format!(
            "; now point HIVE_ENCRYPTION_KEY_FILE (or [iam] encryption_key) of every hive-api at {} and restart them",
            path.display()
        ));
    }
    done(
        ctx,
        &text,
        json!({"resealed": resealed, "checked": pending.len()}),
    );
    Ok(())
}

/// A progress bar on a terminal; nothing in JSON mode or when stderr is not a terminal.
fn progress(ctx: &Context, len: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if ctx.printer.format == Format::Json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}") {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// RFC 3339, for tables and JSON.
pub fn timestamp(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
