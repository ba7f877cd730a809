//! Zone networking: network namespaces, bridge and veth links (netlink), IP allocation,
//! nftables policy and DNS files.
//!
//! Every kernel-facing function takes the network namespace it works in as an explicit
//! fd, so the daemon's own namespace is just one input ("host side") and tests can run
//! the whole module inside namespaces they created.

pub mod dns;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod nft;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Prefix of the host-side veth name; the zone id follows (`rz42`).
pub const HOST_VETH_PREFIX: &str = "rz";
/// Name of the zone-side veth end inside the zone namespace.
pub const ZONE_IFNAME: &str = "eth0";
/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Host-side veth name of a zone, derived from its numeric id (never from its name).
pub fn host_veth_name(zone_id: u32) -> String {
    // "rz" + at most 10 digits = 12 bytes, always within IFNAME_MAX.
    format!("{HOST_VETH_PREFIX}{zone_id}")
}

/// An IPv4 network as address and prefix length (`10.89.0.0/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ipv4Net {
    /// Network address (host bits are ignored where it matters).
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix: u8,
}

impl Ipv4Net {
    /// A network from address and prefix; fails when the prefix exceeds 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, NetError> {
        if prefix > 32 {
            return Err(NetError::InvalidPrefix { text: format!("{addr}/{prefix}") });
        }
        Ok(Self { addr, prefix })
    }

    /// The netmask as a host-order integer.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast address (host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether `ip` lies inside this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match Cidr::from_str(s)? {
            Cidr { addr: IpAddr::V4(addr), prefix } => Ok(Self { addr, prefix }),
            Cidr { .. } => Err(NetError::InvalidPrefix { text: s.to_owned() }),
        }
    }
}

/// An IPv4 or IPv6 network (`0.0.0.0/0`, `2001:db8::/32`); a bare address is a host route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cidr {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length (≤ 32 for IPv4, ≤ 128 for IPv6).
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || NetError::InvalidPrefix { text: s.to_owned() };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| invalid())?,
            None => max,
        };
        if prefix > max {
            return Err(invalid());
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Daemon-wide network settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConfig {
    /// Bridge interface name on the host side.
    pub bridge: String,
    /// Subnet zones get their addresses from.
    pub subnet: Ipv4Net,
    /// Gateway address, assigned to the bridge.
    pub gateway: Ipv4Addr,
    /// Resolvers used when the host's resolv.conf has only loopback ones.
    pub dns_servers: Vec<IpAddr>,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            bridge: "rauha0".to_owned(),
            subnet: Ipv4Net { addr: Ipv4Addr::new(10, 89, 0, 0), prefix: 16 },
            gateway: Ipv4Addr::new(10, 89, 0, 1),
            dns_servers: Vec::new(),
        }
    }
}

/// How a zone is attached to the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// Own netns with loopback only.
    Isolated,
    /// Own netns plus a veth on the bridge, filtered by the zone's lists.
    Bridged,
    /// The host's network stack (filtered by cgroup-BPF, not here).
    Host,
}

/// Transport protocol of a port rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// The nftables name of the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A host port forwarded into the zone (`-p HOST:CONTAINER/proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// Port on the host side.
    pub host_port: u16,
    /// Port on the zone's address.
    pub container_port: u16,
    /// Transport protocol.
    pub proto: Proto,
}

/// A CIDR with an optional port (tcp and udp), as in `allowed_egress` / `allowed_ingress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CidrPort {
    /// Network.
    pub net: Cidr,
    /// Port (destination port for egress and ingress), any when `None`.
    pub port: Option<u16>,
}

/// Everything the network module needs to know about one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneNetSpec {
    /// The zone's numeric id (names interfaces and chains).
    pub zone_id: u32,
    /// The zone's bridge address (bridged mode).
    pub ip: Option<Ipv4Addr>,
    /// Attachment mode.
    pub mode: NetMode,
    /// Destinations outside the bridge the zone may open connections to.
    pub allowed_egress: Vec<CidrPort>,
    /// Sources outside the bridge that may open connections to the zone.
    pub allowed_ingress: Vec<CidrPort>,
    /// Host ports forwarded to the zone.
    pub published: Vec<PortMapping>,
    /// Whether the zone may query DNS on the gateway address.
    pub host_dns: bool,
}

/// A zone this zone lists in `allowed_zones`; traffic flows only when both list each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The listed zone's numeric id.
    pub zone_id: u32,
    /// The listed zone's bridge address, if it is bridged (used for routed traffic).
    pub ip: Option<Ipv4Addr>,
}

/// Failures of the network module, one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A CIDR or prefix that does not parse or is out of range.
    #[error("invalid network {text:?}")]
    InvalidPrefix { text: String },
    /// The gateway lies outside the subnet, or the subnet has no room for zones.
    #[error("invalid subnet {subnet} with gateway {gateway}")]
    InvalidSubnet { subnet: Ipv4Net, gateway: Ipv4Addr },
    /// Every usable address of the subnet is held.
    #[error("address pool {subnet} exhausted")]
    PoolExhausted { subnet: Ipv4Net },
    /// An interface name longer than 15 bytes or containing '/' or whitespace.
    #[error("invalid interface name {name:?}")]
    InvalidIfname { name: String },
    /// A bridged zone without an address.
    #[error("zone {zone_id} is bridged but has no address")]
    MissingAddress { zone_id: u32 },

    /// Creating the namespace directory.
    #[error("create netns dir {path}: {source}")]
    NetnsDir { path: PathBuf, source: io::Error },
    /// Making the namespace directory a shared mount point.
    #[error("make netns dir {path} a shared mount: {source}")]
    NetnsDirShared { path: PathBuf, source: io::Error },
    /// Creating the mount target file of a namespace.
    #[error("create netns file {path}: {source}")]
    NetnsFile { path: PathBuf, source: io::Error },
    /// unshare(CLONE_NEWNET).
    #[error("unshare network namespace: {source}")]
    Unshare { source: io::Error },
    /// Bind-mounting the namespace onto its file.
    #[error("bind-mount netns onto {path}: {source}")]
    NetnsMount { path: PathBuf, source: io::Error },
    /// Opening a namespace file.
    #[error("open netns {path}: {source}")]
    NetnsOpen { path: PathBuf, source: io::Error },
    /// A file under the netns dir that is not a mounted namespace.
    #[error("{path} is not a network namespace")]
    NotNetns { path: PathBuf },
    /// setns into a namespace.
    #[error("enter network namespace: {source}")]
    Setns { source: io::Error },
    /// Unmounting a namespace file.
    #[error("unmount netns {path}: {source}")]
    NetnsUnmount { path: PathBuf, source: io::Error },
    /// Removing a namespace file.
    #[error("remove netns file {path}: {source}")]
    NetnsRemove { path: PathBuf, source: io::Error },
    /// Listing the namespace directory.
    #[error("list netns dir {path}: {source}")]
    NetnsList { path: PathBuf, source: io::Error },
    /// Spawning the helper thread that enters a namespace.
    #[error("spawn netns thread: {source}")]
    NetnsThread { source: io::Error },
    /// The helper thread panicked.
    #[error("netns thread panicked")]
    NetnsThreadPanic,

    /// Opening a route netlink socket.
    #[error("open netlink socket: {source}")]
    NetlinkOpen { source: link::NlError },
    /// Bringing loopback up.
    #[error("set lo up: {source}")]
    LoopbackUp { source: link::NlError },
    /// Looking an interface up by name.
    #[error("look up link {name}: {source}")]
    LinkLookup { name: String, source: link::NlError },
    /// Creating the bridge.
    #[error("create bridge {name}: {source}")]
    BridgeCreate { name: String, source: link::NlError },
    /// Assigning the gateway address to the bridge.
    #[error("add address {addr} to bridge {name}: {source}")]
    BridgeAddress { name: String, addr: Ipv4Net, source: link::NlError },
    /// Setting the bridge up.
    #[error("set bridge {name} up: {source}")]
    BridgeUp { name: String, source: link::NlError },
    /// Deleting the bridge.
    #[error("delete bridge {name}: {source}")]
    BridgeDelete { name: String, source: link::NlError },
    /// Creating a zone's veth pair.
    #[error("create veth {name}: {source}")]
    VethCreate { name: String, source: link::NlError },
    /// Deleting a zone's veth pair.
    #[error("delete veth {name}: {source}")]
    VethDelete { name: String, source: link::NlError },
    /// Setting the zone's `eth0` up inside its namespace.
    #[error("set eth0 up in zone {zone_id}: {source}")]
    ZoneLinkUp { zone_id: u32, source: link::NlError },
    /// Assigning the zone's address inside its namespace.
    #[error("add address {addr} to zone {zone_id}: {source}")]
    ZoneAddress { zone_id: u32, addr: Ipv4Net, source: link::NlError },
    /// Adding the zone's default route.
    #[error("add default route via {gateway} in zone {zone_id}: {source}")]
    ZoneRoute { zone_id: u32, gateway: Ipv4Addr, source: link::NlError },
    /// Reading interface counters.
    #[error("read counters of {name}: {source}")]
    LinkStats { name: String, source: link::NlError },
    /// Writing a sysctl in a namespace.
    #[error("write sysctl {path}: {source}")]
    Sysctl { path: String, source: io::Error },

    /// Spawning `nft`.
    #[error("spawn {program}: {source}")]
    NftSpawn { program: String, source: io::Error },
    /// `nft` rejected a batch.
    #[error("nft {action} failed: {stderr}")]
    NftFailed { action: String, stderr: String },
    /// Writing to or reading from the nft session failed (nft ended or its pipe broke).
    #[error("nft {action}: session: {source}")]
    NftSession { action: String, source: io::Error },
    /// The nft session did not answer a batch in time.
    #[error("nft {action}: no answer within {seconds} s")]
    NftTimeout { action: String, seconds: u64 },
    /// The nft session answered something other than the end-of-batch mark.
    #[error("nft {action}: unexpected answer {answer:?}")]
    NftAnswer { action: String, answer: String },
    /// Encoding a batch or decoding `nft -j` output.
    #[error("nft {action} json: {source}")]
    NftJson { action: String, source: serde_json::Error },

    /// Reading the host's resolv.conf.
    #[error("read {path}: {source}")]
    ResolvConf { path: PathBuf, source: io::Error },
}

/// Creates a zone's network: its namespace (isolated and bridged) and, when bridged, its veth,
/// address and default route. Host-mode zones get nothing and `None`.
pub fn create_zone(
    dir: &netns::NetnsDir,
    host: &mut link::Rtnl,
    cfg: &NetConfig,
    bridge_index: i32,
    spec: &ZoneNetSpec,
) -> Result<Option<OwnedFd>, NetError> {
    if spec.mode == NetMode::Host {
        return Ok(None);
    }
    let mut ns = dir.create(spec.zone_id)?;
    if spec.mode == NetMode::Bridged {
        let attached = attach_zone(host, ns.fd.as_fd(), &mut ns.rtnl, cfg, bridge_index, spec);
        if let Err(e) = attached {
            // Undo the half-made zone so a retry starts clean; the first error is the one
            // worth reporting.
            let _ = link::delete_zone_veth(host, spec.zone_id);
            let _ = dir.delete(spec.zone_id);
            return Err(e);
        }
    }
    Ok(Some(ns.fd))
}

/// Attaches an existing zone namespace to the bridge (bridged mode, or a live switch from
/// isolated): veth pair, then address and default route inside the zone. `zone` is a socket
/// opened in `zone_ns` (`Rtnl::open_in`).
pub fn attach_zone(
    host: &mut link::Rtnl,
    zone_ns: BorrowedFd<'_>,
    zone: &mut link::Rtnl,
    cfg: &NetConfig,
    bridge_index: i32,
    spec: &ZoneNetSpec,
) -> Result<(), NetError> {
    let ip = spec.ip.ok_or(NetError::MissingAddress { zone_id: spec.zone_id })?;
    link::create_zone_veth(host, zone_ns, spec.zone_id, bridge_index)?;
    link::configure_zone(zone, spec.zone_id, ip, cfg)
}

/// Removes a zone's network: veth pair (if any) and namespace (if any). Idempotent.
pub fn delete_zone(
    dir: &netns::NetnsDir,
    host: &mut link::Rtnl,
    zone_id: u32,
) -> Result<(), NetError> {
    link::delete_zone_veth(host, zone_id)?;
    dir.delete(zone_id)
}

/// Detaches a zone from the bridge (live switch to isolated): removes its veth pair.
pub fn detach_zone(host: &mut link::Rtnl, zone_id: u32) -> Result<(), NetError> {
    link::delete_zone_veth(host, zone_id).map(|_| ())
}

/// Removes a zone's namespace only and lets the kernel reap its veth pair when the namespace
/// is freed (asynchronously, batched with other namespaces), so the caller does not wait the
/// ~20 ms an explicit veth delete costs. The host end `rz<id>` lingers until no process or fd
/// holds the namespace; until then the base chains drop everything on unknown ports, and a
/// re-created zone with the same id replaces the stale link (see [`link::create_zone_veth`]).
pub fn delete_zone_deferred(dir: &netns::NetnsDir, zone_id: u32) -> Result<(), NetError> {
    dir.delete(zone_id)
}
