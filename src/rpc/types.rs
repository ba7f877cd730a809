//! Wire types of the daemon API: plain data, stable field order (postcard encodes by position).

use serde::{Deserialize, Serialize};

/// Why a request failed, classified the way the gRPC facade reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The request itself is wrong (bad name, bad policy, bad id).
    InvalidArgument,
    /// The named object does not exist.
    NotFound,
    /// An object with that name exists already.
    AlreadyExists,
    /// The system is not in a state that allows the operation.
    FailedPrecondition,
    /// The caller may not do this.
    PermissionDenied,
    /// A dependency (registry, kernel facility) cannot be reached.
    Unavailable,
    /// A genuine fault inside the daemon or the kernel.
    Internal,
}

/// An error as it crosses the wire: its class and a message naming what failed and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

/// Facts about the running daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub git_revision: String,
    pub features: Vec<String>,
    /// The cgroup layout detected on the host: "unified", "hybrid" or "legacy".
    pub cgroup_layout: String,
    pub root_dir: String,
    pub zone_count: u32,
    /// The optional kernel enforcement layers and whether this kernel runs them.
    pub enforcement: Vec<EnforcementLayer>,
}

/// One kernel enforcement layer as the daemon found it at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnforcementLayer {
    /// "cgroup-bpf" or "lsm".
    pub name: String,
    /// Whether it enforces.
    pub active: bool,
    /// Why not, when it does not ("" when active).
    pub reason: String,
}

/// `zone create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZoneCreateRequest {
    pub name: String,
    /// "" (take the policy's, default non-global), "non-global" or "privileged".
    pub zone_type: String,
    /// Policy TOML; empty = the default policy.
    pub policy_toml: String,
}

/// A zone as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneInfo {
    pub id: String,
    pub name: String,
    /// The small number that names the zone's kernel objects.
    pub numeric_id: u32,
    /// "NonGlobal" or "Privileged".
    pub zone_type: String,
    /// "Ready", "Creating", "Deleting" or "Failed".
    pub state: String,
    pub container_count: u32,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Path of the zone's cgroup2 node (its identity).
    pub cgroup_path: String,
    /// The zone's cgroup2 id, as `bpf_get_current_cgroup_id()` reports it; 0 where the host has
    /// no cgroup2.
    pub cgroup_id: u64,
    /// The zone's address on the bridge (bridged zones); empty otherwise.
    pub address: String,
    /// "isolated", "bridged" or "host".
    pub network_mode: String,
}

/// Live readings of a zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneStats {
    pub zone_id: String,
    pub container_count: u32,
    pub cpu_usage_percent: f64,
    pub cpu_usage_usec: u64,
    pub memory_usage_bytes: u64,
    /// The limit in force in the cgroup; 0 = unlimited.
    pub memory_limit_bytes: u64,
    pub pids_current: u64,
    /// 0 = unlimited.
    pub pids_max: u64,
    pub oom_kills: u64,
    pub network_rx_bytes: u64,
    pub network_tx_bytes: u64,
}

/// `zone verify`: what the attack probes run inside a zone found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationReport {
    pub zone: String,
    /// Every required check that ran held.
    pub is_isolated: bool,
    pub checks: Vec<IsolationCheck>,
    /// Every enforcement layer, and whether it confined the probes.
    pub layers: Vec<EnforcementLayer>,
}

impl IsolationReport {
    /// The required checks that ran and did not hold.
    pub fn not_held(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| c.required && c.skipped.is_empty() && !c.passed)
            .map(|c| c.name.as_str())
            .collect()
    }
}

/// One boundary attack (or structural fact) of `zone verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationCheck {
    /// e.g. `signal_host`, `mount`, `cgroup_limits`.
    pub name: String,
    /// The boundary it attacks, e.g. `signals`.
    pub boundary: String,
    /// The attack was denied (a structural fact holds). False for a skipped check.
    pub passed: bool,
    /// False when the zone's policy itself opens this boundary (e.g. `CAP_SYS_ADMIN` allows
    /// mounts): it is reported, but `is_isolated` does not depend on it.
    pub required: bool,
    /// Why the check did not run ("" when it ran).
    pub skipped: String,
    /// The active layers the outcome points at.
    pub held_by: Vec<String>,
    /// The errno the attack got, by name (`EPERM`; `0` when it succeeded; "" for facts).
    pub errno: String,
    /// What was tried and what came back.
    pub detail: String,
}

/// What `policy apply` changed, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyApplied {
    /// Parts that took effect in place, for running workloads.
    pub applied_live: Vec<String>,
    /// Parts that bind at process start: new processes get them, running ones keep theirs.
    pub on_next_start: Vec<String>,
    /// Limits the host cannot enforce (for example a missing controller), with the reason.
    pub unavailable: Vec<String>,
}

/// `run`/`create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerCreateRequest {
    pub zone: String,
    /// Empty = generated.
    pub name: String,
    pub image: String,
    /// Replaces the image's cmd (the entrypoint stays).
    pub command: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// Empty = the image's.
    pub working_dir: String,
    /// Empty = the image's; `user`, `uid`, `user:group` or `uid:gid`.
    pub user: String,
    /// Remove once stopped.
    pub auto_remove: bool,
    /// Published ports, `HOSTPORT:CONTAINERPORT[/tcp|udp]`.
    pub ports: Vec<String>,
    /// Give the container a PTY (in its own devpts) as its terminal (`-t`).
    pub tty: bool,
    /// Keep stdin open for attachers (`-i`).
    pub interactive: bool,
    /// With `interactive` and no `tty`: the first attacher's end of input closes the
    /// container's stdin (`run -i` in the foreground).
    pub stdin_once: bool,
}

/// A container as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub zone_id: String,
    pub zone_name: String,
    pub image: String,
    pub image_digest: String,
    pub command: Vec<String>,
    /// "Created", "Running" or "Stopped".
    pub state: String,
    /// Host pid of the container's init while it runs; 0 otherwise.
    pub pid: u32,
    pub created_at: String,
    /// Empty until started.
    pub started_at: String,
    /// Empty until stopped.
    pub finished_at: String,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub oom_killed: bool,
    pub auto_remove: bool,
    /// Published ports, `HOSTPORT->CONTAINERPORT/proto`.
    pub ports: Vec<String>,
    /// Created with a PTY (`-t`).
    pub tty: bool,
    /// Created with stdin kept open (`-i`).
    pub interactive: bool,
}

/// A one-time claim on file descriptors the daemon holds for a client, collected over the fd
/// channel of the socket (see `rpc::fds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket(pub u128);

/// An image as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Manifest digest.
    pub digest: String,
    /// Tags in full form (`docker.io/library/alpine:latest`).
    pub tags: Vec<String>,
    /// Sum of the layer blob sizes.
    pub size: u64,
    pub created_at: String,
    pub platform: String,
    /// Layer blob digests, lowest first.
    pub layers: Vec<String>,
    pub config_json: String,
}

/// One line of a pull's progress pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullEvent {
    Progress { status: String, layer: String, current: u64, total: u64 },
    Done(ImageInfo),
    Failed(ApiError),
}

/// What `image prune` removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneSummary {
    pub images_removed: Vec<String>,
    pub blobs_removed: u64,
    pub layers_removed: u64,
    pub bytes_freed: u64,
}

/// `exec`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecRequest {
    pub container: String,
    pub command: Vec<String>,
    /// `KEY=VALUE`, added to (and replacing in) the container's environment.
    pub env: Vec<String>,
    /// Allocate a PTY (in the container's devpts).
    pub tty: bool,
    /// Keep stdin open.
    pub interactive: bool,
    /// Initial window size (rows, cols), with a TTY.
    pub tty_size: Option<(u16, u16)>,
    /// Empty = the container's user.
    pub user: String,
    /// Empty = the container's working dir.
    pub working_dir: String,
}
