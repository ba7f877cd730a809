//! Zone networking benchmarks (issue 5): bridged zone create and delete latency through the
//! daemon API (and the same link steps done with `ip`), and TCP throughput between two zones
//! with the zone rules in place versus the same veth/bridge setup with the rules removed.
//! Everything runs in a network namespace the bench creates. `benches/run.sh network`
//! records the table.

#[path = "../tests/harness/mod.rs"]
mod harness;
mod measure;

use std::process::Command;
use std::time::{Duration, Instant};

use async_compat::Compat;
use harness::TestDaemon;
use measure::{ms, stats};
use rauha::rpc::{self, ZoneCreateRequest};

const RUNS: usize = 30;
const TRANSFER_MIB: u32 = 128;

fn run_ok(mut command: Command) {
    let out = command.output().expect("run command");
    assert!(out.status.success(), "{:?}: {}", command, String::from_utf8_lossy(&out.stderr));
}

/// Seconds to move TRANSFER_MIB MiB from zone a's container to zone b's server.
fn transfer(d: &TestDaemon, b_ip: &str) -> f64 {
    let script =
        format!("dd if=/dev/zero bs=1M count={TRANSFER_MIB} 2>/dev/null | nc -w 5 {b_ip} 9000");
    let start = Instant::now();
    d.ok(&["exec", "client", "sh", "-c", &script]);
    start.elapsed().as_secs_f64()
}

fn main() {
    let Some(d) = TestDaemon::start("network_bench") else { return };
    d.import_busybox();
    let bridged = d.write_file("bridged.toml", "[network]\nmode = \"bridged\"\n");

    let (create, delete) = smol::block_on(Compat::new(async {
        let client = rpc::connect(&d.socket).await.expect("connect");
        let policy = std::fs::read_to_string(&bridged).unwrap();
        let (mut create, mut delete) = (Vec::new(), Vec::new());
        for n in 0..RUNS + 3 {
            let request = ZoneCreateRequest {
                name: format!("bench-{n}"),
                zone_type: String::new(),
                policy_toml: policy.clone(),
            };
            let begin = Instant::now();
            client.zone_create(tarpc::context::current(), request).await.unwrap().unwrap();
            let created = begin.elapsed();
            let begin = Instant::now();
            client
                .zone_delete(tarpc::context::current(), format!("bench-{n}"), false)
                .await
                .unwrap()
                .unwrap();
            if n >= 3 {
                create.push(created);
                delete.push(begin.elapsed());
            }
        }
        (stats(create), stats(delete))
    }));

    // The link steps of a bridged zone, done with ip(8), in a scratch namespace pair.
    let mut ip_steps = Vec::new();
    for n in 0..RUNS {
        let zone_ns = format!("rauha-bench-{}-{n}", std::process::id());
        let begin = Instant::now();
        let ip = |args: &[&str]| {
            let mut c = d.netns.command("ip");
            c.args(args);
            run_ok(c);
        };
        ip(&["netns", "add", &zone_ns]);
        ip(&["link", "add", "rzb0", "type", "veth", "peer", "name", "eth0", "netns", &zone_ns]);
        ip(&["link", "set", "rzb0", "up"]);
        ip(&["-n", &zone_ns, "addr", "add", "10.99.0.2/16", "dev", "eth0"]);
        ip(&["-n", &zone_ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &zone_ns, "link", "set", "lo", "up"]);
        ip(&["link", "del", "rzb0"]);
        ip(&["netns", "del", &zone_ns]);
        ip_steps.push(begin.elapsed());
    }
    let ip_steps = stats(ip_steps);

    let allow =
        |peer: &str| format!("[network]\nmode = \"bridged\"\nallowed_zones = [\"{peer}\"]\n");
    for (zone, peer) in [("a", "b"), ("b", "a")] {
        let file = d.write_file(&format!("{zone}.toml"), &allow(peer));
        d.ok(&["zone", "create", "--name", zone, "--policy", file.to_str().unwrap()]);
    }
    let inspect: serde_json::Value =
        serde_json::from_str(&d.ok(&["zone", "inspect", "b"])).unwrap();
    let b_ip = inspect["address"].as_str().unwrap().to_owned();
    d.ok(&[
        "run",
        "-d",
        "--zone",
        "b",
        "--name",
        "sink",
        "busybox",
        // A persistent server (-ll) that sinks each connection into dd.
        "nc",
        "-ll",
        "-p",
        "9000",
        "-e",
        "dd",
        "of=/dev/null",
        "bs=64k",
    ]);
    d.ok(&["run", "-d", "--zone", "a", "--name", "client", "busybox", "sleep", "3600"]);
    std::thread::sleep(Duration::from_millis(300));
    let mut with_rules: Vec<f64> = (0..5).map(|_| transfer(&d, &b_ip)).collect();
    for table in [["bridge", "rauha"], ["inet", "rauha"]] {
        let mut c = d.netns.command("nft");
        c.args(["delete", "table", table[0], table[1]]);
        run_ok(c);
    }
    let mut without: Vec<f64> = (0..5).map(|_| transfer(&d, &b_ip)).collect();
    with_rules.sort_by(f64::total_cmp);
    without.sort_by(f64::total_cmp);
    let rate = |secs: f64| f64::from(TRANSFER_MIB) * 8.0 / 1024.0 / secs;
    let (with_rate, without_rate) = (rate(with_rules[2]), rate(without[2]));

    println!("| measurement | median | p95 | target |");
    println!("|---|---|---|---|");
    println!(
        "| bridged zone create via the daemon API ({RUNS} runs: cgroup, netns, veth, address, route, nft rules) | {} | {} | < 10 ms |",
        ms(create.0),
        ms(create.1)
    );
    println!("| bridged zone delete via the daemon API | {} | {} | |", ms(delete.0), ms(delete.1));
    println!(
        "| the veth/netns link steps alone with ip(8) (add + delete) | {} | {} | ~21 ms |",
        ms(ip_steps.0),
        ms(ip_steps.1)
    );
    println!(
        "| TCP zone → zone, {TRANSFER_MIB} MiB, with rules (median of 5) | {with_rate:.2} Gbit/s | | |"
    );
    println!(
        "| TCP zone → zone, same setup, rules removed (median of 5) | {without_rate:.2} Gbit/s | | |"
    );
    println!(
        "| throughput with rules / without | {:.1} % | | ≥ 90 % |",
        with_rate / without_rate * 100.0
    );
}
