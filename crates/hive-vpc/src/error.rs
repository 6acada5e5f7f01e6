//! The one error type of hive-vpc, with the EC2 error code each variant maps to.
//!
//! Every decision the network core refuses is a [`VpcError`]; the API frontend turns it into an
//! EC2 `<Errors><Error><Code/><Message/></Error></Errors>` body with [`VpcError::code`] and the
//! `Display` text, so the variants follow AWS's own error codes and messages.

use std::fmt;

/// The kinds of resources hive-vpc names in ids and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// A VPC (`vpc-`).
    Vpc,
    /// A subnet (`subnet-`).
    Subnet,
    /// A security group (`sg-`).
    SecurityGroup,
    /// A security group rule (`sgr-`).
    SecurityGroupRule,
    /// A network interface (`eni-`).
    NetworkInterface,
}

impl ResourceKind {
    /// The EC2 code for an id of this kind that is not well formed.
    pub fn malformed_code(self) -> &'static str {
        match self {
            Self::Vpc => "InvalidVpcID.Malformed",
            Self::Subnet => "InvalidSubnetID.Malformed",
            Self::SecurityGroup => "InvalidGroupId.Malformed",
            Self::SecurityGroupRule => "InvalidSecurityGroupRuleId.Malformed",
            Self::NetworkInterface => "InvalidNetworkInterfaceID.Malformed",
        }
    }

    /// The EC2 code for a well-formed id of this kind that names nothing.
    pub fn not_found_code(self) -> &'static str {
        match self {
            Self::Vpc => "InvalidVpcID.NotFound",
            Self::Subnet => "InvalidSubnetID.NotFound",
            Self::SecurityGroup => "InvalidGroup.NotFound",
            Self::SecurityGroupRule => "InvalidSecurityGroupRuleId.NotFound",
            Self::NetworkInterface => "InvalidNetworkInterfaceID.NotFound",
        }
    }

    /// The noun AWS uses in its messages.
    fn noun(self) -> &'static str {
        match self {
            Self::Vpc => "vpc ID",
            Self::Subnet => "subnet ID",
            Self::SecurityGroup => "security group",
            Self::SecurityGroupRule => "security group rule ID",
            Self::NetworkInterface => "networkInterface ID",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

/// Why hive-vpc refused a request. [`VpcError::code`] gives the EC2 error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VpcError {
    /// A parameter has a value AWS would refuse (`InvalidParameterValue`).
    #[error("Value ({value}) for parameter {parameter} is invalid. {reason}")]
    InvalidParameterValue {
        /// The EC2 parameter name (`cidrBlock`, `GroupName`, ...).
        parameter: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// Two parameters that must agree do not (`InvalidParameter`), e.g. a security group and a
    /// subnet from different VPCs.
    #[error("{0}")]
    InvalidParameter(String),
    /// A required parameter is absent or empty (`MissingParameter`).
    #[error("The request must contain the parameter {0}")]
    MissingParameter(&'static str),
    /// A VPC CIDR block of the wrong size, a restricted range, or overlapping the VPC's other
    /// blocks (`InvalidVpc.Range`).
    #[error("The CIDR '{cidr}' is invalid. {reason}")]
    InvalidVpcRange {
        /// The CIDR given.
        cidr: String,
        /// Why it is refused.
        reason: String,
    },
    /// The VPC already has as many CIDR blocks as allowed (`CidrLimitExceeded`).
    #[error("This network '{vpc}' has met its maximum number of allowed CIDRs: {limit}")]
    CidrLimitExceeded {
        /// The VPC.
        vpc: String,
        /// The limit.
        limit: usize,
    },
    /// A subnet CIDR of the wrong size or outside the VPC (`InvalidSubnet.Range`).
    #[error("The CIDR '{0}' is invalid.")]
    InvalidSubnetRange(String),
    /// A subnet CIDR overlapping a sibling subnet (`InvalidSubnet.Conflict`).
    #[error("The CIDR '{cidr}' conflicts with another subnet")]
    SubnetConflict {
        /// The CIDR given.
        cidr: String,
        /// The sibling subnet's CIDR it overlaps.
        existing: String,
    },
    /// Every user VLAN (2..=4094) is taken: no further VPC can be created (`VpcLimitExceeded`).
    #[error("The maximum number of VPCs has been reached.")]
    VpcLimitExceeded,
    /// The subnet has no free address left (`InsufficientFreeAddressesInSubnet`).
    #[error(
        "There are not enough free addresses in subnet '{0}' to satisfy the requested number of instances."
    )]
    AddressExhausted(String),
    /// The requested private address is taken (`InvalidIPAddress.InUse`).
    #[error("Address {0} is in use.")]
    AddressInUse(String),
    /// An address outside the subnet's range (`InvalidParameterValue`).
    #[error("Address {address} does not fall within the subnet's address range {cidr}")]
    AddressNotInSubnet {
        /// The address given.
        address: String,
        /// The subnet's CIDR.
        cidr: String,
    },
    /// One of the five addresses AWS reserves in every subnet (`InvalidParameterValue`).
    #[error("Address {0} is in subnet's reserved address range")]
    AddressReserved(String),
    /// Releasing an address that is not allocated (`InvalidParameterValue`).
    #[error("Address {0} is not assigned in this subnet")]
    AddressNotAllocated(String),
    /// A VLAN id outside the range or not allocated (`InvalidParameterValue`).
    #[error("VLAN {vlan} cannot be used: {reason}")]
    InvalidVlan {
        /// The VLAN id.
        vlan: u16,
        /// Why.
        reason: &'static str,
    },
    /// No unique MAC address could be drawn (`InsufficientAddressCapacity`).
    #[error("Could not allocate a unique MAC address.")]
    MacExhausted,
    /// An id that is not of the form `prefix-` + hex (`Invalid*ID.Malformed`).
    #[error("Invalid id: \"{id}\" (expecting \"{prefix}...\")")]
    MalformedId {
        /// What kind of id was expected.
        kind: ResourceKind,
        /// The expected prefix.
        prefix: &'static str,
        /// The text given.
        id: String,
    },
    /// A well-formed id that names nothing (`Invalid*ID.NotFound`).
    #[error("The {kind} '{id}' does not exist")]
    NotFound {
        /// What kind of resource.
        kind: ResourceKind,
        /// The id given.
        id: String,
    },
    /// A security group name already used in the VPC (`InvalidGroup.Duplicate`).
    #[error("The security group '{name}' already exists for VPC '{vpc}'")]
    DuplicateGroup {
        /// The name.
        name: String,
        /// The VPC.
        vpc: String,
    },
    /// A rule names a security group of another VPC (`InvalidGroup.NotFound`, as AWS says it).
    #[error("You have specified two resources that belong to different networks: {0}")]
    GroupInOtherNetwork(String),
    /// The name `default` is kept for the VPC's default group (`InvalidGroup.Reserved`).
    #[error("The security group 'default' is reserved")]
    ReservedGroupName,
    /// A rule equal to an existing one (`InvalidPermission.Duplicate`).
    #[error("the specified rule \"{0}\" already exists")]
    DuplicatePermission(String),
    /// Revoking a rule the group does not have (`InvalidPermission.NotFound`).
    #[error("The specified rule does not exist in this security group.")]
    PermissionNotFound,
    /// Too many rules in one direction of a group (`RulesPerSecurityGroupLimitExceeded`).
    #[error("The maximum number of rules per security group has been reached.")]
    RulesPerSecurityGroupLimitExceeded,
    /// Too many security groups on one interface (`SecurityGroupsPerInterfaceLimitExceeded`).
    #[error("The maximum number of security groups per interface has been reached.")]
    SecurityGroupsPerInterfaceLimitExceeded,
    /// The default security group cannot be deleted (`CannotDelete`).
    #[error("the specified group: \"{0}\" name: \"default\" cannot be deleted by a user")]
    CannotDeleteDefaultGroup(String),
    /// The interface is attached and cannot be deleted (`InvalidNetworkInterface.InUse`).
    #[error("The networkInterface ID '{0}' is currently in use.")]
    InterfaceInUse(String),
    /// Something still uses the resource (`DependencyViolation`).
    #[error("resource {resource} has a dependent object: {dependent}")]
    DependencyViolation {
        /// The resource being deleted.
        resource: String,
        /// What depends on it.
        dependent: String,
    },
    /// The `[vpc]` section of `hive.toml` is inconsistent (not an EC2 error).
    #[error("invalid [vpc] configuration: {field}: {reason}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// Stored state that does not decode (`InternalError`): never the caller's fault.
    #[error("stored network state is corrupt: {0}")]
    CorruptState(String),
    /// A resource id of no kind this call accepts (`InvalidID`), e.g. in `CreateTags`.
    #[error("The ID '{0}' is not valid")]
    InvalidId(String),
    /// Too many tags on one resource (`TagLimitExceeded`).
    #[error("The maximum number of tags ({limit}) for resource {resource} has been reached.")]
    TagLimitExceeded {
        /// The resource.
        resource: String,
        /// The limit.
        limit: usize,
    },
    /// The store refused or failed an operation (`InternalError`): never the caller's fault.
    #[error("network state storage failed: {0}")]
    Storage(String),
    /// The store could not be reached in time (`ServiceUnavailable`); for a write the outcome
    /// is unknown.
    #[error("network state storage is unavailable: {0}")]
    StorageUnavailable(String),
    /// Too many concurrent changes to one record; the client should retry
    /// (`RequestLimitExceeded`, 503 as on EC2, which AWS SDKs retry with backoff).
    #[error("Request limit exceeded: too many concurrent changes to {0}; try again.")]
    Busy(String),
}

impl VpcError {
    /// The EC2 error code, e.g. `"InvalidVpc.Range"`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidParameterValue { .. }
            | Self::AddressNotInSubnet { .. }
            | Self::AddressReserved(_)
            | Self::AddressNotAllocated(_)
            | Self::InvalidVlan { .. } => "InvalidParameterValue",
            Self::InvalidParameter(_) => "InvalidParameter",
            Self::MissingParameter(_) => "MissingParameter",
            Self::InvalidVpcRange { .. } => "InvalidVpc.Range",
            Self::CidrLimitExceeded { .. } => "CidrLimitExceeded",
            Self::InvalidSubnetRange(_) => "InvalidSubnet.Range",
            Self::SubnetConflict { .. } => "InvalidSubnet.Conflict",
            Self::VpcLimitExceeded => "VpcLimitExceeded",
            Self::AddressExhausted(_) => "InsufficientFreeAddressesInSubnet",
            Self::AddressInUse(_) => "InvalidIPAddress.InUse",
            Self::MacExhausted => "InsufficientAddressCapacity",
            Self::MalformedId { kind, .. } => kind.malformed_code(),
            Self::NotFound { kind, .. } => kind.not_found_code(),
            Self::DuplicateGroup { .. } => "InvalidGroup.Duplicate",
            Self::GroupInOtherNetwork(_) => "InvalidGroup.NotFound",
            Self::ReservedGroupName => "InvalidGroup.Reserved",
            Self::DuplicatePermission(_) => "InvalidPermission.Duplicate",
            Self::PermissionNotFound => "InvalidPermission.NotFound",
            Self::RulesPerSecurityGroupLimitExceeded => "RulesPerSecurityGroupLimitExceeded",
            Self::SecurityGroupsPerInterfaceLimitExceeded => {
                "SecurityGroupsPerInterfaceLimitExceeded"
            }
            Self::CannotDeleteDefaultGroup(_) => "CannotDelete",
            Self::InterfaceInUse(_) => "InvalidNetworkInterface.InUse",
            Self::DependencyViolation { .. } => "DependencyViolation",
            Self::InvalidConfig { .. } => "InvalidConfiguration",
            Self::CorruptState(_) | Self::Storage(_) => "InternalError",
            Self::InvalidId(_) => "InvalidID",
            Self::TagLimitExceeded { .. } => "TagLimitExceeded",
            Self::StorageUnavailable(_) => "ServiceUnavailable",
            Self::Busy(_) => "RequestLimitExceeded",
        }
    }

    /// Whether the caller (the client) is at fault: a 4xx rather than a 5xx status.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            Self::CorruptState(_)
                | Self::MacExhausted
                | Self::Storage(_)
                | Self::StorageUnavailable(_)
                | Self::Busy(_)
        )
    }

    /// The HTTP status EC2 answers with: 400 when the caller is at fault, 503 when the store
    /// is unavailable or contended (the same request may succeed later), 500 otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::StorageUnavailable(_) | Self::Busy(_) => 503,
            _ if self.is_client_error() => 400,
            _ => 500,
        }
    }

    /// Shorthand for [`VpcError::InvalidParameterValue`].
    pub(crate) fn invalid(
        parameter: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidParameterValue {
            parameter,
            value: value.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_ec2() {
        assert_eq!(
            VpcError::InvalidVpcRange {
                cidr: "10.0.0.0/8".into(),
                reason: String::new()
            }
            .code(),
            "InvalidVpc.Range"
        );
        assert_eq!(
            VpcError::InvalidSubnetRange("x".into()).code(),
            "InvalidSubnet.Range"
        );
        assert_eq!(
            VpcError::MalformedId {
                kind: ResourceKind::Vpc,
                prefix: "vpc-",
                id: "x".into()
            }
            .code(),
            "InvalidVpcID.Malformed"
        );
        assert_eq!(
            VpcError::NotFound {
                kind: ResourceKind::SecurityGroup,
                id: "sg-1".into()
            }
            .code(),
            "InvalidGroup.NotFound"
        );
        assert_eq!(
            VpcError::PermissionNotFound.code(),
            "InvalidPermission.NotFound"
        );
        assert!(!VpcError::CorruptState("x".into()).is_client_error());
        assert!(VpcError::VpcLimitExceeded.is_client_error());
        assert_eq!(VpcError::VpcLimitExceeded.http_status(), 400);
        assert_eq!(VpcError::CorruptState("x".into()).http_status(), 500);
        assert_eq!(VpcError::MacExhausted.http_status(), 500);
        assert_eq!(VpcError::StorageUnavailable("x".into()).http_status(), 503);
        assert_eq!(VpcError::Busy("k".into()).http_status(), 503);
    }

    #[test]
    fn messages_name_the_value() {
        let e = VpcError::invalid(
            "cidrBlock",
            "10.0.0.5/16",
            "This is not a valid CIDR block.",
        );
        assert_eq!(
            e.to_string(),
            "Value (10.0.0.5/16) for parameter cidrBlock is invalid. This is not a valid CIDR block."
        );
    }
}
