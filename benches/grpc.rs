//! gRPC facade benchmarks (issue 7): unary latency of GetZone over gRPC versus the tarpc path
//! the CLI uses, and zone create/delete cycles through gRPC with the daemon's RSS, open fds and
//! threads read at checkpoints: after a warm-up round (growth there is caches and allocator
//! arenas filling) and every few hundred cycles after it (growth there would be a leak). Prints
//! Markdown tables; `bash benches/run.sh grpc` records them under `benches/results/`.
//!
//! Run as root: `cargo bench --features grpc --bench grpc`.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use async_compat::Compat;
use harness::{DaemonUsage, TestDaemon};
use rauha::grpc::ListenAddr;
use rauha::grpc::proto::zone::zone_service_client::ZoneServiceClient;
use rauha::grpc::proto::zone::{CreateZoneRequest, DeleteZoneRequest, GetZoneRequest};
use rauha::rpc;

const SAMPLES: usize = 2000;
/// Create/delete cycles before the first reading that counts.
const WARM_UP: usize = 1000;
/// Cycles between two readings, and how many such rounds are measured.
const CHECKPOINT: usize = 500;
const ROUNDS: usize = 4;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// The daemon's figures after `cycles` cycles, read after a pause so that threads a request
/// left running (the BPF spare loader) have finished.
fn read_daemon(daemon: &TestDaemon, cycles: usize) -> (usize, DaemonUsage) {
    std::thread::sleep(Duration::from_millis(500));
    (cycles, daemon.usage())
}

fn main() {
    let sockets = tempfile::tempdir().expect("temp dir");
    let socket = sockets.path().join("grpc.sock");
    let listen = format!("unix:{}", socket.display());
    let Some(daemon) = TestDaemon::start_with("grpc_bench", &["--grpc-listen", &listen]) else {
        return;
    };
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

    // Warm-up first: until the event history ring is full (two events a cycle) and the
    // store's cache, the allocator's arenas and the BPF spare loader have settled, memory grows
    // by design. Only growth over the measured cycles after that would be a leak.
    let mut readings = vec![read_daemon(&daemon, 0)];
    let mut done = 0;
    let mut cycling = Duration::ZERO;
    for round in std::iter::once(WARM_UP).chain(std::iter::repeat_n(CHECKPOINT, ROUNDS)) {
        let started = Instant::now();
        rt.block_on(async {
            for n in done..done + round {
                let name = format!("cycle-{n}");
                zones.create_zone(create(&name)).await.expect("create");
                zones.delete_zone(DeleteZoneRequest { name, force: false }).await.expect("delete");
            }
        });
        if done > 0 {
            cycling += started.elapsed();
        }
        done += round;
        readings.push(read_daemon(&daemon, done));
    }

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
    let measured = CHECKPOINT * ROUNDS;
    println!(
        "{measured} zone create/delete cycles through gRPC after {WARM_UP} warm-up cycles: {:.1} s \
         ({:.1} ms per cycle).",
        cycling.as_secs_f64(),
        cycling.as_secs_f64() * 1000.0 / measured as f64
    );
    println!();
    println!("| after cycles | daemon RSS | since warm-up | open fds | threads |");
    println!("|---|---|---|---|---|");
    let warm = readings[1].1.rss_kib as i64;
    for (i, (cycles, s)) in readings.iter().enumerate() {
        let label = match i {
            0 => "0 (start)".to_owned(),
            1 => format!("{cycles} (warm-up)"),
            _ => cycles.to_string(),
        };
        let since =
            if i == 0 { "".to_owned() } else { format!("{:+} KiB", s.rss_kib as i64 - warm) };
        println!("| {label} | {} KiB | {since} | {} | {} |", s.rss_kib, s.fds, s.threads);
    }
}
