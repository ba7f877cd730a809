//! Test lab: a "host" netns standing in for the daemon's namespace, zone namespaces made by
//! the module, an optional "outside" netns routed behind the host. Everything lives under a
//! per-test directory and is removed on drop, even when the test fails.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rauha::net::link::{self, Rtnl};
use rauha::net::netns::NetnsDir;
use rauha::net::nft::Nft;
use rauha::net::{self as net, Ipv4Net, NetConfig, NetMode, ZoneNetSpec};

static COUNTER: AtomicU32 = AtomicU32::new(0);
const HOST: u32 = 1;
const OUTSIDE: u32 = 2;
pub const BUSYBOX: &str = "/bin/busybox";

/// Whether privileged tests can run; under CI=true a missing privilege is a failure.
pub fn privileged() -> bool {
    let why = if !rustix::process::geteuid().is_root() {
        Some("not root")
    } else if !std::path::Path::new(BUSYBOX).exists() {
        Some("busybox-static missing")
    } else if !std::path::Path::new("/usr/sbin/nft").exists() {
        Some("nftables missing")
    } else {
        // SAFETY: NEWNET only affects this short-lived thread.
        let ok = std::thread::spawn(|| unsafe {
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET)
        })
        .join()
        .map(|r| r.is_ok())
        .unwrap_or(false);
        (!ok).then_some("cannot unshare a network namespace")
    };
    match why {
        None => true,
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("privileged network tests cannot run under CI=true: {why}")
        }
        Some(why) => {
            eprintln!("skipping privileged network test: {why}");
            false
        }
    }
}

/// A command that runs inside the namespace `ns`.
pub fn cmd_in(ns: BorrowedFd<'_>, args: &[&str]) -> Command {
    let mut c = Command::new(args[0]);
    c.args(&args[1..]);
    let raw = ns.as_raw_fd();
    // SAFETY: setns is async-signal-safe; the fd is inherited across fork.
    unsafe {
        c.pre_exec(move || {
            // SAFETY: `raw` stays open in the child until exec.
            let fd = BorrowedFd::borrow_raw(raw);
            rustix::thread::move_into_link_name_space(
                fd,
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(std::io::Error::from)
        });
    }
    c
}

/// Runs a command with a hard deadline; returns (success, stdout).
pub fn run_bounded(mut c: Command, limit: Duration) -> (bool, String) {
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = c.spawn().expect("spawn probe");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait probe") {
            let out = child.wait_with_output().expect("probe output");
            return (status.success(), String::from_utf8_lossy(&out.stdout).into());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return (false, String::new());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub struct Lab {
    pub root: PathBuf,
    pub labdir: NetnsDir,
    pub zones: NetnsDir,
    pub host: OwnedFd,
    pub rtnl: Rtnl,
    pub cfg: NetConfig,
    pub bridge: i32,
    pub nft: Nft,
    pub outside: Option<OwnedFd>,
    children: Vec<Child>,
}

pub const UPLINK_HOST: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 1);
pub const UPLINK_OUT: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 2);

impl Lab {
    pub fn new() -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("rauha-t-{}-{n}", std::process::id()));
        let labdir = NetnsDir::new(root.join("lab"));
        let zones = NetnsDir::new(root.join("zones"));
        labdir.setup().expect("lab dir");
        zones.setup().expect("zones dir");
        let host_ns = labdir.create(HOST).expect("host netns");
        let cfg = NetConfig {
            bridge: "rtb0".into(),
            subnet: "10.201.0.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 201, 0, 1),
            dns_servers: vec![],
        };
        let mut rtnl = Rtnl::open_in(host_ns.fd.as_fd()).expect("host rtnl");
        let bridge = link::ensure_bridge(&mut rtnl, &cfg).expect("bridge");
        let nft = Nft::new(host_ns.fd.as_fd()).expect("nft");
        nft.ensure_base(&cfg).expect("nft base");
        link::set_ipv4_forwarding(host_ns.fd.as_fd(), true).expect("forwarding");
        Lab {
            root,
            labdir,
            zones,
            host: host_ns.fd,
            rtnl,
            cfg,
            bridge,
            nft,
            outside: None,
            children: Vec::new(),
        }
    }

    /// Adds the "outside" netns behind the host: host `up0` 10.201.1.1/24 ↔ outside `eth0`
    /// 10.201.1.2/24, outside's default route via the host.
    pub fn with_outside(&mut self) {
        let mut out = self.labdir.create(OUTSIDE).expect("outside netns");
        link::create_veth_pair(&mut self.rtnl, "up0", None, "eth0", out.fd.as_fd())
            .expect("uplink veth");
        let up = self.rtnl.link_index("up0").unwrap().unwrap();
        self.rtnl.add_address(up, Ipv4Net::new(UPLINK_HOST, 24).unwrap()).unwrap();
        out.rtnl.set_up_by_name("eth0").unwrap();
        let eth = out.rtnl.link_index("eth0").unwrap().unwrap();
        out.rtnl.add_address(eth, Ipv4Net::new(UPLINK_OUT, 24).unwrap()).unwrap();
        out.rtnl.set_default_route(eth, UPLINK_HOST).unwrap();
        self.outside = Some(out.fd);
    }

    pub fn spec(&self, zone_id: u32, last_octet: u8) -> ZoneNetSpec {
        ZoneNetSpec {
            zone_id,
            ip: Some(Ipv4Addr::new(10, 201, 0, last_octet)),
            mode: NetMode::Bridged,
            allowed_egress: vec![],
            allowed_ingress: vec![],
            published: vec![],
            host_dns: false,
        }
    }

    pub fn zone(&mut self, spec: &ZoneNetSpec) -> Option<OwnedFd> {
        net::create_zone(&self.zones, &mut self.rtnl, &self.cfg, self.bridge, spec)
            .expect("create zone")
    }

    /// Starts a persistent busybox TCP server answering "pong" and waits until it accepts
    /// connections (probed over the namespace's loopback).
    pub fn server(&mut self, ns: BorrowedFd<'_>, port: u16) {
        let p = port.to_string();
        let mut c = cmd_in(ns, &[BUSYBOX, "nc", "-ll", "-p", &p, "-e", BUSYBOX, "echo", "pong"]);
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        self.children.push(c.spawn().expect("spawn server"));
        for _ in 0..50 {
            if tcp(ns, Ipv4Addr::LOCALHOST, port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server on port {port} did not come up");
    }
}

/// One bounded TCP probe: connects (1 s timeout) and expects "pong".
pub fn tcp(ns: BorrowedFd<'_>, ip: Ipv4Addr, port: u16) -> bool {
    let c = cmd_in(ns, &[BUSYBOX, "nc", "-w", "1", &ip.to_string(), &port.to_string()]);
    let (_, out) = run_bounded(c, Duration::from_secs(3));
    out.contains("pong")
}

/// One bounded ping (1 packet, 1 s).
pub fn ping(ns: BorrowedFd<'_>, ip: Ipv4Addr) -> bool {
    let c = cmd_in(ns, &[BUSYBOX, "ping", "-c", "1", "-W", "1", &ip.to_string()]);
    run_bounded(c, Duration::from_secs(3)).0
}

/// A positive probe retried a few times (ARP, bridge port settling); bounded.
pub fn eventually(mut probe: impl FnMut() -> bool) -> bool {
    (0..4).any(|_| probe())
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Zone namespaces first, then host and outside (their links and nft tables die with
        // them), then the directories' own mounts.
        let _ = self.nft.remove_all();
        let _ = self.zones.teardown();
        let _ = self.labdir.teardown();
        let _ = std::fs::remove_dir_all(&self.root);
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = self.root.display().to_string();
        if mounts.contains(&root) && !std::thread::panicking() {
            panic!("mounts left under {root}");
        }
    }
}
