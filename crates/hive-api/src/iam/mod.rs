//! The IAM service (API version 2010-05-08) over [`hive_iam_store::IamRepo`].
//!
//! Actions are split by family: [`identities`] (users, groups, membership, access keys, tags,
//! permissions boundaries, account details) and [`policies`] (roles, managed policies and
//! versions, attachments, inline policies, simulation). Each family lists its actions and
//! serves them; this module only dispatches.

mod identities;
mod policies;

/// The identity family's actions (users, groups, keys, tags, boundaries).
pub use identities::ACTIONS as IDENTITY_ACTIONS;
/// The policy family's actions (roles, policies, attachments, inline policies, simulation).
pub use policies::ACTIONS as POLICY_ACTIONS;

use std::sync::Arc;

use async_trait::async_trait;

use crate::app::App;
use crate::error::ApiError;
use crate::server::{AwsService, RequestContext};
use crate::wire::ServiceId;
use crate::wire::query::Params;

/// The IAM service.
#[derive(Debug, Clone)]
pub struct IamService {
    app: Arc<App>,
}

impl IamService {
    /// IAM over `app`'s repository.
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

#[async_trait]
impl AwsService for IamService {
    fn id(&self) -> ServiceId {
        ServiceId::Iam
    }

    fn action(&self, name: &str) -> Option<&'static str> {
        identities::ACTIONS
            .iter()
            .chain(policies::ACTIONS)
            .find(|a| **a == name)
            .copied()
    }

    async fn call(&self, ctx: &RequestContext, params: &Params) -> Result<String, ApiError> {
        if identities::ACTIONS.contains(&ctx.action) {
            identities::call(&self.app, ctx, params).await
        } else {
            policies::call(&self.app, ctx, params).await
        }
    }
}

/// `Tags.member.N.Key` / `.Value` (a missing value is empty), as CreateRole, CreatePolicy and
/// STS AssumeRole take them.
pub(crate) fn member_tags(params: &Params) -> Result<Vec<hive_iam::identity::Tag>, ApiError> {
    params
        .member_structs("Tags")?
        .iter()
        .map(|t| {
            Ok(hive_iam::identity::Tag {
                key: t.required("Key")?.to_owned(),
                value: t.get("Value").unwrap_or_default().to_owned(),
            })
        })
        .collect()
}
