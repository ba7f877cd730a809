//! gRPC facade benchmarks (issue 7): unary latency of GetZone over gRPC versus the tarpc path
//! the CLI uses, and 1000 zone create/delete cycles through gRPC with the daemon's RSS before
//! and after. Prints a Markdown table; `bash benches/run.sh grpc` records it under
//! `benches/results/`.
//!
//! Run as root: `cargo bench --features grpc --bench grpc`.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use async_compat::Compat;
use harness::TestDaemon;
use rauha::grpc::ListenAddr;
use rauha::grpc::proto::zone::zone_service_client::ZoneServiceClient;
use rauha::grpc::proto::zone::{CreateZoneRequest, DeleteZoneRequest, GetZoneRequest};
use rauha::rpc;

const SAMPLES: usize = 2000;
const CYCLES: usize = 1000;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn main() {
    let sockets = tempfile::tempdir().expect("temp dir");
    let socket = sockets.path().join("grpc.sock");
    let listen = format!("unix:{}", socket.display());
    let Some(daemon) = TestDaemon::start_with("grpc_bench", &["--grpc-listen", &listen]) else {
        return;
    };
    let pid = daemon.pid().expect("daemon pid");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let mut zones = rt.block_on(async {
        let channel =
            rauha::grpc::client::connect(&ListenAddr::Unix(socket.clone())).await.expect("connect");
        ZoneServiceClient::new(channel)
    });
    let create = |name: &str| CreateZoneRequest { name: name.to_owned(), ..Default::default() };
    rt.block_on(zones.create_zone(create("bench"))).expect("create bench zone");

    // GetZone over gRPC (Unix socket), after a warm-up.
    let get = || GetZoneRequest { name: "bench".to_owned() };
    let mut grpc = rt.block_on(async {
        for _ in 0..100 {
            zones.get_zone(get()).await.expect("get");
        }
        let mut samples = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let start = Instant::now();
            zones.get_zone(get()).await.expect("get");
            samples.push(start.elapsed());
        }
        samples
    });
    // The same operation over tarpc, as the CLI calls it.
    let mut tarpc = smol::block_on(Compat::new(async {
        let client = rpc::connect(&daemon.socket).await.expect("connect tarpc");
        let call = || client.zone_get(tarpc::context::current(), "bench".to_owned());
        for _ in 0..100 {
            call().await.expect("rpc").expect("get");
        }
        let mut samples = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let start = Instant::now();
            call().await.expect("rpc").expect("get");
            samples.push(start.elapsed());
        }
        samples
    }));

    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss_kib(pid);
    let started = Instant::now();
    rt.block_on(async {
        for n in 0..CYCLES {
            let name = format!("cycle-{n}");
            zones.create_zone(create(&name)).await.expect("create");
            zones.delete_zone(DeleteZoneRequest { name, force: false }).await.expect("delete");
        }
    });
    let cycles = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = rss_kib(pid);

    println!("| measurement | median | p95 | p99 |");
    println!("|---|---|---|---|");
    for (name, samples) in [
        ("GetZone over gRPC (Unix socket, tonic)", &mut grpc),
        ("zone_get over tarpc (the CLI's path)", &mut tarpc),
    ] {
        println!(
            "| {name}, {SAMPLES} calls | {} | {} | {} |",
            us(percentile(samples, 0.5)),
            us(percentile(samples, 0.95)),
            us(percentile(samples, 0.99))
        );
    }
    println!();
    println!("| {CYCLES} zone create/delete cycles through gRPC | value |");
    println!("|---|---|");
    println!(
        "| total | {:.1} s ({:.1} ms per cycle) |",
        cycles.as_secs_f64(),
        cycles.as_secs_f64() * 1000.0 / CYCLES as f64
    );
    println!("| daemon RSS before | {rss_before} KiB |");
    println!("| daemon RSS after | {rss_after} KiB |");
    println!("| growth | {} KiB |", rss_after as i64 - rss_before as i64);
}
