//! The EC2 service (API version 2016-11-15), VPC networking subset, over
//! [`hive_vpc_store::VpcRepo`].
//!
//! Actions are split by resource (private modules): `vpcs`, `subnets`, `security_groups`
//! (groups and rules), `interfaces` and `tags`; `filters` holds `Filter.N` matching and
//! pagination, `permissions` the `IpPermissions` wire form, `render` the XML of each
//! record, and `call` what every handler shares (authorization, tags, `DryRun`). Each
//! handler decodes, authorizes, calls the repository, and encodes; the decisions belong to
//! hive-vpc.
//!
//! Every other action of the EC2 API answers `UnsupportedOperation` (it exists on AWS but not
//! here); names EC2 does not have answer `InvalidAction`.

mod call;
mod catalog;
mod filters;
mod interfaces;
mod permissions;
mod render;
mod security_groups;
mod subnets;
mod tags;
mod vpcs;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hive_vpc::error::VpcError;
use hive_vpc_store::{RepoOptions, VpcRepo};
use tokio::sync::OnceCell;

use crate::app::App;
use crate::error::ApiError;
use crate::server::{AwsService, RequestContext};
use crate::wire::ServiceId;
use crate::wire::query::Params;

use crate::server::handler::action_table;
use call::Call;

/// The EC2 service.
#[derive(Debug)]
pub struct Ec2Service {
    app: Arc<App>,
    /// The network repository, opened on first use unless given.
    repo: OnceCell<Arc<VpcRepo>>,
    /// Accounts whose default network is known to exist (checked once per process).
    bootstrapped: Mutex<HashSet<String>>,
}

impl Ec2Service {
    /// EC2 over `app`'s store. The repository is opened on first use ([`Ec2Service::repo`],
    /// which the switch sync calls at start, or the first request), and the serving
    /// account's default network is created then when missing; any other calling account
    /// gets its default network on its first EC2 request.
    pub fn new(app: Arc<App>) -> Self {
        Self {
            app,
            repo: OnceCell::new(),
            bootstrapped: Mutex::new(HashSet::new()),
        }
    }

    /// EC2 over an opened repository (the default network is still ensured on first use).
    pub fn with_repo(app: Arc<App>, repo: Arc<VpcRepo>) -> Self {
        Self {
            app,
            repo: OnceCell::new_with(Some(repo)),
            bootstrapped: Mutex::new(HashSet::new()),
        }
    }

    /// [`Ec2Service::new`], with the repository opened and the serving account's default
    /// network (VPC `[vpc] default_cidr` on VLAN 1, its subnet and default security group)
    /// made now rather than on first use.
    pub async fn open(app: Arc<App>) -> Result<Self, VpcError> {
        let service = Self::new(app);
        service.repo().await?;
        Ok(service)
    }

    /// The network repository (for the switch sync), opened if it was not yet; opening it
    /// also makes sure the serving account's default network exists.
    pub async fn repo(&self) -> Result<Arc<VpcRepo>, VpcError> {
        let repo = self
            .repo
            .get_or_try_init(|| async {
                let options = RepoOptions {
                    replicas: self.app.config.storage.replicas.max(1),
                    ..RepoOptions::default()
                };
                VpcRepo::open(self.app.store.as_ref(), &options)
                    .await
                    .map(Arc::new)
            })
            .await?
            .clone();
        self.ensure_default_network(&repo, self.app.account_id())
            .await?;
        Ok(repo)
    }

    /// Create `account`'s default network unless this process already saw it.
    async fn ensure_default_network(&self, repo: &VpcRepo, account: &str) -> Result<(), VpcError> {
        let known = self
            .bootstrapped
            .lock()
            .map(|set| set.contains(account))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        let outcome = repo
            .bootstrap_default(account, &self.app.config.vpc)
            .await?;
        if outcome.created {
            tracing::info!(
                account,
                vpc = %outcome.network.vpc.id,
                subnet = %outcome.network.subnet.id,
                "created the default network"
            );
        }
        if let Ok(mut set) = self.bootstrapped.lock() {
            set.insert(account.to_owned());
        }
        Ok(())
    }
}

#[async_trait]
impl AwsService for Ec2Service {
    fn id(&self) -> ServiceId {
        ServiceId::Ec2
    }

    fn action(&self, name: &str) -> Option<&'static str> {
        ACTIONS
            .iter()
            .find(|a| **a == name)
            .or_else(|| {
                catalog::EC2_ACTIONS
                    .binary_search(&name)
                    .ok()
                    .map(|i| &catalog::EC2_ACTIONS[i])
            })
            .copied()
    }

    async fn call(&self, ctx: &RequestContext, params: &Params) -> Result<String, ApiError> {
        if !ACTIONS.contains(&ctx.action) {
            return Err(ApiError::new(
                "UnsupportedOperation",
                format!(
                    "The action {} is not supported by Hive, which serves the EC2 VPC \
                     networking subset.",
                    ctx.action
                ),
                400,
            ));
        }
        dispatch(self, ctx, params).await
    }
}

/// EC2-dialect parameters decoded from form text, for the unit tests of the action modules.
#[cfg(test)]
pub(crate) fn test_params(text: &str) -> Params {
    Params::parse(text.as_bytes())
        .expect("valid form text")
        .with_dialect(crate::wire::query::Dialect::Ec2)
}

action_table! {
    /// Serve `ctx.action` on `service`'s repository, after the caller's default network.
    async fn dispatch(service: &Ec2Service, ctx: &RequestContext, params: &Params) -> Result<String, ApiError> {
        prepare {
            let repo = service.repo().await?;
            service.ensure_default_network(&repo, &ctx.caller.account_id).await?;
            let call = Call { app: &service.app, repo: &repo, ctx, params };
        }
        dispatch ctx.action => {
            "CreateVpc" => vpcs::create(&call).await,
            "DescribeVpcs" => vpcs::describe(&call).await,
            "DeleteVpc" => vpcs::delete(&call).await,
            "ModifyVpcAttribute" => vpcs::modify_attribute(&call).await,
            "DescribeVpcAttribute" => vpcs::describe_attribute(&call).await,
            "CreateSubnet" => subnets::create(&call).await,
            "DescribeSubnets" => subnets::describe(&call).await,
            "DeleteSubnet" => subnets::delete(&call).await,
            "ModifySubnetAttribute" => subnets::modify_attribute(&call).await,
            "CreateSecurityGroup" => security_groups::create(&call).await,
            "DescribeSecurityGroups" => security_groups::describe(&call).await,
            "DeleteSecurityGroup" => security_groups::delete(&call).await,
            "AuthorizeSecurityGroupIngress" => {
                security_groups::authorize(&call, hive_vpc::model::Direction::Ingress).await
            },
            "AuthorizeSecurityGroupEgress" => {
                security_groups::authorize(&call, hive_vpc::model::Direction::Egress).await
            },
            "RevokeSecurityGroupIngress" => {
                security_groups::revoke(&call, hive_vpc::model::Direction::Ingress).await
            },
            "RevokeSecurityGroupEgress" => {
                security_groups::revoke(&call, hive_vpc::model::Direction::Egress).await
            },
            "DescribeSecurityGroupRules" => security_groups::describe_rules(&call).await,
            "CreateNetworkInterface" => interfaces::create(&call).await,
            "DescribeNetworkInterfaces" => interfaces::describe(&call).await,
            "DeleteNetworkInterface" => interfaces::delete(&call).await,
            "ModifyNetworkInterfaceAttribute" => interfaces::modify_attribute(&call).await,
            "CreateTags" => tags::create(&call).await,
            "DeleteTags" => tags::delete(&call).await,
            "DescribeTags" => tags::describe(&call).await,
            _ => Err(ApiError::new(
                "UnsupportedOperation",
                format!("The action {} is not supported by Hive.", ctx.action),
                400,
            )),
        }
    }
}
