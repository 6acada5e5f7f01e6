//! `CreateTags`, `DeleteTags` and `DescribeTags` over the four taggable record kinds.

use super::*;

impl VpcRepo {
    /// Applies `change` to the tags of one resource of the account.
    async fn change_tags<F>(
        &self,
        account_id: &str,
        resource: &ResourceId,
        change: F,
    ) -> Result<(), VpcError>
    where
        F: Fn(&mut Vec<(String, String)>) -> Result<(), VpcError> + Send + Sync,
    {
        let key = record_key(account_id, resource.as_str());
        match resource {
            ResourceId::Vpc(id) => {
                modify(&self.vpcs, &key, id.not_found(), |r| {
                    change(&mut r.vpc.tags)
                })
                .await?;
            }
            ResourceId::Subnet(id) => {
                modify(&self.subnets, &key, id.not_found(), |s| change(&mut s.tags)).await?;
            }
            ResourceId::SecurityGroup(id) => {
                modify(&self.groups, &key, id.not_found(), |g| {
                    change(&mut g.group.tags)
                })
                .await?;
            }
            ResourceId::NetworkInterface(id) => {
                modify(&self.interfaces, &key, id.not_found(), |i| {
                    change(&mut i.tags)
                })
                .await?;
            }
        }
        Ok(())
    }

    async fn check_exists(&self, account_id: &str, resource: &ResourceId) -> Result<(), VpcError> {
        match resource {
            ResourceId::Vpc(id) => self.get_vpc(account_id, id).await.map(drop),
            ResourceId::Subnet(id) => self.get_subnet(account_id, id).await.map(drop),
            ResourceId::SecurityGroup(id) => {
                self.get_security_group(account_id, id).await.map(drop)
            }
            ResourceId::NetworkInterface(id) => {
                self.get_network_interface(account_id, id).await.map(drop)
            }
        }
    }

    /// `CreateTags`: every resource must exist (checked before anything is written); a key a
    /// resource already has takes the new value (`TagLimitExceeded` past 50 tags).
    pub async fn create_tags(
        &self,
        account_id: &str,
        resources: &[ResourceId],
        tags: &[(String, String)],
    ) -> Result<(), VpcError> {
        check_account(account_id)?;
        validate_tags(tags)?;
        for resource in resources {
            self.check_exists(account_id, resource).await?;
        }
        for resource in resources {
            let name = resource.to_string();
            self.change_tags(account_id, resource, |existing| {
                merge_tags(&name, existing, tags)
            })
            .await?;
        }
        Ok(())
    }

    /// `DeleteTags`: a tag goes when its key matches and, if a value is given, its value too.
    pub async fn delete_tags(
        &self,
        account_id: &str,
        resources: &[ResourceId],
        tags: &[(String, Option<String>)],
    ) -> Result<(), VpcError> {
        check_account(account_id)?;
        for (key, _) in tags {
            validate_tag_key(key)?;
        }
        for resource in resources {
            self.check_exists(account_id, resource).await?;
        }
        for resource in resources {
            self.change_tags(account_id, resource, |existing| {
                remove_tags(existing, tags);
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// `DescribeTags`: every tag of the account's VPCs, subnets, groups and interfaces, by
    /// resource id, then in the resource's order.
    pub async fn list_tags(&self, account_id: &str) -> Result<Vec<TagDescription>, VpcError> {
        let mut out = Vec::new();
        let mut push = |resource: ResourceId, tags: Vec<(String, String)>| {
            out.extend(tags.into_iter().map(|(key, value)| TagDescription {
                resource: resource.clone(),
                key,
                value,
            }));
        };
        for v in self.list_vpcs(account_id).await? {
            push(ResourceId::Vpc(v.id), v.tags);
        }
        for s in self.list_subnets(account_id).await? {
            push(ResourceId::Subnet(s.id), s.tags);
        }
        for g in self.list_security_groups(account_id).await? {
            push(ResourceId::SecurityGroup(g.id), g.tags);
        }
        for i in self.list_network_interfaces(account_id).await? {
            push(ResourceId::NetworkInterface(i.id), i.tags);
        }
        out.sort_by(|a, b| a.resource.as_str().cmp(b.resource.as_str()));
        Ok(out)
    }
}
