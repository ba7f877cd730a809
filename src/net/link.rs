//! Bridge, veth, address and route setup over route netlink (neli), and interface counters.
//!
//! A route netlink socket acts on the network namespace it was created in, so [`Rtnl`] is
//! opened *in* a namespace (explicit input) and every operation on it stays there, whichever
//! thread later uses it.

use std::fmt::Debug;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use neli::consts::nl::NlmF;
use neli::consts::rtnl::{
    Arphrd, Ifa, Ifla, IflaInfo, RtAddrFamily, RtScope, RtTable, Rta, Rtm, Rtn, Rtprot,
};
use neli::consts::socket::NlFamily;
use neli::err::SocketError;
use neli::nl::{NlPayload, NlmsghdrBuilder};
use neli::rtnl::{
    IfaddrmsgBuilder, Ifinfomsg, IfinfomsgBuilder, Rtattr, RtattrBuilder, RtmsgBuilder,
};
use neli::socket::synchronous::NlSocketHandle;
use neli::types::{Buffer, RtBuffer};
use neli::utils::Groups;
use neli::{FromBytesWithInput, Size, ToBytes};

use crate::net::netns::in_netns;
use crate::net::{IFNAME_MAX, Ipv4Net, NetConfig, NetError, ZONE_IFNAME, host_veth_name};

/// `VETH_INFO_PEER` from `<linux/veth.h>` (not among neli's constants).
const VETH_INFO_PEER: u16 = 1;
/// Byte offsets of rx_bytes / tx_bytes / rx_packets / tx_packets in `rtnl_link_stats64`.
const STATS64_RX_PACKETS: usize = 0;
const STATS64_TX_PACKETS: usize = 8;
const STATS64_RX_BYTES: usize = 16;
const STATS64_TX_BYTES: usize = 24;

/// A netlink step's failure: the socket layer, message encoding, or the kernel's errno.
#[derive(Debug, thiserror::Error)]
pub enum NlError {
    /// Socket I/O or (de)serialisation in neli.
    #[error("netlink socket: {0}")]
    Socket(#[from] SocketError),
    /// Building the named message failed (a field neli requires was missing).
    #[error("encode {0} message")]
    Encode(&'static str),
    /// The kernel answered with an error.
    #[error("{0}")]
    Kernel(io::Error),
    /// The kernel's answer lacked an attribute we asked for.
    #[error("reply lacks {0}")]
    Missing(&'static str),
}

impl NlError {
    /// The kernel errno, if the kernel refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NlError::Kernel(e) => e.raw_os_error(),
            _ => None,
        }
    }
}

/// Byte and packet counters of an interface (IFLA_STATS64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IfCounters {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
}

/// A route netlink socket bound to one network namespace.
pub struct Rtnl {
    sock: NlSocketHandle,
    seq: u32,
}

fn attr<P: Size + ToBytes>(ty: Ifla, payload: P) -> Result<Rtattr<Ifla, Buffer>, NlError> {
    RtattrBuilder::default()
        .rta_type(ty)
        .rta_payload(payload)
        .build()
        .map_err(|_| NlError::Encode("link attribute"))
}

fn check_ifname(name: &str) -> Result<(), NetError> {
    if name.is_empty()
        || name.len() > IFNAME_MAX
        || name.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
    {
        return Err(NetError::InvalidIfname { name: name.to_owned() });
    }
    Ok(())
}

fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_ne_bytes(bytes))
}

impl Rtnl {
    /// Opens a socket in the calling thread's current namespace.
    pub fn open_current() -> Result<Self, NetError> {
        let sock = NlSocketHandle::connect(NlFamily::Route, None, Groups::empty())
            .map_err(|e| NetError::NetlinkOpen { source: e.into() })?;
        Ok(Self { sock, seq: 0 })
    }

    /// Opens a socket inside the network namespace `ns` (the caller's own is untouched).
    pub fn open_in(ns: BorrowedFd<'_>) -> Result<Self, NetError> {
        in_netns(ns, Self::open_current)
    }

    /// Sends one request and collects the typed payloads of the reply until its ACK, error or
    /// end of dump.
    fn request<P, R>(&mut self, ty: Rtm, flags: NlmF, payload: P) -> Result<Vec<R>, NlError>
    where
        P: Size + ToBytes + Debug,
        R: Size + FromBytesWithInput<Input = usize> + Debug + Clone,
    {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let msg = NlmsghdrBuilder::default()
            .nl_type(ty)
            .nl_flags(flags | NlmF::REQUEST | NlmF::ACK)
            .nl_seq(seq)
            .nl_payload(NlPayload::Payload(payload))
            .build()
            .map_err(|_| NlError::Encode("netlink header"))?;
        self.sock.send(&msg)?;
        let mut out = Vec::new();
        // Each recv returns one datagram; a dump may span many. Every request ends with an
        // ACK, an error or NLMSG_DONE, so this loop ends when the kernel is done.
        loop {
            let (iter, _) = self.sock.recv::<Rtm, R>()?;
            for reply in iter {
                let reply = reply?;
                // Skip answers to an earlier request that we stopped reading.
                if *reply.nl_seq() != seq {
                    continue;
                }
                match reply.nl_payload() {
                    NlPayload::Ack(_) => return Ok(out),
                    NlPayload::Err(e) => {
                        return Err(NlError::Kernel(io::Error::from_raw_os_error(-*e.error())));
                    }
                    NlPayload::DumpExtAck(_) | NlPayload::Empty => return Ok(out),
                    NlPayload::Payload(p) => out.push(p.clone()),
                }
            }
        }
    }

    /// A request whose reply carries nothing but the ACK.
    fn ack<P: Size + ToBytes + Debug>(
        &mut self,
        ty: Rtm,
        flags: NlmF,
        payload: P,
    ) -> Result<(), NlError> {
        self.request::<P, Buffer>(ty, flags, payload).map(|_| ())
    }

    /// The index of interface `name`, `None` when it does not exist.
    pub fn link_index(&mut self, name: &str) -> Result<Option<i32>, NlError> {
        let mut attrs = RtBuffer::new();
        attrs.push(attr(Ifla::Ifname, name)?);
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .rtattrs(attrs)
            .build()
            .map_err(|_| NlError::Encode("getlink"))?;
        match self.request::<_, Ifinfomsg>(Rtm::Getlink, NlmF::empty(), msg) {
            Ok(links) => Ok(links.first().map(|l| *l.ifi_index())),
            Err(e) if e.errno() == Some(libc_enodev()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets interface `name` up (administratively).
    pub fn set_up_by_name(&mut self, name: &str) -> Result<(), NlError> {
        let mut attrs = RtBuffer::new();
        attrs.push(attr(Ifla::Ifname, name)?);
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .rtattrs(attrs)
            .up()
            .build()
            .map_err(|_| NlError::Encode("setlink"))?;
        self.ack(Rtm::Newlink, NlmF::empty(), msg)
    }

    /// Deletes interface `name`; `Ok(false)` when it did not exist.
    pub fn delete_link(&mut self, name: &str) -> Result<bool, NlError> {
        let mut attrs = RtBuffer::new();
        attrs.push(attr(Ifla::Ifname, name)?);
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .rtattrs(attrs)
            .build()
            .map_err(|_| NlError::Encode("dellink"))?;
        match self.ack(Rtm::Dellink, NlmF::empty(), msg) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc_enodev()) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds (or keeps) IPv4 address `addr` on interface `index`.
    pub fn add_address(&mut self, index: i32, addr: Ipv4Net) -> Result<(), NlError> {
        let octets = Buffer::from(&addr.addr.octets()[..]);
        let mut attrs = RtBuffer::new();
        for ty in [Ifa::Local, Ifa::Address] {
            attrs.push(
                RtattrBuilder::default()
                    .rta_type(ty)
                    .rta_payload(octets.clone())
                    .build()
                    .map_err(|_| NlError::Encode("address attribute"))?,
            );
        }
        let msg = IfaddrmsgBuilder::default()
            .ifa_family(RtAddrFamily::Inet)
            .ifa_prefixlen(addr.prefix)
            .ifa_scope(RtScope::Universe)
            .ifa_index(index as u32)
            .rtattrs(attrs)
            .build()
            .map_err(|_| NlError::Encode("newaddr"))?;
        // REPLACE makes a repeated add (restart, reconcile) succeed instead of EEXIST.
        self.ack(Rtm::Newaddr, NlmF::CREATE | NlmF::REPLACE, msg)
    }

    /// Sets the IPv4 default route via `gateway` on interface `index`.
    pub fn set_default_route(&mut self, index: i32, gateway: Ipv4Addr) -> Result<(), NlError> {
        let mut attrs = RtBuffer::new();
        attrs.push(
            RtattrBuilder::default()
                .rta_type(Rta::Gateway)
                .rta_payload(Buffer::from(&gateway.octets()[..]))
                .build()
                .map_err(|_| NlError::Encode("route attribute"))?,
        );
        attrs.push(
            RtattrBuilder::default()
                .rta_type(Rta::Oif)
                .rta_payload(index)
                .build()
                .map_err(|_| NlError::Encode("route attribute"))?,
        );
        let msg = RtmsgBuilder::default()
            .rtm_family(RtAddrFamily::Inet)
            .rtm_dst_len(0)
            .rtm_src_len(0)
            .rtm_tos(0)
            .rtm_table(RtTable::Main)
            .rtm_protocol(Rtprot::Boot)
            .rtm_scope(RtScope::Universe)
            .rtm_type(Rtn::Unicast)
            .rtattrs(attrs)
            .build()
            .map_err(|_| NlError::Encode("newroute"))?;
        self.ack(Rtm::Newroute, NlmF::CREATE | NlmF::REPLACE, msg)
    }

    /// Counters of interface `name`.
    pub fn counters(&mut self, name: &str) -> Result<IfCounters, NlError> {
        let mut attrs = RtBuffer::new();
        attrs.push(attr(Ifla::Ifname, name)?);
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .rtattrs(attrs)
            .build()
            .map_err(|_| NlError::Encode("getlink"))?;
        let links = self.request::<_, Ifinfomsg>(Rtm::Getlink, NlmF::empty(), msg)?;
        let link = links.first().ok_or(NlError::Missing("link"))?;
        let stats = link
            .rtattrs()
            .iter()
            .find(|a| *a.rta_type() == Ifla::Stats64)
            .ok_or(NlError::Missing("IFLA_STATS64"))?;
        let buf = stats.rta_payload().as_ref();
        let get = |at| read_u64(buf, at).ok_or(NlError::Missing("IFLA_STATS64 field"));
        Ok(IfCounters {
            rx_packets: get(STATS64_RX_PACKETS)?,
            tx_packets: get(STATS64_TX_PACKETS)?,
            rx_bytes: get(STATS64_RX_BYTES)?,
            tx_bytes: get(STATS64_TX_BYTES)?,
        })
    }
}

/// ENODEV, the kernel's answer for an unknown interface.
fn libc_enodev() -> i32 {
    rustix::io::Errno::NODEV.raw_os_error()
}

/// Creates the bridge with its gateway address and sets it up; an existing one is kept and
/// brought to the same state. Returns its interface index.
pub fn ensure_bridge(host: &mut Rtnl, cfg: &NetConfig) -> Result<i32, NetError> {
    let name = cfg.bridge.as_str();
    check_ifname(name)?;
    let mut create = || -> Result<(), NlError> {
        let mut info = RtBuffer::<IflaInfo, Buffer>::new();
        info.push(
            RtattrBuilder::default()
                .rta_type(IflaInfo::Kind)
                .rta_payload("bridge")
                .build()
                .map_err(|_| NlError::Encode("link kind"))?,
        );
        let mut attrs = RtBuffer::new();
        attrs.push(attr(Ifla::Ifname, name)?);
        attrs.push(attr(Ifla::Linkinfo, info)?);
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .rtattrs(attrs)
            .up()
            .build()
            .map_err(|_| NlError::Encode("newlink bridge"))?;
        host.ack(Rtm::Newlink, NlmF::CREATE | NlmF::EXCL, msg)
    };
    match create() {
        Ok(()) => {}
        Err(e) if e.errno() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {
            host.set_up_by_name(name)
                .map_err(|source| NetError::BridgeUp { name: name.to_owned(), source })?;
        }
        Err(source) => {
            return Err(NetError::BridgeCreate { name: name.to_owned(), source });
        }
    }
    let index = host
        .link_index(name)
        .map_err(|source| NetError::LinkLookup { name: name.to_owned(), source })?
        .ok_or_else(|| NetError::LinkLookup {
            name: name.to_owned(),
            source: NlError::Missing("bridge after create"),
        })?;
    let addr = Ipv4Net { addr: cfg.gateway, prefix: cfg.subnet.prefix };
    host.add_address(index, addr).map_err(|source| NetError::BridgeAddress {
        name: name.to_owned(),
        addr,
        source,
    })?;
    Ok(index)
}

/// Deletes the bridge; a missing one is not an error.
pub fn delete_bridge(host: &mut Rtnl, cfg: &NetConfig) -> Result<(), NetError> {
    host.delete_link(&cfg.bridge)
        .map(|_| ())
        .map_err(|source| NetError::BridgeDelete { name: cfg.bridge.clone(), source })
}

/// Creates a veth pair in one request: `name` in the socket's namespace (on bridge `master`
/// when given, and up) and `peer` created directly inside `peer_ns`, still down (the kernel
/// refuses IFF_UP on a peer created in another namespace with ENOTCONN).
pub fn create_veth_pair(
    host: &mut Rtnl,
    name: &str,
    master: Option<i32>,
    peer: &str,
    peer_ns: BorrowedFd<'_>,
) -> Result<(), NetError> {
    check_ifname(name)?;
    check_ifname(peer)?;
    let build = || -> Result<Ifinfomsg, NlError> {
        let mut peer_attrs = RtBuffer::new();
        peer_attrs.push(attr(Ifla::Ifname, peer)?);
        // The fd is only read by the kernel during this request; peer_ns outlives it.
        peer_attrs.push(attr(Ifla::NetNsFd, peer_ns.as_raw_fd() as u32)?);
        let peer_msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .ifi_type(Arphrd::from(0))
            .rtattrs(peer_attrs)
            .build()
            .map_err(|_| NlError::Encode("veth peer"))?;
        let mut data = RtBuffer::<u16, Buffer>::new();
        data.push(
            RtattrBuilder::default()
                .rta_type(VETH_INFO_PEER)
                .rta_payload(peer_msg)
                .build()
                .map_err(|_| NlError::Encode("veth peer attribute"))?,
        );
        let mut info = RtBuffer::<IflaInfo, Buffer>::new();
        info.push(
            RtattrBuilder::default()
                .rta_type(IflaInfo::Kind)
                .rta_payload("veth")
                .build()
                .map_err(|_| NlError::Encode("link kind"))?,
        );
        info.push(
            RtattrBuilder::default()
                .rta_type(IflaInfo::Data)
                .rta_payload(data)
                .build()
                .map_err(|_| NlError::Encode("veth data"))?,
        );
        let mut attrs = RtBuffer::new();
        attrs.push(attr(Ifla::Ifname, name)?);
        if let Some(master) = master {
            attrs.push(attr(Ifla::Master, master as u32)?);
        }
        attrs.push(attr(Ifla::Linkinfo, info)?);
        IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .rtattrs(attrs)
            .up()
            .build()
            .map_err(|_| NlError::Encode("newlink veth"))
    };
    let msg = build().map_err(|source| NetError::VethCreate { name: name.to_owned(), source })?;
    host.ack(Rtm::Newlink, NlmF::CREATE | NlmF::EXCL, msg)
        .map_err(|source| NetError::VethCreate { name: name.to_owned(), source })
}

/// Creates the zone's veth pair: host end `rz<id>` on the bridge, `eth0` inside `zone_ns`.
///
/// A host end of the same name left by an earlier incarnation of the zone (deferred delete,
/// crash) is deleted and the creation retried once.
pub fn create_zone_veth(
    host: &mut Rtnl,
    zone_ns: BorrowedFd<'_>,
    zone_id: u32,
    bridge_index: i32,
) -> Result<(), NetError> {
    let name = host_veth_name(zone_id);
    let create =
        |host: &mut Rtnl| create_veth_pair(host, &name, Some(bridge_index), ZONE_IFNAME, zone_ns);
    match create(host) {
        Err(NetError::VethCreate { source, .. })
            if source.errno() == Some(rustix::io::Errno::EXIST.raw_os_error()) =>
        {
            delete_zone_veth(host, zone_id)?;
            create(host)
        }
        other => other,
    }
}

/// Inside the zone namespace: `eth0` up, the zone's address on it and the default route via the
/// gateway. `zone` must be a socket opened in the zone's namespace.
pub fn configure_zone(
    zone: &mut Rtnl,
    zone_id: u32,
    ip: Ipv4Addr,
    cfg: &NetConfig,
) -> Result<(), NetError> {
    let addr = Ipv4Net { addr: ip, prefix: cfg.subnet.prefix };
    let index = zone
        .link_index(ZONE_IFNAME)
        .map_err(|source| NetError::LinkLookup { name: ZONE_IFNAME.to_owned(), source })?
        .ok_or_else(|| NetError::LinkLookup {
            name: ZONE_IFNAME.to_owned(),
            source: NlError::Missing("eth0 in zone namespace"),
        })?;
    zone.set_up_by_name(ZONE_IFNAME).map_err(|source| NetError::ZoneLinkUp { zone_id, source })?;
    zone.add_address(index, addr).map_err(|source| NetError::ZoneAddress {
        zone_id,
        addr,
        source,
    })?;
    zone.set_default_route(index, cfg.gateway).map_err(|source| NetError::ZoneRoute {
        zone_id,
        gateway: cfg.gateway,
        source,
    })
}

/// Deletes the zone's veth pair (both ends go with the host end); `Ok(false)` when absent.
pub fn delete_zone_veth(host: &mut Rtnl, zone_id: u32) -> Result<bool, NetError> {
    let name = host_veth_name(zone_id);
    host.delete_link(&name).map_err(|source| NetError::VethDelete { name, source })
}

/// rx/tx counters of the zone's `eth0`; `zone` must be a socket in the zone's namespace.
pub fn zone_counters(zone: &mut Rtnl) -> Result<IfCounters, NetError> {
    zone.counters(ZONE_IFNAME)
        .map_err(|source| NetError::LinkStats { name: ZONE_IFNAME.to_owned(), source })
}

/// Turns IPv4 forwarding on or off in namespace `ns` (needed for egress through NAT).
pub fn set_ipv4_forwarding(ns: BorrowedFd<'_>, on: bool) -> Result<(), NetError> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    // /proc/sys/net resolves to the namespace of the thread that opens it.
    in_netns(ns, || {
        std::fs::write(PATH, if on { "1" } else { "0" })
            .map_err(|source| NetError::Sysctl { path: PATH.to_owned(), source })
    })
}
