//! Container benchmarks (issue 4), side by side on the same busybox rootfs:
//! `rauha run --rm` against `runc run`, `crun run` and a bare `unshare`; container start
//! (created → running) inside the daemon; the shim's RSS. Prints a Markdown table;
//! `benches/run.sh containers` records it.
//!
//! crun refuses this hybrid host's cgroup layout, so it runs in a private mount namespace with
//! a tmpfs over /sys/fs/cgroup/unified (its command line below includes that `unshare`).

#[path = "../tests/harness/mod.rs"]
mod harness;
mod measure;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_compat::Compat;
use harness::TestDaemon;
use measure::{ms, stats};
use rauha::rpc::{self, ContainerCreateRequest};

const RUNS: usize = 30;
const WARMUP: usize = 3;

/// A labelled command line to time; called with the run number.
type MakeCommand<'a> = (&'static str, Box<dyn FnMut(usize) -> Command + 'a>);

/// Time `RUNS` runs of each command (after a warm-up), each required to succeed. The commands
/// take turns, run by run, so a change in the machine's load hits all of them alike.
fn time_commands<const N: usize>(commands: &mut [MakeCommand<'_>; N]) -> [(Duration, Duration); N] {
    let mut samples: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::new());
    for n in 0..WARMUP + RUNS {
        for ((label, make), samples) in commands.iter_mut().zip(&mut samples) {
            let mut command = make(n);
            command.stdout(Stdio::null()).stderr(Stdio::piped());
            let start = Instant::now();
            let out = command.output().unwrap_or_else(|e| panic!("{label}: {e}"));
            let elapsed = start.elapsed();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{label} failed: {stderr}");
            if n >= WARMUP {
                samples.push(elapsed);
            }
        }
    }
    samples.map(stats)
}

/// An OCI bundle of the busybox image whose process is `true`, for runc and crun.
fn bundle(layout: &Path, dir: &Path) -> std::path::PathBuf {
    let bundle = dir.join("bundle");
    let status = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle)
        .stdout(Stdio::null())
        .status()
        .expect("umoci unpack");
    assert!(status.success());
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["process"]["args"] = serde_json::json!(["true"]);
    config["process"]["terminal"] = serde_json::json!(false);
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    bundle
}

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let Some(d) = TestDaemon::start("container_bench") else { return };
    d.import_busybox();
    d.ok(&["zone", "create", "--name", "bench"]);
    let layout = d.dir.path().join("busybox-layout");
    let bundle = bundle(&layout, d.dir.path());

    let [rauha, runc, crun, bare] = time_commands(&mut [
        (
            "rauha run",
            Box::new(|_| d.command(&["run", "--rm", "--zone", "bench", "busybox", "true"])),
        ),
        (
            "runc run",
            Box::new(|n| {
                let mut c = Command::new("runc");
                c.args(["run", "--bundle"])
                    .arg(&bundle)
                    .arg(format!("rauha-bench-runc-{}-{n}", std::process::id()));
                c
            }),
        ),
        (
            "crun run",
            Box::new(|n| {
                let script = format!(
                    "mount -t tmpfs none /sys/fs/cgroup/unified && exec crun run --bundle {} rauha-bench-crun-{}-{n}",
                    bundle.display(),
                    std::process::id()
                );
                let mut c = Command::new("unshare");
                c.args(["-m", "--propagation", "private", "sh", "-c", &script]);
                c
            }),
        ),
        (
            "unshare",
            Box::new(|_| {
                let mut c = Command::new("unshare");
                c.args(["--fork", "--pid", "--mount-proc", "true"]);
                c
            }),
        ),
    ]);

    // Created → running inside the daemon, through the API.
    let start = smol::block_on(Compat::new(async {
        let client = rpc::connect(&d.socket).await.expect("connect");
        let mut samples = Vec::new();
        for n in 0..WARMUP + RUNS {
            let request = ContainerCreateRequest {
                zone: "bench".into(),
                image: "busybox".into(),
                command: vec!["true".into()],
                auto_remove: true,
                name: format!("start-{n}"),
                ..Default::default()
            };
            let created =
                client.container_create(tarpc::context::current(), request).await.unwrap().unwrap();
            let begin = Instant::now();
            client
                .container_start(tarpc::context::current(), created.id.clone())
                .await
                .unwrap()
                .unwrap();
            if n >= WARMUP {
                samples.push(begin.elapsed());
            }
            client.container_wait(tarpc::context::current(), created.id).await.unwrap().unwrap();
        }
        stats(samples)
    }));

    d.ok(&["run", "-d", "--zone", "bench", "--name", "idle", "busybox", "sleep", "60"]);
    let shims = std::fs::read_to_string(d.cgroup_dir("unified", "shims").join("cgroup.procs"))
        .unwrap_or_default();
    let shim_rss: Vec<String> = shims.lines().map(|pid| format!("{} KiB", rss_kib(pid))).collect();

    println!(
        "| measurement ({RUNS} runs each after {WARMUP} warm-up; the four commands take turns) | median | p95 |"
    );
    println!("|---|---|---|");
    println!(
        "| `rauha run --rm --zone bench busybox true` (CLI → daemon → shim, output streamed, exit code) | {} | {} |",
        ms(rauha.0),
        ms(rauha.1)
    );
    println!(
        "| `runc run --bundle B` (same rootfs, process `true`) | {} | {} |",
        ms(runc.0),
        ms(runc.1)
    );
    println!(
        "| `unshare -m sh -c 'mount tmpfs over cgroup2 && crun run --bundle B'` | {} | {} |",
        ms(crun.0),
        ms(crun.1)
    );
    println!("| `unshare --fork --pid --mount-proc true` | {} | {} |", ms(bare.0), ms(bare.1));
    println!(
        "| container start, created → running (daemon API) | {} | {} |",
        ms(start.0),
        ms(start.1)
    );
    println!("| shim RSS with one running container | {} | |", shim_rss.join(", "));
}
