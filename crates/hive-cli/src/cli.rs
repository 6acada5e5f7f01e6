//! The command line: every command and flag, with the help text `--help` shows.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::Format;

/// Hive's operator tool: set up a node, administer IAM and VPC networking, check the switch.
///
/// Works directly on the node's store: the embedded store in `--data-dir`, or JetStream with
/// `--nats-url`. Reads the same `hive.toml`, `HIVE_*` variables and secret files as `hive-api`
/// (later sources win: defaults < file < environment < secret files < flags).
#[derive(Debug, Parser)]
#[command(name = "hive-cli", version, propagate_version = true)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Configuration file (hive.toml).
    #[arg(long, global = true, value_name = "PATH", env = "HIVE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded store (overrides [storage] data_dir and HIVE_DATA_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// NATS server URL: use JetStream KV instead of the embedded store.
    #[arg(long, global = true, value_name = "URL")]
    pub nats_url: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// The IAM account to act in.
    #[arg(long, global = true, default_value = "000000000000", value_name = "ID")]
    pub account: String,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the KV buckets and bootstrap the account and its admin (idempotent).
    Init(InitArgs),
    /// Users, groups, roles, policies, access keys, simulation and linting.
    #[command(subcommand)]
    Iam(IamCommand),
    /// VPCs, subnets, security groups, interfaces, the compiled flow program and traces.
    #[command(subcommand)]
    Vpc(VpcCommand),
    /// Set up and reconcile the Open vSwitch bridge.
    #[command(subcommand)]
    Ovs(OvsCommand),
    /// Check everything the setup guide's verification sections check.
    Doctor(DoctorArgs),
    /// A whole Hive cluster in one box (root): NATS, nodes with Open vSwitch, VMs as
    /// namespaces, real packets.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Print a shell completion script (e.g. `hive-cli completions bash > /etc/bash_completion.d/hive-cli`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Also print the admin's secret access key on standard output (it is always written to
    /// `<data-dir>/admin-credentials`, mode 0600).
    #[arg(long)]
    pub show_secret: bool,
}

/// `iam ...`.
#[derive(Debug, Subcommand)]
pub enum IamCommand {
    /// Accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Users.
    #[command(subcommand)]
    User(UserCommand),
    /// Groups and membership.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Roles.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Managed policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Attach a managed policy to a user, group or role.
    Attach(AttachArgs),
    /// Detach a managed policy from a user, group or role.
    Detach(AttachArgs),
    /// Access keys.
    #[command(subcommand, name = "access-key")]
    AccessKey(AccessKeyCommand),
    /// Decide a request: principal + action + resource (+ context) -> allow/deny and why.
    Simulate(SimulateArgs),
    /// Validate a policy file with IAM's messages and warn about risky grants.
    Lint(LintArgs),
    /// Seal clear-text secrets written by hand, or rotate the encryption key.
    Reseal(ResealArgs),
}

/// `iam account ...`.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account with its administrator (policy, group, user, first access key).
    Create {
        /// The 12-digit account id.
        account_id: String,
        /// Where to write the administrator's credentials (default
        /// `<data-dir>/credentials-<account>`, mode 0600).
        #[arg(long, value_name = "PATH")]
        credentials_file: Option<PathBuf>,
    },
}

/// `--path-prefix` of the IAM list commands.
#[derive(Debug, Args)]
pub struct PathPrefix {
    /// Only entities whose path starts with this.
    #[arg(long, default_value = "/")]
    pub path_prefix: String,
}

/// A new user or group: its name and path.
#[derive(Debug, Args)]
pub struct NewEntity {
    /// The name.
    pub name: String,
    /// Path (`/team/`; default `/`).
    #[arg(long)]
    pub path: Option<String>,
}

/// `iam user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users.
    List(PathPrefix),
    /// Create a user.
    Create(NewEntity),
    /// Show a user with its groups, policies and keys.
    Show {
        /// User name.
        name: String,
    },
    /// Delete a user (it must have no keys, policies or groups left, as in IAM).
    Delete {
        /// User name.
        name: String,
    },
}

/// `iam group ...`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List groups.
    List(PathPrefix),
    /// Create a group.
    Create(NewEntity),
    /// Delete a group.
    Delete {
        /// Group name.
        name: String,
    },
    /// Add a user to a group.
    AddUser {
        /// Group name.
        group: String,
        /// User name.
        user: String,
    },
    /// Remove a user from a group.
    RemoveUser {
        /// Group name.
        group: String,
        /// User name.
        user: String,
    },
}

/// `iam role ...`.
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// List roles.
    List(PathPrefix),
    /// Create a role.
    Create {
        /// Role name.
        name: String,
        /// The trust policy (JSON file; `-` for standard input).
        #[arg(long, value_name = "FILE")]
        trust_policy: PathBuf,
        /// Path.
        #[arg(long)]
        path: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// Maximum session duration in seconds (3600-43200).
        #[arg(long)]
        max_session_duration: Option<u32>,
    },
    /// Delete a role.
    Delete {
        /// Role name.
        name: String,
    },
}

/// `iam policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// List the account's managed policies.
    List,
    /// Create a managed policy from a file (validated first, like `iam lint`).
    Create {
        /// Policy name.
        name: String,
        /// The policy document (JSON file; `-` for standard input).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Path.
        #[arg(long)]
        path: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Show a policy and its default version's document.
    Show {
        /// Policy ARN or name.
        policy: String,
    },
    /// Delete a policy (it must not be attached, as in IAM).
    Delete {
        /// Policy ARN or name.
        policy: String,
    },
}

/// The target of `iam attach` / `iam detach`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["user", "group", "role"])))]
pub struct AttachArgs {
    /// Policy ARN or name.
    #[arg(long)]
    pub policy: String,
    /// A user.
    #[arg(long)]
    pub user: Option<String>,
    /// A group.
    #[arg(long)]
    pub group: Option<String>,
    /// A role.
    #[arg(long)]
    pub role: Option<String>,
}

/// `iam access-key ...`.
#[derive(Debug, Subcommand)]
pub enum AccessKeyCommand {
    /// Create an access key for a user; the secret goes to a credentials file (mode 0600).
    Create {
        /// User name.
        user: String,
        /// Credentials file to write (AWS shared-credentials format); default
        /// `<data-dir>/credentials-<user>`.
        #[arg(long, value_name = "PATH")]
        credentials_file: Option<PathBuf>,
        /// Profile name in the credentials file (default: the user name).
        #[arg(long)]
        profile: Option<String>,
        /// Also print the secret on standard output.
        #[arg(long)]
        show_secret: bool,
    },
    /// List a user's access keys.
    List {
        /// User name.
        user: String,
    },
    /// Deactivate a key (requests signed with it are refused).
    Deactivate {
        /// Access key id.
        access_key_id: String,
    },
    /// Activate a key again.
    Activate {
        /// Access key id.
        access_key_id: String,
    },
    /// Delete a key.
    Delete {
        /// Access key id.
        access_key_id: String,
    },
    /// Import an existing key pair (migration): the secret is read from a file or standard
    /// input, never from the command line.
    Import {
        /// User name.
        user: String,
        /// The access key id (`AKIA` + 16 upper-case letters or digits).
        #[arg(long)]
        access_key_id: String,
        /// File holding the secret access key; without it, standard input is read.
        #[arg(long, value_name = "PATH")]
        secret_file: Option<PathBuf>,
    },
}

/// `iam simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The principal: a user or role ARN, or a user name.
    #[arg(long)]
    pub principal: String,
    /// The action (`iam:CreateUser`); repeat for several.
    #[arg(long = "action", required = true)]
    pub actions: Vec<String>,
    /// The resource ARN (default `*`).
    #[arg(long, default_value = "*")]
    pub resource: String,
    /// Context keys: `aws:SourceIp=10.0.1.5`; repeat for several; a key given twice has
    /// several values.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
}

/// `iam lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// The policy file (`-` for standard input).
    pub file: PathBuf,
    /// What kind of policy it is.
    #[arg(long, value_enum, default_value_t = PolicyKindArg::Identity)]
    pub kind: PolicyKindArg,
    /// Exit non-zero on warnings too.
    #[arg(long)]
    pub strict: bool,
}

/// Policy kinds for `iam lint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyKindArg {
    /// Identity-based (managed, inline, boundary, session).
    Identity,
    /// A role's trust policy.
    Trust,
    /// Resource-based.
    Resource,
}

/// `iam reseal`.
#[derive(Debug, Args)]
pub struct ResealArgs {
    /// Rotate: seal everything with the key in this file (64 hex characters; generated when
    /// the file does not exist). Point `[iam] encryption_key` / `HIVE_ENCRYPTION_KEY_FILE` at
    /// it afterwards.
    #[arg(long, value_name = "PATH")]
    pub new_key_file: Option<PathBuf>,
    /// Only list what would be resealed.
    #[arg(long)]
    pub dry_run: bool,
}

/// `vpc ...`.
#[derive(Debug, Subcommand)]
pub enum VpcCommand {
    /// List VPCs.
    List,
    /// Create a VPC.
    Create {
        /// IPv4 CIDR block (/16 to /28).
        #[arg(long)]
        cidr: String,
    },
    /// Delete a VPC (it must be empty, as in EC2).
    Delete {
        /// VPC id.
        vpc_id: String,
    },
    /// Subnets.
    #[command(subcommand)]
    Subnet(SubnetCommand),
    /// Security groups and their rules.
    #[command(subcommand, name = "sg")]
    SecurityGroup(SecurityGroupCommand),
    /// Network interfaces.
    #[command(subcommand, name = "eni")]
    Interface(InterfaceCommand),
    /// Print the compiled OpenFlow program of this node.
    Flows(FlowsArgs),
    /// Decide a described packet: allow or drop, and the rule that decided.
    Trace(TraceArgs),
    /// The live nodes of the cluster (node registry), their tunnel addresses and how many
    /// interfaces are bound on each.
    Nodes,
}

/// `--vpc-id` of the VPC list commands.
#[derive(Debug, Args)]
pub struct VpcFilter {
    /// Only this VPC's.
    #[arg(long)]
    pub vpc_id: Option<String>,
}

/// `vpc subnet ...`.
#[derive(Debug, Subcommand)]
pub enum SubnetCommand {
    /// List subnets.
    List(VpcFilter),
    /// Create a subnet.
    Create {
        /// VPC id.
        #[arg(long)]
        vpc_id: String,
        /// IPv4 CIDR block inside the VPC's.
        #[arg(long)]
        cidr: String,
    },
    /// Delete a subnet.
    Delete {
        /// Subnet id.
        subnet_id: String,
    },
}

/// `vpc sg ...`.
#[derive(Debug, Subcommand)]
pub enum SecurityGroupCommand {
    /// List security groups.
    List(VpcFilter),
    /// Create a security group.
    Create {
        /// VPC id.
        #[arg(long)]
        vpc_id: String,
        /// Group name.
        #[arg(long)]
        name: String,
        /// Description.
        #[arg(long, default_value = "created by hive-cli")]
        description: String,
    },
    /// Delete a security group.
    Delete {
        /// Group id.
        group_id: String,
    },
    /// List a group's rules.
    Rules {
        /// Group id.
        group_id: String,
    },
    /// Allow traffic: `--ingress` (default) or `--egress`.
    Allow(RuleArgs),
    /// Remove a rule: the same description as `allow`.
    Revoke(RuleArgs),
}

/// One security-group rule, as on the command line.
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// Group id.
    pub group_id: String,
    /// An egress rule instead of ingress.
    #[arg(long)]
    pub egress: bool,
    /// `tcp`, `udp`, `icmp` or `all`.
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// Port or range (`22`, `8000-8080`); ICMP: `type` or `type:code`.
    #[arg(long)]
    pub port: Option<String>,
    /// Peer CIDR.
    #[arg(long, conflicts_with = "source_group")]
    pub cidr: Option<String>,
    /// Peer security group id.
    #[arg(long)]
    pub source_group: Option<String>,
}

/// `vpc eni ...`.
#[derive(Debug, Subcommand)]
pub enum InterfaceCommand {
    /// List network interfaces.
    List {
        /// Only this subnet's.
        #[arg(long)]
        subnet_id: Option<String>,
    },
    /// Create a network interface.
    Create {
        /// Subnet id.
        #[arg(long)]
        subnet_id: String,
        /// Security group ids (default: the VPC's default group).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// A specific private address.
        #[arg(long)]
        private_ip: Option<String>,
    },
    /// Delete a network interface.
    Delete {
        /// Interface id.
        eni_id: String,
    },
}

/// `vpc flows`.
#[derive(Debug, Args)]
pub struct FlowsArgs {
    /// Compare with the live bridge instead of printing.
    #[arg(long)]
    pub diff: bool,
}

/// `vpc trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Sending interface (eni-...).
    #[arg(long)]
    pub from: String,
    /// Destination: an interface id or an IPv4 address.
    #[arg(long)]
    pub to: String,
    /// `tcp`, `udp` or `icmp`.
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// Destination port (TCP/UDP) or ICMP type.
    #[arg(long, default_value_t = 22)]
    pub port: u16,
    /// Also ask Open vSwitch (`ofproto/trace`) when it is reachable.
    #[arg(long)]
    pub ovs: bool,
}

/// `ovs ...`.
#[derive(Debug, Subcommand)]
pub enum OvsCommand {
    /// Create the bridge, its ports and the compiled flows, as the setup guide does by hand.
    Setup {
        /// Print the commands instead of running them.
        #[arg(long)]
        dry_run: bool,
        /// Also apply the host side (gateway address on hive-int0, ip_forward, NAT; needs
        /// root). Without it the host commands are printed for the operator to review.
        #[arg(long)]
        apply_host: bool,
    },
    /// Repair drift: make the bridge's flows equal the compiled program.
    Reconcile,
}

/// `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Skip the Open vSwitch checks (nodes without VPC networking).
    #[arg(long)]
    pub skip_ovs: bool,
}

/// Which lab: its name and, when not the default, its directory.
#[derive(Debug, Clone, Args)]
pub struct LabTarget {
    /// The lab's name (1 to 4 of [a-z0-9]); every namespace and veth it makes starts with
    /// `hl<NAME>`.
    #[arg(long, default_value = "dev")]
    pub name: String,
    /// The lab's directory (default: where `up` put it, else `/var/lib/hive/lab/NAME`).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `lab ...`.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab: a 3-node NATS JetStream cluster on loopback, N node namespaces each with
    /// its own Open vSwitch (netdev) and `hive-api`, an underlay and an outside network.
    Up(LabUpArgs),
    /// Remove everything the lab made: processes, namespaces, its directory (idempotent).
    Down(LabTarget),
    /// Nodes (hive-api, /health, flow count), NATS servers and VMs.
    Status(LabTarget),
    /// VMs: namespaces plugged into a node's switch as an ENI.
    #[command(subcommand)]
    Vm(LabVmCommand),
    /// Stop and start a node's processes (fault tests).
    #[command(subcommand)]
    Node(LabNodeCommand),
    /// Kill and start NATS servers (fault tests).
    #[command(subcommand)]
    Nats(LabNatsCommand),
}

/// `lab up`.
#[derive(Debug, Args)]
pub struct LabUpArgs {
    /// Which lab.
    #[command(flatten)]
    pub target: LabTarget,
    /// Number of nodes (1 to 16).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// No masquerade of 10.0.0.0/8 out of the nodes' uplinks (`[vpc] nat_enabled = false`).
    #[arg(long)]
    pub no_nat: bool,
    /// Enable the instance metadata address (`[vpc] metadata_enabled`).
    #[arg(long)]
    pub metadata: bool,
    /// The hive-api binary (default: next to hive-cli).
    #[arg(long, value_name = "PATH")]
    pub hive_api: Option<PathBuf>,
    /// The nats-server binary; the lab's 3-replica buckets need 2.10.20 or later (default:
    /// nats-server on PATH).
    #[arg(long, value_name = "PATH", env = "HIVE_NATS_SERVER_CURRENT")]
    pub nats_server: Option<PathBuf>,
}

/// `lab vm ...`.
#[derive(Debug, Subcommand)]
pub enum LabVmCommand {
    /// Plug a VM namespace for an ENI into node N (MAC, address, default route from the
    /// store); prints the VM's namespace.
    Create {
        /// Which lab.
        #[command(flatten)]
        target: LabTarget,
        /// The interface id.
        #[arg(long)]
        eni: String,
        /// The node (1..N).
        #[arg(long, default_value_t = 1)]
        node: usize,
    },
    /// Run a command inside the VM of an ENI; its exit code is ours.
    Exec {
        /// Which lab.
        #[command(flatten)]
        target: LabTarget,
        /// The interface id.
        eni: String,
        /// The command, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Unplug and delete the VM of an ENI.
    Delete {
        /// Which lab.
        #[command(flatten)]
        target: LabTarget,
        /// The interface id.
        eni: String,
    },
}

/// `lab node ...`.
#[derive(Debug, Subcommand)]
pub enum LabNodeCommand {
    /// The node is down: kill its hive-api and its Open vSwitch daemons.
    Stop {
        /// Which lab.
        #[command(flatten)]
        target: LabTarget,
        /// The node (1..N).
        node: usize,
    },
    /// Kill only the node's hive-api (its switch keeps its last program).
    KillApi {
        /// Which lab.
        #[command(flatten)]
        target: LabTarget,
        /// The node (1..N).
        node: usize,
    },
    /// Start whatever of the node is not running (Open vSwitch, then hive-api, same env).
    Start {
        /// Which lab.
        #[command(flatten)]
        target: LabTarget,
        /// The node (1..N).
        node: usize,
    },
}

/// `lab nats ...`.
#[derive(Debug, Subcommand)]
pub enum LabNatsCommand {
    /// Kill NATS server K (1 to 3), as a crash would.
    Kill {
        /// Which lab.
        #[command(flatten)]
        target: LabTarget,
        /// The server (1 to 3).
        server: usize,
    },
    /// Start NATS server K again on its ports and store.
    Start {
        /// Which lab.
        #[command(flatten)]
        target: LabTarget,
        /// The server (1 to 3).
        server: usize,
    },
}
