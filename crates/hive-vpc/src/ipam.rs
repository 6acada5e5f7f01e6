//! Private address management inside one subnet, with AWS's reservations.
//!
//! AWS keeps five addresses of every subnet: the network address, the first host (the VPC
//! router, Hive's gateway), the next two (DNS and "future use") and the broadcast address, so a
//! /24 offers 251 addresses and a /16 65,531. [`SubnetAddresses`] hands out the rest: a
//! requested address or the lowest free one, and takes them back on release.
//!
//! The state is a bitmap with a next-free hint (see the crate's internal `bitmap` module):
//! allocation is amortized O(1), release O(1), and handing out all of a /16 stays linear. It is
//! a plain value: clone what was read from storage, change it, and commit it with
//! compare-and-swap, retrying from a fresh read on conflict. A method that returns an error
//! leaves the state unchanged.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::bitmap::Bitmap;
use crate::cidr::{MAX_PREFIX, MIN_PREFIX};
use crate::error::VpcError;

/// Number of addresses AWS reserves in every subnet.
pub const RESERVED_PER_SUBNET: u32 = 5;

/// The allocation state of one subnet's addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredAddresses", into = "StoredAddresses")]
pub struct SubnetAddresses {
    cidr: Ipv4Network,
    /// One bit per address of the CIDR, by offset from the network address; reserved offsets
    /// are always set.
    used: Bitmap,
}

/// The serialized form: the CIDR and the base64 bitmap of allocated offsets (reserved ones
/// left out, trailing zero bytes trimmed).
#[derive(Serialize, Deserialize)]
struct StoredAddresses {
    cidr: Ipv4Network,
    allocated: String,
}

impl SubnetAddresses {
    /// The empty state for a subnet CIDR (/16 to /28, its own network address), with only
    /// AWS's five reserved addresses taken.
    pub fn new(cidr: Ipv4Network) -> Result<Self, VpcError> {
        if !(MIN_PREFIX..=MAX_PREFIX).contains(&cidr.prefix()) || cidr.ip() != cidr.network() {
            return Err(VpcError::InvalidSubnetRange(cidr.to_string()));
        }
        let mut used = Bitmap::new(cidr.size());
        for offset in reserved_offsets(cidr.size()) {
            used.set(offset);
        }
        Ok(Self { cidr, used })
    }

    /// The subnet's CIDR block.
    pub fn cidr(&self) -> Ipv4Network {
        self.cidr
    }

    /// The gateway (VPC router) address: the first host, e.g. 10.0.1.1 in 10.0.1.0/24.
    pub fn gateway(&self) -> Ipv4Addr {
        offset_addr(self.cidr, 1)
    }

    /// The five reserved addresses, in order.
    pub fn reserved(&self) -> [Ipv4Addr; RESERVED_PER_SUBNET as usize] {
        reserved_offsets(self.cidr.size()).map(|o| offset_addr(self.cidr, o))
    }

    /// Whether `ip` is one of the five reserved addresses.
    pub fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        self.offset(ip)
            .is_some_and(|o| reserved_offsets(self.cidr.size()).contains(&o))
    }

    /// Whether `ip` is handed out to an interface.
    pub fn is_allocated(&self, ip: Ipv4Addr) -> bool {
        !self.is_reserved(ip) && self.offset(ip).is_some_and(|o| self.used.get(o))
    }

    /// Addresses handed out.
    pub fn allocated(&self) -> u32 {
        self.used.ones() - RESERVED_PER_SUBNET
    }

    /// Addresses still free: AWS's `AvailableIpAddressCount` (size - 5 - allocated).
    pub fn available(&self) -> u32 {
        self.used.len() - self.used.ones()
    }

    /// Addresses a fresh subnet of this size offers (size - 5).
    pub fn capacity(&self) -> u32 {
        self.used.len() - RESERVED_PER_SUBNET
    }

    /// Take the lowest free address (`InsufficientFreeAddressesInSubnet` when none is left).
    pub fn allocate_next(&mut self) -> Result<Ipv4Addr, VpcError> {
        match self.used.set_lowest_clear() {
            Some(offset) => Ok(offset_addr(self.cidr, offset)),
            None => Err(VpcError::AddressExhausted(self.cidr.to_string())),
        }
    }

    /// Take a requested address: it must be inside the subnet, not reserved, and free.
    pub fn allocate(&mut self, ip: Ipv4Addr) -> Result<(), VpcError> {
        let offset = self.check_assignable(ip)?;
        if self.used.set(offset) {
            Ok(())
        } else {
            Err(VpcError::AddressInUse(ip.to_string()))
        }
    }

    /// Take `requested` if given, else the lowest free address.
    pub fn allocate_requested_or_next(
        &mut self,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, VpcError> {
        match requested {
            Some(ip) => self.allocate(ip).map(|()| ip),
            None => self.allocate_next(),
        }
    }

    /// Give an allocated address back so it can be handed out again.
    pub fn release(&mut self, ip: Ipv4Addr) -> Result<(), VpcError> {
        let offset = self.check_assignable(ip)?;
        if self.used.clear(offset) {
            Ok(())
        } else {
            Err(VpcError::AddressNotAllocated(ip.to_string()))
        }
    }

    /// The allocated addresses, lowest first.
    pub fn iter_allocated(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let reserved = reserved_offsets(self.cidr.size());
        self.used
            .iter_ones()
            .filter(move |o| !reserved.contains(o))
            .map(|o| offset_addr(self.cidr, o))
    }

    /// The offset of an address that could be assigned to an interface.
    fn check_assignable(&self, ip: Ipv4Addr) -> Result<u32, VpcError> {
        let offset = self
            .offset(ip)
            .ok_or_else(|| VpcError::AddressNotInSubnet {
                address: ip.to_string(),
                cidr: self.cidr.to_string(),
            })?;
        if reserved_offsets(self.cidr.size()).contains(&offset) {
            return Err(VpcError::AddressReserved(ip.to_string()));
        }
        Ok(offset)
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        self.cidr
            .contains(ip)
            .then(|| u32::from(ip) - u32::from(self.cidr.network()))
    }
}

/// Network, router, DNS, future use, broadcast.
fn reserved_offsets(size: u32) -> [u32; RESERVED_PER_SUBNET as usize] {
    [0, 1, 2, 3, size - 1]
}

fn offset_addr(cidr: Ipv4Network, offset: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + offset)
}

impl From<SubnetAddresses> for StoredAddresses {
    fn from(a: SubnetAddresses) -> Self {
        let hidden = reserved_offsets(a.cidr.size());
        Self {
            cidr: a.cidr,
            allocated: a.used.encode(&hidden),
        }
    }
}

impl TryFrom<StoredAddresses> for SubnetAddresses {
    type Error = VpcError;

    fn try_from(s: StoredAddresses) -> Result<Self, VpcError> {
        let empty = Self::new(s.cidr).map_err(|e| VpcError::CorruptState(e.to_string()))?;
        let hidden = reserved_offsets(s.cidr.size());
        let used = Bitmap::decode(s.cidr.size(), &s.allocated, &hidden)
            .map_err(|e| VpcError::CorruptState(format!("subnet {}: {e}", s.cidr)))?;
        Ok(Self { used, ..empty })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Network {
        s.parse().expect("test CIDR")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    #[test]
    fn counts_match_aws() {
        for (cidr, available) in [
            ("10.0.0.0/16", 65_531),
            ("10.0.1.0/24", 251),
            ("10.0.1.0/28", 11),
            ("10.0.0.0/20", 4_091),
        ] {
            let a = SubnetAddresses::new(net(cidr)).expect(cidr);
            assert_eq!(a.available(), available, "{cidr}");
            assert_eq!(a.capacity(), available, "{cidr}");
            assert_eq!(a.allocated(), 0);
        }
    }

    #[test]
    fn refuses_bad_subnet_sizes() {
        for bad in ["10.0.0.0/15", "10.0.0.0/29", "10.0.0.0/32", "10.0.1.5/24"] {
            assert_eq!(
                SubnetAddresses::new(net(bad)).map_err(|e| e.code()),
                Err("InvalidSubnet.Range"),
                "{bad}"
            );
        }
    }

    #[test]
    fn reserved_are_the_aws_five() {
        let a = SubnetAddresses::new(net("10.0.1.0/24")).expect("subnet");
        assert_eq!(
            a.reserved(),
            [
                ip("10.0.1.0"),
                ip("10.0.1.1"),
                ip("10.0.1.2"),
                ip("10.0.1.3"),
                ip("10.0.1.255")
            ]
        );
        assert_eq!(a.gateway(), ip("10.0.1.1"));
    }

    #[test]
    fn next_free_starts_after_reserved_and_reuses() {
        let mut a = SubnetAddresses::new(net("10.0.1.0/24")).expect("subnet");
        assert_eq!(a.allocate_next(), Ok(ip("10.0.1.4")));
        assert_eq!(a.allocate_next(), Ok(ip("10.0.1.5")));
        assert_eq!(a.allocate_next(), Ok(ip("10.0.1.6")));
        assert_eq!(a.release(ip("10.0.1.5")), Ok(()));
        assert_eq!(a.allocate_next(), Ok(ip("10.0.1.5")));
        assert_eq!(a.allocated(), 3);
        assert_eq!(a.available(), 248);
    }

    #[test]
    fn requested_address_rules() {
        let mut a = SubnetAddresses::new(net("10.0.1.0/24")).expect("subnet");
        assert_eq!(a.allocate(ip("10.0.1.10")), Ok(()));
        let code = |r: Result<(), VpcError>| r.map_err(|e| e.code());
        assert_eq!(
            code(a.allocate(ip("10.0.1.10"))),
            Err("InvalidIPAddress.InUse")
        );
        for reserved in ["10.0.1.0", "10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.255"] {
            let before = a.clone();
            assert_eq!(
                a.allocate(ip(reserved)),
                Err(VpcError::AddressReserved(reserved.into()))
            );
            assert_eq!(a, before, "an error leaves the state unchanged");
        }
        assert_eq!(
            code(a.allocate(ip("10.0.2.4"))),
            Err("InvalidParameterValue")
        );
        assert_eq!(
            code(a.release(ip("10.0.1.11"))),
            Err("InvalidParameterValue")
        );
        assert_eq!(
            code(a.release(ip("10.0.1.1"))),
            Err("InvalidParameterValue")
        );
        assert!(a.is_allocated(ip("10.0.1.10")));
        assert!(!a.is_allocated(ip("10.0.1.1")));
        assert_eq!(
            a.allocate_requested_or_next(Some(ip("10.0.1.20"))),
            Ok(ip("10.0.1.20"))
        );
        assert_eq!(a.allocate_requested_or_next(None), Ok(ip("10.0.1.4")));
    }

    #[test]
    fn exhaustion_is_a_clear_error() {
        let mut a = SubnetAddresses::new(net("10.0.1.0/28")).expect("subnet");
        let got: Vec<_> = (0..11).map(|_| a.allocate_next().expect("free")).collect();
        assert_eq!(got.first(), Some(&ip("10.0.1.4")));
        assert_eq!(got.last(), Some(&ip("10.0.1.14")));
        assert_eq!(
            a.allocate_next().map_err(|e| e.code()),
            Err("InsufficientFreeAddressesInSubnet")
        );
        assert_eq!(a.available(), 0);
        assert_eq!(a.iter_allocated().count(), 11);
    }

    #[test]
    fn serializes_compactly_and_round_trips() {
        let mut a = SubnetAddresses::new(net("10.0.0.0/16")).expect("subnet");
        let empty = serde_json::to_string(&a).expect("json");
        assert_eq!(empty, r#"{"cidr":"10.0.0.0/16","allocated":""}"#);
        a.allocate(ip("10.0.200.9")).expect("free");
        a.allocate_next().expect("free");
        let text = serde_json::to_string(&a).expect("json");
        let back: SubnetAddresses = serde_json::from_str(&text).expect("round trip");
        assert_eq!(back, a);
        while a.allocate_next().is_ok() {}
        let full = serde_json::to_string(&a).expect("json");
        assert!(full.len() < 12_000, "full /16 is {} bytes", full.len());
        let back: SubnetAddresses = serde_json::from_str(&full).expect("round trip");
        assert_eq!(back.available(), 0);
        assert_eq!(back, a);
    }

    #[test]
    fn corrupt_stored_state_is_refused() {
        for bad in [
            r#"{"cidr":"10.0.1.0/24","allocated":"AQ=="}"#,
            r#"{"cidr":"10.0.1.0/24","allocated":"not base64!"}"#,
            r#"{"cidr":"10.0.1.0/30","allocated":""}"#,
            r#"{"cidr":"10.0.1.0/28","allocated":"AAAA"}"#,
        ] {
            assert!(
                serde_json::from_str::<SubnetAddresses>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
