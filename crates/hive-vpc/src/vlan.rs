//! VLAN ids for VPCs, unique across the cluster.
//!
//! VLAN 1 carries the default VPC; user VPCs get 2..=4094 (0 and 4095 are reserved by 802.1Q).
//! [`VlanPool`] is one small value (a 4,096-bit bitmap, stored as base64 of the allocated
//! ids only) that the storage layer keeps under one key and updates with compare-and-swap:
//! clone it, allocate or release, commit, retry from a fresh read on conflict. A method that
//! returns an error leaves the pool unchanged. When every id is taken, creating a VPC fails with
//! `VpcLimitExceeded`.

use serde::{Deserialize, Serialize};

use crate::bitmap::Bitmap;
use crate::error::VpcError;

/// The default VPC's VLAN.
pub const DEFAULT_VPC_VLAN: u16 = 1;
/// First VLAN handed to user VPCs.
pub const FIRST_USER_VLAN: u16 = 2;
/// Last VLAN handed to user VPCs.
pub const LAST_USER_VLAN: u16 = 4094;
/// Number of VLANs for user VPCs.
pub const USER_VLANS: u32 = (LAST_USER_VLAN - FIRST_USER_VLAN + 1) as u32;

/// Ids never handed out: 0 and 4095 (802.1Q) and 1 (the default VPC).
const HIDDEN: [u32; 3] = [0, DEFAULT_VPC_VLAN as u32, 4095];

/// The set of VLAN ids held by user VPCs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredVlans", into = "StoredVlans")]
pub struct VlanPool {
    used: Bitmap,
}

#[derive(Serialize, Deserialize)]
struct StoredVlans {
    /// Base64 bitmap of the allocated ids (trailing zero bytes trimmed).
    allocated: String,
}

impl Default for VlanPool {
    fn default() -> Self {
        Self::new()
    }
}

impl VlanPool {
    /// A pool with every user VLAN free.
    pub fn new() -> Self {
        let mut used = Bitmap::new(4096);
        for i in HIDDEN {
            used.set(i);
        }
        Self { used }
    }

    /// Take the lowest free VLAN (`VpcLimitExceeded` when none is left).
    pub fn allocate(&mut self) -> Result<u16, VpcError> {
        let vlan = self
            .used
            .set_lowest_clear()
            .ok_or(VpcError::VpcLimitExceeded)?;
        u16::try_from(vlan).map_err(|_| VpcError::CorruptState(format!("VLAN {vlan} out of range")))
    }

    /// Take a given VLAN (e.g. when importing existing VPCs).
    pub fn reserve(&mut self, vlan: u16) -> Result<(), VpcError> {
        check_user_vlan(vlan)?;
        if self.used.set(u32::from(vlan)) {
            Ok(())
        } else {
            Err(VpcError::InvalidVlan {
                vlan,
                reason: "already allocated",
            })
        }
    }

    /// Give a VLAN back after its VPC is deleted.
    pub fn release(&mut self, vlan: u16) -> Result<(), VpcError> {
        check_user_vlan(vlan)?;
        if self.used.clear(u32::from(vlan)) {
            Ok(())
        } else {
            Err(VpcError::InvalidVlan {
                vlan,
                reason: "not allocated",
            })
        }
    }

    /// Whether a user VLAN is held.
    pub fn is_allocated(&self, vlan: u16) -> bool {
        (FIRST_USER_VLAN..=LAST_USER_VLAN).contains(&vlan) && self.used.get(u32::from(vlan))
    }

    /// Number of user VLANs held.
    pub fn allocated(&self) -> u32 {
        self.used.ones() - HIDDEN.len() as u32
    }

    /// Number of user VLANs still free.
    pub fn available(&self) -> u32 {
        USER_VLANS - self.allocated()
    }
}

fn check_user_vlan(vlan: u16) -> Result<(), VpcError> {
    if (FIRST_USER_VLAN..=LAST_USER_VLAN).contains(&vlan) {
        Ok(())
    } else {
        Err(VpcError::InvalidVlan {
            vlan,
            reason: "user VPCs use VLANs 2 to 4094",
        })
    }
}

impl From<VlanPool> for StoredVlans {
    fn from(p: VlanPool) -> Self {
        Self {
            allocated: p.used.encode(&HIDDEN),
        }
    }
}

impl TryFrom<StoredVlans> for VlanPool {
    type Error = VpcError;

    fn try_from(s: StoredVlans) -> Result<Self, VpcError> {
        let used = Bitmap::decode(4096, &s.allocated, &HIDDEN)
            .map_err(|e| VpcError::CorruptState(format!("VLAN pool: {e}")))?;
        Ok(Self { used })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_2_to_4094_then_fails() {
        let mut p = VlanPool::new();
        assert_eq!(p.available(), 4093);
        for expected in FIRST_USER_VLAN..=LAST_USER_VLAN {
            assert_eq!(p.allocate(), Ok(expected));
        }
        assert_eq!(p.allocate(), Err(VpcError::VpcLimitExceeded));
        assert_eq!(VpcError::VpcLimitExceeded.code(), "VpcLimitExceeded");
        assert_eq!(p.available(), 0);
        assert_eq!(p.release(100), Ok(()));
        assert_eq!(p.allocate(), Ok(100));
    }

    #[test]
    fn reserve_and_release_rules() {
        let mut p = VlanPool::new();
        for bad in [0, 1, 4095, 5000] {
            assert!(p.reserve(bad).is_err(), "{bad}");
            assert!(p.release(bad).is_err(), "{bad}");
            assert!(!p.is_allocated(bad));
        }
        assert_eq!(p.reserve(7), Ok(()));
        assert!(p.reserve(7).is_err());
        assert!(p.is_allocated(7));
        assert_eq!(p.allocate(), Ok(2));
        assert_eq!(p.release(7), Ok(()));
        assert_eq!(
            p.release(7).map_err(|e| e.code()),
            Err("InvalidParameterValue")
        );
        assert_eq!(p.allocated(), 1);
    }

    #[test]
    fn serializes_compactly() {
        let mut p = VlanPool::new();
        assert_eq!(
            serde_json::to_string(&p).expect("json"),
            r#"{"allocated":""}"#
        );
        p.allocate().expect("free");
        p.reserve(4094).expect("free");
        let text = serde_json::to_string(&p).expect("json");
        let back: VlanPool = serde_json::from_str(&text).expect("round trip");
        assert_eq!(back, p);
        assert!(serde_json::from_str::<VlanPool>(r#"{"allocated":"Ag=="}"#).is_err());
    }
}
