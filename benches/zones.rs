//! Zone benchmarks (issue 2): create/delete latency through the daemon API, CLI round trip of
//! `zone list` with 1 and 1000 zones, daemon RSS idle and with 1000 zones. Prints a Markdown
//! table; `benches/run.sh` records it under `benches/results/`.
//!
//! Run as root: `cargo bench --bench zones`.

#[path = "../tests/harness/mod.rs"]
mod harness;
mod measure;

use std::time::{Duration, Instant};

use async_compat::Compat;
use harness::TestDaemon;
use measure::{ms, percentile};
use rauha::rpc::{self, ZoneCreateRequest};

const SAMPLES: usize = 200;
const MANY: usize = 1000;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn cli_round_trip(daemon: &TestDaemon, runs: usize) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let out = daemon.cli(&["zone", "list", "--json"]);
            assert!(out.status.success());
            start.elapsed()
        })
        .collect();
    (percentile(&mut samples, 0.5), percentile(&mut samples, 0.95))
}

fn main() {
    let Some(daemon) = TestDaemon::start("zone_bench") else {
        return;
    };
    let pid = daemon.pid().expect("daemon pid");
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss = rss_kib(pid);

    let (create, delete, list_one, list_many, many_rss) = smol::block_on(Compat::new(async {
        let client = rpc::connect(&daemon.socket).await.expect("connect");
        let request = |name: String| ZoneCreateRequest {
            name,
            zone_type: String::new(),
            policy_toml: String::new(),
        };
        let mut create = Vec::new();
        let mut delete = Vec::new();
        for n in 0..SAMPLES {
            let name = format!("bench-{n}");
            let start = Instant::now();
            client
                .zone_create(tarpc::context::current(), request(name.clone()))
                .await
                .expect("rpc")
                .expect("create");
            create.push(start.elapsed());
            let start = Instant::now();
            client
                .zone_delete(tarpc::context::current(), name, false)
                .await
                .expect("rpc")
                .expect("delete");
            delete.push(start.elapsed());
        }
        client
            .zone_create(tarpc::context::current(), request("one".into()))
            .await
            .expect("rpc")
            .expect("create");
        let list_one = cli_round_trip(&daemon, 50);
        for n in 1..MANY {
            client
                .zone_create(tarpc::context::current(), request(format!("many-{n}")))
                .await
                .expect("rpc")
                .expect("create");
        }
        let list_many = cli_round_trip(&daemon, 50);
        let many_rss = rss_kib(pid);
        for n in 1..MANY {
            client
                .zone_delete(tarpc::context::current(), format!("many-{n}"), false)
                .await
                .expect("rpc")
                .expect("delete");
        }
        (create, delete, list_one, list_many, many_rss)
    }));
    let (mut create, mut delete) = (create, delete);

    let binary = std::env::var("RAUHA_STATIC_BINARY").ok();
    let size = binary
        .as_ref()
        .and_then(|path| std::fs::metadata(path).ok())
        .map(|m| {
            format!(
                "{:.1} MiB (static release, {})",
                m.len() as f64 / 1048576.0,
                binary.as_deref().unwrap_or("")
            )
        })
        .unwrap_or_else(|| "n/a (set RAUHA_STATIC_BINARY; benches/run.sh does)".to_owned());

    println!("| measurement | median | p95 | target |");
    println!("|---|---|---|---|");
    println!(
        "| zone create, no network ({SAMPLES} runs, API) | {} | {} | < 5 ms median |",
        ms(percentile(&mut create, 0.5)),
        ms(percentile(&mut create, 0.95))
    );
    println!(
        "| zone delete ({SAMPLES} runs, API) | {} | {} | |",
        ms(percentile(&mut delete, 0.5)),
        ms(percentile(&mut delete, 0.95))
    );
    println!(
        "| `rauha zone list --json`, 1 zone (CLI round trip, 50 runs) | {} | {} | |",
        ms(list_one.0),
        ms(list_one.1)
    );
    println!(
        "| `rauha zone list --json`, {MANY} zones (CLI round trip, 50 runs) | {} | {} | < 50 ms |",
        ms(list_many.0),
        ms(list_many.1)
    );
    println!("| daemon RSS idle | {:.1} MiB | | < 20 MB |", idle_rss as f64 / 1024.0);
    println!("| daemon RSS with {MANY} zones | {:.1} MiB | | |", many_rss as f64 / 1024.0);
    println!("| release binary size | {size} | | |");
}
