//! Privileged tests of the cgroup-BPF layer on the real kernel: device allow-list, sysctl
//! write ban, egress allow-list (inside a network namespace the test creates), deny events,
//! pinning and adoption, and the latency figures of attach, adoption and policy apply.
//!
//! Without root or cgroup2 a test skips with a reason, unless CI=true, where it fails.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rauha::enforce::bpf_abi::EVENT_BURST;
use rauha::enforce::bpf_events::{DenyEvent, DenyTarget, EventMaps, Hook};
use rauha::enforce::bpf_pin::PinDir;
use rauha::enforce::cgroup_bpf::{
    DeviceKind, DeviceRule, EgressRule, LoadedZonePrograms, ZoneCgroupPrograms,
};

static NEXT: AtomicU32 = AtomicU32::new(1);

/// Skips (returns None) with a reason, or fails under CI=true.
fn require<T>(what: Result<T, String>) -> Option<T> {
    match what {
        Ok(v) => Some(v),
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("required for this test under CI=true: {reason}")
        }
        Err(reason) => {
            eprintln!("skipped: {reason}");
            None
        }
    }
}

/// The cgroup2 mount (hybrid: /sys/fs/cgroup/unified), when we are root.
fn cgroup2_root() -> Result<PathBuf, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (bpf, cgroups, namespaces)".into());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let mut found = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split(' ').next() == Some("cgroup2") {
            if let Some(mount_point) = left.split(' ').nth(4) {
                let p = PathBuf::from(mount_point);
                if p == Path::new("/sys/fs/cgroup/unified") || found.is_none() {
                    found = Some(p);
                }
            }
        }
    }
    found.ok_or_else(|| "no cgroup2 mount".into())
}

/// A cgroup2 node for one test; removed (after killing leftovers) on drop.
struct TestCgroup {
    path: PathBuf,
    procs: File,
}

impl TestCgroup {
    fn new(root: &Path) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = root.join(format!("rauha-test-bpf-{}-{n}", std::process::id()));
        std::fs::create_dir(&path).unwrap();
        let procs = OpenOptions::new().write(true).open(path.join("cgroup.procs")).unwrap();
        Self { path, procs }
    }

    /// Forks a child that joins this cgroup, runs `f` and exits with its result (an errno or
    /// 0). `f` runs after fork in a multi-threaded process: only async-signal-safe calls, no
    /// allocation.
    fn run(&self, f: impl FnOnce() -> i32) -> i32 {
        let fd = self.procs.as_raw_fd();
        // SAFETY: the child only calls async-signal-safe functions (write, the syscalls in `f`,
        // _exit) before exiting; the parent only waits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: writing "0" to cgroup.procs moves the writer itself; fd is open.
            let joined = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
            let code = if joined == 1 { f() } else { 250 };
            // SAFETY: _exit skips atexit handlers and stdio flushing, as a forked child must.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: pid is our child; status is a valid out pointer.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        assert!(libc::WIFEXITED(status), "child died: status {status}");
        libc::WEXITSTATUS(status)
    }

    /// A Command that joins this cgroup between fork and exec.
    fn command(&self, program: &str) -> Command {
        let fd = self.procs.as_raw_fd();
        let mut cmd = Command::new(program);
        // SAFETY: the hook only calls write(2), which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        cmd
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Ok(pids) = std::fs::read_to_string(self.path.join("cgroup.procs")) {
            for pid in pids.lines().filter_map(|l| l.parse::<i32>().ok()) {
                // SAFETY: kill has no memory preconditions; these are our test's leftovers.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for _ in 0..100 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("warning: could not remove {}", self.path.display());
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(255)
}

/// Child body: open `path` with `flags`; 0 or the errno.
fn open_errno(path: &CString, flags: i32) -> i32 {
    // SAFETY: path is NUL-terminated and outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        return errno();
    }
    // SAFETY: fd was just opened by us.
    unsafe { libc::close(fd) };
    0
}

fn recv_event(rx: &mpsc::Receiver<DenyEvent>, hook: Hook) -> DenyEvent {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev =
            rx.recv_timeout(left).unwrap_or_else(|_| panic!("no {hook:?} deny event within 5 s"));
        if ev.hook == hook {
            return ev;
        }
    }
}

struct Zone {
    events: EventMaps,
    rx: mpsc::Receiver<DenyEvent>,
    _consumer: rauha::enforce::bpf_events::EventConsumer,
    cgroup: TestCgroup,
    id: u32,
}

fn zone(root: &Path) -> Zone {
    let events = EventMaps::create().unwrap();
    let (tx, rx) = mpsc::channel();
    let consumer = events.spawn_consumer(tx).unwrap();
    Zone {
        events,
        rx,
        _consumer: consumer,
        cgroup: TestCgroup::new(root),
        id: 1000 + NEXT.fetch_add(1, Ordering::Relaxed),
    }
}

fn kmsg_like_node(dir: &Path) -> CString {
    // 1:11 is /dev/kmsg: present on every kernel and harmless to open read-only.
    let path = dir.join("not-allowed-1-11");
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: c is NUL-terminated; the node is created outside the test cgroup.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 11)) };
    assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
    c
}

#[test]
fn device_allow_list_denies_unlisted_and_updates_live() {
    let Some(root) = require(cgroup2_root()) else {
        return;
    };
    let z = zone(&root);
    let dir = tempfile::tempdir().unwrap();
    let node = kmsg_like_node(dir.path());
    let mut progs =
        ZoneCgroupPrograms::attach(z.id, &z.cgroup.path, &z.events, &[], &[], &[]).unwrap();
    assert_eq!(progs.attached_programs(), 6);

    // Built-in devices work, through a real exec as a container would do it.
    let out = z.cgroup.command("busybox").args(["head", "-c1", "/dev/zero"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, [0]);
    let zero = CString::new("/dev/zero").unwrap();
    let null = CString::new("/dev/null").unwrap();
    assert_eq!(z.cgroup.run(|| open_errno(&zero, libc::O_RDONLY)), 0);
    assert_eq!(z.cgroup.run(|| open_errno(&null, libc::O_RDWR)), 0);

    // An unlisted device: EPERM, and a deny event with the zone id.
    assert_eq!(z.cgroup.run(|| open_errno(&node, libc::O_RDONLY)), libc::EPERM);
    let out =
        z.cgroup.command("busybox").args(["cat"]).arg(node.to_str().unwrap()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"), "{out:?}");
    let ev = recv_event(&z.rx, Hook::Device);
    assert_eq!(ev.zone_id, z.id);
    assert!(matches!(ev.target, DenyTarget::Device { block: false, major: 1, minor: 11, .. }));
    // The host (outside the cgroup) is not affected.
    assert_eq!(open_errno(&node, libc::O_RDONLY), 0);

    // Live update: read allowed, write still denied.
    progs
        .update_devices(&[DeviceRule {
            kind: DeviceKind::Char,
            major: 1,
            minor: Some(11),
            read: true,
            write: false,
            mknod: false,
        }])
        .unwrap();
    assert_eq!(z.cgroup.run(|| open_errno(&node, libc::O_RDONLY)), 0);
    assert_eq!(z.cgroup.run(|| open_errno(&node, libc::O_WRONLY)), libc::EPERM);

    // Revoked again.
    progs.update_devices(&[]).unwrap();
    assert_eq!(z.cgroup.run(|| open_errno(&node, libc::O_RDONLY)), libc::EPERM);

    // Dropping the programs detaches them.
    drop(progs);
    assert_eq!(z.cgroup.run(|| open_errno(&node, libc::O_RDONLY)), 0);
}

#[test]
fn deny_events_are_rate_limited_per_zone() {
    let Some(root) = require(cgroup2_root()) else {
        return;
    };
    let z = zone(&root);
    let dir = tempfile::tempdir().unwrap();
    let node = kmsg_like_node(dir.path());
    let _progs =
        ZoneCgroupPrograms::attach(z.id, &z.cgroup.path, &z.events, &[], &[], &[]).unwrap();
    const TRIES: u64 = 1000;
    let denied = z.cgroup.run(|| {
        let mut denied = 0;
        for _ in 0..TRIES {
            if open_errno(&node, libc::O_RDONLY) == libc::EPERM {
                denied += 1;
            }
        }
        i32::from(denied == TRIES)
    });
    assert_eq!(denied, 1, "every open must be denied");
    std::thread::sleep(Duration::from_millis(300));
    let burst: Vec<DenyEvent> = z.rx.try_iter().collect();
    // The bucket starts full (EVENT_BURST) and refills at 100/s while the loop runs.
    assert!(
        (EVENT_BURST as usize..EVENT_BURST as usize + 40).contains(&burst.len()),
        "{} events for {TRIES} denies",
        burst.len()
    );
    // The next event reports how many were dropped.
    assert_eq!(z.cgroup.run(|| open_errno(&node, libc::O_RDONLY)), libc::EPERM);
    let ev = recv_event(&z.rx, Hook::Device);
    assert_eq!(ev.zone_id, z.id);
    assert_eq!(ev.suppressed, TRIES - burst.len() as u64, "suppressed count");
}

#[test]
fn sysctl_writes_denied_reads_allowed() {
    let Some(root) = require(cgroup2_root()) else {
        return;
    };
    let z = zone(&root);
    let _progs =
        ZoneCgroupPrograms::attach(z.id, &z.cgroup.path, &z.events, &[], &[], &[]).unwrap();
    let host_name_before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let path = CString::new("/proc/sys/kernel/hostname").unwrap();
    // Child: new UTS namespace (so a wrong allow could only rename that), read, then write.
    let code = z.cgroup.run(|| {
        // SAFETY: plain syscalls on prepared buffers.
        unsafe {
            if libc::unshare(libc::CLONE_NEWUTS) != 0 {
                return 200;
            }
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
            if fd < 0 {
                return 201;
            }
            let mut buf = [0u8; 64];
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            if n <= 0 {
                return 202;
            }
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return 203;
            }
            let name = b"rauha-bpf-test\n";
            let n = libc::write(fd, name.as_ptr().cast(), name.len());
            let code = if n < 0 { errno() } else { 0 };
            libc::close(fd);
            code
        }
    });
    assert_eq!(code, libc::EPERM, "sysctl write must fail with EPERM");
    let ev = recv_event(&z.rx, Hook::Sysctl);
    assert_eq!(ev.zone_id, z.id);
    assert_eq!(ev.target, DenyTarget::Sysctl { name: "kernel/hostname".into() });
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host_name_before);
}

/// Runs `f` on a thread inside a fresh network namespace with loopback up and the test
/// addresses on `lo`; the namespace disappears with the thread.
fn in_test_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    std::thread::spawn(move || {
        // SAFETY: unshare(CLONE_NEWNET) affects only this thread, which no one else uses.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!("unshare netns: {}", std::io::Error::last_os_error()));
        }
        // `ip` runs as a child of this thread and so inside the new namespace. The dummy
        // driver may be absent (no modules), so the addresses go on lo, which is ours here.
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", "10.203.0.1/24", "dev", "lo"],
            &["addr", "add", "10.203.1.1/24", "dev", "lo"],
            &["-6", "addr", "add", "fd00:203::1/64", "dev", "lo", "nodad"],
        ] {
            let status =
                Command::new("ip").args(args).status().map_err(|e| format!("run ip: {e}"))?;
            if !status.success() {
                return Err(format!("ip {args:?} failed"));
            }
        }
        Ok(f())
    })
    .join()
    .map_err(|_| "netns thread panicked".to_string())?
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as _;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as _;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as _)
}

/// Child body: TCP connect (or UDP sendto when `udp`); 0 or the errno.
fn net_errno(family: i32, ss: &libc::sockaddr_storage, len: libc::socklen_t, udp: bool) -> i32 {
    let ty = if udp { libc::SOCK_DGRAM } else { libc::SOCK_STREAM };
    // SAFETY: plain syscalls; `ss` is a valid sockaddr of `len` bytes.
    unsafe {
        let fd = libc::socket(family, ty, 0);
        if fd < 0 {
            return 240;
        }
        let sa = ss as *const _ as *const libc::sockaddr;
        let rc = if udp {
            libc::sendto(fd, b"x".as_ptr().cast(), 1, 0, sa, len) as i32
        } else {
            libc::connect(fd, sa, len)
        };
        let code = if rc < 0 { errno() } else { 0 };
        libc::close(fd);
        code
    }
}

fn try_net(cg: &TestCgroup, addr: &str, udp: bool) -> i32 {
    let addr: SocketAddr = addr.parse().unwrap();
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let (ss, len) = sockaddr(addr);
    cg.run(|| net_errno(family, &ss, len, udp))
}

fn rule(net: &str, prefix_len: u8, port: Option<u16>) -> EgressRule {
    EgressRule { addr: net.parse().unwrap(), prefix_len, port }
}

#[test]
fn egress_allow_list_connect_and_sendmsg() {
    let Some(root) = require(cgroup2_root()) else {
        return;
    };
    let result = in_test_netns(move || {
        let z = zone(&root);
        let _listeners: Vec<TcpListener> = [
            "10.203.0.1:8080",
            "10.203.0.1:8081",
            "10.203.1.1:9090",
            "127.0.0.1:7070",
            "[fd00:203::1]:8080",
        ]
        .iter()
        .map(|a| TcpListener::bind(a).unwrap())
        .collect();
        let _udp = UdpSocket::bind("10.203.1.1:9999").unwrap();

        let mut progs = ZoneCgroupPrograms::attach(
            z.id,
            &z.cgroup.path,
            &z.events,
            &[],
            &[rule("10.203.0.0", 24, Some(8080))],
            &[],
        )
        .unwrap();
        let cg = &z.cgroup;
        assert_eq!(try_net(cg, "10.203.0.1:8080", false), 0, "allowed prefix+port");
        assert_eq!(try_net(cg, "10.203.0.1:8081", false), libc::EPERM, "wrong port");
        assert_eq!(try_net(cg, "10.203.1.1:9090", false), libc::EPERM, "other net");
        assert_eq!(try_net(cg, "127.0.0.1:7070", false), 0, "loopback always");
        assert_eq!(try_net(cg, "10.203.1.1:9999", true), libc::EPERM, "udp sendto");
        assert_eq!(try_net(cg, "[fd00:203::1]:8080", false), libc::EPERM, "ipv6");
        // IPv4-mapped through an IPv6 socket meets the IPv4 rules.
        assert_eq!(try_net(cg, "[::ffff:10.203.1.1]:9090", false), libc::EPERM);
        assert_eq!(try_net(cg, "[::ffff:10.203.0.1]:8080", false), 0);
        let ev = recv_event(&z.rx, Hook::Connect4);
        assert_eq!(ev.zone_id, z.id);
        assert_eq!(
            ev.target,
            DenyTarget::Address { addr: "10.203.0.1:8081".parse().unwrap(), zone: None }
        );
        let ev = recv_event(&z.rx, Hook::Sendmsg4);
        assert_eq!(ev.zone_id, z.id);

        // Peer zone address: every port.
        progs
            .update_network(
                &[rule("10.203.0.0", 24, Some(8080))],
                &["10.203.1.1".parse::<IpAddr>().unwrap()],
            )
            .unwrap();
        assert_eq!(try_net(cg, "10.203.1.1:9090", false), 0, "peer");
        assert_eq!(try_net(cg, "10.203.1.1:9999", true), 0, "peer udp");

        // Live flip: only 10.203.1.0/24 (any port) and fd00:203::/64 port 8080.
        progs
            .update_network(
                &[rule("10.203.1.0", 24, None), rule("fd00:203::", 64, Some(8080))],
                &[],
            )
            .unwrap();
        assert_eq!(try_net(cg, "10.203.0.1:8080", false), libc::EPERM, "revoked");
        assert_eq!(try_net(cg, "10.203.1.1:9090", false), 0, "granted");
        assert_eq!(try_net(cg, "10.203.1.1:9999", true), 0, "granted udp");
        assert_eq!(try_net(cg, "[fd00:203::1]:8080", false), 0, "ipv6 granted");

        // The host side of this namespace is unaffected by the zone's rules.
        assert!(std::net::TcpStream::connect("10.203.0.1:8081").is_ok());
    });
    if let Some(()) = require(result) {}
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn attach_and_policy_apply_latency() {
    let Some(root) = require(cgroup2_root()) else {
        return;
    };
    let z = zone(&root);
    let egress_a: Vec<EgressRule> =
        (0..16).map(|i| rule(&format!("10.{i}.0.0"), 16, Some(443))).collect();
    let egress_b: Vec<EgressRule> =
        (8..24).map(|i| rule(&format!("10.{i}.0.0"), 16, None)).collect();
    let peers_a: Vec<IpAddr> = (1..9).map(|i| format!("10.89.0.{i}").parse().unwrap()).collect();
    let peers_b: Vec<IpAddr> = (5..13).map(|i| format!("10.89.0.{i}").parse().unwrap()).collect();
    let devices = [DeviceRule {
        kind: DeviceKind::Char,
        major: 10,
        minor: Some(229),
        read: true,
        write: true,
        mknod: false,
    }];

    let mut attach_times = Vec::new();
    let mut load_times = Vec::new();
    let mut warm_attach_times = Vec::new();
    for _ in 0..10 {
        let cg = TestCgroup::new(&root);
        let start = Instant::now();
        let progs =
            ZoneCgroupPrograms::attach(z.id, &cg.path, &z.events, &devices, &egress_a, &peers_a)
                .unwrap();
        attach_times.push(start.elapsed());
        drop(progs);

        let start = Instant::now();
        let loaded = LoadedZonePrograms::load(&z.events).unwrap();
        load_times.push(start.elapsed());
        let start = Instant::now();
        let progs = loaded.attach(z.id, &cg.path, &devices, &egress_a, &peers_a).unwrap();
        warm_attach_times.push(start.elapsed());
        assert_eq!(progs.attached_programs(), 6);
    }

    let mut progs =
        ZoneCgroupPrograms::attach(z.id, &z.cgroup.path, &z.events, &[], &egress_a, &peers_a)
            .unwrap();
    let mut net_times = Vec::new();
    let mut dev_times = Vec::new();
    for i in 0..50 {
        let (egress, peers) =
            if i % 2 == 0 { (&egress_b, &peers_b) } else { (&egress_a, &peers_a) };
        let start = Instant::now();
        progs.update_network(egress, peers).unwrap();
        net_times.push(start.elapsed());
        let start = Instant::now();
        progs.update_devices(if i % 2 == 0 { &devices[..] } else { &[] }).unwrap();
        dev_times.push(start.elapsed());
    }
    let attach = median(attach_times);
    let load = median(load_times);
    let warm = median(warm_attach_times);
    let net = median(net_times);
    let dev = median(dev_times);
    eprintln!(
        "figures: cold attach (load + fill 16 egress, 8 peers, 1 device + 6 links) median {attach:?}; \
         load alone median {load:?}; attach of a preloaded instance median {warm:?}; \
         update_network (16 egress + 8 peers replaced by a half-overlapping set: 16 deletes + 16 inserts) \
         median {net:?}; update_devices (1 entry) median {dev:?}"
    );
    assert!(net + dev < Duration::from_millis(5), "policy apply target < 5 ms");
}

/// Removes a test's pin directory on drop, also when the test fails.
struct Pins(PinDir);

impl Drop for Pins {
    fn drop(&mut self) {
        if let Err(error) = self.0.remove() {
            eprintln!("warning: {error}");
        }
    }
}

/// Pinned programs outlive every handle of the process that attached them; adopting them
/// (checked against the tags of another loaded instance) gives a handle whose map updates act
/// on the attached programs; pins that belong elsewhere are refused; removing the pins
/// detaches. Prints the cost of adoption next to that of attaching.
#[test]
fn pinned_programs_outlive_their_handles_and_are_adopted() {
    let Some(root) = require(cgroup2_root()) else {
        return;
    };
    let z = zone(&root);
    let state = tempfile::tempdir().unwrap();
    let pins = Pins(PinDir::for_state_dir(state.path()));
    pins.0.prepare().unwrap();
    let dir = pins.0.zone("z");
    let node = kmsg_like_node(state.path());
    let read_kmsg = DeviceRule {
        kind: DeviceKind::Char,
        major: 1,
        minor: Some(11),
        read: true,
        write: false,
        mknod: false,
    };
    // The tags come from a different load than the pinned programs: equal code, equal tags.
    let tags = LoadedZonePrograms::load(&z.events).unwrap().tags().unwrap();

    let progs = ZoneCgroupPrograms::attach(z.id, &z.cgroup.path, &z.events, &[], &[], &[]).unwrap();
    progs.pin(&dir).unwrap();
    drop(progs);
    assert_eq!(z.cgroup.run(|| open_errno(&node, libc::O_RDONLY)), libc::EPERM, "pinned");

    // Refused: another zone's instance, or a cgroup the links are not attached to.
    let error = ZoneCgroupPrograms::adopt(&dir, &tags, z.id + 1, &z.cgroup.path, &[], &[], &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("instance of another zone"), "{error}");
    let other = TestCgroup::new(&root);
    let error = ZoneCgroupPrograms::adopt(&dir, &tags, z.id, &other.path, &[], &[], &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("attached to cgroup id"), "{error}");
    assert!(error.contains(&dir.display().to_string()), "{error}");

    let mut adopt_times = Vec::new();
    let mut adopted = None;
    for _ in 0..20 {
        drop(adopted.take());
        let start = Instant::now();
        adopted = Some(
            ZoneCgroupPrograms::adopt(&dir, &tags, z.id, &z.cgroup.path, &[read_kmsg], &[], &[])
                .unwrap(),
        );
        adopt_times.push(start.elapsed());
    }
    let mut adopted = adopted.unwrap();
    assert_eq!(adopted.attached_programs(), 6);
    // Adoption rewrote the pinned map from the rules it was given.
    assert_eq!(z.cgroup.run(|| open_errno(&node, libc::O_RDONLY)), 0);
    adopted.update_devices(&[]).unwrap();
    assert_eq!(z.cgroup.run(|| open_errno(&node, libc::O_RDONLY)), libc::EPERM);
    drop(adopted);
    assert_eq!(z.cgroup.run(|| open_errno(&node, libc::O_RDONLY)), libc::EPERM, "still pinned");

    let mut attach_times = Vec::new();
    for _ in 0..5 {
        let cg = TestCgroup::new(&root);
        let loaded = LoadedZonePrograms::load(&z.events).unwrap();
        let start = Instant::now();
        let progs = loaded.attach(z.id, &cg.path, &[read_kmsg], &[], &[]).unwrap();
        progs.pin(&pins.0.zone("timing")).unwrap();
        attach_times.push(start.elapsed());
        drop(progs);
        rauha::enforce::bpf_pin::remove_tree(&pins.0.zone("timing")).unwrap();
    }
    eprintln!(
        "figures: adopt a pinned zone (open 6 links + 4 maps, verify links and tags, rewrite \
         maps) median {:?}; attach + pin a preloaded instance median {:?}",
        median(adopt_times),
        median(attach_times)
    );

    // Removing the pins detaches the programs (the kernel releases an unpinned link from a
    // work queue, so shortly after).
    rauha::enforce::bpf_pin::remove_tree(&dir).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while z.cgroup.run(|| open_errno(&node, libc::O_RDONLY)) != 0 {
        assert!(Instant::now() < deadline, "programs still attached 5 s after unpinning");
        std::thread::sleep(Duration::from_millis(10));
    }
}
