//! BPF layer benchmarks (issue 6): what the per-zone cgroup programs cost.
//!
//! - loader level, on a cgroup2 node of its own: load + attach of the linked cgroup object
//!   (cold) versus attach of a preloaded spare instance (warm), and a live map update
//!   (`update_network`, `update_devices`);
//! - daemon level, through the API of a real daemon: `zone create` with a spare ready (the
//!   daemon refills it off the request path), `zone create` back to back (no spare: cold), and
//!   `policy apply` of an egress change (target: median < 5 ms).
//!
//! Prints a Markdown table; `benches/run.sh bpf` records it in `benches/results/bpf.md`.
//! Run as root: `cargo bench --bench bpf`.

#[path = "../tests/harness/mod.rs"]
mod harness;
mod measure;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_compat::Compat;
use harness::TestDaemon;
use measure::{ms, percentile};
use rauha::enforce::bpf_events::EventMaps;
use rauha::enforce::cgroup_bpf::{EgressRule, LoadedZonePrograms, ZoneCgroupPrograms};
use rauha::rpc::{self, ZoneCreateRequest};

const SAMPLES: usize = 60;

fn row(name: &str, samples: &mut [Duration], note: &str) {
    let median = percentile(samples, 0.5);
    let p95 = percentile(samples, 0.95);
    println!("| {name} | {} | {} | {} | {note} |", samples.len(), ms(median), ms(p95));
}

/// A cgroup2 node for the loader-level runs; removed on drop.
struct Node(PathBuf);

impl Node {
    fn new() -> Self {
        let path = Path::new("/sys/fs/cgroup/unified")
            .join(format!("rauha-bench-bpf-{}", std::process::id()));
        let path = if Path::new("/sys/fs/cgroup/unified").exists() {
            path
        } else {
            Path::new("/sys/fs/cgroup").join(format!("rauha-bench-bpf-{}", std::process::id()))
        };
        std::fs::create_dir(&path).expect("create bench cgroup");
        Self(path)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn egress(net: &str, port: u16) -> Vec<EgressRule> {
    vec![EgressRule { addr: net.parse().expect("address"), prefix_len: 24, port: Some(port) }]
}

fn loader_level() {
    let events = EventMaps::create().expect("event maps");
    let node = Node::new();
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut load_only = Vec::new();
    for _ in 0..SAMPLES {
        let start = Instant::now();
        let programs =
            ZoneCgroupPrograms::attach(1, &node.0, &events, &[], &egress("10.203.0.0", 80), &[])
                .expect("attach");
        cold.push(start.elapsed());
        drop(programs);

        let start = Instant::now();
        let loaded = LoadedZonePrograms::load(&events).expect("load");
        load_only.push(start.elapsed());
        let start = Instant::now();
        let programs =
            loaded.attach(1, &node.0, &[], &egress("10.203.0.0", 80), &[]).expect("attach");
        warm.push(start.elapsed());
        drop(programs);
    }
    let mut programs =
        ZoneCgroupPrograms::attach(1, &node.0, &events, &[], &egress("10.203.0.0", 80), &[])
            .expect("attach");
    let mut update = Vec::new();
    for n in 0..SAMPLES * 10 {
        let rules = if n % 2 == 0 { egress("10.203.1.0", 8080) } else { egress("10.203.0.0", 80) };
        let start = Instant::now();
        programs.update_network(&rules, &[]).expect("update");
        update.push(start.elapsed());
    }
    drop(programs);
    row("load + attach, cold (loader)", &mut cold, "open, verify 6 programs, 6 links");
    row("load only (what a spare costs)", &mut load_only, "done off the request path");
    row("attach of a preloaded spare (loader)", &mut warm, "fill maps + 6 bpf_link_create");
    row("egress map update (loader)", &mut update, "one delete + one insert in the LPM trie");
}

fn daemon_level() {
    let Some(daemon) = TestDaemon::start("bpf_bench") else { return };
    let (warm, cold, apply) = smol::block_on(Compat::new(async {
        let client = rpc::connect(&daemon.socket).await.expect("connect");
        let request = |name: String| ZoneCreateRequest {
            name,
            zone_type: String::new(),
            policy_toml: "[network]\nmode = \"host\"\nallowed_egress = [\"10.203.0.0/24:80\"]\n"
                .to_owned(),
        };
        let mut warm = Vec::new();
        let mut cold = Vec::new();
        for n in 0..SAMPLES {
            // With a pause the daemon has refilled its spare; back to back it has not.
            std::thread::sleep(Duration::from_millis(100));
            let name = format!("warm-{n}");
            let start = Instant::now();
            client
                .zone_create(tarpc::context::current(), request(name.clone()))
                .await
                .expect("rpc")
                .expect("create");
            warm.push(start.elapsed());
            let name2 = format!("cold-{n}");
            let start = Instant::now();
            client
                .zone_create(tarpc::context::current(), request(name2.clone()))
                .await
                .expect("rpc")
                .expect("create");
            cold.push(start.elapsed());
            for name in [name, name2] {
                client
                    .zone_delete(tarpc::context::current(), name, false)
                    .await
                    .expect("rpc")
                    .expect("delete");
            }
        }
        client
            .zone_create(tarpc::context::current(), request("apply".to_owned()))
            .await
            .expect("rpc")
            .expect("create");
        let mut apply = Vec::new();
        for n in 0..SAMPLES * 5 {
            let egress = if n % 2 == 0 { "10.203.1.0/24:8080" } else { "10.203.0.0/24:80" };
            let policy = format!("[network]\nmode = \"host\"\nallowed_egress = [\"{egress}\"]\n");
            let start = Instant::now();
            let applied = client
                .policy_apply(tarpc::context::current(), "apply".to_owned(), policy)
                .await
                .expect("rpc")
                .expect("apply");
            apply.push(start.elapsed());
            assert!(applied.applied_live.iter().any(|k| k.contains("rauha_egress")), "{applied:?}");
        }
        (warm, cold, apply)
    }));
    let (mut warm, mut cold, mut apply) = (warm, cold, apply);
    row("zone create, spare ready (daemon API)", &mut warm, "cgroups + programs + store commit");
    row(
        "zone create, back to back (daemon API)",
        &mut cold,
        "spare not refilled yet: loads inline",
    );
    row("policy apply, egress change (daemon API)", &mut apply, "target: median < 5 ms");
}

fn main() {
    if !harness::privileged("bpf bench") {
        return;
    }
    println!("| operation | samples | median | p95 | note |");
    println!("|---|---|---|---|---|");
    loader_level();
    daemon_level();
}
