//! Image benchmarks (issue 3), side by side in one run:
//! - pull time from a real docker-registry (busybox, the multi-layer whiteout image, one large
//!   layer): rauha's `ImageService::pull` vs `skopeo copy` to an OCI layout;
//! - unpack throughput of one gzip layer: rauha's unpacker vs `tar -xzf`, on disk and on tmpfs.
//!
//! The registry runs inside a network namespace this bench makes, on its 127.0.0.1; skopeo and
//! the pulls run there too (the pulls on a thread that joined it before the first
//! async-compat use, so async-compat's tokio thread is created inside it as well).
//! Prints a Markdown table and writes it to `benches/results/images.md`.
//!
//! Run as root: `cargo bench --bench images`. Env: `IMAGE_BENCH_RUNS` (default 3, the median
//! is reported), `IMAGE_BENCH_SRC` (directory tarred into the large layer, default
//! /usr/lib/python3).

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::registry::{Layer, OciLayout, Registry, busybox_tar, multi_layer_tars};
use harness::{NetNs, privileged, thread_netns_inode};
use rauha::image::{ImageService, RegistryConfig, RegistryEntry};

const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn run(command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn timed(command: &mut Command) -> Duration {
    let start = Instant::now();
    run(command);
    start.elapsed()
}

fn fresh_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("bench dir");
}

/// A layout holding one image (tag `latest`) of `layers`.
fn layout(dir: &Path, layers: &[Layer]) {
    let mut l = OciLayout::new(dir);
    let d = l.image(layers, "amd64", &["sh"]);
    l.add(d, "latest", None);
}

/// The gzip blob at `path` as a layer (diff id = digest of the decompressed stream).
fn layer_from_blob(path: &Path) -> Layer {
    let blob = std::fs::read(path).expect("read layer blob");
    let mut decoder = flate2::read::MultiGzDecoder::new(&blob[..]);
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = decoder.read(&mut buf).expect("gunzip layer");
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut hasher, &buf[..n]);
    }
    let diff_id = format!("sha256:{}", hex::encode(sha2::Digest::finalize(hasher)));
    Layer { blob, media_type: GZIP_LAYER, diff_id }
}

/// One pull of `reference` into a fresh store; runs on a thread inside `ns`.
fn rauha_pull(ns: &NetNs, reference: &str, insecure_host: &str, root: &Path) -> Duration {
    fresh_dir(root);
    let mut config = RegistryConfig::default();
    config.set(insecure_host, RegistryEntry { insecure: true, ..Default::default() });
    let db = Arc::new(redb::Database::create(root.join("meta.redb")).expect("bench db"));
    let service = ImageService::open(&root.join("images"), db, config).expect("image service");
    ns.run(|| {
        assert_eq!(thread_netns_inode(), ns.inode());
        let start = Instant::now();
        smol::block_on(async_compat::Compat::new(service.pull(reference, None, |_| {})))
            .unwrap_or_else(|e| panic!("pull {reference}: {e}"));
        start.elapsed()
    })
}

fn du_kib(path: &Path) -> u64 {
    let out = Command::new("du").arg("-sk").arg(path).output().expect("du");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn main() {
    if !privileged("image_bench") {
        return;
    }
    let runs: usize =
        std::env::var("IMAGE_BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(3).max(1);
    let src = std::env::var("IMAGE_BENCH_SRC").unwrap_or_else(|_| "/usr/lib/python3".into());
    // Made before any async-compat use (see the module doc).
    let ns = NetNs::new();
    let work = tempfile::Builder::new().prefix("rauha-image-bench-").tempdir_in("/var/tmp");
    let work = work.expect("work dir");
    let w = work.path();
    let shm = tempfile::Builder::new().prefix("rauha-image-bench-").tempdir_in("/dev/shm");
    let shm = shm.expect("tmpfs dir");
    let mut rows: Vec<[String; 4]> = Vec::new();

    // ---- unpack -------------------------------------------------------------------------
    eprintln!("building a gzip layer from {src} ...");
    let blob = w.join("layer.tar.gz");
    run(Command::new("tar").arg("-C").arg(&src).arg("-czf").arg(&blob).arg("."));
    let gz_mib = std::fs::metadata(&blob).expect("layer").len() as f64 / 1048576.0;
    for (kind, dir) in [("disk", w.join("x")), ("tmpfs", shm.path().join("x"))] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let mut stats = None;
        for _ in 0..runs {
            fresh_dir(&dir);
            run(&mut Command::new("sync"));
            theirs.push(timed(Command::new("tar").arg("-C").arg(&dir).arg("-xzf").arg(&blob)));
            fresh_dir(&dir);
            run(&mut Command::new("sync"));
            let start = Instant::now();
            let s = rauha::image::unpack::unpack_file(&blob, GZIP_LAYER, &dir, "bench")
                .expect("unpack layer");
            ours.push(start.elapsed());
            stats = Some(s);
        }
        let _ = std::fs::remove_dir_all(&dir);
        let stats = stats.expect("at least one run");
        let (ours, theirs) = (median(ours), median(theirs));
        let mib = stats.bytes as f64 / 1048576.0;
        let rate = |d: Duration| format!("{:.0} MiB/s", mib / d.as_secs_f64());
        rows.push([
            format!(
                "unpack gzip layer of {src} to {kind} ({gz_mib:.0} MiB gz, {mib:.0} MiB tar, {} \
                 entries)",
                stats.entries
            ),
            format!("{} ({})", secs(ours), rate(ours)),
            format!("tar -xzf: {} ({})", secs(theirs), rate(theirs)),
            format!("{:.2}", ours.as_secs_f64() / theirs.as_secs_f64()),
        ]);
    }

    // ---- pull ---------------------------------------------------------------------------
    let registry = Registry::start(&ns);
    let images = [
        ("busybox", vec![Layer::gzip(&busybox_tar(&[]))]),
        ("multi", multi_layer_tars().iter().map(|t| Layer::gzip(t)).collect()),
        ("large", vec![layer_from_blob(&blob)]),
    ];
    for (name, layers) in &images {
        let dir = w.join(format!("layout-{name}"));
        layout(&dir, layers);
        registry.push(&dir, "latest", &format!("bench/{name}:latest"));
        let reference = format!("{}/bench/{name}:latest", registry.addr);
        let store = w.join("store");
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            ours.push(rauha_pull(&ns, &reference, &registry.addr, &store));
            let target = w.join("skopeo");
            let _ = std::fs::remove_dir_all(&target);
            theirs.push(timed(
                ns.command("skopeo")
                    .args(["--insecure-policy", "copy", "--quiet", "--src-tls-verify=false"])
                    .arg(format!("docker://{reference}"))
                    .arg(format!("oci:{}:latest", target.display())),
            ));
        }
        let blobs = du_kib(&store.join("images/blobs"));
        let (ours, theirs) = (median(ours), median(theirs));
        rows.push([
            format!("pull {name} ({} layer(s), {blobs} KiB of blobs)", layers.len()),
            secs(ours),
            format!("skopeo copy → OCI layout: {}", secs(theirs)),
            format!("{:.2}", ours.as_secs_f64() / theirs.as_secs_f64()),
        ]);
    }
    drop(registry);

    let mut table = format!(
        "Median of {runs} run(s) on {} cores; command: `cargo bench --bench images` \
         (IMAGE_BENCH_SRC={src}).\n\n\
         | benchmark | rauha | reference | rauha / reference |\n|---|---|---|---|\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    for row in &rows {
        table.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    print!("{table}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results/images.md");
    let recorded = format!(
        "# `images` benchmark\n\nRecorded {} on kernel {}.\n\n{table}",
        jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%MZ"),
        rustix::system::uname().release().to_string_lossy()
    );
    std::fs::write(&out, recorded).expect("write benches/results/images.md");
    eprintln!("recorded in {}", out.display());
}
