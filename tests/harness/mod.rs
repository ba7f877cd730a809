//! The integration-test harness: a real daemon per test, inside a network namespace the test
//! made, with its own state dir, runtime dir, socket and cgroup parent. Dropping a
//! [`TestDaemon`] kills the daemon by PID, removes its bpffs pins (`--pin`) and every cgroup it
//! made, then asserts that nothing leaked.
#![allow(dead_code)] // each test binary uses its own subset of the harness

pub mod registry;

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rauha::backend::linux::cgroup::CgroupManager;
use rauha::enforce::bpf_pin::PinDir;

/// The binary under test.
pub const RAUHA: &str = env!("CARGO_BIN_EXE_rauha");

/// Whether privileged tests can run. Under `CI=true` a missing privilege fails the test instead
/// of skipping it, so CI never passes by skipping.
pub fn privileged(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root, and CI=true forbids skipping");
    }
    eprintln!("skipping {test}: needs root");
    false
}

/// A network namespace owned by the test: alive as long as this handle (or a process in it).
pub struct NetNs {
    fd: OwnedFd,
}

impl NetNs {
    /// Make a namespace from a short-lived thread, so the test process itself never leaves the
    /// host's, and bring up its loopback. Needs CAP_SYS_ADMIN (check [`privileged`] first); no
    /// daemon is involved, so registries and other fixtures can live in it on their own.
    pub fn new() -> Arc<Self> {
        let fd = std::thread::spawn(|| {
            // SAFETY: only the network namespace is unshared, and only for this thread; no file
            // descriptor table or memory sharing changes under other threads.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
                .expect("unshare a network namespace");
            File::open("/proc/thread-self/ns/net").expect("open the new netns").into()
        })
        .join()
        .expect("netns thread");
        let netns = Arc::new(Self { fd });
        let status = netns
            .command("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("run ip link set lo up");
        assert!(status.success(), "bring up loopback in the test netns");
        netns
    }

    /// The namespace's inode number: equal inodes mean the same namespace.
    pub fn inode(&self) -> u64 {
        rustix::fs::fstat(&self.fd).expect("fstat the netns fd").st_ino
    }

    /// Move the calling thread into this namespace. Sockets the thread (and threads it spawns
    /// afterwards) creates belong to the namespace; other threads stay where they are.
    pub fn enter_current_thread(&self) {
        rustix::thread::move_into_link_name_space(
            self.fd.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns into the test netns");
        assert_eq!(thread_netns_inode(), self.inode(), "thread did not move into the test netns");
    }

    /// Run `f` on a fresh thread inside this namespace and return its result; a panic in `f`
    /// is re-raised here. The calling thread never leaves its own namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                self.enter_current_thread();
                f()
            });
            handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// A command that runs inside this namespace.
    pub fn command(self: &Arc<Self>, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        let netns = Arc::clone(self);
        // SAFETY: setns is a single async-signal-safe syscall on an fd the parent keeps open;
        // nothing is allocated or locked in the child.
        unsafe {
            command.pre_exec(move || {
                rustix::thread::move_into_link_name_space(
                    netns.fd.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(std::io::Error::from)
            });
        }
        command
    }
}

/// The inode of the calling thread's network namespace.
pub fn thread_netns_inode() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net").expect("stat /proc/thread-self/ns/net").ino()
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A unique cgroup parent for one test daemon.
pub fn unique_cgroup_parent(tag: &str) -> String {
    format!("rauha-test-{tag}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A daemon under test and everything it owns.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub run_dir: PathBuf,
    pub socket: PathBuf,
    pub cgroup_parent: String,
    pub netns: Arc<NetNs>,
    pub extra_args: Vec<String>,
    /// The executable started as daemon and CLI.
    pub binary: PathBuf,
    child: Option<Child>,
    log_path: PathBuf,
}

/// What [`TestDaemon::usage`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonUsage {
    pub rss_kib: u64,
    pub fds: usize,
    pub threads: u64,
}

impl TestDaemon {
    /// Start a daemon with default flags; `None` when the test must skip (see [`privileged`]).
    pub fn start(test: &str) -> Option<Self> {
        Self::start_with(test, &[])
    }

    /// Start a daemon with extra daemon flags.
    pub fn start_with(test: &str, extra_args: &[&str]) -> Option<Self> {
        Self::start_binary(test, Path::new(RAUHA), extra_args)
    }

    /// Start a daemon from another build of the binary (the static release build).
    pub fn start_binary(test: &str, binary: &Path, extra_args: &[&str]) -> Option<Self> {
        if !privileged(test) {
            return None;
        }
        Some(Self::start_full(NetNs::new(), binary, extra_args))
    }

    /// Start a daemon inside a namespace the test made beforehand (e.g. with a registry
    /// already listening in it, whose address goes into the daemon's flags). The caller has
    /// checked [`privileged`]: it could not have made `netns` otherwise.
    pub fn start_in(netns: Arc<NetNs>, extra_args: &[&str]) -> Self {
        Self::start_full(netns, Path::new(RAUHA), extra_args)
    }

    fn start_full(netns: Arc<NetNs>, binary: &Path, extra_args: &[&str]) -> Self {
        let dir = tempfile::Builder::new().prefix("rauha-test-").tempdir().expect("temp dir");
        let root = dir.path().join("root");
        let run_dir = dir.path().join("run");
        let mut daemon = Self {
            socket: run_dir.join("rauhad.sock"),
            log_path: dir.path().join("rauhad.log"),
            root,
            run_dir,
            cgroup_parent: unique_cgroup_parent("d"),
            netns,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            binary: binary.to_owned(),
            child: None,
            dir,
        };
        daemon.spawn();
        daemon
    }

    /// The daemon command line this harness uses.
    pub fn daemon_command(&self) -> Command {
        let mut command = self.netns.command(&self.binary);
        command
            .arg("daemon")
            .arg("--root")
            .arg(&self.root)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        command
    }

    /// Start (or restart) the daemon and wait until it accepts connections.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let log = File::options().create(true).append(true).open(&self.log_path).expect("log");
        let child = self
            .daemon_command()
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn rauha daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                panic!("daemon exited during start-up ({status}); log:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "daemon not ready in 20 s; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL the daemon and reap it, as a crash would end it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM the daemon and wait for it to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("wait daemon") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("daemon ignored SIGTERM for 10 s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A CLI command against this daemon.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(RAUHA);
        command.arg("--socket").arg(&self.socket).args(args).stdin(Stdio::null());
        command
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run rauha")
    }

    /// Run the CLI, require success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "rauha {args:?} failed ({}): {}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Run the CLI, require failure, return stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "rauha {args:?} succeeded but should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).expect("utf-8 stderr")
    }

    /// Write a file into the test dir and return its path (policies and the like).
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }

    /// The running daemon's resident memory, open fds and threads, from `/proc`.
    pub fn usage(&self) -> DaemonUsage {
        let pid = self.pid().expect("daemon running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon status");
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in the daemon's status"))
        };
        DaemonUsage {
            rss_kib: field("VmRSS:"),
            fds: std::fs::read_dir(format!("/proc/{pid}/fd")).expect("daemon fds").count(),
            threads: field("Threads:"),
        }
    }

    /// The directory of `relative` (e.g. "zone-1") under this daemon's cgroup parent in one
    /// hierarchy (e.g. "memory", "unified").
    pub fn cgroup_dir(&self, hierarchy: &str, relative: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup").join(hierarchy).join(&self.cgroup_parent).join(relative)
    }

    /// The daemon's bpffs pin directory (where `--pin` keeps its links and maps).
    pub fn pin_dir(&self) -> PathBuf {
        PinDir::for_state_dir(&self.root).path().to_owned()
    }

    /// Removes the daemon's pins, detaching their links (a `--pin` daemon leaves them by
    /// design); pins a daemon last started without `--pin` left are a leak.
    fn remove_pins(&self) -> Vec<String> {
        let pins = PinDir::for_state_dir(&self.root);
        let mut leaks = Vec::new();
        if pins.exists() && !self.extra_args.iter().any(|arg| arg == "--pin") {
            leaks
                .push(format!("bpf pins {} left by a daemon without --pin", pins.path().display()));
        }
        if let Err(error) = pins.remove() {
            leaks.push(error.to_string());
        }
        if pins.exists() {
            leaks.push(format!("bpf pins {} still present", pins.path().display()));
        }
        leaks
    }

    fn cleanup(&mut self) -> Vec<String> {
        self.kill();
        // Before the cgroups: a pinned link would keep a removed cgroup alive.
        let mut leaks = self.remove_pins();
        leaks.extend(remove_cgroup_parent(&self.cgroup_parent));
        leaks.extend(unmount_under(self.dir.path()));
        leaks
    }

    /// Build the busybox image with the same script the quickstart uses and import it as
    /// `busybox` (docker.io/library/busybox:latest).
    pub fn import_busybox(&self) {
        let layout = self.dir.path().join("busybox-layout");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/busybox-image.sh");
        let out =
            Command::new("bash").arg(script).arg(&layout).output().expect("run busybox-image.sh");
        assert!(out.status.success(), "busybox-image.sh: {}", String::from_utf8_lossy(&out.stderr));
        self.ok(&["image", "import", layout.to_str().expect("utf-8 path"), "--tag", "busybox"]);
    }
}

/// Makes `command` join the cgroup2 node `cgroup` between fork and exec (a probe placed in a
/// zone's cgroup, with nothing of the daemon involved).
pub fn join_cgroup(command: &mut Command, cgroup: &Path) {
    let procs = std::ffi::CString::new(cgroup.join("cgroup.procs").into_os_string().into_vec())
        .expect("cgroup path without NUL");
    // SAFETY: between fork and exec the hook only calls open, write and close
    // (async-signal-safe) on a path prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if written != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(dir))
        .collect();
    mounts.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    mounts.dedup();
    mounts
}

/// Detach every mount below `dir` (a daemon's pinned network namespaces); returns what stayed.
pub fn unmount_under(dir: &Path) -> Vec<String> {
    for point in mounts_under(dir) {
        let _ = rustix::mount::unmount(&point, rustix::mount::UnmountFlags::DETACH);
    }
    mounts_under(dir)
        .iter()
        .map(|point| format!("mount {} still present", point.display()))
        .collect()
}

/// Kill what runs under a test cgroup parent and remove it in every hierarchy; returns what
/// could not be removed.
pub fn remove_cgroup_parent(parent: &str) -> Vec<String> {
    let mut leaks = Vec::new();
    match CgroupManager::detect(parent) {
        Ok(manager) => {
            if let Err(error) = manager.remove_parent() {
                leaks.push(format!("remove cgroup parent {parent}: {error}"));
            }
            for dir in manager.parent_dirs() {
                if dir.exists() {
                    leaks.push(format!("cgroup {} still exists", dir.display()));
                }
            }
        }
        Err(error) => leaks.push(format!("detect cgroups for {parent}: {error}")),
    }
    leaks
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        let leaks = self.cleanup();
        if !leaks.is_empty() && !std::thread::panicking() {
            panic!("test leaked kernel objects:\n{}", leaks.join("\n"));
        }
    }
}
