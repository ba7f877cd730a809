//! The daemon's side of zone networking: bridge addresses (allocated from the configured
//! subnet, persisted with the zone, never handed out while held), peers from `allowed_zones`,
//! and host ports published by containers.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::Daemon;
use super::error::RequestError;
use crate::backend::ZoneNetwork;
use crate::net::ipam::Ipam;
use crate::net::{PeerInfo, PortMapping, Proto};
use crate::zone::policy::NetworkMode;
use crate::zone::{Zone, ZoneRegistry};

/// Parse `-p HOSTPORT:CONTAINERPORT[/tcp|udp]`.
pub fn parse_port(text: &str) -> Result<PortMapping, String> {
    let (ports, proto) = match text.rsplit_once('/') {
        Some((ports, "tcp")) => (ports, Proto::Tcp),
        Some((ports, "udp")) => (ports, Proto::Udp),
        Some((_, other)) => {
            return Err(format!(
                "publish {text:?}: unknown protocol {other:?} (expected tcp or udp)"
            ));
        }
        None => (text, Proto::Tcp),
    };
    let (host, container) = ports
        .split_once(':')
        .ok_or_else(|| format!("publish {text:?}: expected HOSTPORT:CONTAINERPORT[/tcp|udp]"))?;
    let port = |value: &str| {
        value
            .parse::<u16>()
            .ok()
            .filter(|&port| port > 0)
            .ok_or_else(|| format!("publish {text:?}: {value:?} is not a port (1-65535)"))
    };
    Ok(PortMapping { host_port: port(host)?, container_port: port(container)?, proto })
}

impl Daemon {
    /// What the backend needs to know about `zone`'s network beyond its policy.
    pub(super) fn zone_network(&self, zones: &ZoneRegistry, zone: &Zone) -> ZoneNetwork {
        let peers = zone
            .policy
            .network
            .allowed_zones
            .iter()
            .filter_map(|name| zones.get(name).ok())
            .map(|peer| PeerInfo { zone_id: peer.numeric_id, ip: peer.address })
            .collect();
        let published = self
            .containers()
            .values()
            .filter(|c| c.zone_id == zone.id)
            .flat_map(|c| c.ports.iter().copied())
            .collect();
        ZoneNetwork { address: zone.address, peers, published }
    }

    /// Give a bridged zone an address (the lowest one no zone holds); take it from a zone that
    /// is no longer bridged.
    pub(super) fn assign_address(
        &self,
        zones: &ZoneRegistry,
        zone: &mut Zone,
    ) -> Result<(), RequestError> {
        let bridged = zone.policy.network.mode == NetworkMode::Bridged;
        match (bridged, zone.address) {
            (true, None) => {
                let held: BTreeSet<Ipv4Addr> = zones.iter().filter_map(|z| z.address).collect();
                let ipam =
                    Ipam::new(&self.config.net).map_err(|e| RequestError::Network(Box::new(e)))?;
                zone.address =
                    Some(ipam.allocate(&held).map_err(|e| RequestError::Network(Box::new(e)))?);
            }
            (false, Some(_)) => zone.address = None,
            _ => {}
        }
        Ok(())
    }

    /// Re-apply the rules of the zones that list `name`: its address or existence changed.
    pub(super) fn refresh_peers_of(&self, zones: &ZoneRegistry, name: &str) {
        for zone in zones
            .iter()
            .filter(|z| z.name != name && z.policy.network.allowed_zones.iter().any(|n| n == name))
        {
            let network = self.zone_network(zones, zone);
            if let Err(error) = self.backend.refresh_network(zone, &network) {
                tracing::warn!(%error, zone = %zone.name, peer = %name, "refresh network rules");
            }
        }
    }

    /// Re-apply one zone's rules (its published ports changed).
    pub(super) fn refresh_zone_network(&self, zone_name: &str) -> Result<(), RequestError> {
        let zones = self.registry();
        let zone = zones.get(zone_name)?;
        let network = self.zone_network(&zones, zone);
        self.backend
            .refresh_network(zone, &network)
            .map_err(|source| RequestError::Backend { zone: zone.name.clone(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ports_parse_with_their_protocol() {
        assert_eq!(
            parse_port("8080:80").unwrap(),
            PortMapping { host_port: 8080, container_port: 80, proto: Proto::Tcp }
        );
        assert_eq!(parse_port("53:5353/udp").unwrap().proto, Proto::Udp);
        for bad in ["80", "0:80", "80:70000", "a:80", "80:80/sctp"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }
}
