//! `zone verify`: the attack probes of [`crate::probe`] run inside a zone, and the report of
//! which boundaries held and by which layers (DESIGN.md §5, issue 6 item 3).
//!
//! The probe is a transient container of the zone made by the zone's shim through the same
//! spec as every container (its namespaces, the zone's network namespace, a child cgroup of
//! the zone's, the policy's seccomp profile, Landlock ruleset, capabilities and writable
//! paths), except that it runs this very executable from a sealed memfd
//! (`ContainerSpec::self_exec`). Its root is an empty overlay holding, for a dynamically linked
//! build, only copies of the loader and the shared objects this binary uses; nothing comes from
//! an image.
//!
//! The targets are real and outside the zone: a host process the daemon starts for the run
//! (`rauha probe --hold`, in the daemon's namespaces) with a file and an executable planted next
//! to it, a running container of another zone when there is one, the daemon's shim cgroup and
//! that zone's cgroup, the bridge address and another zone's address the policy does not allow.
//! Structural facts are checked too: the probe's namespaces differ from the daemon's (its
//! network namespace is the zone's), it ran in a child of the zone's cgroup, and the zone's
//! cgroup limits are the policy's.
//!
//! Everything the run made (the probe process, its cgroup, its files, the host target) goes
//! when it ends, whether it succeeded or failed.

use std::ffi::{CStr, OsStr, c_int, c_void};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::Daemon;
use super::error::RequestError;
use super::shims::ShimCallError;
use crate::container::spec::{self, ShimInputs, SpecInputs};
use crate::container::{self, ContainerState, ResolvedUser};
use crate::probe::{self, Targets, mechanism};
use crate::rpc::{EnforcementLayer, IsolationCheck, IsolationReport};
use crate::shim::protocol::{FailureKind, Layer, LogSpec, RootfsSpec, ShimRequest, ShimResponse};
use crate::zone::policy::{Capability, NetworkMode};
use crate::zone::{Zone, ZoneState};

/// Container ids (and cgroup names) of probe runs start with this.
pub(super) const PROBE_PREFIX: &str = "probe-";
/// How long the probes may run; they take a few seconds (connect attempts wait 1 s each).
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the created probe may take to join its cgroup v1 hierarchies.
const PLACEMENT_WAIT: Duration = Duration::from_secs(5);
/// How long cleanup waits for a killed probe to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// The port connect attempts aim at (discard); any answer at all means the packet crossed.
const CONNECT_PORT: u16 = 9;
/// Namespaces the probe must not share with the daemon (`net` only outside host mode).
const NS_KINDS: [&str; 5] = ["mnt", "pid", "uts", "ipc", "cgroup"];

impl Daemon {
    /// Where probe runs keep their files; nothing in it outlives a run (or a daemon start).
    pub(super) fn probes_dir(&self) -> PathBuf {
        self.config.root.join("probes")
    }

    /// Runs the attack probes inside zone `name` and reports what held.
    pub fn verify_zone(&self, name: &str) -> Result<IsolationReport, RequestError> {
        super::zones::check_zone_name(name)?;
        let zone = self.registry().get(name)?.clone();
        if zone.state != ZoneState::Ready {
            return Err(RequestError::ZoneDeleting { zone: zone.name });
        }
        let short = format!("{PROBE_PREFIX}{}", container::default_name(Uuid::new_v4()));
        let mut run = ProbeRun {
            daemon: self,
            dir: self.probes_dir().join(&short),
            zone,
            short,
            cgroup: false,
            in_shim: false,
            helper: None,
        };
        let result = run.execute();
        drop(run);
        if let Ok(report) = &result {
            let summary = if report.is_isolated {
                "isolated: every required boundary held".to_owned()
            } else {
                format!("NOT isolated: not held: {}", report.not_held().join(", "))
            };
            tracing::info!(zone = %name, %summary, "zone verified");
            self.events.publish(name, "zone.verified", summary);
        }
        // A zone deleted under the run killed the probe; say so rather than what it broke.
        match (&result, self.registry().get(name).map(|z| z.state)) {
            (Err(_), Ok(ZoneState::Deleting) | Err(_)) => {
                Err(RequestError::ZoneDeleting { zone: name.to_owned() })
            }
            _ => result,
        }
    }

    /// Removes what an interrupted run (a daemon that died during `zone verify`) left: the
    /// probes' files and cgroups. Called at start, after the zones' cgroups are in place.
    pub(super) fn remove_stale_probes(&self) {
        let dir = self.probes_dir();
        if let Err(error) = std::fs::remove_dir_all(&dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, dir = %dir.display(), "remove files of interrupted probe runs");
        }
        let zones: Vec<Zone> = self.registry().iter().cloned().collect();
        for zone in zones {
            let cgroup = PathBuf::from(self.kernel_info(zone.id).cgroup_path);
            let Ok(entries) = std::fs::read_dir(&cgroup) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(short) = name.strip_prefix("ctr-").filter(|s| s.starts_with(PROBE_PREFIX))
                else {
                    continue;
                };
                match self.backend.remove_container_cgroup(&zone, short) {
                    Ok(()) => {
                        tracing::warn!(zone = %zone.name, cgroup = %name, "removed the cgroup of an interrupted probe run")
                    }
                    Err(error) => {
                        tracing::warn!(%error, zone = %zone.name, "remove the cgroup of an interrupted probe run")
                    }
                }
            }
        }
    }

    /// The layers the probe ran under: the always-on ones as this daemon applies them, then
    /// the eBPF layers as probed at start, then the zone's firewall.
    fn probe_layers(&self, zone: &Zone) -> Vec<EnforcementLayer> {
        let layer = |name: &str, active: bool, reason: String| EnforcementLayer {
            name: name.to_owned(),
            active,
            reason,
        };
        let switchable = |name: &str, layer_switch: Layer| {
            let off = self.config.disabled_layers.contains(&layer_switch);
            let reason = if off {
                format!("switched off by --unsafe-disable-layer {layer_switch} (test only)")
            } else {
                String::new()
            };
            layer(name, !off, reason)
        };
        let mut layers = vec![
            layer(mechanism::NAMESPACES, true, String::new()),
            layer(mechanism::READONLY_MOUNTS, true, String::new()),
            layer(mechanism::CGROUPS, true, String::new()),
            switchable(mechanism::SECCOMP, Layer::Seccomp),
        ];
        let landlock = switchable(mechanism::LANDLOCK, Layer::Landlock);
        layers.push(if landlock.active {
            match crate::enforce::landlock::probe_abi() {
                Ok(0) => layer(mechanism::LANDLOCK, false, "the kernel offers no Landlock".into()),
                Ok(_) => landlock,
                Err(error) => layer(mechanism::LANDLOCK, false, error.to_string()),
            }
        } else {
            landlock
        });
        layers.push(switchable(mechanism::CAPABILITIES, Layer::Caps));
        layers.extend(self.bpf.layers());
        layers.push(match (zone.policy.network.mode, zone.address) {
            (NetworkMode::Bridged, Some(_)) => layer(mechanism::NFTABLES, true, String::new()),
            (NetworkMode::Host, _) => layer(
                mechanism::NFTABLES,
                false,
                "network.mode = \"host\": the zone uses the host's stack; cgroup-bpf filters its \
                 egress"
                    .into(),
            ),
            _ => layer(
                mechanism::NFTABLES,
                false,
                "not needed: the zone's network namespace has loopback only".into(),
            ),
        });
        layers
    }
}

/// One probe run; dropping it removes everything it made.
struct ProbeRun<'a> {
    daemon: &'a Daemon,
    zone: Zone,
    /// The probe's container id and cgroup name (`probe-…`).
    short: String,
    dir: PathBuf,
    cgroup: bool,
    in_shim: bool,
    /// The host-side target, `rauha probe --hold`.
    helper: Option<Child>,
}

/// Another zone's running container: the foreign target when there is one.
struct ForeignZone {
    pid: u32,
    cgroup_procs: PathBuf,
}

impl ProbeRun<'_> {
    fn fail(&self, reason: impl Into<String>) -> RequestError {
        RequestError::Verify { zone: self.zone.name.clone(), reason: reason.into() }
    }

    fn io(&self, what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> RequestError + '_ {
        let what = format!("{what} {}", path.display());
        move |error| self.fail(format!("{what}: {error}"))
    }

    fn execute(&mut self) -> Result<IsolationReport, RequestError> {
        let d = self.daemon;
        let zone = self.zone.clone();
        let lower = self.dir.join("lower");
        let rootfs = RootfsSpec {
            // The init layer on top, as for every container (its mount points).
            lower_dirs: vec![lower.clone(), d.init_layer.clone()],
            upper_dir: self.dir.join("upper"),
            work_dir: self.dir.join("work"),
            merged_dir: self.dir.join("merged"),
        };
        for dir in [&lower, &rootfs.upper_dir, &rootfs.work_dir, &rootfs.merged_dir] {
            std::fs::create_dir_all(dir).map_err(self.io("create", dir))?;
        }
        for file in loader_files() {
            let copy = lower.join(file.strip_prefix("/").unwrap_or(&file));
            if let Some(parent) = copy.parent() {
                std::fs::create_dir_all(parent).map_err(self.io("create", parent))?;
            }
            std::fs::copy(&file, &copy).map_err(self.io("copy the loader's file", &file))?;
        }
        let host_file = self.dir.join("host-secret");
        std::fs::write(&host_file, "planted by zone verify\n")
            .map_err(self.io("plant", &host_file))?;
        let host_exec = self.dir.join("host-exec");
        std::fs::write(&host_exec, "#!/bin/sh\nexit 0\n").map_err(self.io("plant", &host_exec))?;
        std::fs::set_permissions(&host_exec, std::fs::Permissions::from_mode(0o755))
            .map_err(self.io("make executable", &host_exec))?;

        let exe = d.shims.executable();
        let helper = Command::new(exe)
            .args(["probe", "--hold"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(self.io("start the host-side target", exe))?;
        let helper_pid = helper.id();
        self.helper = Some(helper);

        let mut targets = Targets {
            pids: vec![("host".to_owned(), helper_pid)],
            host_file: Some(utf8(&host_file)?),
            host_exec: Some(utf8(&host_exec)?),
            writable: zone.policy.filesystem.writable_paths.clone(),
            ..Targets::default()
        };
        if let Some(procs) = d.shims.cgroup_procs().first() {
            targets.cgroups.push(("host".to_owned(), utf8(procs)?));
        }
        let foreign = self.foreign_zone();
        if let Some(foreign) = &foreign {
            targets.pids.push(("zone".to_owned(), foreign.pid));
            targets.cgroups.push(("zone".to_owned(), utf8(&foreign.cgroup_procs)?));
        }
        let peer = self.disallowed_peer();
        if let Some(address) = peer {
            targets.connect.push(("zone".to_owned(), SocketAddr::new(address, CONNECT_PORT)));
        }
        let gateway = IpAddr::V4(d.config.net.gateway);
        targets.connect.push(("host".to_owned(), SocketAddr::new(gateway, CONNECT_PORT)));
        let host_mode = zone.policy.network.mode == NetworkMode::Host;
        for kind in NS_KINDS.into_iter().chain((!host_mode).then_some("net")) {
            targets.host_ns.push((kind.to_owned(), own_ns(kind).map_err(|e| self.fail(e))?));
        }
        targets.zone_netns = Some(match d.backend.zone_netns(&zone) {
            Some(path) => std::fs::metadata(&path)
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .map_err(self.io("stat the zone's network namespace", &path))?,
            None => own_ns("net").map_err(|e| self.fail(e))?,
        });

        let cgroup = d
            .backend
            .create_container_cgroup(&zone, &self.short)
            .map_err(|source| RequestError::Backend { zone: zone.name.clone(), source })?;
        self.cgroup = true;
        let mut args = vec!["rauha".to_owned(), "probe".to_owned()];
        args.extend(targets.to_args());
        let user = ResolvedUser { uid: 0, gid: 0, additional_gids: Vec::new(), home: "/".into() };
        let netns = d.backend.zone_netns(&zone);
        let cgroups_path =
            format!("{}/{}/ctr-{}", d.config.cgroup_parent, zone.cgroup_name(), self.short);
        let oci = spec::build(SpecInputs {
            hostname: "rauha-probe",
            args,
            env: vec![spec::DEFAULT_PATH.to_owned()],
            cwd: "/".to_owned(),
            user: &user,
            policy: &zone.policy,
            rootfs: &rootfs.merged_dir,
            netns: netns.as_deref(),
            cgroups_path: &cgroups_path,
            tty: false,
        })
        .map_err(|e| self.fail(format!("probe spec: {e}")))?;
        let mut shim_spec = spec::shim_spec(
            &oci,
            &zone.policy,
            ShimInputs {
                id: self.short.clone(),
                rootfs,
                cgroup: cgroup.clone(),
                log: LogSpec { path: self.dir.join("probe.log"), max_size: 1 << 20, max_files: 1 },
                resolv_conf: None,
                hosts: None,
                disabled_layers: d.config.disabled_layers.clone(),
                interactive: false,
                stdin_once: false,
            },
        )
        .map_err(|e| self.fail(format!("probe spec: {e}")))?;
        shim_spec.self_exec = true;

        let shim = d.shims.get_or_start(zone.numeric_id)?;
        self.in_shim = true;
        d.expect_exit(&self.short);
        let pid = match shim.call(&ShimRequest::CreateContainer(Box::new(shim_spec))) {
            Ok(ShimResponse::Created { pid }) => pid,
            Ok(other) => {
                return Err(self.fail(format!("the shim answered CreateContainer with {other:?}")));
            }
            Err(error) => return Err(self.fail(format!("create the probe: {error}"))),
        };
        // Before it runs: the process already sits in its cgroups.
        let placement = self.placement_check(pid, cgroup.v1_dirs.len(), cgroup.v2_dir.is_some());
        match shim.call(&ShimRequest::Start { id: self.short.clone() }) {
            Ok(_) => {}
            Err(error) => return Err(self.fail(format!("start the probe: {error}"))),
        }
        let code = match d.wait_exit(&self.short, PROBE_TIMEOUT)? {
            Some(code) => code,
            None => {
                return Err(self.fail(format!("the probe did not finish within {PROBE_TIMEOUT:?}")));
            }
        };
        let (checks, errors) = self.read_output()?;
        // 0: every check passed; 1: some did not. Anything else is a crash.
        if !matches!(code, 0 | 1) || checks.is_empty() {
            let why = if code > 128 {
                format!("was killed by signal {}", code - 128)
            } else {
                format!("exited with code {code}")
            };
            let stderr = if errors.is_empty() { "no output".to_owned() } else { errors.join("; ") };
            return Err(
                self.fail(format!("the probe {why} after {} checks: {stderr}", checks.len()))
            );
        }
        Ok(self.report(checks, placement, foreign.is_some(), peer.is_some()))
    }

    /// A running container of another zone, the foreign process when there is one.
    fn foreign_zone(&self) -> Option<ForeignZone> {
        let d = self.daemon;
        let containers = d.containers();
        let other = containers.values().find(|c| {
            c.zone_id != self.zone.id && c.state == ContainerState::Running && c.pid > 0
        })?;
        let cgroup = d.kernel_info(other.zone_id).cgroup_path;
        (!cgroup.is_empty()).then(|| ForeignZone {
            pid: other.pid,
            cgroup_procs: Path::new(&cgroup).join("cgroup.procs"),
        })
    }

    /// The address of another zone this zone may not reach (both must list each other).
    fn disallowed_peer(&self) -> Option<IpAddr> {
        let zone = &self.zone;
        let registry = self.daemon.registry();
        let allowed = |other: &Zone| {
            zone.policy.network.allowed_zones.contains(&other.name)
                && other.policy.network.allowed_zones.contains(&zone.name)
        };
        registry
            .iter()
            .filter(|other| other.id != zone.id && !allowed(other))
            .find_map(|other| other.address.map(IpAddr::V4))
    }

    /// Whether the created (not yet started) probe process sits in its cgroup, a child of the
    /// zone's, in every hierarchy. It joins the v1 hierarchies itself right after it is
    /// cloned, so this waits (briefly) until it has; then it waits for its start.
    fn placement_check(&self, pid: u32, v1_hierarchies: usize, v2: bool) -> IsolationCheck {
        let expected = format!(
            "/{}/{}/ctr-{}",
            self.daemon.config.cgroup_parent,
            self.zone.cgroup_name(),
            self.short
        );
        let path = format!("/proc/{pid}/cgroup");
        let wanted = v1_hierarchies + usize::from(v2);
        let deadline = Instant::now() + PLACEMENT_WAIT;
        let (passed, detail) = loop {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) => break (false, format!("read {path}: {error}")),
            };
            let paths: Vec<(&str, &str)> = text
                .lines()
                .filter_map(|line| {
                    let mut parts = line.splitn(3, ':');
                    let id = parts.next()?;
                    parts.next()?;
                    Some((id, parts.next()?))
                })
                .collect();
            let v2_ok = !v2 || paths.iter().any(|(id, p)| *id == "0" && *p == expected);
            let v1_in = paths.iter().filter(|(id, p)| *id != "0" && *p == expected).count();
            if v2_ok && v1_in >= v1_hierarchies {
                break (true, format!("{path}: {expected} in the {wanted} hierarchies it joined"));
            }
            if Instant::now() >= deadline {
                let lines: Vec<String> = paths.iter().map(|(id, p)| format!("{id}:{p}")).collect();
                let seen = lines.join(" ");
                break (
                    false,
                    format!("{path}: {seen} (expected {expected} in {wanted} hierarchies)"),
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        fact("cgroup_placement", "cgroups", passed, detail)
    }

    /// The zone's limits as the kernel has them, against the policy.
    fn limits_check(&self) -> IsolationCheck {
        let policy = &self.zone.policy.resources;
        match self.daemon.backend.zone_usage(&self.zone) {
            Ok(usage) => {
                let memory = usage.memory_limit_bytes;
                let pids = usage.pids_max;
                let passed =
                    memory == Some(policy.memory_limit.bytes()) && pids == Some(policy.pids_max);
                let show = |v: Option<u64>| v.map_or("unlimited".to_owned(), |v| v.to_string());
                let detail = format!(
                    "memory limit {} (policy {}), pids.max {} (policy {})",
                    show(memory),
                    policy.memory_limit.bytes(),
                    show(pids),
                    policy.pids_max
                );
                fact("cgroup_limits", "cgroups", passed, detail)
            }
            Err(error) => {
                fact("cgroup_limits", "cgroups", false, format!("read the zone's limits: {error}"))
            }
        }
    }

    /// The probe's JSON lines, and its stderr lines.
    fn read_output(&self) -> Result<(Vec<probe::Check>, Vec<String>), RequestError> {
        let path = self.dir.join("probe.log");
        let text =
            std::fs::read_to_string(&path).map_err(self.io("read the probe's output", &path))?;
        let mut checks = Vec::new();
        let mut errors = Vec::new();
        for line in text.lines() {
            let Some(parsed) = crate::cli::logs::parse_line(line) else { continue };
            if parsed.stream != "stdout" {
                errors.push(parsed.text.to_owned());
                continue;
            }
            match serde_json::from_str::<probe::Check>(parsed.text) {
                Ok(check) => checks.push(check),
                Err(error) => errors.push(format!("unreadable line {:?}: {error}", parsed.text)),
            }
        }
        Ok((checks, errors))
    }

    /// The report: the probe's checks with their mechanisms narrowed to the active layers,
    /// the daemon's structural checks, and what could not be tried.
    fn report(
        &self,
        probed: Vec<probe::Check>,
        placement: IsolationCheck,
        foreign_zone: bool,
        peer: bool,
    ) -> IsolationReport {
        let layers = self.daemon.probe_layers(&self.zone);
        let active = |name: &str| {
            name == mechanism::KERNEL || layers.iter().any(|l| l.name == name && l.active)
        };
        let policy = &self.zone.policy;
        let host_mode = policy.network.mode == NetworkMode::Host;
        let mut checks: Vec<IsolationCheck> = probed
            .into_iter()
            .map(|c| {
                let held_by: Vec<String> =
                    c.held_by.iter().filter(|m| active(m)).cloned().collect();
                let mut detail = c.detail;
                if c.passed && held_by.is_empty() {
                    detail.push_str(" (no active layer answers with this errno)");
                }
                if c.check == "namespace_net_zone" && host_mode {
                    detail.push_str(": the host's, as network.mode = \"host\" says");
                }
                // Structural facts have no errno.
                let errno = if c.check.starts_with("namespace_") {
                    String::new()
                } else {
                    probe::errno_name(c.errno)
                };
                IsolationCheck {
                    required: required(&c.check, policy),
                    errno,
                    name: c.check,
                    boundary: c.boundary,
                    passed: c.passed,
                    skipped: String::new(),
                    held_by,
                    detail,
                }
            })
            .collect();
        checks.push(placement);
        checks.push(self.limits_check());
        if !foreign_zone {
            let reason = "no running container in another zone to attack";
            for (name, boundary) in [
                ("see_zone", "visibility"),
                ("signal_zone", "signals"),
                ("ptrace_zone", "ptrace"),
                ("files_zone", "files"),
                ("exec_zone", "exec"),
                ("cgroup_procs_zone", "cgroups"),
            ] {
                checks.push(skipped(name, boundary, reason));
            }
        }
        if !peer {
            checks.push(skipped(
                "connect_zone",
                "network",
                "no other zone has an address this zone may not reach (only bridged zones have \
                 one; zones that list each other in allowed_zones may talk)",
            ));
        }
        let is_isolated =
            checks.iter().filter(|c| c.required && c.skipped.is_empty()).all(|c| c.passed);
        IsolationReport { zone: self.zone.name.clone(), is_isolated, checks, layers }
    }
}

impl Drop for ProbeRun<'_> {
    fn drop(&mut self) {
        let d = self.daemon;
        if self.in_shim
            && let Some(shim) = d.shims.get(self.zone.numeric_id)
        {
            // Still running (a timeout, or a failure half-way): kill it and wait for the reap,
            // since the shim deletes only a stopped container.
            let kill = ShimRequest::Kill { id: self.short.clone(), signal: libc::SIGKILL };
            if shim.call(&kill).is_ok() {
                let _ = d.wait_exit(&self.short, KILL_WAIT);
            }
            match shim.call(&ShimRequest::Delete { id: self.short.clone() }) {
                Ok(_) => {}
                Err(ShimCallError::Failed(f)) if f.kind == FailureKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(%error, probe = %self.short, "remove the probe from its shim")
                }
            }
        }
        d.forget_exit(&self.short);
        if self.cgroup
            && let Err(error) = d.backend.remove_container_cgroup(&self.zone, &self.short)
        {
            tracing::warn!(%error, probe = %self.short, "remove the probe's cgroup");
        }
        if let Some(mut helper) = self.helper.take() {
            let _ = helper.kill();
            let _ = helper.wait();
        }
        if let Err(error) = std::fs::remove_dir_all(&self.dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, dir = %self.dir.display(), "remove the probe's files");
        }
    }
}

/// Whether the policy closes `check`'s boundary. A policy may open some on purpose: a writable
/// root, or `CAP_SYS_ADMIN` (mounts and namespaces of its own); the host's address is reachable
/// from a host-mode zone whose egress allows it.
fn required(check: &str, policy: &crate::zone::Policy) -> bool {
    let admin = policy.capabilities.contains(Capability::SysAdmin);
    match check {
        "write_rootfs" => {
            !policy.filesystem.writable_paths.iter().any(|p| Path::new(p) == Path::new("/"))
        }
        "mount" | "unshare_mount" | "unshare_user" | "setns" => !admin,
        "connect_host" => {
            policy.network.mode != NetworkMode::Host || policy.network.allowed_egress.is_empty()
        }
        _ => true,
    }
}

/// A structural fact about the zone's cgroup.
fn fact(name: &str, boundary: &str, passed: bool, detail: String) -> IsolationCheck {
    IsolationCheck {
        name: name.to_owned(),
        boundary: boundary.to_owned(),
        passed,
        required: true,
        skipped: String::new(),
        held_by: if passed { vec![mechanism::CGROUPS.to_owned()] } else { Vec::new() },
        errno: String::new(),
        detail,
    }
}

fn skipped(name: &str, boundary: &str, reason: &str) -> IsolationCheck {
    IsolationCheck {
        name: name.to_owned(),
        boundary: boundary.to_owned(),
        passed: false,
        required: true,
        skipped: reason.to_owned(),
        held_by: Vec::new(),
        errno: String::new(),
        detail: format!("skipped: {reason}"),
    }
}

fn utf8(path: &Path) -> Result<String, RequestError> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        RequestError::InvalidArgument(format!("path {} is not valid UTF-8", path.display()))
    })
}

/// The inode of one of the daemon's namespaces.
fn own_ns(kind: &str) -> Result<u64, String> {
    let path = format!("/proc/self/ns/{kind}");
    std::fs::metadata(&path)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .map_err(|error| format!("stat {path}: {error}"))
}

/// The files the dynamic loader needs to start this executable in an empty root: its
/// interpreter (`PT_INTERP`) and the shared objects loaded now, at the paths the loader found
/// them under. Empty for a static build.
fn loader_files() -> Vec<PathBuf> {
    extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for the duration of the callback, and
        // `data` is the `Vec` handed to it below, borrowed by nothing else meanwhile.
        let (info, files) = unsafe { (&*info, &mut *data.cast::<Vec<PathBuf>>()) };
        let name = if info.dlpi_name.is_null() {
            c""
        } else {
            // SAFETY: a non-null dlpi_name is a NUL-terminated string owned by the loader.
            unsafe { CStr::from_ptr(info.dlpi_name) }
        };
        if name.to_bytes().starts_with(b"/") {
            files.push(PathBuf::from(OsStr::from_bytes(name.to_bytes())));
        } else if name.is_empty() && !info.dlpi_phdr.is_null() {
            // The main program: its program headers name the interpreter.
            // SAFETY: dlpi_phdr points at dlpi_phnum program headers of a loaded object.
            let headers =
                unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
            for header in headers.iter().filter(|h| h.p_type == libc::PT_INTERP) {
                let at = info.dlpi_addr.wrapping_add(header.p_vaddr) as *const libc::c_char;
                // SAFETY: PT_INTERP's segment is mapped (it lies in the first loaded segment)
                // and holds the NUL-terminated interpreter path.
                let interp = unsafe { CStr::from_ptr(at) };
                files.push(PathBuf::from(OsStr::from_bytes(interp.to_bytes())));
            }
        }
        0
    }
    let mut files: Vec<PathBuf> = Vec::new();
    // SAFETY: the callback only reads the loader's data for each object and appends to `files`,
    // which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut files as *mut Vec<PathBuf>).cast()) };
    files.sort();
    files.dedup();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loader_files_of_this_build_exist() {
        let files = loader_files();
        for file in &files {
            assert!(file.is_absolute() && file.exists(), "{}", file.display());
        }
        if !cfg!(target_feature = "crt-static") {
            assert!(files.iter().any(|f| f.to_string_lossy().contains("ld-")), "{files:?}");
        }
    }

    #[test]
    fn policies_open_only_what_they_grant() {
        let standard = crate::zone::Policy::parse("").unwrap();
        for check in ["write_rootfs", "mount", "setns", "connect_host", "signal_host"] {
            assert!(required(check, &standard), "{check}");
        }
        let admin = crate::zone::Policy::parse_for_type(
            "[zone]\ntype = \"privileged\"\n[capabilities]\nallowed = [\"SYS_ADMIN\"]\n\
             [filesystem]\nwritable_paths = [\"/\"]\n",
            None,
        )
        .unwrap();
        for check in ["write_rootfs", "mount", "unshare_user", "setns"] {
            assert!(!required(check, &admin), "{check}");
        }
        assert!(required("ptrace_zone", &admin));
    }
}
