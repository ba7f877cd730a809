//! Enforcement layer costs (issue 6): what the always-on layers add to a container start with a
//! warm seccomp cache, and to open/close and fork/exec loops, all layers versus none.
//!
//! 1. Shim side, in process: seccomp compile vs cache hit, `LayerFactory::prepare` of a second
//!    container (warm cache: the real per-start preparation), and the child-side apply
//!    (Landlock ruleset + seccomp install) in fresh forked children.
//! 2. Raw open/close in fresh processes (a re-executed copy of this binary, `--child MODE N`)
//!    with both layers vs none: the per-syscall cost without shell noise.
//! 3. Inside real containers: a daemon with all layers and one with every layer switched off
//!    (`--unsafe-disable-layer` ×3); busybox shell loops (open/close by redirection, fork/exec
//!    of `/bin/true`) timed inside the container, and end-to-end `rauha run --rm busybox true`.
//!
//! Run as root: `cargo bench --bench enforce` (or `bash benches/run.sh enforce`); prints a
//! Markdown report.

#[path = "../tests/harness/mod.rs"]
mod harness;
mod measure;

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

/// Child mode: apply the layers (or not) to this fresh process, then time open/close.
fn child(mode: &str, n: u32) {
    let layered = mode == "all";
    let ll = if layered {
        PreparedLandlock::new(probe_abi().expect("landlock abi"), Path::new("/"), &["/tmp"], &[])
            .expect("landlock prepare")
    } else {
        PreparedLandlock::disabled()
    };
    let sc = if layered {
        seccomp::compile(&DENY, 0).expect("seccomp compile")
    } else {
        seccomp::SeccompProgram::disabled()
    };
    let t = Instant::now();
    ll.apply().expect("landlock apply");
    install(&sc).expect("seccomp install");
    let apply = t.elapsed();
    let path = c"/etc/hostname";
    for _ in 0..1000 {
        drop(rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()));
    }
    let t = Instant::now();
    for _ in 0..n {
        let fd =
            rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).expect("open");
        drop(fd);
    }
    println!("{} {}", apply.as_nanos(), t.elapsed().as_nanos());
}

fn run_child(exe: &Path, mode: &str) -> (f64, f64) {
    let out = Command::new(exe)
        .args(["--child", mode, &RAW_ITERATIONS.to_string()])
        .output()
        .expect("run child");
    assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8(out.stdout).expect("utf-8");
    let v: Vec<f64> = s.split_whitespace().map(|x| x.parse().expect("number")).collect();
    (v[0], v[1] / f64::from(RAW_ITERATIONS))
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
    start_ms: f64,
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
    Some(ContainerFigures { open_us: median(open), fork_us: median(fork), start_ms: median(start) })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], args[i + 2].parse().expect("iterations"));
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
    let (mut none, mut all, mut apply) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RAW_ROUNDS {
        none.push(run_child(&exe, "none").1);
        let (a, ns) = run_child(&exe, "all");
        apply.push(a);
        all.push(ns);
    }
    let (raw_none, raw_all) = (median(none), median(all));
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
    println!("| none | {raw_none:.1} | 1.000 |");
    println!("| seccomp + Landlock | {raw_all:.1} | {:.3} (target ≤ 1.05) |\n", raw_all / raw_none);

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
        "| `rauha run --rm busybox true`, end to end (median of {START_ROUNDS}) | {:.1} ms | {:.1} ms | {:.3} |",
        with.start_ms,
        without.start_ms,
        with.start_ms / without.start_ms
    );
}
