//! Rust mirrors of the map keys, values and event records of `bpf/rauha.h`, one per C struct,
//! with the same field order and explicit padding fields (hash and LPM keys compare bytes, so
//! every byte must be defined).

use std::mem::size_of;
use std::net::IpAddr;

/// Mirrors `RAUHA_DEV_ACC_MKNOD`.
pub const DEV_ACC_MKNOD: u32 = 1;
/// Mirrors `RAUHA_DEV_ACC_READ`.
pub const DEV_ACC_READ: u32 = 2;
/// Mirrors `RAUHA_DEV_ACC_WRITE`.
pub const DEV_ACC_WRITE: u32 = 4;
/// Mirrors `RAUHA_DEV_BLOCK`.
pub const DEV_BLOCK: u32 = 1;
/// Mirrors `RAUHA_DEV_CHAR`.
pub const DEV_CHAR: u32 = 2;
/// Mirrors `RAUHA_DEV_ANY_MINOR`.
pub const DEV_ANY_MINOR: u32 = u32::MAX;
/// Mirrors `RAUHA_ZONE_F_PTRACE_SELF`.
pub const ZONE_F_PTRACE_SELF: u32 = 1;
/// Mirrors `RAUHA_RATE_MAX_ZONES`.
pub const RATE_MAX_ZONES: u32 = 4096;
/// Mirrors `RAUHA_EVENTS_RING_BYTES`.
pub const EVENTS_RING_BYTES: u32 = 256 * 1024;
/// Mirrors `RAUHA_EVENT_BURST`.
pub const EVENT_BURST: u64 = 64;
/// Mirrors `RAUHA_EVENT_COST_NS`.
pub const EVENT_COST_NS: u64 = 10_000_000;
/// Mirrors `RAUHA_EVENT_NAME_LEN`.
pub const EVENT_NAME_LEN: usize = 64;
/// Full prefix length of an egress key: 16 bits port, 16 bits pad, 128 bits address.
pub const EGRESS_FULL_PREFIX: u32 = 32 + 128;

/// Mirrors `struct rauha_dev_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DevKey {
    pub kind: u32,
    pub major: u32,
    pub minor: u32,
}

/// Mirrors `struct rauha_egress_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EgressKey {
    pub prefixlen: u32,
    pub port_be: u16,
    pub pad: u16,
    pub addr: [u8; 16],
}

/// Mirrors `struct rauha_addr_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey {
    pub addr: [u8; 16],
}

/// Mirrors `struct rauha_comm_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommKey {
    pub src_zone: u32,
    pub dst_zone: u32,
}

/// Mirrors `struct rauha_rate_state`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    pub last_ns: u64,
    pub credit_ns: u64,
    pub suppressed: u64,
}

/// Mirrors `struct rauha_deny_event`, as read from the ring buffer.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DenyEventRaw {
    pub ts_ns: u64,
    pub target: u64,
    pub suppressed: u64,
    pub zone_id: u32,
    pub hook: u32,
    pub pid: u32,
    pub aux: u32,
    pub addr: [u8; 16],
    pub port_be: u16,
    pub family: u16,
    pub pad: u32,
    pub name: [u8; EVENT_NAME_LEN],
}

// Same sizes as the _Static_asserts in rauha.h: no implicit padding on either side.
const _: () = assert!(size_of::<DevKey>() == 12);
const _: () = assert!(size_of::<EgressKey>() == 24);
const _: () = assert!(size_of::<AddrKey>() == 16);
const _: () = assert!(size_of::<CommKey>() == 8);
const _: () = assert!(size_of::<RateState>() == 24);
const _: () = assert!(size_of::<DenyEventRaw>() == 128);

/// Plain-old-data values whose bytes are exactly what the BPF side reads.
pub trait MapBytes: Copy + private::Sealed {
    /// The value's bytes, for map keys and values.
    fn bytes(&self) -> &[u8] {
        // SAFETY: implementors are integers or #[repr(C)] structs of integers and byte arrays
        // with no implicit padding (sizes asserted above), so every byte is initialised and the slice
        // covers exactly the value, which outlives the borrow.
        unsafe { std::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>()) }
    }

    /// The value whose bytes are `data` (as read back from a map); `None` for a wrong size.
    fn from_map_bytes(data: &[u8]) -> Option<Self> {
        if data.len() != size_of::<Self>() {
            return None;
        }
        // SAFETY: `data` holds exactly size_of::<Self>() bytes; implementors are integers and
        // byte arrays, for which every bit pattern is valid; read_unaligned needs no alignment.
        Some(unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<Self>()) })
    }
}

mod private {
    pub trait Sealed {}
    impl Sealed for super::DevKey {}
    impl Sealed for super::EgressKey {}
    impl Sealed for super::AddrKey {}
    impl Sealed for super::CommKey {}
    impl Sealed for super::RateState {}
    impl Sealed for super::DenyEventRaw {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
}

impl MapBytes for DevKey {}
impl MapBytes for EgressKey {}
impl MapBytes for AddrKey {}
impl MapBytes for CommKey {}
impl MapBytes for RateState {}
impl MapBytes for DenyEventRaw {}
impl MapBytes for u32 {}
impl MapBytes for u64 {}

impl DenyEventRaw {
    /// Decodes a ring-buffer record; `None` when it is shorter than the struct.
    pub fn from_bytes(data: &[u8]) -> Option<Self> {
        if data.len() < size_of::<Self>() {
            return None;
        }
        // SAFETY: the slice holds at least size_of::<Self>() bytes; the struct is integers and
        // byte arrays, for which every bit pattern is valid; read_unaligned needs no alignment.
        Some(unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<Self>()) })
    }
}

/// The 16-byte form the maps use: IPv6 as is, IPv4 as IPv4-mapped (`::ffff:a.b.c.d`).
pub fn addr16(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_is_mapped() {
        let a = addr16("10.203.0.1".parse().unwrap());
        assert_eq!(a[..10], [0; 10]);
        assert_eq!(a[10..], [0xff, 0xff, 10, 203, 0, 1]);
    }

    #[test]
    fn key_bytes_are_c_layout() {
        let key =
            EgressKey { prefixlen: 0x0102_0304, port_be: 443u16.to_be(), pad: 0, addr: [7; 16] };
        let b = key.bytes();
        assert_eq!(b.len(), 24);
        assert_eq!(b[..4], 0x0102_0304u32.to_ne_bytes());
        assert_eq!(b[4..6], [1, 187]);
        assert_eq!(b[8..], [7; 16]);
    }

    #[test]
    fn keys_read_back_from_their_bytes() {
        let key = CommKey { src_zone: 3, dst_zone: 9 };
        assert_eq!(CommKey::from_map_bytes(key.bytes()), Some(key));
        assert_eq!(u64::from_map_bytes(&7u64.to_ne_bytes()), Some(7));
        assert_eq!(CommKey::from_map_bytes(&[0; 7]), None, "wrong size");
    }

    #[test]
    fn mirrors_match_skeleton_types() {
        // The skeleton's types are generated from the objects' BTF, i.e. from rauha.h as clang
        // compiled it; equal sizes catch a drifted mirror.
        use crate::enforce::bpf::skel;
        assert_eq!(size_of::<skel::lsm::types::rauha_comm_key>(), size_of::<CommKey>());
        assert_eq!(size_of::<skel::lsm::types::rauha_addr_key>(), size_of::<AddrKey>());
        assert_eq!(size_of::<skel::cgroup_zone::types::rauha_egress_key>(), size_of::<EgressKey>());
        assert_eq!(size_of::<skel::cgroup_zone::types::rauha_dev_key>(), size_of::<DevKey>());
        assert_eq!(size_of::<skel::lsm::types::rauha_rate_state>(), size_of::<RateState>());
    }
}
