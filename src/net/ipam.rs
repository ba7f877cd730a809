//! Address allocation over the bridge subnet. Pure: the daemon persists the held set in its
//! store and passes it in, so an address still held is never handed out again, even after a
//! restart.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::net::{Ipv4Net, NetConfig, NetError};

/// Allocator over one subnet with the network, broadcast and gateway addresses reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipam {
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    first: u32,
    last: u32,
}

impl Ipam {
    /// An allocator for `cfg.subnet`; fails when the gateway is outside it or no address is left
    /// for zones.
    pub fn new(cfg: &NetConfig) -> Result<Self, NetError> {
        let subnet = cfg.subnet;
        let invalid = || NetError::InvalidSubnet { subnet, gateway: cfg.gateway };
        // /31 and /32 have no network/broadcast pair to reserve and no room beside a gateway.
        if subnet.prefix > 30 || !subnet.contains(cfg.gateway) {
            return Err(invalid());
        }
        let first = u32::from(subnet.network()) + 1;
        let last = u32::from(subnet.broadcast()) - 1;
        let gw = u32::from(cfg.gateway);
        if gw < first || gw > last {
            return Err(invalid());
        }
        Ok(Self { subnet, gateway: cfg.gateway, first, last })
    }

    /// Whether `ip` is an address this allocator could hand out.
    pub fn is_assignable(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v >= self.first && v <= self.last && ip != self.gateway
    }

    /// The lowest assignable address not in `held`.
    pub fn allocate(&self, held: &BTreeSet<Ipv4Addr>) -> Result<Ipv4Addr, NetError> {
        let mut candidate = self.first;
        let gw = u32::from(self.gateway);
        let mut taken = held
            .range(Ipv4Addr::from(self.first)..=Ipv4Addr::from(self.last))
            .map(|a| u32::from(*a))
            .peekable();
        // Walk candidates and the sorted held set together: O(|held|) steps at most.
        loop {
            if candidate == gw {
                candidate += 1;
                continue;
            }
            match taken.peek() {
                Some(&t) if t < candidate => {
                    taken.next();
                }
                Some(&t) if t == candidate => {
                    taken.next();
                    candidate += 1;
                }
                _ => break,
            }
            if candidate > self.last {
                break;
            }
        }
        if candidate > self.last {
            return Err(NetError::PoolExhausted { subnet: self.subnet });
        }
        Ok(Ipv4Addr::from(candidate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(net: &str, gw: [u8; 4]) -> NetConfig {
        NetConfig {
            subnet: net.parse().unwrap(),
            gateway: Ipv4Addr::from(gw),
            ..NetConfig::default()
        }
    }

    #[test]
    fn default_pool_skips_network_and_gateway() {
        let ipam = Ipam::new(&NetConfig::default()).unwrap();
        let ip = ipam.allocate(&BTreeSet::new()).unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 89, 0, 2));
    }

    #[test]
    fn lowest_free_and_never_a_held_one() {
        let ipam = Ipam::new(&NetConfig::default()).unwrap();
        let mut held = BTreeSet::new();
        for _ in 0..50 {
            let ip = ipam.allocate(&held).unwrap();
            assert!(held.insert(ip), "{ip} handed out twice");
        }
        assert_eq!(held.len(), 50);
        assert!(!held.contains(&Ipv4Addr::new(10, 89, 0, 1)));
        // Releasing one makes it the lowest free again.
        held.remove(&Ipv4Addr::new(10, 89, 0, 7));
        assert_eq!(ipam.allocate(&held).unwrap(), Ipv4Addr::new(10, 89, 0, 7));
    }

    #[test]
    fn exhaustion_and_reserved_addresses() {
        // /29: .0 network, .7 broadcast, .1 gateway → .2..=.6 usable.
        let ipam = Ipam::new(&cfg("10.201.0.0/29", [10, 201, 0, 1])).unwrap();
        let mut held = BTreeSet::new();
        for _ in 0..5 {
            held.insert(ipam.allocate(&held).unwrap());
        }
        let want: BTreeSet<_> = (2..=6).map(|i| Ipv4Addr::new(10, 201, 0, i)).collect();
        assert_eq!(held, want);
        assert!(matches!(ipam.allocate(&held), Err(NetError::PoolExhausted { .. })));
        assert_eq!(
            ipam.allocate(&held).unwrap_err().to_string(),
            "address pool 10.201.0.0/29 exhausted"
        );
    }

    #[test]
    fn gateway_in_the_middle_and_foreign_held_addresses() {
        let ipam = Ipam::new(&cfg("10.201.0.0/29", [10, 201, 0, 3])).unwrap();
        let held: BTreeSet<_> = [
            Ipv4Addr::new(10, 201, 0, 1),
            Ipv4Addr::new(10, 201, 0, 2),
            Ipv4Addr::new(192, 0, 2, 1),
        ]
        .into();
        assert_eq!(ipam.allocate(&held).unwrap(), Ipv4Addr::new(10, 201, 0, 4));
        assert!(!ipam.is_assignable(Ipv4Addr::new(10, 201, 0, 3)));
        assert!(!ipam.is_assignable(Ipv4Addr::new(10, 201, 0, 7)));
    }

    #[test]
    fn rejects_bad_subnets() {
        assert!(Ipam::new(&cfg("10.201.0.0/31", [10, 201, 0, 1])).is_err());
        assert!(Ipam::new(&cfg("10.201.0.0/24", [10, 202, 0, 1])).is_err());
        assert!(Ipam::new(&cfg("10.201.0.0/24", [10, 201, 0, 0])).is_err());
        assert!(Ipam::new(&cfg("10.201.0.0/24", [10, 201, 0, 255])).is_err());
    }
}
