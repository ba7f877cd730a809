//! Zone policy: parsing, validation and canonical rendering of the policy TOML (`POLICY.md`).
//!
//! `Policy::parse` is pure: it reads text and returns a validated `Policy` or the first error,
//! naming the dotted key. `Policy::to_toml` renders the effective policy with every key, so
//! `parse(to_toml(p)) == p` for every parsed `p`.
//!
//! Decisions beyond `POLICY.md`:
//! - `filesystem.writable_paths` defaults to `["/tmp"]`: the policy is an allow-list, so the
//!   default stays minimal (the `/var/log` of the doc's example is opt-in).
//! - Paths that are not normalised (`//`, trailing `/`, `.` or `..` components) are rejected, not
//!   rewritten, so the stored policy is exactly what the user wrote.
//! - List order is kept as written (first occurrence wins when removing duplicates); capabilities
//!   are a set rendered in kernel number order.
//! - `to_toml` omits `zone.name` when it is unset, since TOML has no null.
//! - The serde derives are for storing and sending an already validated policy (postcard); they
//!   do not validate. Text from users goes through `Policy::parse` only.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// Smallest accepted `resources.memory_limit`: below this a container cannot even start.
pub const MIN_MEMORY_BYTES: u64 = 4 << 20;
/// Valid range of `resources.cpu_shares` (cgroup v1 `cpu.shares` limits).
pub const CPU_SHARES_RANGE: (u64, u64) = (2, 262_144);
/// Valid range of `resources.pids_max` (the kernel's `PID_MAX_LIMIT` on 64-bit).
pub const PIDS_MAX_RANGE: (u64, u64) = (1, 4_194_304);
/// Valid range of `resources.io_weight` (cgroup v2 `io.weight`).
pub const IO_WEIGHT_RANGE: (u64, u64) = (1, 10_000);
/// Longest zone name in bytes.
pub const MAX_ZONE_NAME_BYTES: usize = 128;

const SECTIONS: [&str; 7] =
    ["zone", "capabilities", "resources", "network", "filesystem", "devices", "syscalls"];

/// Why a policy was rejected; each message names the dotted key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not valid TOML.
    #[error("toml syntax error at line {line}, column {column}: {message}")]
    Syntax { line: usize, column: usize, message: String },
    /// The policy names a zone type other than the one the zone has or the request asks for.
    #[error("zone.type: the policy says \"{policy}\" but the zone is \"{requested}\"")]
    ZoneTypeConflict { policy: ZoneType, requested: ZoneType },
    /// A top-level table that is not one of the policy's sections.
    #[error("unknown section [{section}]")]
    UnknownSection { section: String },
    /// A top-level key that is not a section.
    #[error("unknown key {key:?} outside any section")]
    UnknownTopLevelKey { key: String },
    /// A key that the section does not have.
    #[error("unknown key {key:?} in [{section}]")]
    UnknownKey { section: &'static str, key: String },
    /// A value of the wrong TOML type.
    #[error("{key}: expected {expected}, found {found}")]
    WrongType { key: String, expected: &'static str, found: &'static str },
    /// An integer outside its allowed range.
    #[error("{key}: {value} is out of range {min}..={max}")]
    OutOfRange { key: &'static str, value: i64, min: u64, max: u64 },
    /// `zone.type = "global"`.
    #[error("zone.type: \"global\" is the host and cannot be created")]
    GlobalZone,
    /// A `zone.type` that does not exist.
    #[error("zone.type: unknown zone type {value:?} (expected non-global or privileged)")]
    UnknownZoneType { value: String },
    /// A `network.mode` that does not exist.
    #[error("network.mode: unknown network mode {value:?} (expected isolated, bridged or host)")]
    UnknownNetworkMode { value: String },
    /// A capability name that Linux does not have.
    #[error("capabilities.allowed: unknown capability {value:?}")]
    UnknownCapability { value: String },
    /// A privileged-only capability in a non-privileged zone.
    #[error("capabilities.allowed: {capability} requires zone.type = \"privileged\"")]
    PrivilegedCapability { capability: Capability },
    /// A `resources.memory_limit` that is not a size.
    #[error("resources.memory_limit: invalid size {value:?}: {source}")]
    InvalidMemorySize { value: String, source: MemorySizeError },
    /// A `resources.memory_limit` below `MIN_MEMORY_BYTES`.
    #[error("resources.memory_limit: {value:?} is below the minimum of 4Mi")]
    MemoryBelowMinimum { value: String },
    /// An invalid name in `network.allowed_zones`.
    #[error("network.allowed_zones: invalid zone name {name:?}: {source}")]
    InvalidZoneName { name: String, source: NameError },
    /// An invalid entry in `network.allowed_egress` or `network.allowed_ingress`.
    #[error("{key}: invalid network {value:?}: {source}")]
    InvalidCidr { key: &'static str, value: String, source: CidrError },
    /// An invalid path in `filesystem.writable_paths` or `devices.allowed`.
    #[error("{key}: invalid path {path:?}: {source}")]
    InvalidPath { key: &'static str, path: String, source: PathError },
    /// A writable `/` in a non-privileged zone.
    #[error("filesystem.writable_paths: \"/\" requires zone.type = \"privileged\"")]
    WritableRootNeedsPrivileged,
    /// A system call name unknown to the host architecture's table.
    #[error("syscalls.deny: unknown system call {name:?} on {arch}")]
    UnknownSyscall { name: String, arch: &'static str },
}

/// Why a zone name is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is the empty string.
    #[error("name is empty")]
    Empty,
    /// The name is longer than `MAX_ZONE_NAME_BYTES`.
    #[error("name is too long ({len} bytes, max 128)")]
    TooLong { len: usize },
    /// The name contains a slash (it becomes a path component).
    #[error("name contains '/'")]
    Slash,
    /// The name contains a backslash.
    #[error("name contains '\\'")]
    Backslash,
    /// The name contains NUL or another control character.
    #[error("name contains a control character")]
    ControlChar,
    /// The name is "." or "..".
    #[error("name {0:?} is reserved")]
    Reserved(&'static str),
}

/// Checks a zone name: 1..=128 bytes of UTF-8, no '/', '\\' or control characters, not "." or "..".
pub fn validate_zone_name(name: &str) -> Result<(), NameError> {
    // Names become directory and cgroup path components, so anything a path would
    // interpret is refused rather than escaped.
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_ZONE_NAME_BYTES {
        return Err(NameError::TooLong { len: name.len() });
    }
    if name.contains('/') {
        return Err(NameError::Slash);
    }
    if name.contains('\\') {
        return Err(NameError::Backslash);
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlChar);
    }
    match name {
        "." => Err(NameError::Reserved(".")),
        ".." => Err(NameError::Reserved("..")),
        _ => Ok(()),
    }
}

/// A zone policy: what a zone's containers are granted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Policy {
    /// `[zone]`: label and type.
    pub zone: ZoneSection,
    /// `[capabilities] allowed`.
    pub capabilities: CapabilitySet,
    /// `[resources]`: cgroup limits.
    pub resources: Resources,
    /// `[network]`: mode and allow-lists.
    pub network: Network,
    /// `[filesystem]`: writable paths.
    pub filesystem: Filesystem,
    /// `[devices]`: extra device nodes.
    pub devices: Devices,
    /// `[syscalls]`: extra denied system calls.
    pub syscalls: Syscalls,
}

/// The `[zone]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ZoneSection {
    /// Optional label; the zone's real name comes from the request.
    pub name: Option<String>,
    /// `zone.type`.
    pub zone_type: ZoneType,
}

/// Kind of zone a policy may create; the global zone is the host and is never created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ZoneType {
    /// An ordinary zone (`"non-global"`).
    #[default]
    NonGlobal,
    /// A zone allowed host-level capabilities and a writable `/` (`"privileged"`).
    Privileged,
}

impl ZoneType {
    /// The TOML spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            ZoneType::NonGlobal => "non-global",
            ZoneType::Privileged => "privileged",
        }
    }
}

impl fmt::Display for ZoneType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! capabilities {
    ($($variant:ident = $num:literal => $bare:literal,)*) => {
        /// A Linux capability; the discriminant is the kernel's capability number.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[repr(u8)]
        pub enum Capability {
            $(
                #[doc = concat!("`CAP_", $bare, "`")]
                $variant = $num,
            )*
        }

        impl Capability {
            /// Every capability, in kernel number order.
            pub const ALL: &'static [Capability] = &[$(Capability::$variant,)*];

            /// Canonical name, `CAP_` prefixed and upper case.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Capability::$variant => concat!("CAP_", $bare),)*
                }
            }

            const fn bare_name(self) -> &'static str {
                match self {
                    $(Capability::$variant => $bare,)*
                }
            }
        }
    };
}

capabilities! {
    Chown = 0 => "CHOWN",
    DacOverride = 1 => "DAC_OVERRIDE",
    DacReadSearch = 2 => "DAC_READ_SEARCH",
    Fowner = 3 => "FOWNER",
    Fsetid = 4 => "FSETID",
    Kill = 5 => "KILL",
    Setgid = 6 => "SETGID",
    Setuid = 7 => "SETUID",
    Setpcap = 8 => "SETPCAP",
    LinuxImmutable = 9 => "LINUX_IMMUTABLE",
    NetBindService = 10 => "NET_BIND_SERVICE",
    NetBroadcast = 11 => "NET_BROADCAST",
    NetAdmin = 12 => "NET_ADMIN",
    NetRaw = 13 => "NET_RAW",
    IpcLock = 14 => "IPC_LOCK",
    IpcOwner = 15 => "IPC_OWNER",
    SysModule = 16 => "SYS_MODULE",
    SysRawio = 17 => "SYS_RAWIO",
    SysChroot = 18 => "SYS_CHROOT",
    SysPtrace = 19 => "SYS_PTRACE",
    SysPacct = 20 => "SYS_PACCT",
    SysAdmin = 21 => "SYS_ADMIN",
    SysBoot = 22 => "SYS_BOOT",
    SysNice = 23 => "SYS_NICE",
    SysResource = 24 => "SYS_RESOURCE",
    SysTime = 25 => "SYS_TIME",
    SysTtyConfig = 26 => "SYS_TTY_CONFIG",
    Mknod = 27 => "MKNOD",
    Lease = 28 => "LEASE",
    AuditWrite = 29 => "AUDIT_WRITE",
    AuditControl = 30 => "AUDIT_CONTROL",
    Setfcap = 31 => "SETFCAP",
    MacOverride = 32 => "MAC_OVERRIDE",
    MacAdmin = 33 => "MAC_ADMIN",
    Syslog = 34 => "SYSLOG",
    WakeAlarm = 35 => "WAKE_ALARM",
    BlockSuspend = 36 => "BLOCK_SUSPEND",
    AuditRead = 37 => "AUDIT_READ",
    Perfmon = 38 => "PERFMON",
    Bpf = 39 => "BPF",
    CheckpointRestore = 40 => "CHECKPOINT_RESTORE",
}

/// Docker's default set, granted when `[capabilities] allowed` is omitted.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

impl Capability {
    /// The kernel's capability number (bit index in the capability sets).
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// Looks up a name case-insensitively, with or without the `CAP_` prefix.
    pub fn from_name(name: &str) -> Option<Capability> {
        let upper = name.to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        Capability::ALL.iter().copied().find(|cap| cap.bare_name() == bare)
    }

    /// Whether only a privileged zone may hold this capability (each one reaches the host).
    pub const fn requires_privileged(self) -> bool {
        matches!(
            self,
            Capability::SysAdmin
                | Capability::SysModule
                | Capability::SysRawio
                | Capability::SysPtrace
                | Capability::SysBoot
                | Capability::NetAdmin
                | Capability::Bpf
                | Capability::Perfmon
                | Capability::SysTime
                | Capability::MacAdmin
                | Capability::MacOverride
                | Capability::DacReadSearch
                | Capability::LinuxImmutable
                | Capability::Syslog
        )
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of capabilities, iterated in kernel number order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilitySet {
    caps: BTreeSet<Capability>,
}

impl CapabilitySet {
    /// The empty set.
    pub fn empty() -> Self {
        CapabilitySet { caps: BTreeSet::new() }
    }

    /// Whether `cap` is in the set.
    pub fn contains(&self, cap: Capability) -> bool {
        self.caps.contains(&cap)
    }

    /// Capabilities in kernel number order.
    pub fn iter(&self) -> impl Iterator<Item = Capability> + '_ {
        self.caps.iter().copied()
    }

    /// Number of capabilities in the set.
    pub fn len(&self) -> usize {
        self.caps.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.caps.is_empty()
    }

    /// The set as a kernel capability bit mask (bit n = capability number n).
    pub fn mask(&self) -> u64 {
        self.iter().fold(0, |mask, cap| mask | (1 << cap.number()))
    }
}

impl Default for CapabilitySet {
    fn default() -> Self {
        DEFAULT_CAPABILITIES.into_iter().collect()
    }
}

impl FromIterator<Capability> for CapabilitySet {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        CapabilitySet { caps: iter.into_iter().collect() }
    }
}

/// The `[resources]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Relative CPU weight, `CPU_SHARES_RANGE`.
    pub cpu_shares: u64,
    /// Memory limit, at least `MIN_MEMORY_BYTES`.
    pub memory_limit: MemorySize,
    /// Maximum number of tasks, `PIDS_MAX_RANGE`.
    pub pids_max: u64,
    /// Relative block I/O weight, `IO_WEIGHT_RANGE`.
    pub io_weight: u64,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpu_shares: 1024,
            memory_limit: MemorySize(512 << 20),
            pids_max: 256,
            io_weight: 100,
        }
    }
}

/// Why a memory size string is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemorySizeError {
    /// The string is empty.
    #[error("size is empty")]
    Empty,
    /// A leading minus sign.
    #[error("negative sizes are not allowed")]
    Negative,
    /// No digits at the start.
    #[error("expected a whole number followed by an optional unit")]
    NotANumber,
    /// A decimal point.
    #[error("fractional sizes are not allowed")]
    Fraction,
    /// A suffix that is not a unit.
    #[error("unknown unit {0:?} (expected Ki, Mi, Gi, Ti, K, M, G, T or none for bytes)")]
    UnknownUnit(String),
    /// More bytes than fit in 64 bits.
    #[error("size does not fit in 64 bits")]
    Overflow,
}

/// A number of bytes, written in TOML as `"512Mi"`, `"500M"` or plain bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemorySize(u64);

// Display picks the exact unit giving the smallest number, binary first on ties, so 1Gi stays
// "1Gi" and 5T is "5T" rather than "4882812500Ki" (10^12 is divisible by 1024).
const SIZE_UNITS: [(&str, u64); 8] = [
    ("Ti", 1 << 40),
    ("Gi", 1 << 30),
    ("Mi", 1 << 20),
    ("Ki", 1 << 10),
    ("T", 1_000_000_000_000),
    ("G", 1_000_000_000),
    ("M", 1_000_000),
    ("K", 1_000),
];

impl MemorySize {
    /// A size of `bytes` bytes.
    pub const fn new(bytes: u64) -> Self {
        MemorySize(bytes)
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for MemorySize {
    type Err = MemorySizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(MemorySizeError::Empty);
        }
        if s.starts_with('-') {
            return Err(MemorySizeError::Negative);
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        if digits.is_empty() {
            return Err(MemorySizeError::NotANumber);
        }
        if unit.starts_with('.') {
            return Err(MemorySizeError::Fraction);
        }
        let multiplier = if unit.is_empty() {
            1
        } else {
            SIZE_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, m)| *m)
                .ok_or_else(|| MemorySizeError::UnknownUnit(unit.to_owned()))?
        };
        // Only ASCII digits remain, so the parse can fail only by overflowing.
        let count: u64 = digits.parse().map_err(|_| MemorySizeError::Overflow)?;
        count.checked_mul(multiplier).map(MemorySize).ok_or(MemorySizeError::Overflow)
    }
}

impl fmt::Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // min_by_key keeps the first of equal quotients, so binary wins ties.
        let best = SIZE_UNITS
            .iter()
            .filter(|(_, m)| self.0 != 0 && self.0 % m == 0)
            .min_by_key(|(_, m)| self.0 / m);
        match best {
            Some((unit, m)) => write!(f, "{}{unit}", self.0 / m),
            None => write!(f, "{}", self.0),
        }
    }
}

/// How a zone is attached to the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// Own network namespace with loopback only.
    #[default]
    Isolated,
    /// Own network namespace plus an address on the bridge.
    Bridged,
    /// The host's network stack.
    Host,
}

impl NetworkMode {
    /// The TOML spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Isolated => "isolated",
            NetworkMode::Bridged => "bridged",
            NetworkMode::Host => "host",
        }
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[network]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Network {
    /// `network.mode`.
    pub mode: NetworkMode,
    /// Zones this zone may exchange traffic with (both must allow it).
    pub allowed_zones: Vec<String>,
    /// Destinations this zone may reach.
    pub allowed_egress: Vec<CidrRule>,
    /// Sources that may reach this zone.
    pub allowed_ingress: Vec<CidrRule>,
}

/// Why a network or network:port entry is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The entry is empty.
    #[error("entry is empty")]
    Empty,
    /// The address part is not an IP address.
    #[error("{0:?} is not an IP address")]
    Address(String),
    /// The prefix length is not a number in range.
    #[error("invalid prefix length {len:?} (expected 0..={max})")]
    PrefixLength { len: String, max: u8 },
    /// Bits below the prefix length are set.
    #[error("host bits are set (the network is {network})")]
    HostBits { network: String },
    /// The port is not a number in 1..=65535.
    #[error("invalid port {0:?} (expected 1..=65535)")]
    Port(String),
    /// An IPv6 network followed by a port without brackets.
    #[error("an IPv6 network with a port must be bracketed, as in [2001:db8::/32]:53")]
    UnbracketedIpv6Port,
    /// Brackets around an IPv4 network.
    #[error("brackets are only for IPv6 networks")]
    BracketedIpv4,
    /// An opening bracket without a closing one.
    #[error("missing ']'")]
    MissingBracket,
    /// Text after `]` that is not `:port`.
    #[error("expected \":port\" after ']'")]
    AfterBracket,
}

/// An IPv4 or IPv6 network: an address with all host bits zero and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// A network, refused if the length exceeds the address width or host bits are set.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, CidrError> {
        let max = max_prefix_len(addr);
        if len > max {
            return Err(CidrError::PrefixLength { len: len.to_string(), max });
        }
        let network = mask_addr(addr, len);
        if network != addr {
            return Err(CidrError::HostBits { network: format!("{network}/{len}") });
        }
        Ok(IpPrefix { addr, len })
    }

    /// The network address.
    pub const fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub const fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` lies in this network (never across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask_addr(ip, self.len) == self.addr
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for IpPrefix {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr_text, len_text) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr =
            addr_text.parse().map_err(|_| CidrError::Address(addr_text.to_owned()))?;
        let max = max_prefix_len(addr);
        let len = match len_text {
            None => max,
            Some(l) => parse_digits::<u8>(l)
                .filter(|n| *n <= max)
                .ok_or_else(|| CidrError::PrefixLength { len: l.to_owned(), max })?,
        };
        IpPrefix::new(addr, len)
    }
}

fn max_prefix_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn mask_addr(addr: IpAddr, len: u8) -> IpAddr {
    // checked_shl: a shift by the full width (len 0) is overflow in Rust, and means "no bits".
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

// `str::parse` for integers accepts a leading '+'; policy numbers are plain digits.
fn parse_digits<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A network with an optional port: `"0.0.0.0/0:443"`, `"10.1.0.0/16"`, `"[2001:db8::/32]:53"`.
///
/// A bare address means a single host (/32 or /128). An unbracketed IPv6 entry never carries a
/// port, since `2001:db8::1:53` is itself an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CidrRule {
    /// The network.
    pub network: IpPrefix,
    /// The port, or every port when `None`.
    pub port: Option<u16>,
}

impl FromStr for CidrRule {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(CidrError::Empty);
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (inner, after) = rest.split_once(']').ok_or(CidrError::MissingBracket)?;
            let network: IpPrefix = inner.parse()?;
            if network.addr.is_ipv4() {
                return Err(CidrError::BracketedIpv4);
            }
            let port = match after {
                "" => None,
                _ => Some(parse_port(after.strip_prefix(':').ok_or(CidrError::AfterBracket)?)?),
            };
            return Ok(CidrRule { network, port });
        }
        if s.matches(':').count() >= 2 {
            let network = s.parse().map_err(|e| match s.split_once('/') {
                Some((_, len)) if len.contains(':') => CidrError::UnbracketedIpv6Port,
                _ => e,
            })?;
            return Ok(CidrRule { network, port: None });
        }
        match s.split_once(':') {
            Some((net, port)) => {
                Ok(CidrRule { network: net.parse()?, port: Some(parse_port(port)?) })
            }
            None => Ok(CidrRule { network: s.parse()?, port: None }),
        }
    }
}

fn parse_port(s: &str) -> Result<u16, CidrError> {
    parse_digits::<u16>(s).filter(|p| *p != 0).ok_or_else(|| CidrError::Port(s.to_owned()))
}

impl fmt::Display for CidrRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.network.addr, self.port) {
            (_, None) => write!(f, "{}", self.network),
            (IpAddr::V4(_), Some(port)) => write!(f, "{}:{port}", self.network),
            (IpAddr::V6(_), Some(port)) => write!(f, "[{}]:{port}", self.network),
        }
    }
}

/// The `[filesystem]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filesystem {
    /// Paths left writable in an otherwise read-only rootfs.
    pub writable_paths: Vec<String>,
}

impl Default for Filesystem {
    fn default() -> Self {
        Filesystem { writable_paths: vec!["/tmp".to_owned()] }
    }
}

/// The `[devices]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Devices {
    /// Device nodes beyond the minimal `/dev`, as paths under `/dev/`.
    pub allowed: Vec<String>,
}

/// The `[syscalls]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Syscalls {
    /// System call names denied on top of the default seccomp allow-list.
    pub deny: Vec<String>,
}

/// The host architecture's number for a system call name, if it has one.
pub fn syscall_number(name: &str) -> Option<i32> {
    syscalls::Sysno::from_str(name).ok().map(|s| s.id())
}

/// Why a path in the policy is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with '/'.
    #[error("not an absolute path")]
    NotAbsolute,
    /// `//` or a trailing '/'.
    #[error("contains an empty component (\"//\" or a trailing '/')")]
    EmptyComponent,
    /// A `.` component.
    #[error("contains a '.' component")]
    Dot,
    /// A `..` component.
    #[error("contains a '..' component")]
    DotDot,
    /// NUL or another control character.
    #[error("contains a control character")]
    ControlChar,
    /// A device path outside `/dev/`.
    #[error("not under /dev/")]
    NotUnderDev,
}

fn check_path(path: &str) -> Result<(), PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    if path.chars().any(char::is_control) {
        return Err(PathError::ControlChar);
    }
    if rest.is_empty() {
        return Ok(());
    }
    for component in rest.split('/') {
        match component {
            "" => return Err(PathError::EmptyComponent),
            "." => return Err(PathError::Dot),
            ".." => return Err(PathError::DotDot),
            _ => {}
        }
    }
    Ok(())
}

impl Policy {
    /// Parses and validates policy TOML; the empty string gives the default policy.
    pub fn parse(toml_text: &str) -> Result<Policy, PolicyError> {
        Self::parse_for_type(toml_text, None)
    }

    /// Parses policy TOML for a zone whose type the request fixes: a policy without `zone.type`
    /// takes `zone_type` (and is validated as such), one that names another type is refused.
    pub fn parse_for_type(
        toml_text: &str,
        zone_type: Option<ZoneType>,
    ) -> Result<Policy, PolicyError> {
        let root: Table =
            toml_text.parse().map_err(|e: toml::de::Error| syntax_error(toml_text, &e))?;
        for (key, value) in &root {
            if !SECTIONS.contains(&key.as_str()) {
                return Err(match value {
                    Value::Table(_) => PolicyError::UnknownSection { section: key.clone() },
                    _ => PolicyError::UnknownTopLevelKey { key: key.clone() },
                });
            }
        }
        let zone = parse_zone(&Section::get(&root, "zone", &["name", "type"])?, zone_type)?;
        let capabilities = parse_capabilities(
            &Section::get(&root, "capabilities", &["allowed"])?,
            zone.zone_type,
        )?;
        let resources = parse_resources(&Section::get(
            &root,
            "resources",
            &["cpu_shares", "memory_limit", "pids_max", "io_weight"],
        )?)?;
        let network = parse_network(&Section::get(
            &root,
            "network",
            &["mode", "allowed_zones", "allowed_egress", "allowed_ingress"],
        )?)?;
        let filesystem = parse_filesystem(
            &Section::get(&root, "filesystem", &["writable_paths"])?,
            zone.zone_type,
        )?;
        let devices = parse_devices(&Section::get(&root, "devices", &["allowed"])?)?;
        let syscalls = parse_syscalls(&Section::get(&root, "syscalls", &["deny"])?)?;
        Ok(Policy { zone, capabilities, resources, network, filesystem, devices, syscalls })
    }

    /// Renders the effective policy with every key, in the layout of `POLICY.md`.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("[zone]\n");
        if let Some(name) = &self.zone.name {
            out += &format!("name = {}\n", toml_string(name));
        }
        out += &format!("type = \"{}\"\n", self.zone.zone_type);
        out += &format!("\n[capabilities]\nallowed = {}\n", toml_list(self.capabilities.iter()));
        let r = &self.resources;
        out += &format!(
            "\n[resources]\ncpu_shares = {}\nmemory_limit = \"{}\"\npids_max = {}\nio_weight = {}\n",
            r.cpu_shares, r.memory_limit, r.pids_max, r.io_weight
        );
        let n = &self.network;
        out += &format!(
            "\n[network]\nmode = \"{}\"\nallowed_zones = {}\nallowed_egress = {}\nallowed_ingress = {}\n",
            n.mode,
            toml_list(&n.allowed_zones),
            toml_list(&n.allowed_egress),
            toml_list(&n.allowed_ingress)
        );
        out += &format!(
            "\n[filesystem]\nwritable_paths = {}\n",
            toml_list(&self.filesystem.writable_paths)
        );
        out += &format!("\n[devices]\nallowed = {}\n", toml_list(&self.devices.allowed));
        out += &format!("\n[syscalls]\ndeny = {}\n", toml_list(&self.syscalls.deny));
        out
    }

    /// The zone type this policy creates.
    pub fn zone_type(&self) -> ZoneType {
        self.zone.zone_type
    }
}

fn toml_string(s: &str) -> String {
    // toml's own rendering does the escaping (quotes, backslashes, control characters).
    Value::String(s.to_owned()).to_string()
}

fn toml_list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| toml_string(&i.to_string())).collect();
    format!("[{}]", items.join(", "))
}

fn syntax_error(text: &str, err: &toml::de::Error) -> PolicyError {
    let offset = err.span().map_or(0, |span| span.start).min(text.len());
    // The span is a byte offset; count characters so the column matches what an editor shows.
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    PolicyError::Syntax { line, column, message: err.message().trim_end().to_owned() }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// One section of the document, absent sections behaving as empty.
struct Section<'a> {
    name: &'static str,
    table: Option<&'a Table>,
}

impl<'a> Section<'a> {
    fn get(root: &'a Table, name: &'static str, keys: &[&str]) -> Result<Self, PolicyError> {
        let table = match root.get(name) {
            None => None,
            Some(Value::Table(t)) => Some(t),
            Some(other) => {
                return Err(PolicyError::WrongType {
                    key: name.to_owned(),
                    expected: "a table",
                    found: type_name(other),
                });
            }
        };
        if let Some(key) =
            table.into_iter().flat_map(|t| t.keys()).find(|k| !keys.contains(&k.as_str()))
        {
            return Err(PolicyError::UnknownKey { section: name, key: key.clone() });
        }
        Ok(Section { name, table })
    }

    fn value(&self, key: &str) -> Option<&'a Value> {
        self.table.and_then(|t| t.get(key))
    }

    fn dotted(&self, key: &str) -> String {
        format!("{}.{key}", self.name)
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>, PolicyError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(PolicyError::WrongType {
                key: self.dotted(key),
                expected: "a string",
                found: type_name(other),
            }),
        }
    }

    fn integer(
        &self,
        key: &'static str,
        dotted: &'static str,
        (min, max): (u64, u64),
        default: u64,
    ) -> Result<u64, PolicyError> {
        match self.value(key) {
            None => Ok(default),
            Some(Value::Integer(i)) => u64::try_from(*i)
                .ok()
                .filter(|v| (min..=max).contains(v))
                .ok_or(PolicyError::OutOfRange { key: dotted, value: *i, min, max }),
            Some(other) => Err(PolicyError::WrongType {
                key: dotted.to_owned(),
                expected: "an integer",
                found: type_name(other),
            }),
        }
    }

    /// An array of strings; element type errors name the index (`network.allowed_zones[2]`).
    fn strings(&self, key: &str) -> Result<Option<Vec<&'a str>>, PolicyError> {
        let items = match self.value(key) {
            None => return Ok(None),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(PolicyError::WrongType {
                    key: self.dotted(key),
                    expected: "an array of strings",
                    found: type_name(other),
                });
            }
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.as_str()),
                other => Err(PolicyError::WrongType {
                    key: format!("{}[{i}]", self.dotted(key)),
                    expected: "a string",
                    found: type_name(other),
                }),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// Removes repeated items, keeping the first occurrence so the written order survives.
fn dedup_keep_order<T: Eq + std::hash::Hash + Clone>(items: Vec<T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items.into_iter().filter(|item| seen.insert(item.clone())).collect()
}

fn parse_zone(
    section: &Section<'_>,
    requested: Option<ZoneType>,
) -> Result<ZoneSection, PolicyError> {
    let name = section.string("name")?.map(str::to_owned);
    let zone_type = match section.string("type")? {
        None => requested.unwrap_or(ZoneType::NonGlobal),
        Some("non-global") => ZoneType::NonGlobal,
        Some("privileged") => ZoneType::Privileged,
        Some("global") => return Err(PolicyError::GlobalZone),
        Some(other) => {
            return Err(PolicyError::UnknownZoneType { value: other.to_owned() });
        }
    };
    if let Some(requested) = requested.filter(|&requested| requested != zone_type) {
        return Err(PolicyError::ZoneTypeConflict { policy: zone_type, requested });
    }
    Ok(ZoneSection { name, zone_type })
}

fn parse_capabilities(
    section: &Section<'_>,
    zone_type: ZoneType,
) -> Result<CapabilitySet, PolicyError> {
    let Some(names) = section.strings("allowed")? else {
        return Ok(CapabilitySet::default());
    };
    let set = names
        .into_iter()
        .map(|name| {
            Capability::from_name(name)
                .ok_or_else(|| PolicyError::UnknownCapability { value: name.to_owned() })
        })
        .collect::<Result<CapabilitySet, _>>()?;
    if zone_type != ZoneType::Privileged {
        if let Some(capability) = set.iter().find(|c| c.requires_privileged()) {
            return Err(PolicyError::PrivilegedCapability { capability });
        }
    }
    Ok(set)
}

fn parse_resources(section: &Section<'_>) -> Result<Resources, PolicyError> {
    let defaults = Resources::default();
    Ok(Resources {
        cpu_shares: section.integer(
            "cpu_shares",
            "resources.cpu_shares",
            CPU_SHARES_RANGE,
            defaults.cpu_shares,
        )?,
        memory_limit: parse_memory_limit(section)?.unwrap_or(defaults.memory_limit),
        pids_max: section.integer(
            "pids_max",
            "resources.pids_max",
            PIDS_MAX_RANGE,
            defaults.pids_max,
        )?,
        io_weight: section.integer(
            "io_weight",
            "resources.io_weight",
            IO_WEIGHT_RANGE,
            defaults.io_weight,
        )?,
    })
}

fn parse_memory_limit(section: &Section<'_>) -> Result<Option<MemorySize>, PolicyError> {
    let (text, parsed) = match section.value("memory_limit") {
        None => return Ok(None),
        Some(Value::String(s)) => (s.clone(), s.parse::<MemorySize>()),
        Some(Value::Integer(i)) => (
            i.to_string(),
            u64::try_from(*i).map(MemorySize).map_err(|_| MemorySizeError::Negative),
        ),
        Some(Value::Float(f)) => (f.to_string(), Err(MemorySizeError::Fraction)),
        Some(other) => {
            return Err(PolicyError::WrongType {
                key: "resources.memory_limit".to_owned(),
                expected: "a string or an integer",
                found: type_name(other),
            });
        }
    };
    let size =
        parsed.map_err(|source| PolicyError::InvalidMemorySize { value: text.clone(), source })?;
    if size.bytes() < MIN_MEMORY_BYTES {
        return Err(PolicyError::MemoryBelowMinimum { value: text });
    }
    Ok(Some(size))
}

fn parse_network(section: &Section<'_>) -> Result<Network, PolicyError> {
    let mode = match section.string("mode")? {
        None | Some("isolated") => NetworkMode::Isolated,
        Some("bridged") => NetworkMode::Bridged,
        Some("host") => NetworkMode::Host,
        Some(other) => {
            return Err(PolicyError::UnknownNetworkMode { value: other.to_owned() });
        }
    };
    let allowed_zones = section
        .strings("allowed_zones")?
        .unwrap_or_default()
        .into_iter()
        .map(|name| {
            validate_zone_name(name)
                .map(|()| name.to_owned())
                .map_err(|source| PolicyError::InvalidZoneName { name: name.to_owned(), source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Network {
        mode,
        allowed_zones: dedup_keep_order(allowed_zones),
        allowed_egress: parse_cidrs(section, "allowed_egress", "network.allowed_egress")?,
        allowed_ingress: parse_cidrs(section, "allowed_ingress", "network.allowed_ingress")?,
    })
}

fn parse_cidrs(
    section: &Section<'_>,
    key: &str,
    dotted: &'static str,
) -> Result<Vec<CidrRule>, PolicyError> {
    let rules = section
        .strings(key)?
        .unwrap_or_default()
        .into_iter()
        .map(|entry| {
            entry.parse().map_err(|source| PolicyError::InvalidCidr {
                key: dotted,
                value: entry.to_owned(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(dedup_keep_order(rules))
}

fn parse_paths(
    section: &Section<'_>,
    key: &str,
    dotted: &'static str,
    check: fn(&str) -> Result<(), PathError>,
) -> Result<Option<Vec<String>>, PolicyError> {
    let Some(paths) = section.strings(key)? else {
        return Ok(None);
    };
    let paths = paths
        .into_iter()
        .map(|path| {
            check(path).map(|()| path.to_owned()).map_err(|source| PolicyError::InvalidPath {
                key: dotted,
                path: path.to_owned(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(dedup_keep_order(paths)))
}

fn parse_filesystem(section: &Section<'_>, zone_type: ZoneType) -> Result<Filesystem, PolicyError> {
    let Some(writable_paths) =
        parse_paths(section, "writable_paths", "filesystem.writable_paths", check_path)?
    else {
        return Ok(Filesystem::default());
    };
    if zone_type != ZoneType::Privileged && writable_paths.iter().any(|p| p == "/") {
        return Err(PolicyError::WritableRootNeedsPrivileged);
    }
    Ok(Filesystem { writable_paths })
}

fn check_device_path(path: &str) -> Result<(), PathError> {
    check_path(path)?;
    if !path.starts_with("/dev/") {
        return Err(PathError::NotUnderDev);
    }
    Ok(())
}

fn parse_devices(section: &Section<'_>) -> Result<Devices, PolicyError> {
    let allowed = parse_paths(section, "allowed", "devices.allowed", check_device_path)?;
    Ok(Devices { allowed: allowed.unwrap_or_default() })
}

fn parse_syscalls(section: &Section<'_>) -> Result<Syscalls, PolicyError> {
    let deny = section
        .strings("deny")?
        .unwrap_or_default()
        .into_iter()
        .map(|name| match syscall_number(name) {
            Some(_) => Ok(name.to_owned()),
            None => Err(PolicyError::UnknownSyscall {
                name: name.to_owned(),
                arch: std::env::consts::ARCH,
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Syscalls { deny: dedup_keep_order(deny) })
}

/// A part of a policy that `live_changes` reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyPart {
    /// `zone.name`.
    ZoneName,
    /// `zone.type`.
    ZoneType,
    /// `capabilities.allowed`.
    Capabilities,
    /// `[resources]`.
    Resources,
    /// `network.mode`.
    NetworkMode,
    /// `network.allowed_zones`.
    AllowedZones,
    /// `network.allowed_egress`.
    AllowedEgress,
    /// `network.allowed_ingress`.
    AllowedIngress,
    /// `filesystem.writable_paths`.
    WritablePaths,
    /// `devices.allowed`.
    Devices,
    /// `syscalls.deny`.
    Syscalls,
}

impl PolicyPart {
    /// The TOML key or section the part stands for.
    pub const fn key(self) -> &'static str {
        match self {
            PolicyPart::ZoneName => "zone.name",
            PolicyPart::ZoneType => "zone.type",
            PolicyPart::Capabilities => "capabilities.allowed",
            PolicyPart::Resources => "resources",
            PolicyPart::NetworkMode => "network.mode",
            PolicyPart::AllowedZones => "network.allowed_zones",
            PolicyPart::AllowedEgress => "network.allowed_egress",
            PolicyPart::AllowedIngress => "network.allowed_ingress",
            PolicyPart::WritablePaths => "filesystem.writable_paths",
            PolicyPart::Devices => "devices.allowed",
            PolicyPart::Syscalls => "syscalls.deny",
        }
    }
}

/// When a changed part takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyMode {
    /// Changed in place for running containers.
    Live,
    /// Bound at process start: running containers keep the old value.
    NewProcesses,
    /// Only allowed while the zone has no running containers.
    NeedsNoRunningContainers,
}

/// One changed part and when it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChange {
    /// What changed.
    pub part: PolicyPart,
    /// When it takes effect.
    pub apply: ApplyMode,
}

impl fmt::Display for PolicyChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = match self.apply {
            ApplyMode::Live => "applied live",
            ApplyMode::NewProcesses => "applies to containers started from now on",
            ApplyMode::NeedsNoRunningContainers => "needs a zone with no running containers",
        };
        write!(f, "{}: {when}", self.part.key())
    }
}

/// The parts that differ between two policies, in policy order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PolicyDiff {
    /// Each changed part.
    pub changes: Vec<PolicyChange>,
}

impl PolicyDiff {
    /// Whether the policies are equivalent.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether applying must be refused while the zone has running containers.
    pub fn needs_no_running_containers(&self) -> bool {
        self.changes.iter().any(|c| c.apply == ApplyMode::NeedsNoRunningContainers)
    }
}

/// Lists what differs from `old` to `new` and when each difference takes effect.
///
/// Lists compare as sets, so reordering one is not a change.
pub fn live_changes(old: &Policy, new: &Policy) -> PolicyDiff {
    fn same_set<T: Eq + std::hash::Hash>(a: &[T], b: &[T]) -> bool {
        a.iter().collect::<HashSet<_>>() == b.iter().collect::<HashSet<_>>()
    }
    let (o, n) = (&old.network, &new.network);
    // A process cannot move to another network namespace, so host mode on either side needs an
    // empty zone; isolated <-> bridged only adds or removes the zone's veth.
    let mode_apply = if o.mode == NetworkMode::Host || n.mode == NetworkMode::Host {
        ApplyMode::NeedsNoRunningContainers
    } else {
        ApplyMode::Live
    };
    let checks = [
        (old.zone.name == new.zone.name, PolicyPart::ZoneName, ApplyMode::Live),
        (old.zone.zone_type == new.zone.zone_type, PolicyPart::ZoneType, ApplyMode::NewProcesses),
        (old.capabilities == new.capabilities, PolicyPart::Capabilities, ApplyMode::NewProcesses),
        (old.resources == new.resources, PolicyPart::Resources, ApplyMode::Live),
        (o.mode == n.mode, PolicyPart::NetworkMode, mode_apply),
        (same_set(&o.allowed_zones, &n.allowed_zones), PolicyPart::AllowedZones, ApplyMode::Live),
        (
            same_set(&o.allowed_egress, &n.allowed_egress),
            PolicyPart::AllowedEgress,
            ApplyMode::Live,
        ),
        (
            same_set(&o.allowed_ingress, &n.allowed_ingress),
            PolicyPart::AllowedIngress,
            ApplyMode::Live,
        ),
        (
            same_set(&old.filesystem.writable_paths, &new.filesystem.writable_paths),
            PolicyPart::WritablePaths,
            ApplyMode::NewProcesses,
        ),
        (
            same_set(&old.devices.allowed, &new.devices.allowed),
            PolicyPart::Devices,
            ApplyMode::NewProcesses,
        ),
        (
            same_set(&old.syscalls.deny, &new.syscalls.deny),
            PolicyPart::Syscalls,
            ApplyMode::NewProcesses,
        ),
    ];
    PolicyDiff {
        changes: checks
            .into_iter()
            .filter(|(same, _, _)| !same)
            .map(|(_, part, apply)| PolicyChange { part, apply })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Paths of the shipped policies relative to this file; one line to change when it moves.
    const STANDARD: &str = include_str!("../../policies/standard.toml");
    const STRICT: &str = include_str!("../../policies/strict.toml");
    const PRIVILEGED: &str = include_str!("../../policies/privileged.toml");

    fn err(text: &str) -> String {
        match Policy::parse(text) {
            Ok(p) => panic!("expected an error, parsed {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn ok(text: &str) -> Policy {
        match Policy::parse(text) {
            Ok(p) => p,
            Err(e) => panic!("expected a policy, got: {e}"),
        }
    }

    fn round_trips(p: &Policy) {
        let text = p.to_toml();
        assert_eq!(&ok(&text), p, "round trip of:\n{text}");
        assert_eq!(ok(&text).to_toml(), text, "rendering is not stable");
    }

    #[test]
    fn empty_text_is_the_default_policy() {
        let p = ok("");
        assert_eq!(p, Policy::default());
        assert_eq!(ok("# only a comment\n\n"), p);
        assert_eq!(p.zone_type(), ZoneType::NonGlobal);
        assert_eq!(p.zone.name, None);
        assert_eq!(p.capabilities, DEFAULT_CAPABILITIES.into_iter().collect::<CapabilitySet>());
        assert_eq!(p.capabilities.len(), 14);
        assert_eq!(p.resources.cpu_shares, 1024);
        assert_eq!(p.resources.memory_limit.bytes(), 512 * 1024 * 1024);
        assert_eq!(p.resources.pids_max, 256);
        assert_eq!(p.resources.io_weight, 100);
        assert_eq!(p.network.mode, NetworkMode::Isolated);
        assert!(p.network.allowed_zones.is_empty());
        assert!(p.network.allowed_egress.is_empty());
        assert!(p.network.allowed_ingress.is_empty());
        assert_eq!(p.filesystem.writable_paths, ["/tmp"]);
        assert!(p.devices.allowed.is_empty());
        assert!(p.syscalls.deny.is_empty());
    }

    #[test]
    fn default_renders_every_key() {
        let expected = "\
[zone]
type = \"non-global\"

[capabilities]
allowed = [\"CAP_CHOWN\", \"CAP_DAC_OVERRIDE\", \"CAP_FOWNER\", \"CAP_FSETID\", \"CAP_KILL\", \
\"CAP_SETGID\", \"CAP_SETUID\", \"CAP_SETPCAP\", \"CAP_NET_BIND_SERVICE\", \"CAP_NET_RAW\", \
\"CAP_SYS_CHROOT\", \"CAP_MKNOD\", \"CAP_AUDIT_WRITE\", \"CAP_SETFCAP\"]

[resources]
cpu_shares = 1024
memory_limit = \"512Mi\"
pids_max = 256
io_weight = 100

[network]
mode = \"isolated\"
allowed_zones = []
allowed_egress = []
allowed_ingress = []

[filesystem]
writable_paths = [\"/tmp\"]

[devices]
allowed = []

[syscalls]
deny = []
";
        assert_eq!(Policy::default().to_toml(), expected);
        round_trips(&Policy::default());
    }

    #[test]
    fn policy_md_example_parses() {
        let text = r#"
[zone]
name = "production"
type = "non-global"

[capabilities]
allowed = ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"]

[resources]
cpu_shares = 1024
memory_limit = "512Mi"
pids_max = 256
io_weight = 100

[network]
mode = "isolated"
allowed_zones = ["frontend"]
allowed_egress = ["0.0.0.0/0:443", "10.1.0.0/16", "[2001:db8::/32]:53"]
allowed_ingress = []

[filesystem]
writable_paths = ["/tmp", "/var/log"]

[devices]
allowed = []

[syscalls]
deny = ["mount", "umount2", "pivot_root"]
"#;
        let p = ok(text);
        assert_eq!(p.zone.name.as_deref(), Some("production"));
        assert_eq!(
            p.capabilities.iter().collect::<Vec<_>>(),
            [Capability::Chown, Capability::NetBindService]
        );
        assert_eq!(p.network.allowed_zones, ["frontend"]);
        assert_eq!(
            p.network.allowed_egress.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["0.0.0.0/0:443", "10.1.0.0/16", "[2001:db8::/32]:53"]
        );
        assert_eq!(p.filesystem.writable_paths, ["/tmp", "/var/log"]);
        assert_eq!(p.syscalls.deny, ["mount", "umount2", "pivot_root"]);
        round_trips(&p);
    }

    #[test]
    fn shipped_policies_parse_and_round_trip() {
        let standard = ok(STANDARD);
        assert_eq!(standard, Policy::default());
        round_trips(&standard);

        let strict = ok(STRICT);
        assert_eq!(strict.zone_type(), ZoneType::NonGlobal);
        assert!(strict.capabilities.len() <= 4);
        assert!(strict.resources.memory_limit < Resources::default().memory_limit);
        assert!(strict.resources.pids_max < Resources::default().pids_max);
        assert_eq!(strict.network.mode, NetworkMode::Isolated);
        for name in ["mount", "umount2", "pivot_root"] {
            assert!(strict.syscalls.deny.iter().any(|d| d == name), "{name}");
        }
        round_trips(&strict);

        let privileged = ok(PRIVILEGED);
        assert_eq!(privileged.zone_type(), ZoneType::Privileged);
        assert!(privileged.capabilities.contains(Capability::SysAdmin));
        assert_eq!(privileged.filesystem.writable_paths, ["/"]);
        round_trips(&privileged);
    }

    #[test]
    fn zone_section() {
        assert_eq!(ok("[zone]\ntype = \"privileged\"").zone_type(), ZoneType::Privileged);
        assert_eq!(ok("[zone]\ntype = \"non-global\"").zone_type(), ZoneType::NonGlobal);
        assert_eq!(
            err("[zone]\ntype = \"global\""),
            "zone.type: \"global\" is the host and cannot be created"
        );
        assert_eq!(
            err("[zone]\ntype = \"Privileged\""),
            "zone.type: unknown zone type \"Privileged\" (expected non-global or privileged)"
        );
        assert_eq!(err("[zone]\ntype = 1"), "zone.type: expected a string, found an integer");
        assert_eq!(err("[zone]\nname = true"), "zone.name: expected a string, found a boolean");
        let p = ok("[zone]\nname = \"web \\\"prod\\\" \\\\ ü\\n\"");
        assert_eq!(p.zone.name.as_deref(), Some("web \"prod\" \\ ü\n"));
        round_trips(&p);
    }

    #[test]
    fn unknown_sections_and_keys() {
        assert_eq!(err("[bar]\nx = 1"), "unknown section [bar]");
        assert_eq!(err("foo = 1"), "unknown key \"foo\" outside any section");
        assert_eq!(err("[network]\nfoo = 1"), "unknown key \"foo\" in [network]");
        assert_eq!(err("[network.extra]\nx = 1"), "unknown key \"extra\" in [network]");
        assert_eq!(err("network = 5"), "network: expected a table, found an integer");
        assert_eq!(
            err("[[network]]\nmode = \"host\""),
            "network: expected a table, found an array"
        );
        // Keys are case-sensitive, as in TOML itself.
        assert_eq!(err("[zone]\nType = \"privileged\""), "unknown key \"Type\" in [zone]");
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let e = Policy::parse("[zone]\ntype = \"privileged\nx").unwrap_err();
        let PolicyError::Syntax { line, column, .. } = &e else {
            panic!("expected a syntax error, got {e:?}");
        };
        assert_eq!((*line, *column), (2, 19));
        assert!(e.to_string().starts_with("toml syntax error at line 2, column 19: "), "{e}");

        let e = Policy::parse("[resources]\npids_max = 1\npids_max = 2\n").unwrap_err();
        assert!(matches!(e, PolicyError::Syntax { line: 3, .. }), "{e:?}");
    }

    #[test]
    fn capabilities_default_empty_and_names() {
        assert!(ok("[capabilities]\n").capabilities == CapabilitySet::default());
        let none = ok("[capabilities]\nallowed = []");
        assert!(none.capabilities.is_empty());
        assert!(none.to_toml().contains("allowed = []"));
        round_trips(&none);

        let p = ok(r#"[capabilities]
allowed = ["kill", "CAP_chown", "cap_kill", "NET_BIND_SERVICE", "Cap_Chown"]"#);
        assert_eq!(
            p.capabilities.iter().collect::<Vec<_>>(),
            [Capability::Chown, Capability::Kill, Capability::NetBindService]
        );
        assert!(
            p.to_toml()
                .contains("allowed = [\"CAP_CHOWN\", \"CAP_KILL\", \"CAP_NET_BIND_SERVICE\"]")
        );
        round_trips(&p);

        assert_eq!(
            err("[capabilities]\nallowed = [\"CAP_FOO\"]"),
            "capabilities.allowed: unknown capability \"CAP_FOO\""
        );
        assert_eq!(
            err("[capabilities]\nallowed = [\"CAP_\"]"),
            "capabilities.allowed: unknown capability \"CAP_\""
        );
        assert_eq!(
            err("[capabilities]\nallowed = \"CAP_KILL\""),
            "capabilities.allowed: expected an array of strings, found a string"
        );
        assert_eq!(
            err("[capabilities]\nallowed = [\"CAP_KILL\", 5]"),
            "capabilities.allowed[1]: expected a string, found an integer"
        );
    }

    #[test]
    fn privileged_only_capabilities() {
        let privileged_only: Vec<_> =
            Capability::ALL.iter().copied().filter(|c| c.requires_privileged()).collect();
        assert_eq!(privileged_only.len(), 14);
        for cap in Capability::ALL {
            let text = format!("[capabilities]\nallowed = [\"{}\"]", cap.name());
            if cap.requires_privileged() {
                assert_eq!(
                    err(&text),
                    format!(
                        "capabilities.allowed: {} requires zone.type = \"privileged\"",
                        cap.name()
                    )
                );
            } else {
                assert!(ok(&text).capabilities.contains(*cap));
            }
            let p = ok(&format!("[zone]\ntype = \"privileged\"\n{text}"));
            assert!(p.capabilities.contains(*cap));
            round_trips(&p);
        }
        // The zone section may come after the capabilities that depend on it.
        let p = ok("[capabilities]\nallowed = [\"SYS_ADMIN\"]\n[zone]\ntype = \"privileged\"");
        assert!(p.capabilities.contains(Capability::SysAdmin));
    }

    #[test]
    fn capability_numbers_and_names() {
        assert_eq!(Capability::ALL.len(), 41);
        for (i, cap) in Capability::ALL.iter().enumerate() {
            assert_eq!(usize::from(cap.number()), i);
            assert_eq!(Capability::from_name(cap.name()), Some(*cap));
            assert_eq!(cap.to_string(), cap.name());
        }
        assert_eq!(Capability::Chown.number(), 0);
        assert_eq!(Capability::SysAdmin.number(), 21);
        assert_eq!(Capability::CheckpointRestore.number(), 40);
        assert_eq!(Capability::from_name("bpf"), Some(Capability::Bpf));
        assert_eq!(Capability::from_name("CAP_FOO"), None);
        let set: CapabilitySet = [Capability::Chown, Capability::Kill].into_iter().collect();
        assert_eq!(set.mask(), 0b100001);
        assert_eq!(CapabilitySet::empty().mask(), 0);
    }

    #[test]
    fn capability_numbers_match_kernel_header() {
        // Cross-check against the installed UAPI header where there is one.
        let Ok(header) = std::fs::read_to_string("/usr/include/linux/capability.h") else {
            return;
        };
        let mut seen = 0;
        for line in header.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("#define") {
                continue;
            }
            let (Some(name), Some(num)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(num) = num.parse::<u8>() else {
                continue;
            };
            if let Some(cap) = Capability::from_name(name).filter(|_| name.starts_with("CAP_")) {
                if name == "CAP_LAST_CAP" {
                    continue;
                }
                assert_eq!(cap.number(), num, "{name}");
                seen += 1;
            }
        }
        assert_eq!(seen, 41);
    }

    #[test]
    fn integer_resources_ranges() {
        let cases = [
            ("cpu_shares", CPU_SHARES_RANGE),
            ("pids_max", PIDS_MAX_RANGE),
            ("io_weight", IO_WEIGHT_RANGE),
        ];
        for (key, (min, max)) in cases {
            for good in [min, max] {
                let p = ok(&format!("[resources]\n{key} = {good}"));
                round_trips(&p);
            }
            for bad in [min as i64 - 1, max as i64 + 1, -5] {
                assert_eq!(
                    err(&format!("[resources]\n{key} = {bad}")),
                    format!("resources.{key}: {bad} is out of range {min}..={max}")
                );
            }
            assert_eq!(
                err(&format!("[resources]\n{key} = \"7\"")),
                format!("resources.{key}: expected an integer, found a string")
            );
            assert_eq!(
                err(&format!("[resources]\n{key} = 1.5")),
                format!("resources.{key}: expected an integer, found a float")
            );
        }
        let p = ok("[resources]\ncpu_shares = 2\npids_max = 1\nio_weight = 10000");
        assert_eq!(p.resources.cpu_shares, 2);
        assert_eq!(p.resources.pids_max, 1);
        assert_eq!(p.resources.io_weight, 10000);
        assert_eq!(p.resources.memory_limit, Resources::default().memory_limit);
    }

    #[test]
    fn memory_limit_units() {
        let cases: [(&str, u64); 12] = [
            ("\"512Mi\"", 512 << 20),
            ("\"4Mi\"", 4 << 20),
            ("\"4096Ki\"", 4 << 20),
            ("\"1Gi\"", 1 << 30),
            ("\"2Ti\"", 2 << 40),
            ("\"5M\"", 5_000_000),
            ("\"3G\"", 3_000_000_000),
            ("\"1T\"", 1_000_000_000_000),
            ("\"8000K\"", 8_000_000),
            ("\"4194304\"", 4 << 20),
            ("10000000", 10_000_000),
            ("\"18446744073709551615\"", u64::MAX),
        ];
        for (text, bytes) in cases {
            let p = ok(&format!("[resources]\nmemory_limit = {text}"));
            assert_eq!(p.resources.memory_limit.bytes(), bytes, "{text}");
            round_trips(&p);
        }
    }

    #[test]
    fn memory_limit_errors() {
        let cases = [
            ("\"3Mi\"", "resources.memory_limit: \"3Mi\" is below the minimum of 4Mi"),
            ("\"4194303\"", "resources.memory_limit: \"4194303\" is below the minimum of 4Mi"),
            ("0", "resources.memory_limit: \"0\" is below the minimum of 4Mi"),
            (
                "\"-1Gi\"",
                "resources.memory_limit: invalid size \"-1Gi\": negative sizes are not allowed",
            ),
            ("-1", "resources.memory_limit: invalid size \"-1\": negative sizes are not allowed"),
            (
                "\"1.5Gi\"",
                "resources.memory_limit: invalid size \"1.5Gi\": fractional sizes are not allowed",
            ),
            (
                "1.5",
                "resources.memory_limit: invalid size \"1.5\": fractional sizes are not allowed",
            ),
            (
                "\"16Ei\"",
                "resources.memory_limit: invalid size \"16Ei\": unknown unit \"Ei\" \
                 (expected Ki, Mi, Gi, Ti, K, M, G, T or none for bytes)",
            ),
            (
                "\"512MB\"",
                "resources.memory_limit: invalid size \"512MB\": unknown unit \"MB\" \
                 (expected Ki, Mi, Gi, Ti, K, M, G, T or none for bytes)",
            ),
            (
                "\"512 Mi\"",
                "resources.memory_limit: invalid size \"512 Mi\": unknown unit \" Mi\" \
                 (expected Ki, Mi, Gi, Ti, K, M, G, T or none for bytes)",
            ),
            (
                "\"99999999Ti\"",
                "resources.memory_limit: invalid size \"99999999Ti\": size does not fit in 64 bits",
            ),
            (
                "\"18446744073709551616\"",
                "resources.memory_limit: invalid size \"18446744073709551616\": \
                 size does not fit in 64 bits",
            ),
            ("\"\"", "resources.memory_limit: invalid size \"\": size is empty"),
            (
                "\"Mi\"",
                "resources.memory_limit: invalid size \"Mi\": \
                 expected a whole number followed by an optional unit",
            ),
            (
                "\"+5Mi\"",
                "resources.memory_limit: invalid size \"+5Mi\": \
                 expected a whole number followed by an optional unit",
            ),
            ("true", "resources.memory_limit: expected a string or an integer, found a boolean"),
        ];
        for (text, message) in cases {
            assert_eq!(err(&format!("[resources]\nmemory_limit = {text}")), message);
        }
    }

    #[test]
    fn memory_size_display_is_canonical() {
        let cases: [(u64, &str); 12] = [
            (0, "0"),
            (512 << 20, "512Mi"),
            (1 << 30, "1Gi"),
            (1536 << 20, "1536Mi"),
            (3 << 40, "3Ti"),
            (2048, "2Ki"),
            (500_000_000, "500M"),
            (5_000_000_000_000, "5T"),
            (1_000, "1K"),
            (4_194_305, "4194305"),
            (1_024_000, "1000Ki"),
            (2_000_000_000, "2G"),
        ];
        for (bytes, text) in cases {
            let size = MemorySize::new(bytes);
            assert_eq!(size.to_string(), text);
            assert_eq!(text.parse::<MemorySize>(), Ok(size));
        }
        assert_eq!("1024Mi".parse::<MemorySize>().map(|s| s.to_string()), Ok("1Gi".into()));
    }

    #[test]
    fn network_mode() {
        for mode in [NetworkMode::Isolated, NetworkMode::Bridged, NetworkMode::Host] {
            let p = ok(&format!("[network]\nmode = \"{mode}\""));
            assert_eq!(p.network.mode, mode);
            round_trips(&p);
        }
        assert_eq!(
            err("[network]\nmode = \"quantum\""),
            "network.mode: unknown network mode \"quantum\" (expected isolated, bridged or host)"
        );
        assert_eq!(
            err("[network]\nmode = [\"host\"]"),
            "network.mode: expected a string, found an array"
        );
    }

    #[test]
    fn allowed_zones() {
        let p = ok(r#"[network]
allowed_zones = ["frontend", "db", "frontend", "zöne with space"]"#);
        assert_eq!(p.network.allowed_zones, ["frontend", "db", "zöne with space"]);
        round_trips(&p);
        let cases = [
            ("\"\"", "name is empty"),
            ("\"a/b\"", "name contains '/'"),
            ("\"a\\\\b\"", "name contains '\\'"),
            ("\"a\\u0000b\"", "name contains a control character"),
            ("\"..\"", "name \"..\" is reserved"),
        ];
        for (name, reason) in cases {
            let message = err(&format!("[network]\nallowed_zones = [{name}]"));
            assert!(message.starts_with("network.allowed_zones: invalid zone name "), "{message}");
            assert!(message.ends_with(reason), "{message}");
        }
        assert_eq!(
            err("[network]\nallowed_zones = [\"ok\", false]"),
            "network.allowed_zones[1]: expected a string, found a boolean"
        );
    }

    #[test]
    fn zone_name_rules() {
        assert_eq!(validate_zone_name("production"), Ok(()));
        assert_eq!(validate_zone_name("web-1.example_ü ok"), Ok(()));
        assert_eq!(validate_zone_name(&"x".repeat(128)), Ok(()));
        // 64 two-byte characters are 128 bytes: the limit counts bytes, not characters.
        assert_eq!(validate_zone_name(&"é".repeat(64)), Ok(()));
        assert_eq!(validate_zone_name(&"é".repeat(65)), Err(NameError::TooLong { len: 130 }));
        assert_eq!(validate_zone_name(""), Err(NameError::Empty));
        assert_eq!(
            NameError::TooLong { len: 129 }.to_string(),
            "name is too long (129 bytes, max 128)"
        );
        assert_eq!(validate_zone_name("a/b"), Err(NameError::Slash));
        assert_eq!(validate_zone_name("a\\b"), Err(NameError::Backslash));
        assert_eq!(validate_zone_name("a\0b"), Err(NameError::ControlChar));
        assert_eq!(validate_zone_name("a\nb"), Err(NameError::ControlChar));
        assert_eq!(validate_zone_name("a\u{7f}"), Err(NameError::ControlChar));
        assert_eq!(validate_zone_name("."), Err(NameError::Reserved(".")));
        assert_eq!(validate_zone_name(".."), Err(NameError::Reserved("..")));
        assert_eq!(validate_zone_name("..."), Ok(()));
    }

    #[test]
    fn cidr_rules_parse_and_display() {
        let cases = [
            ("0.0.0.0/0:443", "0.0.0.0/0:443"),
            ("10.1.0.0/16", "10.1.0.0/16"),
            ("10.0.0.7", "10.0.0.7/32"),
            ("10.0.0.7:22", "10.0.0.7/32:22"),
            ("[2001:db8::/32]:53", "[2001:db8::/32]:53"),
            ("[2001:db8::1]:53", "[2001:db8::1/128]:53"),
            ("[2001:db8::/32]", "2001:db8::/32"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("::1", "::1/128"),
            ("::/0", "::/0"),
            ("192.168.1.0/24:65535", "192.168.1.0/24:65535"),
        ];
        for (input, canonical) in cases {
            let rule: CidrRule = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(rule.to_string(), canonical);
            assert_eq!(canonical.parse::<CidrRule>(), Ok(rule));
        }
        let rule: CidrRule = "10.1.0.0/16:80".parse().unwrap();
        assert_eq!(rule.port, Some(80));
        assert_eq!(rule.network.prefix_len(), 16);
        assert!(rule.network.contains("10.1.200.3".parse().unwrap()));
        assert!(!rule.network.contains("10.2.0.1".parse().unwrap()));
        assert!(!rule.network.contains("::1".parse().unwrap()));
        let all: IpPrefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn cidr_rule_errors() {
        let cases = [
            ("10.1.2.0/16", "host bits are set (the network is 10.1.0.0/16)"),
            ("2001:db8::1/32", "host bits are set (the network is 2001:db8::/32)"),
            ("10.0.0.0/33", "invalid prefix length \"33\" (expected 0..=32)"),
            ("::/129", "invalid prefix length \"129\" (expected 0..=128)"),
            ("10.0.0.0/+8", "invalid prefix length \"+8\" (expected 0..=32)"),
            ("10.0.0.0/", "invalid prefix length \"\" (expected 0..=32)"),
            ("10.0.0.0/8:0", "invalid port \"0\" (expected 1..=65535)"),
            ("10.0.0.0/8:70000", "invalid port \"70000\" (expected 1..=65535)"),
            ("10.0.0.0/8:", "invalid port \"\" (expected 1..=65535)"),
            ("10.0.0.0/8:http", "invalid port \"http\" (expected 1..=65535)"),
            (
                "2001:db8::/32:53",
                "an IPv6 network with a port must be bracketed, as in [2001:db8::/32]:53",
            ),
            ("[10.0.0.0/8]:53", "brackets are only for IPv6 networks"),
            ("[2001:db8::/32:53", "missing ']'"),
            ("[2001:db8::/32]53", "expected \":port\" after ']'"),
            ("example.com:443", "\"example.com\" is not an IP address"),
            ("10.0.0.256", "\"10.0.0.256\" is not an IP address"),
            ("", "entry is empty"),
        ];
        for (input, reason) in cases {
            for key in ["allowed_egress", "allowed_ingress"] {
                assert_eq!(
                    err(&format!("[network]\n{key} = [{}]", toml_string(input))),
                    format!("network.{key}: invalid network {input:?}: {reason}")
                );
            }
        }
    }

    #[test]
    fn cidr_lists_are_deduplicated() {
        let p = ok(r#"[network]
mode = "bridged"
allowed_egress = ["10.0.0.1", "10.0.0.1/32", "0.0.0.0/0:443", "10.0.0.1:53"]
allowed_ingress = ["[::1]:80", "[::1/128]:80"]"#);
        assert_eq!(
            p.network.allowed_egress.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["10.0.0.1/32", "0.0.0.0/0:443", "10.0.0.1/32:53"]
        );
        assert_eq!(p.network.allowed_ingress.len(), 1);
        round_trips(&p);
    }

    #[test]
    fn writable_paths() {
        let p =
            ok("[filesystem]\nwritable_paths = [\"/tmp\", \"/var/log\", \"/tmp\", \"/data dir\"]");
        assert_eq!(p.filesystem.writable_paths, ["/tmp", "/var/log", "/data dir"]);
        round_trips(&p);
        assert!(ok("[filesystem]\nwritable_paths = []").filesystem.writable_paths.is_empty());
        let cases = [
            ("tmp", "not an absolute path"),
            ("", "not an absolute path"),
            ("/var/../etc", "contains a '..' component"),
            ("/var/./log", "contains a '.' component"),
            ("/var//log", "contains an empty component (\"//\" or a trailing '/')"),
            ("/var/log/", "contains an empty component (\"//\" or a trailing '/')"),
            ("/var/\u{1}log", "contains a control character"),
        ];
        for (path, reason) in cases {
            assert_eq!(
                err(&format!("[filesystem]\nwritable_paths = [{}]", toml_string(path))),
                format!("filesystem.writable_paths: invalid path {path:?}: {reason}")
            );
        }
        assert_eq!(
            err("[filesystem]\nwritable_paths = [\"/\"]"),
            "filesystem.writable_paths: \"/\" requires zone.type = \"privileged\""
        );
        let p = ok("[zone]\ntype = \"privileged\"\n[filesystem]\nwritable_paths = [\"/\"]");
        assert_eq!(p.filesystem.writable_paths, ["/"]);
        round_trips(&p);
    }

    #[test]
    fn device_paths() {
        let p = ok("[devices]\nallowed = [\"/dev/fuse\", \"/dev/net/tun\", \"/dev/fuse\"]");
        assert_eq!(p.devices.allowed, ["/dev/fuse", "/dev/net/tun"]);
        round_trips(&p);
        let cases = [
            ("/dev", "not under /dev/"),
            ("/tmp/fuse", "not under /dev/"),
            ("/device/x", "not under /dev/"),
            ("dev/fuse", "not an absolute path"),
            ("/dev/../etc/shadow", "contains a '..' component"),
            ("/dev/", "contains an empty component (\"//\" or a trailing '/')"),
        ];
        for (path, reason) in cases {
            assert_eq!(
                err(&format!("[devices]\nallowed = [{}]", toml_string(path))),
                format!("devices.allowed: invalid path {path:?}: {reason}")
            );
        }
    }

    #[test]
    fn syscalls_deny() {
        let p = ok("[syscalls]\ndeny = [\"mount\", \"umount2\", \"pivot_root\", \"mount\"]");
        assert_eq!(p.syscalls.deny, ["mount", "umount2", "pivot_root"]);
        round_trips(&p);
        assert_eq!(
            err("[syscalls]\ndeny = [\"foo\"]"),
            format!("syscalls.deny: unknown system call \"foo\" on {}", std::env::consts::ARCH)
        );
        // Names are exact, as in the kernel's table.
        assert!(err("[syscalls]\ndeny = [\"MOUNT\"]").contains("unknown system call"));
        assert!(syscall_number("mount").is_some());
        assert_eq!(syscall_number("nope"), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn syscall_numbers_x86_64() {
        assert_eq!(syscall_number("read"), Some(0));
        assert_eq!(syscall_number("mount"), Some(165));
        assert_eq!(syscall_number("pivot_root"), Some(155));
        assert!(ok("[syscalls]\ndeny = [\"open\"]").syscalls.deny == ["open"]);
    }

    #[cfg(target_arch = "aarch64")]
    #[test]
    fn syscall_numbers_aarch64() {
        assert_eq!(syscall_number("mount"), Some(40));
        // aarch64 has only openat.
        assert!(err("[syscalls]\ndeny = [\"open\"]").ends_with("on aarch64"));
    }

    #[test]
    fn full_custom_policy_round_trips_and_stores() {
        let p = ok(r#"
[zone]
name = "edge \"1\""
type = "privileged"
[capabilities]
allowed = ["SYS_ADMIN", "chown"]
[resources]
cpu_shares = 300
memory_limit = 1073741824
pids_max = 1000
io_weight = 500
[network]
mode = "host"
allowed_zones = ["a", "b"]
allowed_egress = ["[2001:db8::/32]:53", "0.0.0.0/0:443"]
allowed_ingress = ["10.89.0.0/16"]
[filesystem]
writable_paths = ["/", "/var/lib/x"]
[devices]
allowed = ["/dev/kvm"]
[syscalls]
deny = ["bpf"]
"#);
        assert!(p.to_toml().contains("memory_limit = \"1Gi\""));
        round_trips(&p);
        let bytes = postcard::to_stdvec(&p).unwrap();
        assert_eq!(postcard::from_bytes::<Policy>(&bytes).unwrap(), p);
        let default_bytes = postcard::to_stdvec(&Policy::default()).unwrap();
        assert_eq!(postcard::from_bytes::<Policy>(&default_bytes).unwrap(), Policy::default());
    }

    #[test]
    fn live_changes_classify_each_part() {
        let base = ok("[network]\nmode = \"isolated\"\nallowed_zones = [\"a\", \"b\"]");
        assert!(live_changes(&base, &base).is_empty());

        let reordered = ok("[network]\nallowed_zones = [\"b\", \"a\"]");
        assert!(live_changes(&base, &reordered).is_empty());

        let live = ok(r#"
[resources]
pids_max = 100
[network]
mode = "bridged"
allowed_zones = ["a"]
allowed_egress = ["0.0.0.0/0:443"]
allowed_ingress = ["10.0.0.0/8"]
"#);
        let diff = live_changes(&base, &live);
        assert!(!diff.needs_no_running_containers());
        assert_eq!(
            diff.changes.iter().map(|c| c.part).collect::<Vec<_>>(),
            [
                PolicyPart::Resources,
                PolicyPart::NetworkMode,
                PolicyPart::AllowedZones,
                PolicyPart::AllowedEgress,
                PolicyPart::AllowedIngress,
            ]
        );
        assert!(diff.changes.iter().all(|c| c.apply == ApplyMode::Live));

        let at_start = ok(r#"
[zone]
name = "x"
type = "privileged"
[capabilities]
allowed = []
[network]
allowed_zones = ["a", "b"]
[filesystem]
writable_paths = ["/tmp", "/var/log"]
[devices]
allowed = ["/dev/fuse"]
[syscalls]
deny = ["mount"]
"#);
        let diff = live_changes(&base, &at_start);
        let expected = [
            (PolicyPart::ZoneName, ApplyMode::Live),
            (PolicyPart::ZoneType, ApplyMode::NewProcesses),
            (PolicyPart::Capabilities, ApplyMode::NewProcesses),
            (PolicyPart::WritablePaths, ApplyMode::NewProcesses),
            (PolicyPart::Devices, ApplyMode::NewProcesses),
            (PolicyPart::Syscalls, ApplyMode::NewProcesses),
        ];
        assert_eq!(diff.changes.iter().map(|c| (c.part, c.apply)).collect::<Vec<_>>(), expected);
        assert_eq!(
            diff.changes[2].to_string(),
            "capabilities.allowed: applies to containers started from now on"
        );

        for (from, to) in [("isolated", "host"), ("host", "bridged")] {
            let old = ok(&format!("[network]\nmode = \"{from}\""));
            let new = ok(&format!("[network]\nmode = \"{to}\""));
            let diff = live_changes(&old, &new);
            assert!(diff.needs_no_running_containers());
            assert_eq!(
                diff.changes[0].to_string(),
                "network.mode: needs a zone with no running containers"
            );
        }
        assert_eq!(live_changes(&live, &base).changes[0].to_string(), "resources: applied live");
    }

    #[test]
    fn requested_type_fills_an_unset_zone_type_and_conflicts_are_refused() {
        let admin = "[capabilities]\nallowed = [\"SYS_ADMIN\"]\n";
        let policy = Policy::parse_for_type(admin, Some(ZoneType::Privileged)).unwrap();
        assert_eq!(policy.zone_type(), ZoneType::Privileged);
        assert!(matches!(
            Policy::parse_for_type(admin, Some(ZoneType::NonGlobal)),
            Err(PolicyError::PrivilegedCapability { .. })
        ));
        let error =
            Policy::parse_for_type("[zone]\ntype = \"privileged\"\n", Some(ZoneType::NonGlobal))
                .unwrap_err();
        assert_eq!(
            error.to_string(),
            "zone.type: the policy says \"privileged\" but the zone is \"non-global\""
        );
        let same =
            Policy::parse_for_type("[zone]\ntype = \"non-global\"\n", Some(ZoneType::NonGlobal));
        assert_eq!(same.unwrap().zone_type(), ZoneType::NonGlobal);
    }
}
