//! A zone's place on the network: its veth on the bridge (bridged zones), and its nftables
//! rules. The host side is the network namespace the daemon runs in.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use crate::backend::ZoneNetwork;
use crate::net::link::{self, IfCounters, Rtnl};
use crate::net::netns::{self, NetnsDir, NewNetns};
use crate::net::nft::{Nft, PendingZone};
use crate::net::{self, Cidr, CidrPort, NetConfig, NetError, NetMode, ZoneNetSpec};
use crate::zone::Zone;
use crate::zone::policy::{CidrRule, NetworkMode};

/// The daemon's networking: bridge, veths and rules, from the daemon's own namespace.
pub struct Networking {
    config: NetConfig,
    host_ns: OwnedFd,
    host: Mutex<Rtnl>,
    nft: Nft,
    /// The bridge's interface index once it exists (made on the first bridged zone).
    bridge: Mutex<Option<i32>>,
}

fn cidr_ports(rules: &[CidrRule]) -> Vec<CidrPort> {
    rules
        .iter()
        .map(|rule| CidrPort {
            net: Cidr { addr: rule.network.addr(), prefix: rule.network.prefix_len() },
            port: rule.port,
        })
        .collect()
}

/// The network module's view of a zone.
pub fn spec_of(zone: &Zone, network: &ZoneNetwork) -> ZoneNetSpec {
    let policy = &zone.policy.network;
    ZoneNetSpec {
        zone_id: zone.numeric_id,
        ip: network.address,
        mode: match policy.mode {
            NetworkMode::Isolated => NetMode::Isolated,
            NetworkMode::Bridged => NetMode::Bridged,
            NetworkMode::Host => NetMode::Host,
        },
        allowed_egress: cidr_ports(&policy.allowed_egress),
        allowed_ingress: cidr_ports(&policy.allowed_ingress),
        published: network.published.clone(),
        host_dns: false,
    }
}

impl Networking {
    /// Take the calling thread's namespace as the host side and install the base rules.
    pub fn new(config: NetConfig) -> Result<Self, NetError> {
        let host_ns = netns::current_netns()?;
        let nft = Nft::new(host_ns.as_fd())?;
        nft.ensure_base(&config)?;
        let host = Rtnl::open_in(host_ns.as_fd())?;
        Ok(Self { config, host_ns, host: Mutex::new(host), nft, bridge: Mutex::new(None) })
    }

    fn host(&self) -> std::sync::MutexGuard<'_, Rtnl> {
        self.host.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bridge, made (with forwarding on, for egress through NAT) when first needed.
    fn bridge_index(&self) -> Result<i32, NetError> {
        let mut bridge = self.bridge.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = *bridge {
            return Ok(index);
        }
        let index = link::ensure_bridge(&mut self.host(), &self.config)?;
        link::set_ipv4_forwarding(self.host_ns.as_fd(), true)?;
        *bridge = Some(index);
        Ok(index)
    }

    /// Bring the zone's attachment and rules to what `spec` says: a veth for bridged zones
    /// (added when missing, so switching from isolated is live), none otherwise. Reads the
    /// installed rules first, so it fits any earlier state.
    pub fn connect(
        &self,
        dir: &NetnsDir,
        zone: &Zone,
        network: &ZoneNetwork,
    ) -> Result<(), NetError> {
        let spec = spec_of(zone, network);
        self.attach(dir, &spec)?;
        self.nft.apply_zone(&self.config, &spec, &network.peers)
    }

    /// Starts installing the rules of a zone about to be made (only bridged zones have any).
    /// They name the zone's interface and address but need neither to exist, so nft works
    /// while the caller makes the cgroup, namespace and veth; [`PendingZone::finish`] waits.
    /// Nothing of the zone is installed yet, so the batch need not list the ruleset first.
    pub fn begin_rules(
        &self,
        zone: &Zone,
        network: &ZoneNetwork,
    ) -> Result<Option<PendingZone<'_>>, NetError> {
        let spec = spec_of(zone, network);
        if spec.mode != NetMode::Bridged {
            return Ok(None);
        }
        self.nft.begin_new_zone(&self.config, &spec, &network.peers).map(Some)
    }

    /// Attaches a zone's freshly made namespace: for a bridged zone its veth, address and
    /// route, through the socket the namespace was made with.
    pub fn attach_new(
        &self,
        mut ns: NewNetns,
        zone: &Zone,
        network: &ZoneNetwork,
    ) -> Result<(), NetError> {
        let spec = spec_of(zone, network);
        if spec.mode != NetMode::Bridged {
            return Ok(());
        }
        self.attach_bridged(ns.fd.as_fd(), &mut ns.rtnl, &spec)
    }

    /// The veth, address and route of a bridged zone whose namespace is `zone_ns`, reached
    /// through `zone_rtnl`; the bridge is made first if this is the first bridged zone.
    fn attach_bridged(
        &self,
        zone_ns: BorrowedFd<'_>,
        zone_rtnl: &mut Rtnl,
        spec: &ZoneNetSpec,
    ) -> Result<(), NetError> {
        let bridge = self.bridge_index()?;
        net::attach_zone(&mut self.host(), zone_ns, zone_rtnl, &self.config, bridge, spec)
    }

    fn attach(&self, dir: &NetnsDir, spec: &ZoneNetSpec) -> Result<(), NetError> {
        let veth = net::host_veth_name(spec.zone_id);
        let attached = self.host().link_index(&veth).ok().flatten().is_some();
        match spec.mode {
            NetMode::Bridged if !attached => {
                let zone_ns = dir.open(spec.zone_id)?;
                let mut zone_rtnl = Rtnl::open_in(zone_ns.as_fd())?;
                self.attach_bridged(zone_ns.as_fd(), &mut zone_rtnl, spec)
            }
            NetMode::Isolated | NetMode::Host if attached => {
                net::detach_zone(&mut self.host(), spec.zone_id)
            }
            _ => Ok(()),
        }
    }

    /// Remove the zone's rules and veth, whatever is installed.
    pub fn disconnect(&self, zone_id: u32) -> Result<(), NetError> {
        self.nft.remove_zone(zone_id)?;
        net::detach_zone(&mut self.host(), zone_id)
    }

    /// Remove the rules of a zone that is going away. Only bridged zones have rules (leaving
    /// bridged mode removes them), so the others need no nft run; a bridged zone's installed
    /// elements follow from its spec, so the ruleset is listed only if the kernel disagrees.
    ///
    /// Its veth goes with its namespace, which the caller deletes next: the kernel reaps the
    /// pair when the namespace is freed, sparing the ~20 ms an explicit delete waits
    /// ([`net::delete_zone_deferred`]).
    pub fn release(&self, zone: &Zone, network: &ZoneNetwork) -> Result<(), NetError> {
        let spec = spec_of(zone, network);
        if spec.mode == NetMode::Bridged {
            self.nft.remove_zone_after(&self.config, &spec)?;
        }
        Ok(())
    }

    /// Bytes through the zone's `eth0`; zero for a zone without one.
    pub fn counters(&self, dir: &NetnsDir, zone: &Zone) -> Result<IfCounters, NetError> {
        if zone.policy.network.mode != NetworkMode::Bridged {
            return Ok(IfCounters::default());
        }
        let zone_ns = dir.open(zone.numeric_id)?;
        let mut zone_rtnl = Rtnl::open_in(zone_ns.as_fd())?;
        link::zone_counters(&mut zone_rtnl)
    }

    /// Remove the rules of zones the daemon does not know; returns their ids.
    pub fn remove_unknown(&self, known: &[u32]) -> Result<Vec<u32>, NetError> {
        let installed = self.nft.installed()?;
        let mut removed = Vec::new();
        for zone_id in installed.zones.keys().copied().filter(|id| !known.contains(id)) {
            self.nft.remove_zone(zone_id)?;
            removed.push(zone_id);
        }
        Ok(removed)
    }
}
