//! What the switch sync reads: the compiler's [`NodeState`] built from KV alone, and the
//! stream of changes that tells it to rebuild.

use super::*;
use hive_vpc::compile::RemoteInterface;
use hive_vpc::model::Protocol;

impl VpcRepo {
    /// The compiler's input for this node, from the stored state of every account and the
    /// caller's switch facts. VPCs, subnets and groups are all included (the bridge serves
    /// them all); a port is included when its interface exists and lies in a known subnet, with
    /// those of its groups that exist in its VPC. Ports on invalid or repeated OpenFlow
    /// numbers, or repeating an address, are left out; VPCs sharing a VLAN are all left out.
    /// The gateway port serves the VLAN-1 default VPC at its default subnet's gateway address.
    /// The result always passes [`NodeState::validate`].
    pub async fn node_state(&self, bindings: &NodeBindings) -> Result<NodeState, VpcError> {
        let vpc_records = list_with_account(&self.vpcs, None).await?;
        let subnets = list_with_account(&self.subnets, None).await?;
        let group_records = list_with_account(&self.groups, None).await?;

        // A VLAN or id held twice (a corrupt store) drops every VPC involved rather than
        // joining two networks.
        let mut by_vlan: BTreeMap<u16, Vec<&Vpc>> = BTreeMap::new();
        let mut id_count: BTreeMap<&VpcId, usize> = BTreeMap::new();
        for (_, r) in &vpc_records {
            by_vlan.entry(r.vpc.vlan).or_default().push(&r.vpc);
            *id_count.entry(&r.vpc.id).or_default() += 1;
        }
        let mut vpcs: Vec<VpcSpec> = by_vlan
            .into_iter()
            .filter(|(vlan, vpcs)| vpcs.len() == 1 && (1..=4094).contains(vlan))
            .flat_map(|(_, vpcs)| vpcs)
            .filter(|v| id_count.get(&v.id) == Some(&1))
            .map(|v| VpcSpec {
                id: v.id.clone(),
                vlan: v.vlan,
                cidrs: v.cidr_blocks(),
            })
            .collect();
        vpcs.sort_by(|a, b| a.id.cmp(&b.id));
        let known_vpcs: HashSet<&VpcId> = vpcs.iter().map(|v| &v.id).collect();

        let subnet_specs: Vec<SubnetSpec> = subnets
            .iter()
            .filter(|(_, s)| known_vpcs.contains(&s.vpc_id))
            .map(|(_, s)| SubnetSpec {
                id: s.id.clone(),
                vpc: s.vpc_id.clone(),
                cidr: s.cidr_block,
                gateway: s.gateway(),
            })
            .collect();

        let mut rule_ids = HashSet::new();
        let mut group_ids = HashSet::new();
        let mut security_groups = Vec::new();
        for (_, r) in group_records {
            // Ids are random: a repeat (never expected) loses the later group or rule, and a
            // rule no parser would produce (an empty port range) is left out.
            if !known_vpcs.contains(&r.group.vpc_id) || !group_ids.insert(r.group.id.clone()) {
                continue;
            }
            let mut group = r.group;
            group.rules.retain(|rule| {
                let sane = match rule.protocol {
                    Protocol::Tcp(p) | Protocol::Udp(p) => p.from <= p.to,
                    _ => true,
                };
                sane && rule_ids.insert(rule.id.clone())
            });
            security_groups.push(group);
        }
        let group_vpc: BTreeMap<&SecurityGroupId, &VpcId> =
            security_groups.iter().map(|g| (&g.id, &g.vpc_id)).collect();

        let mut gateway = None;
        if let Some(binding) = bindings.gateway {
            let default_vpc = vpc_records
                .iter()
                .map(|(_, r)| &r.vpc)
                .find(|v| v.vlan == DEFAULT_VPC_VLAN && known_vpcs.contains(&v.id));
            let default_subnet = default_vpc.and_then(|v| {
                subnets
                    .iter()
                    .map(|(_, s)| s)
                    .find(|s| s.vpc_id == v.id && s.default_for_az)
            });
            if let (Some(vpc), Some(subnet)) = (default_vpc, default_subnet)
                && usable_ofport(binding.ofport)
            {
                gateway = Some(GatewayPort {
                    ofport: binding.ofport,
                    vpc: vpc.id.clone(),
                    ip: subnet.gateway(),
                    mac: binding.mac,
                });
            }
        }

        let mut ports = Vec::new();
        let mut remotes = Vec::new();
        if !bindings.ports.is_empty() || !bindings.remotes.is_empty() {
            let mut used_ofports: HashSet<u32> = gateway.iter().map(|g| g.ofport).collect();
            let mut used_addrs: HashSet<(VpcId, Ipv4Addr)> = subnet_specs
                .iter()
                .map(|s| (s.vpc.clone(), s.gateway))
                .chain(gateway.iter().map(|g| (g.vpc.clone(), g.ip)))
                .collect();
            let mut keys_by_eni: BTreeMap<&str, String> = BTreeMap::new();
            let all_keys = self.interfaces.keys(None).await.map_err(storage_error)?;
            for key in &all_keys {
                if let Some((_, eni)) = key.split_once('.') {
                    keys_by_eni.insert(eni, key.clone());
                }
            }
            for (eni, &ofport) in &bindings.ports {
                if !usable_ofport(ofport) || used_ofports.contains(&ofport) {
                    continue;
                }
                let claimed = self
                    .claim_interface(
                        eni,
                        &keys_by_eni,
                        &subnet_specs,
                        &group_vpc,
                        &mut used_addrs,
                    )
                    .await?;
                let Some((interface, groups)) = claimed else {
                    continue;
                };
                used_ofports.insert(ofport);
                ports.push(LocalPort {
                    ofport,
                    eni: interface.id,
                    mac: interface.mac,
                    ip: interface.private_ip,
                    vpc: interface.vpc_id,
                    subnet: interface.subnet_id,
                    groups,
                });
            }
            // A port plugged here wins over a stale binding elsewhere; a remote interface
            // must be as consistent as a local one, or it is left out (its packets drop).
            for (eni, &tunnel_ofport) in &bindings.remotes {
                if bindings.ports.contains_key(eni)
                    || !usable_ofport(tunnel_ofport)
                    || used_ofports.contains(&tunnel_ofport)
                {
                    continue;
                }
                let claimed = self
                    .claim_interface(
                        eni,
                        &keys_by_eni,
                        &subnet_specs,
                        &group_vpc,
                        &mut used_addrs,
                    )
                    .await?;
                let Some((interface, groups)) = claimed else {
                    continue;
                };
                remotes.push(RemoteInterface {
                    eni: interface.id,
                    mac: interface.mac,
                    ip: interface.private_ip,
                    vpc: interface.vpc_id,
                    groups,
                    tunnel_ofport,
                });
            }
        }

        let state = NodeState {
            vpcs,
            subnets: subnet_specs,
            security_groups,
            ports,
            remotes,
            gateway,
            metadata: bindings.metadata,
        };
        state
            .validate()
            .map_err(|e| VpcError::CorruptState(format!("stored network state: {e}")))?;
        Ok(state)
    }

    /// The stored interface `eni` when it lies in a known subnet of its VPC and its address is
    /// still free in that VPC (it is then taken in `used_addrs`), with those of its groups that
    /// exist in its VPC.
    async fn claim_interface(
        &self,
        eni: &NetworkInterfaceId,
        keys_by_eni: &BTreeMap<&str, String>,
        subnets: &[SubnetSpec],
        group_vpc: &BTreeMap<&SecurityGroupId, &VpcId>,
        used_addrs: &mut HashSet<(VpcId, Ipv4Addr)>,
    ) -> Result<Option<(NetworkInterface, Vec<SecurityGroupId>)>, VpcError> {
        let Some(key) = keys_by_eni.get(eni.as_str()) else {
            return Ok(None);
        };
        let Some(interface) = self
            .interfaces
            .get(key)
            .await
            .map_err(storage_error)?
            .map(|v| v.value)
        else {
            return Ok(None);
        };
        let in_subnet = subnets.iter().any(|s| {
            s.id == interface.subnet_id
                && s.vpc == interface.vpc_id
                && s.cidr.contains(interface.private_ip)
        });
        if !in_subnet || !used_addrs.insert((interface.vpc_id.clone(), interface.private_ip)) {
            return Ok(None);
        }
        let groups = interface
            .groups
            .iter()
            .filter(|g| group_vpc.get(g) == Some(&&interface.vpc_id))
            .cloned()
            .collect();
        Ok(Some((interface, groups)))
    }

    /// A stream of every change to the networking buckets made after the call (by this process
    /// or any other on the same store), one item per written revision. Consumers re-read what
    /// they need ([`VpcRepo::node_state`]) rather than apply the items.
    pub async fn watch(&self) -> Result<BoxStream<'static, Result<VpcChange, VpcError>>, VpcError> {
        let sources = [
            (RecordKind::Vpc, &self.buckets.vpcs),
            (RecordKind::Subnet, &self.buckets.subnets),
            (RecordKind::SecurityGroup, &self.buckets.security_groups),
            (RecordKind::NetworkInterface, &self.buckets.interfaces),
            (RecordKind::Allocation, &self.buckets.allocations),
        ];
        let mut streams = Vec::with_capacity(sources.len());
        for (kind, bucket) in sources {
            let stream = bucket
                .watch(None, WatchFrom::Now)
                .await
                .map_err(storage_error)?;
            streams.push(
                stream
                    .map(move |entry| {
                        entry.map_err(storage_error).map(|e| VpcChange {
                            kind,
                            key: e.key,
                            revision: e.revision,
                            deleted: e.operation != Operation::Put,
                        })
                    })
                    .boxed(),
            );
        }
        Ok(futures::stream::select_all(streams).boxed())
    }
}

/// An OpenFlow port number a flow may name (not 0, not reserved).
pub(super) fn usable_ofport(ofport: u32) -> bool {
    ofport != 0 && ofport < 0xffff_ff00
}
