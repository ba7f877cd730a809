//! Enforcement layer costs (issue 6): what the always-on layers add to a container start with a
//! warm seccomp cache, and to open/close and fork/exec loops, all layers versus none.
//!
//! 1. Shim side, in process: seccomp compile vs cache hit, `LayerFactory::prepare` of a second
//!    container (warm cache: the real per-start preparation), and the child-side apply
//!    (Landlock ruleset + seccomp install) in fresh forked children.
//! 2. Raw open/close in fresh processes (a re-executed copy of this binary,
//!    `--child MODE WORKLOAD N`) with no layer, each layer alone and both: the per-syscall
//!    cost without shell noise.
//! 3. Inside real containers: a daemon with all layers and one with every layer switched off
//!    (`--unsafe-disable-layer` ×3); busybox shell loops (open/close by redirection, fork/exec
//!    of `/bin/true`) timed inside the container, end-to-end `rauha run --rm busybox true`, and
//!    a UDP connect loop run by this binary in the container's network namespace: with all
//!    layers in the zone's cgroup (cgroup-BPF connect hooks) under Landlock and seccomp, without
//!    in the bench's own cgroup with nothing applied.
//!
//! Run as root: `cargo bench --bench enforce` (or `bash benches/run.sh enforce`); prints a
//! Markdown report.

#[path = "../tests/harness/mod.rs"]
mod harness;
mod measure;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use harness::TestDaemon;
use measure::busybox_real;
use rauha::enforce::landlock::{PreparedLandlock, probe_abi};
use rauha::enforce::seccomp::{self, SeccompCache, install};
use rauha::shim::layers::LayerFactory;
use rauha::shim::protocol::{CgroupSpec, ContainerSpec, LogSpec, RootfsSpec};
use rustix::fs::{Mode, OFlags};

/// A deny list like POLICY.md's example.
const DENY: [&str; 3] = ["mount", "umount2", "pivot_root"];
const RAW_ITERATIONS: u32 = 200_000;
const RAW_ROUNDS: usize = 11;
const SHELL_OPENS: u32 = 100_000;
const SHELL_FORKS: u32 = 2_000;
const CONTAINER_ROUNDS: usize = 5;
const CONNECTS: u32 = 20_000;
const START_ROUNDS: usize = 15;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn spec() -> ContainerSpec {
    ContainerSpec {
        id: "bench".into(),
        hostname: "bench".into(),
        args: vec!["true".into()],
        env: vec![],
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        additional_gids: vec![],
        capabilities: vec![0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31],
        no_new_privs: true,
        rootfs: RootfsSpec {
            lower_dirs: vec![],
            upper_dir: "/u".into(),
            work_dir: "/w".into(),
            merged_dir: "/m".into(),
        },
        writable_paths: vec!["/tmp".into()],
        syscall_deny: DENY.iter().map(|s| s.to_string()).collect(),
        devices: vec![],
        disabled_layers: vec![],
        cgroup: CgroupSpec { v2_dir: None, v1_dirs: vec![] },
        netns_path: None,
        log: LogSpec { path: "/l".into(), max_size: 1, max_files: 1 },
        resolv_conf: None,
        hosts: None,
        tty: false,
        interactive: false,
        stdin_once: false,
        self_exec: false,
    }
}

/// Child mode: apply the layers of `mode` (`all`, `seccomp`, `landlock`, `none`) to this fresh process, then time `n` iterations of
/// `workload`: `open` (open/close of /etc/hostname) or `connect` (a UDP socket bound and
/// connected to a loopback address, then closed). Prints the apply time and the loop time in ns.
fn child(mode: &str, workload: &str, n: u32) {
    let ll = if mode == "all" || mode == "landlock" {
        PreparedLandlock::new(probe_abi().expect("landlock abi"), Path::new("/"), &["/tmp"], &[])
            .expect("landlock prepare")
    } else {
        PreparedLandlock::disabled()
    };
    let sc = if mode == "all" || mode == "seccomp" {
        seccomp::compile(&DENY, 0).expect("seccomp compile")
    } else {
        seccomp::SeccompProgram::disabled()
    };
    // UDP: connect runs the same cgroup-BPF connect hook as TCP, without a peer to schedule
    // or connections lingering in TIME_WAIT.
    let target = SocketAddr::from(([127, 0, 0, 1], 9));
    let t = Instant::now();
    ll.apply().expect("landlock apply");
    install(&sc).expect("seccomp install");
    let apply = t.elapsed();
    let path = c"/etc/hostname";
    let once = || match workload {
        "open" => {
            let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty());
            drop(fd.expect("open"));
        }
        _ => {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
            socket.connect(target).expect("connect");
        }
    };
    for _ in 0..n.min(1000) {
        once();
    }
    let t = Instant::now();
    for _ in 0..n {
        once();
    }
    println!("{} {}", apply.as_nanos(), t.elapsed().as_nanos());
}

/// Runs `child` in a fresh process (`command` execs this binary); (apply ns, ns/iteration).
fn run_child(mut command: Command, mode: &str, workload: &str, n: u32) -> (f64, f64) {
    let out = command.args(["--child", mode, workload, &n.to_string()]).output().expect("child");
    assert!(out.status.success(), "{mode} {workload}: {}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8(out.stdout).expect("utf-8");
    let v: Vec<f64> = s.split_whitespace().map(|x| x.parse().expect("number")).collect();
    (v[0], v[1] / f64::from(n))
}

/// Times `script` inside a container of zone `z`; seconds as busybox measures them.
fn in_container(d: &TestDaemon, script: &str) -> f64 {
    let out = d.cli(&["run", "--rm", "--zone", "z", "busybox", "time", "sh", "-c", script]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    busybox_real(&String::from_utf8_lossy(&out.stderr))
}

struct ContainerFigures {
    open_us: f64,
    fork_us: f64,
    connect_us: f64,
    start_ms: f64,
}

/// Connect loops of a fresh process in the network namespace of a container of zone `z`:
/// with `layered`, also in the zone's cgroup (its cgroup-BPF connect programs) under Landlock
/// and seccomp; without, in the bench's own cgroup with nothing applied.
fn connect_loops(d: &TestDaemon, layered: bool) -> Vec<f64> {
    d.ok(&["run", "-d", "--zone", "z", "--name", "netns-holder", "busybox", "sleep", "3600"]);
    let inspect: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "netns-holder"])).expect("inspect JSON");
    let pid = inspect[0]["pid"].as_u64().expect("container pid");
    let zone: serde_json::Value =
        serde_json::from_str(&d.ok(&["zone", "inspect", "z"])).expect("zone JSON");
    let cgroup = zone["cgroup_path"].as_str().expect("cgroup path").to_owned();
    let exe = std::env::current_exe().expect("current exe");
    let loops = (0..CONTAINER_ROUNDS)
        .map(|_| {
            let mut command = Command::new("nsenter");
            command.arg(format!("--net=/proc/{pid}/ns/net")).arg("--").arg(&exe);
            if layered {
                harness::join_cgroup(&mut command, Path::new(&cgroup));
            }
            let mode = if layered { "all" } else { "none" };
            run_child(command, mode, "connect", CONNECTS).1 / 1e3
        })
        .collect();
    d.ok(&["rm", "-f", "netns-holder"]);
    loops
}

fn container_figures(tag: &str, args: &[&str]) -> Option<ContainerFigures> {
    let d = TestDaemon::start_with(tag, args)?;
    d.import_busybox();
    d.ok(&["zone", "create", "--name", "z"]);
    // Warm up: image, shim, seccomp cache.
    d.ok(&["run", "--rm", "--zone", "z", "busybox", "true"]);
    let opens =
        format!("i=0; while [ $i -lt {SHELL_OPENS} ]; do : < /etc/passwd; i=$((i+1)); done");
    let forks = format!("i=0; while [ $i -lt {SHELL_FORKS} ]; do /bin/true; i=$((i+1)); done");
    let mut open = Vec::new();
    let mut fork = Vec::new();
    for _ in 0..CONTAINER_ROUNDS {
        open.push(in_container(&d, &opens) * 1e6 / f64::from(SHELL_OPENS));
        fork.push(in_container(&d, &forks) * 1e6 / f64::from(SHELL_FORKS));
    }
    let mut start = Vec::new();
    for _ in 0..START_ROUNDS {
        let t = Instant::now();
        d.ok(&["run", "--rm", "--zone", "z", "busybox", "true"]);
        start.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let connect_us = median(connect_loops(&d, args.is_empty()));
    Some(ContainerFigures {
        open_us: median(open),
        fork_us: median(fork),
        connect_us,
        start_ms: median(start),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], &args[i + 2], args[i + 3].parse().expect("iterations"));
        return;
    }

    // 1. Shim side.
    let mut compiles = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        std::hint::black_box(seccomp::compile(&DENY, 0).expect("compile"));
        compiles.push(t.elapsed().as_nanos() as f64);
    }
    let cache = SeccompCache::default();
    cache.get_or_compile(&DENY, 0).expect("compile");
    let t = Instant::now();
    for _ in 0..100_000 {
        std::hint::black_box(cache.get_or_compile(&DENY, 0).expect("hit"));
    }
    let hit_ns = t.elapsed().as_nanos() as f64 / 100_000.0;
    let mut factory = LayerFactory::default();
    let s = spec();
    factory.prepare(&s).expect("first prepare");
    let mut prepares = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        std::hint::black_box(factory.prepare(&s).expect("prepare"));
        prepares.push(t.elapsed().as_nanos() as f64);
    }
    let insns = seccomp::compile(&DENY, 0).expect("compile").instructions().len();

    // 2. Raw open/close in fresh processes.
    let exe = std::env::current_exe().expect("current exe");
    let modes = ["none", "seccomp", "landlock", "all"];
    let (mut raw, mut apply) = (vec![Vec::new(); modes.len()], Vec::new());
    for _ in 0..RAW_ROUNDS {
        for (mode, samples) in modes.iter().zip(&mut raw) {
            let (a, ns) = run_child(Command::new(&exe), mode, "open", RAW_ITERATIONS);
            samples.push(ns);
            if *mode == "all" {
                apply.push(a);
            }
        }
    }
    let raw: Vec<f64> = raw.into_iter().map(median).collect();
    let prepare_us = median(prepares) / 1e3;
    let apply_us = median(apply) / 1e3;

    println!("## Container start: cost of the layers (warm seccomp cache)\n");
    println!("| step | median |\n|---|---|");
    println!(
        "| seccomp compile, uncached ({insns} instructions) | {:.1} µs |",
        median(compiles) / 1e3
    );
    println!("| seccomp cache hit | {hit_ns:.0} ns |");
    println!(
        "| shim: `LayerFactory::prepare` of a container (cache hit + Landlock rules) | {prepare_us:.1} µs |"
    );
    println!("| child: Landlock ruleset + restrict, seccomp install | {apply_us:.1} µs |");
    println!(
        "| **added per container start** | **{:.3} ms** (target < 1 ms) |\n",
        (prepare_us + apply_us) / 1e3
    );
    println!(
        "## Raw open/close of /etc/hostname, fresh process, {RAW_ITERATIONS} iterations, median of {RAW_ROUNDS}\n"
    );
    println!("| layers | ns/iteration | ratio |\n|---|---|---|");
    let labels = ["none", "seccomp only", "Landlock only", "seccomp + Landlock"];
    for (label, ns) in labels.iter().zip(&raw) {
        let target = if *label == "seccomp + Landlock" { " (target ≤ 1.05)" } else { "" };
        println!("| {label} | {ns:.1} | {:.3}{target} |", ns / raw[0]);
    }
    println!();

    // 3. Inside containers.
    let off = [
        "--unsafe-disable-layer",
        "seccomp",
        "--unsafe-disable-layer",
        "landlock",
        "--unsafe-disable-layer",
        "caps",
    ];
    let (Some(with), Some(without)) =
        (container_figures("bench all", &[]), container_figures("bench none", &off))
    else {
        return;
    };
    println!(
        "## Inside a container (busybox shell loops timed by busybox `time`, median of {CONTAINER_ROUNDS})\n"
    );
    println!("| loop | all layers | no layers | ratio |\n|---|---|---|---|");
    println!(
        "| open/close (`: < /etc/passwd`, {SHELL_OPENS}×) | {:.2} µs | {:.2} µs | {:.3} |",
        with.open_us,
        without.open_us,
        with.open_us / without.open_us
    );
    println!(
        "| fork/exec (`/bin/true`, {SHELL_FORKS}×) | {:.1} µs | {:.1} µs | {:.3} |",
        with.fork_us,
        without.fork_us,
        with.fork_us / without.fork_us
    );
    println!(
        "| UDP socket + connect + close to loopback in the zone's netns ({CONNECTS}×; this bench binary, see 3.) | {:.2} µs | {:.2} µs | {:.3} |",
        with.connect_us,
        without.connect_us,
        with.connect_us / without.connect_us
    );
    println!(
        "| `rauha run --rm busybox true`, end to end (median of {START_ROUNDS}) | {:.1} ms | {:.1} ms | {:.3} |",
        with.start_ms,
        without.start_ms,
        with.start_ms / without.start_ms
    );
}
