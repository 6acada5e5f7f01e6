//! The network repository: VPCs, subnets, security groups and network interfaces stored in KV
//! buckets through the `hive-kv` port, with AWS's rules. hive-api's EC2 actions call it, and the
//! switch sync rebuilds the node's program from it ([`VpcRepo::node_state`], [`VpcRepo::watch`]).
//!
//! ## Layout
//!
//! | bucket (default name) | key | value |
//! |---|---|---|
//! | `hive-vpc-vpcs` | `<account>.<vpc-id>` | the [`Vpc`] with its subnets' blocks and its groups' names |
//! | `hive-vpc-subnets` | `<account>.<subnet-id>` | [`Subnet`], with its address bitmap (IPAM) |
//! | `hive-vpc-security-groups` | `<account>.<sg-id>` | [`SecurityGroup`] with its rules, and a `deleting` mark |
//! | `hive-vpc-interfaces` | `<account>.<eni-id>` | [`NetworkInterface`] |
//! | `hive-vpc-allocations` | `vlans` | [`VlanPool`]: the user VLANs (2..=4094) held, cluster-wide |
//! | `hive-vpc-allocations` | `mac.<12 hex digits>` | the interface holding that MAC |
//! | `hive-vpc-allocations` | `default-vlan` | the account whose default VPC has VLAN 1 |
//! | `hive-vpc-allocations` | `default.<account>` | the account's default network, as first made |
//!
//! Records are JSON (`nats kv get hive-vpc-vpcs <key>` shows them): a VPC record is
//! `{"vpc": {..}, "subnets": {"<subnet-id>": "<cidr>"}, "groups": {"<sg-id>": "<lower-case
//! name>"}}`, a group record `{"group": {..}}` (plus `"deleting": true` while a deletion checks
//! its uses); subnets and interfaces are stored as their model types. Every record bucket keeps
//! [`RECORD_HISTORY`] revisions per key; names are configurable ([`VpcBucketNames`]).
//! VLANs and MACs are cluster-wide because the switch is; everything else is account-scoped: a
//! resource of another account is `Invalid*ID.NotFound`, as on AWS.
//!
//! ## Consistency
//!
//! Every read-modify-write is a compare-and-swap with bounded retry ([`CAS_RETRIES`]; then
//! `RequestLimitExceeded`, which AWS SDKs retry), and deletions happen at the revision that was
//! checked. The serialization points are:
//! - the VLAN pool key: two processes never hold the same VLAN;
//! - a subnet's record: its address bitmap is taken and released with CAS on the record, so
//!   addresses are unique, and `DeleteSubnet` deletes at a revision with no address taken;
//! - a VPC's record: it lists its subnets' blocks and its groups' names, so overlapping subnets
//!   (`InvalidSubnet.Conflict`) and duplicate group names (`InvalidGroup.Duplicate`) are refused
//!   even when created concurrently, and `DeleteVpc` deletes at a revision with no subnet and no
//!   group but the default one (interfaces live in subnets, so none is left either);
//! - a group's `deleting` mark: `DeleteSecurityGroup` sets it before looking for interfaces and
//!   rules that use the group, while every new use (an interface's groups, a rule's peer) is
//!   written first and checked against the mark after; one side always sees the other, and a
//!   new use that sees the mark is rolled back (`InvalidGroup.NotFound`, also when that
//!   deletion then fails: a conservative answer to a true race).
//!
//! Multi-record changes allocate first and publish last, and undo in reverse on error:
//! `CreateVpc` takes a VLAN, writes the default group, then the VPC; `CreateNetworkInterface`
//! reserves a MAC, takes an address, then writes the interface; deletions go the other way. A
//! crash between steps can leak an allocation (a VLAN or an address stays taken, a VPC keeps a
//! reservation and refuses deletion) but never hands one out twice or leaves a record that
//! points at nothing the switch would need.
//!
//! ## The switch
//!
//! [`VpcRepo::node_state`] builds the compiler's [`NodeState`] from the stored state alone (all
//! accounts: the bridge is shared) and the switch facts the caller gives ([`NodeBindings`]):
//! which interface is plugged into which OpenFlow port, the gateway port, metadata. Records that
//! do not hang together (a port whose interface is gone, a group of another VPC) are left out,
//! which the compiled program turns into drops. [`VpcRepo::watch`] reports every later change.
//!
//! ```
//! use hive_kv::memory::MemoryStore;
//! use hive_vpc::config::VpcConfig;
//! use hive_vpc::eni::CreateInterface;
//! use hive_vpc_store::{NodeBindings, RepoOptions, VpcRepo};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let repo = VpcRepo::open(&store, &RepoOptions::default()).await?;
//! let account = "000000000000";
//! repo.bootstrap_default(account, &VpcConfig::default()).await?;
//!
//! let new = repo.create_vpc(account, "10.1.0.0/16", &[]).await?;
//! assert_eq!(new.vpc.vlan, 2);
//! let subnet = repo.create_subnet(account, &new.vpc.id, "10.1.1.0/24", None, &[]).await?;
//! let eni = repo
//!     .create_network_interface(account, &subnet.id, &CreateInterface::default(), &[])
//!     .await?;
//! assert_eq!(eni.private_ip.to_string(), "10.1.1.4");
//! assert_eq!(eni.groups, vec![new.default_group.id.clone()]);
//!
//! // The switch plugs the interface into OpenFlow port 7: the compiler gets it from KV.
//! let mut bindings = NodeBindings::default();
//! bindings.ports.insert(eni.id.clone(), 7);
//! let state = repo.node_state(&bindings).await?;
//! assert_eq!(state.ports.len(), 1);
//!
//! let err = repo.delete_subnet(account, &subnet.id).await.unwrap_err();
//! assert_eq!(err.code(), "DependencyViolation");
//! # Ok::<(), hive_vpc::error::VpcError>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use hive_kv::{
    Bucket, BucketConfig, KvError, KvStore, Operation, TypedBucket, Versioned, WatchFrom,
};
use ipnetwork::Ipv4Network;
use rand::rngs::OsRng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use hive_vpc::cidr::{check_subnet_cidr, parse_cidr, parse_vpc_cidr};
use hive_vpc::compile::{GatewayPort, LocalPort, NodeState, SubnetSpec, VpcSpec};
use hive_vpc::config::VpcConfig;
use hive_vpc::eni::{CreateInterface, allocate_mac, resolve_groups};
use hive_vpc::error::VpcError;
use hive_vpc::model::{
    Direction, InterfaceStatus, MacAddr, NetworkInterface, NetworkInterfaceId, Peer, SecurityGroup,
    SecurityGroupId, SecurityGroupRule, SecurityGroupRuleId, Subnet, SubnetId, Vpc, VpcId,
};
use hive_vpc::security_group::{
    self, DEFAULT_GROUP_NAME, Revoked, RuleSpec, check_group_deletable, check_peer_groups,
    default_security_group, new_security_group,
};
use hive_vpc::vlan::{DEFAULT_VPC_VLAN, VlanPool};
use hive_vpc::vpc::{DefaultNetwork, NewVpc, check_subnet_deletable, default_network};

pub mod nodes;
mod switch;
mod tags;

/// Default name of the VPCs bucket.
pub const DEFAULT_VPCS_BUCKET: &str = "hive-vpc-vpcs";
/// Default name of the subnets bucket.
pub const DEFAULT_SUBNETS_BUCKET: &str = "hive-vpc-subnets";
/// Default name of the security groups bucket.
pub const DEFAULT_SECURITY_GROUPS_BUCKET: &str = "hive-vpc-security-groups";
/// Default name of the network interfaces bucket.
pub const DEFAULT_INTERFACES_BUCKET: &str = "hive-vpc-interfaces";
/// Default name of the allocations bucket (VLAN pool, MAC reservations, default network).
pub const DEFAULT_ALLOCATIONS_BUCKET: &str = "hive-vpc-allocations";
/// Revisions kept per key in the record buckets.
pub const RECORD_HISTORY: u8 = 5;
/// Compare-and-swap attempts on one key before giving up with `RequestLimitExceeded`.
pub const CAS_RETRIES: u32 = 2000;
/// Tags per resource (AWS's limit).
pub const MAX_TAGS_PER_RESOURCE: usize = 50;
/// The availability zone of subnets created without one.
pub const DEFAULT_AVAILABILITY_ZONE: &str = "hive-1a";

/// The bucket names, as `hive.toml` `[vpc]` may rename them (`kv_bucket_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VpcBucketNames {
    /// `kv_bucket_vpcs`.
    pub kv_bucket_vpcs: String,
    /// `kv_bucket_subnets`.
    pub kv_bucket_subnets: String,
    /// `kv_bucket_security_groups`.
    pub kv_bucket_security_groups: String,
    /// `kv_bucket_interfaces`.
    pub kv_bucket_interfaces: String,
    /// `kv_bucket_allocations`.
    pub kv_bucket_allocations: String,
}

impl Default for VpcBucketNames {
    fn default() -> Self {
        Self {
            kv_bucket_vpcs: DEFAULT_VPCS_BUCKET.to_owned(),
            kv_bucket_subnets: DEFAULT_SUBNETS_BUCKET.to_owned(),
            kv_bucket_security_groups: DEFAULT_SECURITY_GROUPS_BUCKET.to_owned(),
            kv_bucket_interfaces: DEFAULT_INTERFACES_BUCKET.to_owned(),
            kv_bucket_allocations: DEFAULT_ALLOCATIONS_BUCKET.to_owned(),
        }
    }
}

impl VpcBucketNames {
    /// The five bucket configurations (VPCs, subnets, groups, interfaces, allocations), each
    /// with `replicas` copies.
    pub fn configs(&self, replicas: usize) -> [BucketConfig; 5] {
        let record = |name: &str| {
            BucketConfig::new(name)
                .with_history(RECORD_HISTORY)
                .with_replicas(replicas)
        };
        [
            record(&self.kv_bucket_vpcs),
            record(&self.kv_bucket_subnets),
            record(&self.kv_bucket_security_groups),
            record(&self.kv_bucket_interfaces),
            record(&self.kv_bucket_allocations),
        ]
    }
}

/// How a [`VpcRepo`] is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoOptions {
    /// Bucket names.
    pub buckets: VpcBucketNames,
    /// Zone of subnets created without `AvailabilityZone`.
    pub availability_zone: String,
    /// Replicas of each bucket (JetStream clusters; 1 elsewhere).
    pub replicas: usize,
}

impl Default for RepoOptions {
    fn default() -> Self {
        Self {
            buckets: VpcBucketNames::default(),
            availability_zone: DEFAULT_AVAILABILITY_ZONE.to_owned(),
            replicas: 1,
        }
    }
}

/// The opened buckets.
#[derive(Clone)]
pub struct VpcBuckets {
    /// VPC records.
    pub vpcs: Arc<dyn Bucket>,
    /// Subnet records (with their address bitmaps).
    pub subnets: Arc<dyn Bucket>,
    /// Security group records.
    pub security_groups: Arc<dyn Bucket>,
    /// Network interface records.
    pub interfaces: Arc<dyn Bucket>,
    /// VLAN pool, MAC reservations, default-network claims.
    pub allocations: Arc<dyn Bucket>,
}

impl fmt::Debug for VpcBuckets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VpcBuckets")
            .field("vpcs", &self.vpcs.name())
            .field("subnets", &self.subnets.name())
            .field("security_groups", &self.security_groups.name())
            .field("interfaces", &self.interfaces.name())
            .field("allocations", &self.allocations.name())
            .finish()
    }
}

impl VpcBuckets {
    /// Creates or opens the five buckets.
    pub async fn open_all(
        store: &dyn KvStore,
        names: &VpcBucketNames,
        replicas: usize,
    ) -> Result<Self, VpcError> {
        let [vpcs, subnets, groups, interfaces, allocations] = names.configs(replicas);
        Ok(Self {
            vpcs: store.create_or_open(&vpcs).await.map_err(storage_error)?,
            subnets: store
                .create_or_open(&subnets)
                .await
                .map_err(storage_error)?,
            security_groups: store.create_or_open(&groups).await.map_err(storage_error)?,
            interfaces: store
                .create_or_open(&interfaces)
                .await
                .map_err(storage_error)?,
            allocations: store
                .create_or_open(&allocations)
                .await
                .map_err(storage_error)?,
        })
    }
}

/// A VPC attribute of `ModifyVpcAttribute` / `DescribeVpcAttribute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VpcAttribute {
    /// `enableDnsSupport`.
    EnableDnsSupport,
    /// `enableDnsHostnames`.
    EnableDnsHostnames,
}

/// A change of `ModifySubnetAttribute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubnetAttribute {
    /// `MapPublicIpOnLaunch`.
    MapPublicIpOnLaunch(bool),
}

/// The id of a taggable resource (`CreateTags` `ResourceId.N`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceId {
    /// A VPC.
    Vpc(VpcId),
    /// A subnet.
    Subnet(SubnetId),
    /// A security group.
    SecurityGroup(SecurityGroupId),
    /// A network interface.
    NetworkInterface(NetworkInterfaceId),
}

impl ResourceId {
    /// Parse an id by its prefix; an id of no known kind is `InvalidID`, a malformed one
    /// `Invalid*ID.Malformed`.
    pub fn parse(id: &str) -> Result<Self, VpcError> {
        if id.starts_with(VpcId::PREFIX) {
            VpcId::parse(id).map(Self::Vpc)
        } else if id.starts_with(SubnetId::PREFIX) {
            SubnetId::parse(id).map(Self::Subnet)
        } else if id.starts_with(SecurityGroupRuleId::PREFIX) {
            Err(VpcError::InvalidId(truncated(id)))
        } else if id.starts_with(SecurityGroupId::PREFIX) {
            SecurityGroupId::parse(id).map(Self::SecurityGroup)
        } else if id.starts_with(NetworkInterfaceId::PREFIX) {
            NetworkInterfaceId::parse(id).map(Self::NetworkInterface)
        } else {
            Err(VpcError::InvalidId(truncated(id)))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Vpc(id) => id.as_str(),
            Self::Subnet(id) => id.as_str(),
            Self::SecurityGroup(id) => id.as_str(),
            Self::NetworkInterface(id) => id.as_str(),
        }
    }

    /// EC2's `resourceType` in `DescribeTags`.
    pub fn resource_type(&self) -> &'static str {
        match self {
            Self::Vpc(_) => "vpc",
            Self::Subnet(_) => "subnet",
            Self::SecurityGroup(_) => "security-group",
            Self::NetworkInterface(_) => "network-interface",
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn truncated(text: &str) -> String {
    text.chars().take(64).collect()
}

/// One tag of one resource (`DescribeTags`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TagDescription {
    /// The tagged resource.
    pub resource: ResourceId,
    /// Tag key.
    pub key: String,
    /// Tag value.
    pub value: String,
}

/// One rule with its group (`DescribeSecurityGroupRules`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRule {
    /// The group holding the rule.
    pub group_id: SecurityGroupId,
    /// The group's VPC.
    pub vpc_id: VpcId,
    /// The rule.
    pub rule: SecurityGroupRule,
}

/// What [`VpcRepo::bootstrap_default`] found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultBootstrap {
    /// The default network as first created (later changes, e.g. tags, are not reflected).
    pub network: DefaultNetwork,
    /// Whether this call claimed the default network (false: it existed, or another process
    /// won the race).
    pub created: bool,
}

/// Switch facts the caller supplies to [`VpcRepo::node_state`]: which interfaces are plugged
/// into which OpenFlow port on this node, and the gateway port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeBindings {
    /// Interface id (`external_ids:iface-id`) to OpenFlow port number.
    pub ports: BTreeMap<NetworkInterfaceId, u32>,
    /// The gateway port (`hive-int0`), if present.
    pub gateway: Option<GatewayBinding>,
    /// Whether the metadata address is reachable (`[vpc] metadata_enabled`).
    pub metadata: bool,
    /// Interfaces bound on other live nodes: interface id to the OpenFlow port of the tunnel
    /// towards that node ([`nodes::NodeRegistry`] says which node has which interface).
    pub remotes: BTreeMap<NetworkInterfaceId, u32>,
}

/// The gateway port as seen on the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayBinding {
    /// Its OpenFlow port number.
    pub ofport: u32,
    /// Its MAC, when known.
    pub mac: Option<MacAddr>,
}

/// Which kind of record a change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A VPC record.
    Vpc,
    /// A subnet record.
    Subnet,
    /// A security group record.
    SecurityGroup,
    /// A network interface record.
    NetworkInterface,
    /// An allocation (VLAN pool, MAC reservation, default-network claim).
    Allocation,
}

/// One change to the networking buckets, as [`VpcRepo::watch`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcChange {
    /// Which bucket.
    pub kind: RecordKind,
    /// The key changed.
    pub key: String,
    /// The bucket revision of the change.
    pub revision: u64,
    /// Whether the key was deleted (or purged).
    pub deleted: bool,
}

/// A storage failure as the network core names it: this crate owns the mapping.
pub fn storage_error(e: KvError) -> VpcError {
    {
        match e {
            KvError::Unavailable(m) => VpcError::StorageUnavailable(m),
            // Not there (yet): a bucket without a leader during a cluster's start reads so.
            e @ KvError::BucketNotFound(_) => VpcError::StorageUnavailable(e.to_string()),
            KvError::Codec(m) => VpcError::CorruptState(m),
            // A conflict or a create that lost, where the caller expected neither: another
            // writer got there first; contention, worth a retry.
            KvError::RevisionConflict { key, .. } | KvError::AlreadyExists { key, .. } => {
                VpcError::Busy(key)
            }
            other => VpcError::Storage(other.to_string()),
        }
    }
}

/// Longest tag key (AWS).
pub const MAX_TAG_KEY_LEN: usize = 127;
/// Longest tag value (AWS).
pub const MAX_TAG_VALUE_LEN: usize = 255;
/// Longest interface description (AWS).
pub const MAX_DESCRIPTION_LEN: usize = 255;
/// Attempts at drawing a MAC nobody has reserved.
const MAC_DRAWS: usize = 16;

const VLANS_KEY: &str = "vlans";
const DEFAULT_VLAN_KEY: &str = "default-vlan";

/// Check tags as EC2 does: keys of 1 to 127 characters not starting with `aws:`, values of up
/// to 255 characters, at most [`MAX_TAGS_PER_RESOURCE`] distinct keys.
pub fn validate_tags(tags: &[(String, String)]) -> Result<(), VpcError> {
    for (key, value) in tags {
        validate_tag_key(key)?;
        if value.chars().count() > MAX_TAG_VALUE_LEN {
            return Err(VpcError::InvalidParameterValue {
                parameter: "Tag.Value",
                value: truncated(value),
                reason: "Tag values may not exceed 255 characters.".to_owned(),
            });
        }
    }
    let distinct: BTreeSet<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
    if distinct.len() > MAX_TAGS_PER_RESOURCE {
        return Err(VpcError::TagLimitExceeded {
            resource: "request".to_owned(),
            limit: MAX_TAGS_PER_RESOURCE,
        });
    }
    Ok(())
}

fn validate_tag_key(key: &str) -> Result<(), VpcError> {
    if key.is_empty() {
        return Err(VpcError::MissingParameter("Tag.Key"));
    }
    if key.chars().count() > MAX_TAG_KEY_LEN {
        return Err(VpcError::InvalidParameterValue {
            parameter: "Tag.Key",
            value: truncated(key),
            reason: "Tag keys may not exceed 127 characters.".to_owned(),
        });
    }
    if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
        return Err(VpcError::InvalidParameterValue {
            parameter: "Tag.Key",
            value: truncated(key),
            reason: "Tag keys starting with 'aws:' are reserved for internal use".to_owned(),
        });
    }
    Ok(())
}

/// Set `tags` on `existing` (a key already there takes the new value), refusing to go over the
/// limit.
fn merge_tags(
    resource: &str,
    existing: &mut Vec<(String, String)>,
    tags: &[(String, String)],
) -> Result<(), VpcError> {
    let mut merged = existing.clone();
    for (key, value) in tags {
        match merged.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.clone(),
            None => merged.push((key.clone(), value.clone())),
        }
    }
    if merged.len() > MAX_TAGS_PER_RESOURCE {
        return Err(VpcError::TagLimitExceeded {
            resource: resource.to_owned(),
            limit: MAX_TAGS_PER_RESOURCE,
        });
    }
    *existing = merged;
    Ok(())
}

/// Remove the tags `DeleteTags` names (a key alone, or a key with the value it must have).
fn remove_tags(existing: &mut Vec<(String, String)>, tags: &[(String, Option<String>)]) {
    existing.retain(|(k, v)| {
        !tags
            .iter()
            .any(|(key, value)| key == k && value.as_ref().is_none_or(|value| value == v))
    });
}

fn check_account(account_id: &str) -> Result<(), VpcError> {
    if account_id.len() == 12 && account_id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(VpcError::InvalidParameter(format!(
            "account id {:?} is not 12 digits",
            truncated(account_id)
        )))
    }
}

fn record_key(account_id: &str, id: &str) -> String {
    format!("{account_id}.{id}")
}

fn mac_key(mac: &MacAddr) -> String {
    let m = mac.0;
    format!(
        "mac.{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// A stored VPC: the VPC and the reservations that serialize its children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct VpcRecord {
    vpc: Vpc,
    /// Blocks of its subnets, reserved before the subnet record is written.
    #[serde(default)]
    subnets: BTreeMap<SubnetId, Ipv4Network>,
    /// Lower-cased names of its groups, reserved before the group record is written.
    #[serde(default)]
    groups: BTreeMap<SecurityGroupId, String>,
}

/// A stored security group, with the mark `DeleteSecurityGroup` sets before checking uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct GroupRecord {
    group: SecurityGroup,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleting: bool,
}

/// An account's default network as first made, and whether every record of it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DefaultClaim {
    vpc: Vpc,
    subnet: Subnet,
    group: SecurityGroup,
    complete: bool,
}

impl DefaultClaim {
    fn network(&self) -> DefaultNetwork {
        DefaultNetwork {
            vpc: self.vpc.clone(),
            subnet: self.subnet.clone(),
            default_group: self.group.clone(),
        }
    }
}

/// The network repository. Cheap to clone; all state lives in the buckets.
#[derive(Clone)]
pub struct VpcRepo {
    buckets: VpcBuckets,
    vpcs: TypedBucket<VpcRecord>,
    subnets: TypedBucket<Subnet>,
    groups: TypedBucket<GroupRecord>,
    interfaces: TypedBucket<NetworkInterface>,
    vlans: TypedBucket<VlanPool>,
    claims: TypedBucket<DefaultClaim>,
    availability_zone: String,
}

impl fmt::Debug for VpcRepo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VpcRepo")
            .field("buckets", &self.buckets)
            .field("availability_zone", &self.availability_zone)
            .finish_non_exhaustive()
    }
}

/// A [`VpcError`] that [`TypedBucket::update_with`] can carry (it wants `From<KvError>`).
struct Failed(VpcError);

impl From<KvError> for Failed {
    fn from(e: KvError) -> Self {
        Self(storage_error(e))
    }
}

/// [`TypedBucket::update_with`] with the network core's errors.
async fn update<T, F>(
    bucket: &TypedBucket<T>,
    key: &str,
    mut change: F,
) -> Result<Versioned<T>, VpcError>
where
    T: Serialize + DeserializeOwned + Send + Sync,
    F: FnMut(Option<T>) -> Result<T, VpcError> + Send,
{
    bucket
        .update_with(key, |current: Option<T>| change(current).map_err(Failed))
        .await
        .map_err(|Failed(e)| e)
}

/// Read-modify-write of an existing record with compare-and-swap and retry; `missing` when
/// the record is absent. An error from `change` writes nothing.
async fn modify<T, F>(
    bucket: &TypedBucket<T>,
    key: &str,
    missing: VpcError,
    mut change: F,
) -> Result<Versioned<T>, VpcError>
where
    T: Serialize + DeserializeOwned + Send + Sync,
    F: FnMut(&mut T) -> Result<(), VpcError> + Send,
{
    update(bucket, key, |current: Option<T>| match current {
        None => Err(missing.clone()),
        Some(mut value) => {
            change(&mut value)?;
            Ok(value)
        }
    })
    .await
}

/// Deletes a record at the revision `check` approved; returns what was deleted.
async fn delete_checked<T, C>(
    bucket: &TypedBucket<T>,
    key: &str,
    missing: VpcError,
    check: C,
) -> Result<T, VpcError>
where
    T: Serialize + DeserializeOwned + Send + Sync,
    C: Fn(&T) -> Result<(), VpcError> + Send + Sync,
{
    for _ in 0..CAS_RETRIES {
        let current = bucket
            .get(key)
            .await
            .map_err(storage_error)?
            .ok_or_else(|| missing.clone())?;
        check(&current.value)?;
        match bucket.delete(key, Some(current.revision)).await {
            Ok(()) => return Ok(current.value),
            Err(KvError::RevisionConflict { .. }) => continue,
            Err(e) => return Err(storage_error(e)),
        }
    }
    Err(VpcError::Busy(key.to_owned()))
}

/// Keys read at once when listing (NATS answers each read in one round trip).
const LIST_CONCURRENCY: usize = 32;

/// Every live value under `prefix` (`None`: all keys) with its key, in key order; a key
/// deleted between listing and reading is skipped.
async fn list_values<T>(
    bucket: &TypedBucket<T>,
    prefix: Option<&str>,
) -> Result<Vec<(String, T)>, VpcError>
where
    T: Serialize + DeserializeOwned + Send + Sync,
{
    let keys = bucket.keys(prefix).await.map_err(storage_error)?;
    // Owned keys and bucket handles: a stream of futures borrowing from a closure's argument
    // would not be `Send` for every lifetime, and callers run on multi-threaded runtimes.
    let reads = keys.clone().into_iter().map(|key| {
        let bucket = bucket.clone();
        async move { bucket.get(&key).await }
    });
    let values: Vec<Option<Versioned<T>>> = futures::stream::iter(reads)
        .buffered(LIST_CONCURRENCY)
        .try_collect()
        .await
        .map_err(storage_error)?;
    Ok(keys
        .into_iter()
        .zip(values)
        .filter_map(|(key, value)| value.map(|v| (key, v.value)))
        .collect())
}

/// Values of every key under `prefix` (`None`: all keys), with the account of each key.
async fn list_with_account<T>(
    bucket: &TypedBucket<T>,
    prefix: Option<&str>,
) -> Result<Vec<(String, T)>, VpcError>
where
    T: Serialize + DeserializeOwned + Send + Sync,
{
    Ok(list_values(bucket, prefix)
        .await?
        .into_iter()
        .filter_map(|(key, value)| {
            let (account, _) = key.split_once('.')?;
            Some((account.to_owned(), value))
        })
        .collect())
}

impl VpcRepo {
    /// A repository over opened buckets; subnets created without a zone go to
    /// `availability_zone`.
    pub fn new(buckets: VpcBuckets, availability_zone: impl Into<String>) -> Self {
        Self {
            vpcs: TypedBucket::new(buckets.vpcs.clone()).with_retries(CAS_RETRIES),
            subnets: TypedBucket::new(buckets.subnets.clone()).with_retries(CAS_RETRIES),
            groups: TypedBucket::new(buckets.security_groups.clone()).with_retries(CAS_RETRIES),
            interfaces: TypedBucket::new(buckets.interfaces.clone()).with_retries(CAS_RETRIES),
            vlans: TypedBucket::new(buckets.allocations.clone()).with_retries(CAS_RETRIES),
            claims: TypedBucket::new(buckets.allocations.clone()).with_retries(CAS_RETRIES),
            buckets,
            availability_zone: availability_zone.into(),
        }
    }

    /// Creates or opens the buckets in `store` and returns a repository over them.
    pub async fn open(store: &dyn KvStore, options: &RepoOptions) -> Result<Self, VpcError> {
        let buckets = VpcBuckets::open_all(store, &options.buckets, options.replicas).await?;
        Ok(Self::new(buckets, options.availability_zone.clone()))
    }

    /// The zone of subnets created without one.
    pub fn availability_zone(&self) -> &str {
        &self.availability_zone
    }

    /// The buckets underneath.
    pub fn buckets(&self) -> &VpcBuckets {
        &self.buckets
    }

    // ----- allocations ------------------------------------------------------------------

    async fn allocate_vlan(&self) -> Result<u16, VpcError> {
        let mut vlan = 0;
        update(&self.vlans, VLANS_KEY, |pool: Option<VlanPool>| {
            let mut pool = pool.unwrap_or_default();
            vlan = pool.allocate()?;
            Ok(pool)
        })
        .await?;
        Ok(vlan)
    }

    async fn release_vlan(&self, vlan: u16) -> Result<(), VpcError> {
        if vlan == DEFAULT_VPC_VLAN {
            return Ok(());
        }
        update(&self.vlans, VLANS_KEY, |pool: Option<VlanPool>| {
            let mut pool = pool.unwrap_or_default();
            // Already free (an earlier, interrupted deletion): the goal is reached.
            if pool.is_allocated(vlan) {
                pool.release(vlan)?;
            }
            Ok(pool)
        })
        .await?;
        Ok(())
    }

    /// Reserves a MAC no interface holds, for `eni`.
    async fn reserve_mac(&self, eni: &NetworkInterfaceId) -> Result<MacAddr, VpcError> {
        for _ in 0..MAC_DRAWS {
            let mac = allocate_mac(&mut OsRng, |_| false)?;
            match self
                .buckets
                .allocations
                .create(&mac_key(&mac), eni.as_str().to_owned().into())
                .await
            {
                Ok(_) => return Ok(mac),
                Err(KvError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(storage_error(e)),
            }
        }
        Err(VpcError::MacExhausted)
    }

    async fn release_mac(&self, mac: &MacAddr) -> Result<(), VpcError> {
        match self.buckets.allocations.delete(&mac_key(mac), None).await {
            Ok(()) | Err(KvError::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn release_address(&self, account_id: &str, subnet: &SubnetId, ip: Ipv4Addr) {
        // Best effort on undo paths: a failure leaves the address taken (fail closed).
        let _ = modify(
            &self.subnets,
            &record_key(account_id, subnet.as_str()),
            subnet.not_found(),
            |s: &mut Subnet| s.addresses.release(ip),
        )
        .await;
    }

    // ----- default network --------------------------------------------------------------

    /// Creates the account's default network from `[vpc]`: the default VPC on
    /// `default_cidr` (VLAN 1 for the first account to ask, a pool VLAN for others), its
    /// default subnet `default_subnet_cidr` (default for its zone, gateway = its first host) and
    /// its default security group. Idempotent and safe when several processes run it at once:
    /// the first to claim `default.<account>` decides the records, everyone writes what is
    /// missing. Once complete it is never recreated, so an operator may delete it.
    pub async fn bootstrap_default(
        &self,
        account_id: &str,
        config: &VpcConfig,
    ) -> Result<DefaultBootstrap, VpcError> {
        check_account(account_id)?;
        config.validate()?;
        let claim_key = format!("default.{account_id}");
        let mut created = false;
        let claim = match self.claims.get(&claim_key).await.map_err(storage_error)? {
            Some(existing) => existing.value,
            None => {
                let vlan = self.default_vlan_for(account_id).await?;
                let mut network = default_network(&mut OsRng, config, &self.availability_zone)?;
                network.vpc.vlan = vlan;
                let claim = DefaultClaim {
                    vpc: network.vpc,
                    subnet: network.subnet,
                    group: network.default_group,
                    complete: false,
                };
                match self.claims.create(&claim_key, &claim).await {
                    Ok(_) => {
                        created = true;
                        claim
                    }
                    Err(KvError::AlreadyExists { .. }) => {
                        // Another process won: use its records, give our VLAN back.
                        self.release_vlan(vlan).await?;
                        self.claims
                            .get(&claim_key)
                            .await
                            .map_err(storage_error)?
                            .ok_or_else(|| {
                                VpcError::Storage(format!("{claim_key} vanished after a race"))
                            })?
                            .value
                    }
                    Err(e) => {
                        let _ = self.release_vlan(vlan).await;
                        return Err(storage_error(e));
                    }
                }
            }
        };
        if !claim.complete {
            self.write_default_records(account_id, &claim).await?;
            modify(
                &self.claims,
                &claim_key,
                VpcError::Storage(format!("{claim_key} vanished")),
                |c| {
                    c.complete = true;
                    Ok(())
                },
            )
            .await?;
        }
        Ok(DefaultBootstrap {
            network: claim.network(),
            created,
        })
    }

    /// VLAN 1 for the first account that bootstraps, a pool VLAN for any other.
    async fn default_vlan_for(&self, account_id: &str) -> Result<u16, VpcError> {
        let alloc = &self.buckets.allocations;
        match alloc
            .create(DEFAULT_VLAN_KEY, account_id.to_owned().into())
            .await
        {
            Ok(_) => Ok(DEFAULT_VPC_VLAN),
            Err(KvError::AlreadyExists { .. }) => {
                let owner = alloc.get(DEFAULT_VLAN_KEY).await.map_err(storage_error)?;
                if owner.is_some_and(|e| e.value.as_ref() == account_id.as_bytes()) {
                    Ok(DEFAULT_VPC_VLAN)
                } else {
                    self.allocate_vlan().await
                }
            }
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Writes whatever of the claimed default network is missing (group, VPC, subnet).
    async fn write_default_records(
        &self,
        account_id: &str,
        claim: &DefaultClaim,
    ) -> Result<(), VpcError> {
        let group = GroupRecord {
            group: claim.group.clone(),
            deleting: false,
        };
        let vpc = VpcRecord {
            vpc: claim.vpc.clone(),
            subnets: BTreeMap::from([(claim.subnet.id.clone(), claim.subnet.cidr_block)]),
            groups: BTreeMap::from([(claim.group.id.clone(), DEFAULT_GROUP_NAME.to_owned())]),
        };
        // In order, stopping at the first failure: the VPC is published only once its group
        // exists, and an interrupted bootstrap is finished by the next one.
        let created = |written: Result<u64, KvError>| match written {
            Ok(_) | Err(KvError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(storage_error(e)),
        };
        created(
            self.groups
                .create(&record_key(account_id, group.group.id.as_str()), &group)
                .await,
        )?;
        created(
            self.vpcs
                .create(&record_key(account_id, vpc.vpc.id.as_str()), &vpc)
                .await,
        )?;
        created(
            self.subnets
                .create(
                    &record_key(account_id, claim.subnet.id.as_str()),
                    &claim.subnet,
                )
                .await,
        )
    }

    /// The account's default VPC, if it exists.
    pub async fn default_vpc(&self, account_id: &str) -> Result<Option<Vpc>, VpcError> {
        check_account(account_id)?;
        let Some(claim) = self
            .claims
            .get(&format!("default.{account_id}"))
            .await
            .map_err(storage_error)?
        else {
            return Ok(None);
        };
        let key = record_key(account_id, claim.value.vpc.id.as_str());
        Ok(self
            .vpcs
            .get(&key)
            .await
            .map_err(storage_error)?
            .map(|r| r.value.vpc))
    }

    // ----- VPCs -------------------------------------------------------------------------

    /// `CreateVpc`: a VPC on `cidr_block` (/16 to /28, `InvalidVpc.Range`) with a VLAN from the
    /// pool (`VpcLimitExceeded` when none is left) and its default security group.
    pub async fn create_vpc(
        &self,
        account_id: &str,
        cidr_block: &str,
        tags: &[(String, String)],
    ) -> Result<NewVpc, VpcError> {
        check_account(account_id)?;
        validate_tags(tags)?;
        let cidr = parse_vpc_cidr(cidr_block)?;
        let id = VpcId::generate(&mut OsRng);
        let mut tag_list = Vec::new();
        merge_tags(id.as_str(), &mut tag_list, tags)?;
        let vlan = self.allocate_vlan().await?;
        let mut vpc = Vpc::new(id, cidr, vlan, false);
        vpc.tags = tag_list;
        let default_group = default_security_group(&mut OsRng, &vpc.id);
        let group_key = record_key(account_id, default_group.id.as_str());
        let group = GroupRecord {
            group: default_group.clone(),
            deleting: false,
        };
        if let Err(e) = self.groups.create(&group_key, &group).await {
            let _ = self.release_vlan(vlan).await;
            return Err(storage_error(e));
        }
        let record = VpcRecord {
            vpc: vpc.clone(),
            subnets: BTreeMap::new(),
            groups: BTreeMap::from([(default_group.id.clone(), DEFAULT_GROUP_NAME.to_owned())]),
        };
        if let Err(e) = self
            .vpcs
            .create(&record_key(account_id, vpc.id.as_str()), &record)
            .await
        {
            let _ = self.groups.delete(&group_key, None).await;
            let _ = self.release_vlan(vlan).await;
            return Err(storage_error(e));
        }
        Ok(NewVpc { vpc, default_group })
    }

    async fn vpc_record(&self, account_id: &str, id: &VpcId) -> Result<VpcRecord, VpcError> {
        check_account(account_id)?;
        let id = VpcId::parse(id.as_str())?;
        self.vpcs
            .get(&record_key(account_id, id.as_str()))
            .await
            .map_err(storage_error)?
            .map(|v| v.value)
            .ok_or_else(|| id.not_found())
    }

    /// One VPC of the account (`InvalidVpcID.NotFound` otherwise).
    pub async fn get_vpc(&self, account_id: &str, id: &VpcId) -> Result<Vpc, VpcError> {
        Ok(self.vpc_record(account_id, id).await?.vpc)
    }

    /// Every VPC of the account, by id.
    pub async fn list_vpcs(&self, account_id: &str) -> Result<Vec<Vpc>, VpcError> {
        check_account(account_id)?;
        let prefix = format!("{account_id}.");
        Ok(list_values(&self.vpcs, Some(&prefix))
            .await?
            .into_iter()
            .map(|(_, v)| v.vpc)
            .collect())
    }

    /// `DeleteVpc`: refused (`DependencyViolation`) while the VPC has subnets (and so
    /// interfaces) or groups other than its default one; deletes the default group and gives
    /// the VLAN back.
    pub async fn delete_vpc(&self, account_id: &str, id: &VpcId) -> Result<(), VpcError> {
        check_account(account_id)?;
        let id = VpcId::parse(id.as_str())?;
        let record = delete_checked(
            &self.vpcs,
            &record_key(account_id, id.as_str()),
            id.not_found(),
            |r: &VpcRecord| {
                let dependent = r.subnets.keys().map(|s| s.to_string()).chain(
                    r.groups
                        .iter()
                        .filter(|(_, name)| name.as_str() != DEFAULT_GROUP_NAME)
                        .map(|(g, _)| g.to_string()),
                );
                match dependent.into_iter().next() {
                    Some(dependent) => Err(VpcError::DependencyViolation {
                        resource: r.vpc.id.to_string(),
                        dependent,
                    }),
                    None => Ok(()),
                }
            },
        )
        .await?;
        for group in record.groups.keys() {
            self.groups
                .delete(&record_key(account_id, group.as_str()), None)
                .await
                .map_err(storage_error)?;
        }
        self.release_vlan(record.vpc.vlan).await
    }

    /// `ModifyVpcAttribute`.
    pub async fn modify_vpc_attribute(
        &self,
        account_id: &str,
        id: &VpcId,
        attribute: VpcAttribute,
        value: bool,
    ) -> Result<Vpc, VpcError> {
        check_account(account_id)?;
        let id = VpcId::parse(id.as_str())?;
        let written = modify(
            &self.vpcs,
            &record_key(account_id, id.as_str()),
            id.not_found(),
            |r| {
                match attribute {
                    VpcAttribute::EnableDnsSupport => r.vpc.enable_dns_support = value,
                    VpcAttribute::EnableDnsHostnames => r.vpc.enable_dns_hostnames = value,
                }
                Ok(())
            },
        )
        .await?;
        Ok(written.value.vpc)
    }

    /// `DescribeVpcAttribute`.
    pub async fn vpc_attribute(
        &self,
        account_id: &str,
        id: &VpcId,
        attribute: VpcAttribute,
    ) -> Result<bool, VpcError> {
        let vpc = self.get_vpc(account_id, id).await?;
        Ok(match attribute {
            VpcAttribute::EnableDnsSupport => vpc.enable_dns_support,
            VpcAttribute::EnableDnsHostnames => vpc.enable_dns_hostnames,
        })
    }

    // ----- subnets ----------------------------------------------------------------------

    /// `CreateSubnet`: a block inside one of the VPC's blocks (`InvalidSubnet.Range`)
    /// overlapping no sibling (`InvalidSubnet.Conflict`), in `availability_zone` (only the
    /// repository's zone exists; `None` means it).
    pub async fn create_subnet(
        &self,
        account_id: &str,
        vpc_id: &VpcId,
        cidr_block: &str,
        availability_zone: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<Subnet, VpcError> {
        check_account(account_id)?;
        let vpc_id = VpcId::parse(vpc_id.as_str())?;
        validate_tags(tags)?;
        let zone = availability_zone.unwrap_or(&self.availability_zone);
        if zone != self.availability_zone {
            return Err(VpcError::InvalidParameterValue {
                parameter: "availabilityZone",
                value: truncated(zone),
                reason: format!(
                    "Subnets can currently only be created in the following availability zones: {}.",
                    self.availability_zone
                ),
            });
        }
        let cidr = parse_cidr(cidr_block, "cidrBlock")?;
        let mut subnet = Subnet::new(SubnetId::generate(&mut OsRng), vpc_id.clone(), cidr, zone)
            .map_err(|_| VpcError::InvalidSubnetRange(cidr.to_string()))?;
        merge_tags(subnet.id.as_str(), &mut subnet.tags, tags)?;
        let vpc_key = record_key(account_id, vpc_id.as_str());
        modify(&self.vpcs, &vpc_key, vpc_id.not_found(), |r| {
            check_subnet_cidr(&r.vpc.cidr_blocks(), r.subnets.values().copied(), cidr)?;
            r.subnets.insert(subnet.id.clone(), cidr);
            Ok(())
        })
        .await?;
        if let Err(e) = self
            .subnets
            .create(&record_key(account_id, subnet.id.as_str()), &subnet)
            .await
        {
            self.unreserve_subnet(account_id, &vpc_id, &subnet.id).await;
            return Err(storage_error(e));
        }
        Ok(subnet)
    }

    async fn unreserve_subnet(&self, account_id: &str, vpc_id: &VpcId, subnet: &SubnetId) {
        // Best effort: a leftover reservation only keeps the VPC from being deleted.
        let _ = modify(
            &self.vpcs,
            &record_key(account_id, vpc_id.as_str()),
            vpc_id.not_found(),
            |r| {
                r.subnets.remove(subnet);
                Ok(())
            },
        )
        .await;
    }

    /// One subnet of the account.
    pub async fn get_subnet(&self, account_id: &str, id: &SubnetId) -> Result<Subnet, VpcError> {
        check_account(account_id)?;
        let id = SubnetId::parse(id.as_str())?;
        self.subnets
            .get(&record_key(account_id, id.as_str()))
            .await
            .map_err(storage_error)?
            .map(|v| v.value)
            .ok_or_else(|| id.not_found())
    }

    /// Every subnet of the account, by id.
    pub async fn list_subnets(&self, account_id: &str) -> Result<Vec<Subnet>, VpcError> {
        check_account(account_id)?;
        let prefix = format!("{account_id}.");
        Ok(list_values(&self.subnets, Some(&prefix))
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// `DeleteSubnet`: refused (`DependencyViolation`) while an interface holds one of its
    /// addresses.
    pub async fn delete_subnet(&self, account_id: &str, id: &SubnetId) -> Result<(), VpcError> {
        check_account(account_id)?;
        let id = SubnetId::parse(id.as_str())?;
        let subnet = delete_checked(
            &self.subnets,
            &record_key(account_id, id.as_str()),
            id.not_found(),
            check_subnet_deletable,
        )
        .await?;
        let vpc_key = record_key(account_id, subnet.vpc_id.as_str());
        match modify(&self.vpcs, &vpc_key, subnet.vpc_id.not_found(), |r| {
            r.subnets.remove(&subnet.id);
            Ok(())
        })
        .await
        {
            Ok(_) | Err(VpcError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `ModifySubnetAttribute`.
    pub async fn modify_subnet_attribute(
        &self,
        account_id: &str,
        id: &SubnetId,
        attribute: SubnetAttribute,
    ) -> Result<Subnet, VpcError> {
        check_account(account_id)?;
        let id = SubnetId::parse(id.as_str())?;
        let written = modify(
            &self.subnets,
            &record_key(account_id, id.as_str()),
            id.not_found(),
            |s| {
                match attribute {
                    SubnetAttribute::MapPublicIpOnLaunch(v) => s.map_public_ip_on_launch = v,
                }
                Ok(())
            },
        )
        .await?;
        Ok(written.value)
    }

    // ----- security groups --------------------------------------------------------------

    /// `CreateSecurityGroup`: a group in `vpc_id` with AWS's default egress rule; the name is
    /// unique in the VPC ignoring case (`InvalidGroup.Duplicate`), `default` is reserved.
    pub async fn create_security_group(
        &self,
        account_id: &str,
        vpc_id: &VpcId,
        name: &str,
        description: &str,
        tags: &[(String, String)],
    ) -> Result<SecurityGroup, VpcError> {
        check_account(account_id)?;
        let vpc_id = VpcId::parse(vpc_id.as_str())?;
        validate_tags(tags)?;
        let mut group = new_security_group(&mut OsRng, &vpc_id, name, description, &[])?;
        merge_tags(group.id.as_str(), &mut group.tags, tags)?;
        let lower = name.to_ascii_lowercase();
        let vpc_key = record_key(account_id, vpc_id.as_str());
        modify(&self.vpcs, &vpc_key, vpc_id.not_found(), |r| {
            if r.groups.values().any(|n| n == &lower) {
                return Err(VpcError::DuplicateGroup {
                    name: name.to_owned(),
                    vpc: vpc_id.to_string(),
                });
            }
            r.groups.insert(group.id.clone(), lower.clone());
            Ok(())
        })
        .await?;
        let record = GroupRecord {
            group: group.clone(),
            deleting: false,
        };
        if let Err(e) = self
            .groups
            .create(&record_key(account_id, group.id.as_str()), &record)
            .await
        {
            self.unreserve_group(account_id, &vpc_id, &group.id).await;
            return Err(storage_error(e));
        }
        Ok(group)
    }

    async fn unreserve_group(&self, account_id: &str, vpc_id: &VpcId, group: &SecurityGroupId) {
        // Best effort: a leftover reservation keeps the name taken and the VPC undeletable.
        let _ = modify(
            &self.vpcs,
            &record_key(account_id, vpc_id.as_str()),
            vpc_id.not_found(),
            |r| {
                r.groups.remove(group);
                Ok(())
            },
        )
        .await;
    }

    async fn group_record(
        &self,
        account_id: &str,
        id: &SecurityGroupId,
    ) -> Result<Versioned<GroupRecord>, VpcError> {
        check_account(account_id)?;
        let id = SecurityGroupId::parse(id.as_str())?;
        self.groups
            .get(&record_key(account_id, id.as_str()))
            .await
            .map_err(storage_error)?
            .ok_or_else(|| id.not_found())
    }

    /// A group new references may point at: it exists and is not being deleted.
    async fn live_group(
        &self,
        account_id: &str,
        id: &SecurityGroupId,
    ) -> Result<SecurityGroup, VpcError> {
        let record = self.group_record(account_id, id).await?.value;
        if record.deleting {
            return Err(id.not_found());
        }
        Ok(record.group)
    }

    /// One security group of the account (`InvalidGroup.NotFound` otherwise).
    pub async fn get_security_group(
        &self,
        account_id: &str,
        id: &SecurityGroupId,
    ) -> Result<SecurityGroup, VpcError> {
        Ok(self.group_record(account_id, id).await?.value.group)
    }

    /// A group by name (exact, or else ignoring case) in `vpc_id`, or in the account's default
    /// VPC when `None`, as `GroupName` parameters work.
    pub async fn find_security_group_by_name(
        &self,
        account_id: &str,
        vpc_id: Option<&VpcId>,
        name: &str,
    ) -> Result<SecurityGroup, VpcError> {
        check_account(account_id)?;
        let not_found = || VpcError::NotFound {
            kind: hive_vpc::error::ResourceKind::SecurityGroup,
            id: truncated(name),
        };
        let vpc_id = match vpc_id {
            Some(id) => id.clone(),
            None => match self.default_vpc(account_id).await? {
                Some(vpc) => vpc.id,
                None => return Err(not_found()),
            },
        };
        let record = self.vpc_record(account_id, &vpc_id).await?;
        let lower = name.to_ascii_lowercase();
        let mut candidates = Vec::new();
        for (id, stored) in &record.groups {
            if stored == &lower
                && let Ok(group) = self.get_security_group(account_id, id).await
            {
                candidates.push(group);
            }
        }
        candidates
            .iter()
            .find(|g| g.name == name)
            .or_else(|| candidates.first())
            .cloned()
            .ok_or_else(not_found)
    }

    /// Every security group of the account, by id.
    pub async fn list_security_groups(
        &self,
        account_id: &str,
    ) -> Result<Vec<SecurityGroup>, VpcError> {
        check_account(account_id)?;
        let prefix = format!("{account_id}.");
        Ok(list_values(&self.groups, Some(&prefix))
            .await?
            .into_iter()
            .map(|(_, v)| v.group)
            .collect())
    }

    /// `DeleteSecurityGroup`: the default group cannot go (`CannotDelete`); a group another
    /// group's rule names or an interface uses is a `DependencyViolation`.
    pub async fn delete_security_group(
        &self,
        account_id: &str,
        id: &SecurityGroupId,
    ) -> Result<(), VpcError> {
        let current = self.group_record(account_id, id).await?.value;
        if current.group.name == DEFAULT_GROUP_NAME {
            return Err(VpcError::CannotDeleteDefaultGroup(id.to_string()));
        }
        let key = record_key(account_id, id.as_str());
        // Mark first, then look for uses: a concurrent new use checks the mark after writing.
        modify(&self.groups, &key, id.not_found(), |r| {
            r.deleting = true;
            Ok(())
        })
        .await?;
        let checked = async {
            let groups = self.list_security_groups(account_id).await?;
            let interfaces = self.list_network_interfaces(account_id).await?;
            check_group_deletable(&current.group, &groups, &interfaces)
        }
        .await;
        if let Err(e) = checked {
            let _ = modify(&self.groups, &key, id.not_found(), |r| {
                r.deleting = false;
                Ok(())
            })
            .await;
            return Err(e);
        }
        self.groups
            .delete(&key, None)
            .await
            .map_err(storage_error)?;
        self.unreserve_group(account_id, &current.group.vpc_id, id)
            .await;
        Ok(())
    }

    /// Groups named as peers by `specs` (other than `own`) that are absent or being deleted.
    async fn first_dead_peer(
        &self,
        account_id: &str,
        own: &SecurityGroupId,
        peers: &BTreeSet<SecurityGroupId>,
    ) -> Result<Option<SecurityGroupId>, VpcError> {
        for peer in peers.iter().filter(|p| *p != own) {
            match self.live_group(account_id, peer).await {
                Ok(_) => {}
                Err(VpcError::NotFound { .. }) => return Ok(Some(peer.clone())),
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// `AuthorizeSecurityGroupIngress` / `Egress`: add every rule or none
    /// (`InvalidPermission.Duplicate` for a rule the group has); peer groups must exist in the
    /// group's VPC (`InvalidGroup.NotFound`). Returns the new rules with their `sgr-` ids.
    pub async fn authorize(
        &self,
        account_id: &str,
        group_id: &SecurityGroupId,
        specs: Vec<RuleSpec>,
    ) -> Result<Vec<SecurityGroupRule>, VpcError> {
        let group = self.group_record(account_id, group_id).await?.value;
        if group.deleting {
            return Err(group_id.not_found());
        }
        let peers: BTreeSet<SecurityGroupId> = specs
            .iter()
            .filter_map(|s| match &s.peer {
                Peer::Group(g) if g != group_id => Some(g.clone()),
                _ => None,
            })
            .collect();
        let mut known = Vec::with_capacity(peers.len());
        for peer in &peers {
            known.push(self.live_group(account_id, peer).await?);
        }
        check_peer_groups(&group.group, &specs, &known)?;
        let key = record_key(account_id, group_id.as_str());
        let mut added = Vec::new();
        modify(&self.groups, &key, group_id.not_found(), |r| {
            added = security_group::authorize(&mut OsRng, &mut r.group, specs.clone())?;
            Ok(())
        })
        .await?;
        if let Some(dead) = self.first_dead_peer(account_id, group_id, &peers).await? {
            let ids: Vec<SecurityGroupRuleId> = added.iter().map(|r| r.id.clone()).collect();
            let _ = modify(&self.groups, &key, group_id.not_found(), |r| {
                r.group.rules.retain(|rule| !ids.contains(&rule.id));
                Ok(())
            })
            .await;
            return Err(dead.not_found());
        }
        Ok(added)
    }

    /// `RevokeSecurityGroupIngress` / `Egress` by rule content; rules the group lacks come back
    /// in [`Revoked::unknown`], and when it has none of them the call is
    /// `InvalidPermission.NotFound`.
    pub async fn revoke(
        &self,
        account_id: &str,
        group_id: &SecurityGroupId,
        specs: &[RuleSpec],
    ) -> Result<Revoked, VpcError> {
        check_account(account_id)?;
        let group_id = SecurityGroupId::parse(group_id.as_str())?;
        let mut outcome = None;
        modify(
            &self.groups,
            &record_key(account_id, group_id.as_str()),
            group_id.not_found(),
            |r| {
                outcome = Some(security_group::revoke(&mut r.group, specs)?);
                Ok(())
            },
        )
        .await?;
        outcome.ok_or_else(|| VpcError::Storage("revoke wrote without deciding".to_owned()))
    }

    /// `RevokeSecurityGroupIngress` / `Egress` by `SecurityGroupRuleId.N`
    /// (`InvalidSecurityGroupRuleId.NotFound` unless every id names a rule of `direction`).
    pub async fn revoke_by_ids(
        &self,
        account_id: &str,
        group_id: &SecurityGroupId,
        direction: Direction,
        ids: &[SecurityGroupRuleId],
    ) -> Result<Vec<SecurityGroupRule>, VpcError> {
        check_account(account_id)?;
        let group_id = SecurityGroupId::parse(group_id.as_str())?;
        let mut revoked = Vec::new();
        modify(
            &self.groups,
            &record_key(account_id, group_id.as_str()),
            group_id.not_found(),
            |r| {
                revoked = security_group::revoke_by_ids(&mut r.group, direction, ids)?;
                Ok(())
            },
        )
        .await?;
        Ok(revoked)
    }

    /// `DescribeSecurityGroupRules`: every rule of the account's groups, by group id then in
    /// the group's order.
    pub async fn list_security_group_rules(
        &self,
        account_id: &str,
    ) -> Result<Vec<GroupRule>, VpcError> {
        Ok(self
            .list_security_groups(account_id)
            .await?
            .into_iter()
            .flat_map(|g| {
                let (group_id, vpc_id) = (g.id, g.vpc_id);
                g.rules.into_iter().map(move |rule| GroupRule {
                    group_id: group_id.clone(),
                    vpc_id: vpc_id.clone(),
                    rule,
                })
            })
            .collect())
    }

    // ----- network interfaces -----------------------------------------------------------

    /// The live groups an interface in `vpc_id` asks for (its VPC's default group when none).
    async fn groups_for_interface(
        &self,
        account_id: &str,
        vpc_id: &VpcId,
        subnet: &SubnetId,
        requested: &[SecurityGroupId],
    ) -> Result<Vec<SecurityGroupId>, VpcError> {
        let mut known = Vec::new();
        if requested.is_empty() {
            let record = self.vpc_record(account_id, vpc_id).await?;
            for (id, name) in &record.groups {
                if name == DEFAULT_GROUP_NAME {
                    known.push(self.live_group(account_id, id).await?);
                }
            }
        } else {
            let distinct: BTreeSet<&SecurityGroupId> = requested.iter().collect();
            if distinct.len() > hive_vpc::eni::MAX_GROUPS_PER_INTERFACE {
                return Err(VpcError::SecurityGroupsPerInterfaceLimitExceeded);
            }
            for id in distinct {
                known.push(self.live_group(account_id, id).await?);
            }
        }
        resolve_groups(vpc_id, subnet.as_str(), &known, requested)
    }

    async fn first_dead_group(
        &self,
        account_id: &str,
        groups: &[SecurityGroupId],
    ) -> Result<Option<SecurityGroupId>, VpcError> {
        for g in groups {
            match self.live_group(account_id, g).await {
                Ok(_) => {}
                Err(VpcError::NotFound { .. }) => return Ok(Some(g.clone())),
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// `CreateNetworkInterface`: a private address from the subnet (the requested one if free:
    /// `InvalidIPAddress.InUse` otherwise; else the lowest free one), a unique MAC, and its
    /// groups (1 to 5 of the subnet's VPC; the VPC's default group when none is given).
    pub async fn create_network_interface(
        &self,
        account_id: &str,
        subnet_id: &SubnetId,
        request: &CreateInterface,
        tags: &[(String, String)],
    ) -> Result<NetworkInterface, VpcError> {
        check_account(account_id)?;
        validate_tags(tags)?;
        if request.description.chars().count() > MAX_DESCRIPTION_LEN {
            return Err(VpcError::InvalidParameterValue {
                parameter: "description",
                value: truncated(&request.description),
                reason: "Descriptions may not exceed 255 characters.".to_owned(),
            });
        }
        let subnet = self.get_subnet(account_id, subnet_id).await?;
        if let Some(ip) = request.private_ip {
            // Refuse addresses outside the subnet or reserved before taking anything.
            let mut probe = subnet.addresses.clone();
            probe.allocate(ip)?;
        }
        let groups = self
            .groups_for_interface(account_id, &subnet.vpc_id, &subnet.id, &request.groups)
            .await?;
        let id = NetworkInterfaceId::generate(&mut OsRng);
        let mut tag_list = Vec::new();
        merge_tags(id.as_str(), &mut tag_list, tags)?;
        let mac = self.reserve_mac(&id).await?;
        let subnet_key = record_key(account_id, subnet.id.as_str());
        let mut private_ip = None;
        let taken = modify(&self.subnets, &subnet_key, subnet.id.not_found(), |s| {
            private_ip = Some(s.addresses.allocate_requested_or_next(request.private_ip)?);
            Ok(())
        })
        .await;
        let private_ip = match (taken, private_ip) {
            (Ok(_), Some(ip)) => ip,
            (Err(e), _) => {
                let _ = self.release_mac(&mac).await;
                return Err(e);
            }
            (Ok(_), None) => {
                return Err(VpcError::Storage("address allocation wrote nothing".into()));
            }
        };
        let interface = NetworkInterface {
            id: id.clone(),
            subnet_id: subnet.id.clone(),
            vpc_id: subnet.vpc_id.clone(),
            availability_zone: subnet.availability_zone.clone(),
            private_ip,
            mac,
            groups,
            description: request.description.clone(),
            tags: tag_list,
            status: InterfaceStatus::Available,
            source_dest_check: true,
        };
        let key = record_key(account_id, id.as_str());
        let undo = async {
            self.release_address(account_id, &subnet.id, private_ip)
                .await;
            let _ = self.release_mac(&mac).await;
        };
        if let Err(e) = self.interfaces.create(&key, &interface).await {
            undo.await;
            return Err(storage_error(e));
        }
        // A group being deleted concurrently may have missed this interface: back out.
        match self.first_dead_group(account_id, &interface.groups).await {
            Ok(None) => Ok(interface),
            Ok(Some(dead)) => {
                let _ = self.interfaces.delete(&key, None).await;
                undo.await;
                Err(dead.not_found())
            }
            Err(e) => {
                let _ = self.interfaces.delete(&key, None).await;
                undo.await;
                Err(e)
            }
        }
    }

    /// One network interface of the account.
    pub async fn get_network_interface(
        &self,
        account_id: &str,
        id: &NetworkInterfaceId,
    ) -> Result<NetworkInterface, VpcError> {
        check_account(account_id)?;
        let id = NetworkInterfaceId::parse(id.as_str())?;
        self.interfaces
            .get(&record_key(account_id, id.as_str()))
            .await
            .map_err(storage_error)?
            .map(|v| v.value)
            .ok_or_else(|| id.not_found())
    }

    /// Every network interface of the account, by id.
    pub async fn list_network_interfaces(
        &self,
        account_id: &str,
    ) -> Result<Vec<NetworkInterface>, VpcError> {
        check_account(account_id)?;
        let prefix = format!("{account_id}.");
        Ok(list_values(&self.interfaces, Some(&prefix))
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// `DeleteNetworkInterface`: refused while attached (`InvalidNetworkInterface.InUse`);
    /// removes the record, then gives the address and the MAC back.
    pub async fn delete_network_interface(
        &self,
        account_id: &str,
        id: &NetworkInterfaceId,
    ) -> Result<(), VpcError> {
        check_account(account_id)?;
        let id = NetworkInterfaceId::parse(id.as_str())?;
        let interface = delete_checked(
            &self.interfaces,
            &record_key(account_id, id.as_str()),
            id.not_found(),
            |i: &NetworkInterface| {
                if i.status == InterfaceStatus::InUse {
                    Err(VpcError::InterfaceInUse(i.id.to_string()))
                } else {
                    Ok(())
                }
            },
        )
        .await?;
        let released = modify(
            &self.subnets,
            &record_key(account_id, interface.subnet_id.as_str()),
            interface.subnet_id.not_found(),
            |s| match s.addresses.release(interface.private_ip) {
                // Already free (an earlier attempt released it): nothing to write back.
                Ok(()) | Err(VpcError::AddressNotAllocated(_)) => Ok(()),
                Err(e) => Err(e),
            },
        )
        .await;
        match released {
            // The interface is gone either way; a subnet that vanished holds no address.
            Ok(_) | Err(VpcError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        self.release_mac(&interface.mac).await
    }

    /// `ModifyNetworkInterfaceAttribute` with `SecurityGroupId.N`: 1 to 5 groups of the
    /// interface's VPC.
    pub async fn modify_network_interface_groups(
        &self,
        account_id: &str,
        id: &NetworkInterfaceId,
        groups: &[SecurityGroupId],
    ) -> Result<NetworkInterface, VpcError> {
        let current = self.get_network_interface(account_id, id).await?;
        if groups.is_empty() {
            return Err(VpcError::MissingParameter("groupId"));
        }
        let groups = self
            .groups_for_interface(account_id, &current.vpc_id, &current.subnet_id, groups)
            .await?;
        let key = record_key(account_id, current.id.as_str());
        let mut previous = Vec::new();
        let written = modify(&self.interfaces, &key, current.id.not_found(), |i| {
            previous = std::mem::replace(&mut i.groups, groups.clone());
            Ok(())
        })
        .await?;
        if let Some(dead) = self.first_dead_group(account_id, &groups).await? {
            // Put the old groups back unless someone changed them meanwhile.
            let _ = modify(&self.interfaces, &key, current.id.not_found(), |i| {
                if i.groups == groups {
                    i.groups = previous.clone();
                }
                Ok(())
            })
            .await;
            return Err(dead.not_found());
        }
        Ok(written.value)
    }

    /// Marks an interface attached (`in-use`, it then cannot be deleted) or not (`available`).
    pub async fn set_interface_status(
        &self,
        account_id: &str,
        id: &NetworkInterfaceId,
        status: InterfaceStatus,
    ) -> Result<NetworkInterface, VpcError> {
        check_account(account_id)?;
        let id = NetworkInterfaceId::parse(id.as_str())?;
        let written = modify(
            &self.interfaces,
            &record_key(account_id, id.as_str()),
            id.not_found(),
            |i| {
                i.status = status;
                Ok(())
            },
        )
        .await?;
        Ok(written.value)
    }

    /// An interface by id in any account, with the account (the switch knows only the
    /// `iface-id`).
    pub async fn locate_interface(
        &self,
        id: &NetworkInterfaceId,
    ) -> Result<Option<(String, NetworkInterface)>, VpcError> {
        let suffix = format!(".{id}");
        for key in self.interfaces.keys(None).await.map_err(storage_error)? {
            if let Some(account) = key.strip_suffix(&suffix)
                && let Some(found) = self.interfaces.get(&key).await.map_err(storage_error)?
            {
                return Ok(Some((account.to_owned(), found.value)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    fn code<T: fmt::Debug>(r: Result<T, VpcError>) -> &'static str {
        r.expect_err("should fail").code()
    }

    /// hive-api runs these futures on tokio's multi-threaded runtime: they must be `Send`.
    /// Never called; it only has to compile.
    #[allow(dead_code)]
    fn futures_are_send(repo: VpcRepo, vpc: VpcId, subnet: SubnetId, group: SecurityGroupId) {
        fn send<T: Send>(_: T) {}
        let eni = NetworkInterfaceId::new_unchecked("eni-1");
        send(repo.bootstrap_default("a", &VpcConfig::default()));
        send(repo.create_vpc("a", "10.0.0.0/16", &[]));
        send(repo.delete_vpc("a", &vpc));
        send(repo.create_subnet("a", &vpc, "10.0.0.0/24", None, &[]));
        send(repo.delete_subnet("a", &subnet));
        send(repo.create_security_group("a", &vpc, "n", "d", &[]));
        send(repo.delete_security_group("a", &group));
        send(repo.authorize("a", &group, Vec::new()));
        send(repo.revoke("a", &group, &[]));
        send(repo.create_network_interface("a", &subnet, &CreateInterface::default(), &[]));
        send(repo.delete_network_interface("a", &eni));
        send(repo.modify_network_interface_groups("a", &eni, &[]));
        send(repo.create_tags("a", &[], &[]));
        send(repo.delete_tags("a", &[], &[]));
        send(repo.list_tags("a"));
        send(repo.node_state(&NodeBindings::default()));
        send(repo.watch());
    }

    #[test]
    fn tags_follow_ec2_rules() {
        assert_eq!(validate_tags(&[tag("Name", ""), tag("a:b", "c")]), Ok(()));
        assert_eq!(code(validate_tags(&[tag("", "v")])), "MissingParameter");
        assert_eq!(
            code(validate_tags(&[tag("AWS:name", "v")])),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(validate_tags(&[tag(&"k".repeat(128), "v")])),
            "InvalidParameterValue"
        );
        assert_eq!(
            validate_tags(&[tag(&"k".repeat(127), &"v".repeat(255))]),
            Ok(())
        );
        assert_eq!(
            code(validate_tags(&[tag("k", &"v".repeat(256))])),
            "InvalidParameterValue"
        );
        let many: Vec<_> = (0..51).map(|i| tag(&i.to_string(), "v")).collect();
        assert_eq!(code(validate_tags(&many)), "TagLimitExceeded");
        assert_eq!(validate_tags(&many[..50]), Ok(()));
    }

    #[test]
    fn merge_overwrites_and_limits() {
        let mut tags = vec![tag("a", "1"), tag("b", "2")];
        merge_tags("vpc-1", &mut tags, &[tag("b", "3"), tag("c", "4")]).expect("merge");
        assert_eq!(tags, vec![tag("a", "1"), tag("b", "3"), tag("c", "4")]);
        let many: Vec<_> = (0..48).map(|i| tag(&format!("k{i}"), "v")).collect();
        let before = tags.clone();
        assert_eq!(
            code(merge_tags("vpc-1", &mut tags, &many)),
            "TagLimitExceeded"
        );
        assert_eq!(tags, before, "refused merges change nothing");
        remove_tags(
            &mut tags,
            &[("a".into(), Some("wrong".into())), ("b".into(), None)],
        );
        assert_eq!(tags, vec![tag("a", "1"), tag("c", "4")]);
        remove_tags(&mut tags, &[("a".into(), Some("1".into()))]);
        assert_eq!(tags, vec![tag("c", "4")]);
    }

    #[test]
    fn resource_ids_parse_by_prefix() {
        assert!(matches!(
            ResourceId::parse("vpc-1a2b3c4d"),
            Ok(ResourceId::Vpc(_))
        ));
        assert!(matches!(
            ResourceId::parse("subnet-1a2b3c4d"),
            Ok(ResourceId::Subnet(_))
        ));
        let sg = ResourceId::parse("sg-1a2b3c4d").expect("sg");
        assert_eq!(
            (sg.resource_type(), sg.as_str()),
            ("security-group", "sg-1a2b3c4d")
        );
        let eni = ResourceId::parse("eni-0123456789abcdef0").expect("eni");
        assert_eq!(eni.resource_type(), "network-interface");
        assert_eq!(eni.to_string(), "eni-0123456789abcdef0");
        assert_eq!(code(ResourceId::parse("i-1a2b3c4d")), "InvalidID");
        assert_eq!(code(ResourceId::parse("")), "InvalidID");
        assert_eq!(code(ResourceId::parse("sgr-1a2b3c4d")), "InvalidID");
        assert_eq!(
            code(ResourceId::parse("subnet-XYZ")),
            "InvalidSubnetID.Malformed"
        );
        let long = format!("x{}", "y".repeat(500));
        let e = ResourceId::parse(&long).expect_err("junk");
        assert!(e.to_string().len() < 120, "messages stay short: {e}");
    }

    #[test]
    fn bucket_names_default_and_rename() {
        let names = VpcBucketNames::default();
        let configs = names.configs(3);
        assert_eq!(configs[0].name, "hive-vpc-vpcs");
        assert_eq!(configs[4].name, "hive-vpc-allocations");
        assert!(
            configs
                .iter()
                .all(|c| c.replicas == 3 && c.history == RECORD_HISTORY)
        );
        let renamed: VpcBucketNames =
            serde_json::from_str(r#"{"kv_bucket_vpcs": "x"}"#).expect("parse");
        assert_eq!(renamed.kv_bucket_vpcs, "x");
        assert_eq!(renamed.kv_bucket_subnets, DEFAULT_SUBNETS_BUCKET);
    }

    #[test]
    fn storage_errors_map_to_server_faults() {
        let e = storage_error(KvError::Unavailable("timeout".into()));
        assert_eq!(
            (e.code(), e.is_client_error()),
            ("ServiceUnavailable", false)
        );
        let e = storage_error(KvError::RevisionConflict {
            key: "k".into(),
            expected: 1,
            actual: Some(2),
        });
        assert_eq!(
            (e.code(), e.is_client_error()),
            ("RequestLimitExceeded", false)
        );
        let e = storage_error(KvError::AlreadyExists {
            bucket: "b".into(),
            key: "k".into(),
        });
        assert_eq!((e.code(), e.http_status()), ("RequestLimitExceeded", 503));
        let e = storage_error(KvError::BucketNotFound("b".into()));
        assert_eq!((e.code(), e.http_status()), ("ServiceUnavailable", 503));
        let e = storage_error(KvError::Codec("bad".into()));
        assert_eq!((e.code(), e.is_client_error()), ("InternalError", false));
        assert_eq!(e.http_status(), 500);
        let e = storage_error(KvError::InvalidKey {
            key: "k".into(),
            reason: "r",
        });
        assert_eq!((e.code(), e.http_status()), ("InternalError", 500));
    }

    #[test]
    fn account_ids_are_twelve_digits() {
        assert_eq!(check_account("000000000000"), Ok(()));
        for bad in [
            "",
            "00000000000",
            "0000000000000",
            "00000000000a",
            "0000.0000000",
        ] {
            assert_eq!(code(check_account(bad)), "InvalidParameter", "{bad}");
        }
    }

    #[test]
    fn records_round_trip() {
        let mut rng = OsRng;
        let vpc = Vpc::new(
            VpcId::generate(&mut rng),
            "10.0.0.0/16".parse().expect("cidr"),
            7,
            false,
        );
        let group = default_security_group(&mut rng, &vpc.id);
        let record = VpcRecord {
            vpc: vpc.clone(),
            subnets: BTreeMap::from([(
                SubnetId::generate(&mut rng),
                "10.0.1.0/24".parse().expect("cidr"),
            )]),
            groups: BTreeMap::from([(group.id.clone(), "default".into())]),
        };
        let json = serde_json::to_string(&record).expect("json");
        assert_eq!(
            serde_json::from_str::<VpcRecord>(&json).expect("parse"),
            record
        );
        let g = GroupRecord {
            group,
            deleting: false,
        };
        let json = serde_json::to_string(&g).expect("json");
        assert!(
            !json.contains("deleting"),
            "the mark is written only when set"
        );
        assert_eq!(
            serde_json::from_str::<GroupRecord>(&json).expect("parse"),
            g
        );
        assert_eq!(
            mac_key(&MacAddr([2, 0xab, 0, 1, 0xfe, 0x10])),
            "mac.02ab0001fe10"
        );
        assert!(
            switch::usable_ofport(1)
                && !switch::usable_ofport(0)
                && !switch::usable_ofport(0xffff_fffe)
        );
    }
}
