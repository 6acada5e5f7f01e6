//! The IAM service (API version 2010-05-08) over [`hive_iam::repo::IamRepo`].
//!
//! Actions are split by family: [`identities`] (users, groups, membership, access keys, tags,
//! permissions boundaries, account details) and [`policies`] (roles, managed policies and
//! versions, attachments, inline policies, simulation). Each family lists its actions and
//! serves them; this module only dispatches.

mod identities;
mod policies;

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
