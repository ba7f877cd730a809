//! Integration tests of the image library against a real docker-registry.
//!
//! Network rule: every registry runs inside a network namespace this test binary made, on that
//! namespace's 127.0.0.1, and so does every pull. There is ONE namespace for the whole binary,
//! and every `async_compat::Compat` use happens on a thread inside it. Why one: async-compat's
//! fallback tokio runtime lives on a thread created lazily by the first `Compat` poll, and that
//! thread inherits the creating thread's namespaces; hyper may spawn connection tasks (and
//! background connects) onto it. With a namespace per test, the runtime thread would sit in
//! whichever namespace came first and later tests' sockets could land there (or on the host).
//! With one shared namespace created before any `Compat` use, the runtime thread and every
//! pulling thread are in the same place; [`block_on`] asserts both after each pull, and
//! `pulls_never_touch_the_host_loopback` checks a host-side listener sees no connection.

mod harness;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Cursor;
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use harness::registry::*;
use harness::{NetNs, privileged, thread_netns_inode};
use rauha::image::unpack::{Compression, unpack_stream};
use rauha::image::{
    ErrorKind, ImageError, ImageRecord, ImageService, PullProgress, RegistryConfig, RegistryEntry,
};

/// The namespace every registry and every pull of this binary lives in (see the module doc).
static SHARED_NS: OnceLock<Arc<NetNs>> = OnceLock::new();

fn shared_ns() -> &'static Arc<NetNs> {
    SHARED_NS.get_or_init(NetNs::new)
}

/// Run a registry test's body on a thread inside the shared namespace (skipped without root,
/// a failure under CI=true: making a namespace needs CAP_SYS_ADMIN).
fn in_ns(test: &str, body: impl FnOnce(&Arc<NetNs>) + Send) {
    if !privileged(test) {
        return;
    }
    let ns = shared_ns();
    ns.run(|| body(ns));
}

/// The network-namespace inodes of this process's async-compat runtime threads.
fn compat_runtime_namespaces() -> Vec<u64> {
    let mut inodes = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        // The kernel keeps 15 bytes of "async-compat/tokio-1".
        if comm.starts_with("async-compat") {
            inodes.push(std::fs::metadata(task.join("ns/net")).unwrap().ino());
        }
    }
    inodes
}

fn block_on<T>(f: impl Future<Output = T>) -> T {
    // The daemon drives pulls from smol through async-compat; so do the tests, but only from
    // inside the shared namespace (see the module doc).
    let ns = shared_ns().inode();
    assert_eq!(thread_netns_inode(), ns, "a pull must run inside the test namespace");
    let out = smol::block_on(async_compat::Compat::new(f));
    let runtimes = compat_runtime_namespaces();
    assert!(
        !runtimes.is_empty() && runtimes.iter().all(|&inode| inode == ns),
        "async-compat's tokio thread is outside the test namespace: {runtimes:?} vs {ns}"
    );
    out
}

/// A TCP listener on the HOST's 127.0.0.1 (bound from a thread that joined the main thread's
/// namespace): a control that must never see a connection from a pull.
fn host_listener() -> TcpListener {
    std::thread::spawn(|| {
        let host = std::fs::File::open("/proc/self/ns/net").unwrap();
        rustix::thread::move_into_link_name_space(
            host.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        listener
    })
    .join()
    .unwrap()
}

#[test]
fn pulls_never_touch_the_host_loopback() {
    in_ns("pulls_never_touch_the_host_loopback", |ns| {
        let reg = Registry::start(ns);
        let tmp = tempfile::tempdir().unwrap();
        let (layout, _) = busybox_layout(&tmp.path().join("bb"));
        reg.push(&layout.dir, "latest", "library/busybox:latest");
        // The registry exists only in the namespace.
        assert!(port_open_here(reg.port));
        assert!(!port_open_on_host(reg.port));

        // A pull reaches it (so it ran in the namespace: nothing else serves that port)...
        let e = env(insecure(&[&reg.addr]));
        pull(&e.svc, &format!("{}/library/busybox", reg.addr), None).0.unwrap();

        // ...and a pull to a port that is open only on the host is refused in the namespace,
        // while the host listener sees no connection attempt at all.
        let host = host_listener();
        let port = host.local_addr().unwrap().port();
        assert!(!port_open_here(port), "port {port} is open in the test namespace too");
        let addr = format!("127.0.0.1:{port}");
        let e = env(insecure(&[&addr]));
        let (err, _) = pull(&e.svc, &format!("{addr}/library/busybox"), None);
        assert_eq!(err.unwrap_err().kind(), ErrorKind::Unavailable);
        let accepted = host.accept();
        assert!(
            matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a pull connected to the host's loopback: {accepted:?}"
        );
    });
}

struct Env {
    _tmp: tempfile::TempDir,
    svc: ImageService,
}

fn env(cfg: RegistryConfig) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(tmp.path().join("meta.redb")).unwrap());
    let svc = ImageService::open(&tmp.path().join("images"), db, cfg).unwrap();
    Env { _tmp: tmp, svc }
}

fn insecure(hosts: &[&str]) -> RegistryConfig {
    let mut c = RegistryConfig::default();
    for h in hosts {
        c.set(h, RegistryEntry { insecure: true, ..Default::default() });
    }
    c
}

type Events = Arc<Mutex<Vec<PullProgress>>>;

fn collector() -> (Events, impl Fn(PullProgress) + Send + Sync + 'static) {
    let ev: Events = Arc::default();
    let e2 = ev.clone();
    (ev, move |p| e2.lock().unwrap().push(p))
}

fn downloaded(ev: &Events) -> Vec<String> {
    ev.lock()
        .unwrap()
        .iter()
        .filter(|p| p.status == "download complete")
        .map(|p| p.layer.clone())
        .collect()
}

fn pull(
    svc: &ImageService,
    r: &str,
    platform: Option<&str>,
) -> (Result<ImageRecord, ImageError>, Events) {
    let (ev, f) = collector();
    (block_on(svc.pull(r, platform, f)), ev)
}

/// A layout holding the single-layer busybox image under ref "latest".
fn busybox_layout(dir: &Path) -> (OciLayout, Layer) {
    let mut l = OciLayout::new(dir);
    let layer = Layer::gzip(&busybox_tar(&[]));
    let d = l.image(std::slice::from_ref(&layer), "amd64", &["/bin/sh"]);
    l.add(d, "latest", None);
    (l, layer)
}

fn multi_layout(dir: &Path) -> (OciLayout, Vec<Layer>) {
    let mut l = OciLayout::new(dir);
    let layers: Vec<Layer> = multi_layer_tars().iter().map(|t| Layer::gzip(t)).collect();
    let d = l.image(&layers, "amd64", &["/bin/sh"]);
    l.add(d, "multi", None);
    (l, layers)
}

fn blob_file(svc: &ImageService, digest: &str) -> PathBuf {
    svc.root().join("blobs/sha256").join(&digest[7..])
}

fn blob_count(svc: &ImageService) -> usize {
    std::fs::read_dir(svc.root().join("blobs/sha256")).unwrap().count()
}

fn run_busybox(layer: &Path) -> String {
    let out = Command::new(layer.join("bin/busybox"))
        .args(["echo", "hello from layer"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn pull_busybox_and_alpine_share_content() {
    in_ns("pull_busybox_and_alpine_share_content", |ns| {
        let reg = Registry::start(ns);
        let tmp = tempfile::tempdir().unwrap();
        let (layout, layer) = busybox_layout(&tmp.path().join("bb"));
        reg.push(&layout.dir, "latest", "library/busybox:latest");
        reg.push(&layout.dir, "latest", "library/alpine:latest");
        let e = env(insecure(&[&reg.addr]));

        let r = format!("{}/library/busybox", reg.addr);
        let (rec, ev) = pull(&e.svc, &r, None);
        let rec = rec.unwrap();
        assert_eq!(rec.tags, vec![format!("{}/library/busybox:latest", reg.addr)]);
        assert_eq!(rec.layers, vec![digest(&layer.blob)]);
        assert_eq!(rec.size, layer.blob.len() as u64);
        assert_eq!(rec.platform, "linux/amd64");
        assert_eq!(rec.created_at, "2024-01-02T03:04:05Z");
        let events = ev.lock().unwrap().clone();
        let last = events.last().unwrap();
        assert!(last.done && events.iter().filter(|p| p.done).count() == 1);
        assert!(events.iter().all(|p| !p.status.is_empty()));
        assert_eq!(downloaded(&ev).len(), 1);

        let (dirs, cfg) = e.svc.rootfs_layers(&r).unwrap();
        assert_eq!(dirs.len(), 1);
        assert_eq!(cfg.cmd, vec!["/bin/sh"]);
        assert_eq!(cfg.env, vec!["PATH=/bin"]);
        let bb = dirs[0].join("bin/busybox");
        assert_eq!(std::fs::metadata(&bb).unwrap().mode() & 0o7777, 0o755);
        assert_eq!(std::fs::read_link(dirs[0].join("bin/sh")).unwrap(), Path::new("busybox"));
        assert_eq!(run_busybox(&dirs[0]), "hello from layer\n");

        // alpine has the same layer: nothing is downloaded again, only manifest + config differ
        // (here even those are identical, so the same record gains a tag).
        let blobs_before = blob_count(&e.svc);
        let (rec2, ev2) = pull(&e.svc, &format!("{}/library/alpine:latest", reg.addr), None);
        let rec2 = rec2.unwrap();
        assert!(downloaded(&ev2).is_empty());
        assert_eq!(blob_count(&e.svc), blobs_before);
        assert_eq!(rec2.digest, rec.digest);
        assert_eq!(rec2.tags.len(), 2);

        // inspect by full ref, digest, id prefix, repo@digest
        assert_eq!(e.svc.inspect(&rec.digest).unwrap().digest, rec.digest);
        assert_eq!(e.svc.inspect(&rec.digest[7..19]).unwrap().digest, rec.digest);
        let by_repo_digest = format!("{}/library/busybox@{}", reg.addr, rec.digest);
        assert_eq!(e.svc.inspect(&by_repo_digest).unwrap().digest, rec.digest);
        assert_eq!(e.svc.list().unwrap().len(), 1);
        let nf = e.svc.inspect("nothere").unwrap_err();
        assert_eq!(nf.kind(), ErrorKind::NotFound);
    });
}

#[test]
fn docker_io_served_by_mirror() {
    in_ns("docker_io_served_by_mirror", |ns| {
        let reg = Registry::start(ns);
        let tmp = tempfile::tempdir().unwrap();
        let (layout, _) = busybox_layout(&tmp.path().join("bb"));
        reg.push(&layout.dir, "latest", "library/alpine:latest");
        let cfg = RegistryConfig::from_toml(
        &format!(
            "[registries.\"docker.io\"]\nmirrors = [\"{0}\"]\n[registries.\"{0}\"]\ninsecure = true\n",
            reg.addr
        ),
        Path::new("registries.toml"),
    )
    .unwrap();
        let e = env(cfg);
        let (rec, _) = pull(&e.svc, "alpine", None);
        let rec = rec.unwrap();
        assert_eq!(rec.tags, vec!["docker.io/library/alpine:latest"]);
        assert_eq!(e.svc.inspect("alpine:latest").unwrap().digest, rec.digest);
        assert_eq!(e.svc.inspect("docker.io/library/alpine").unwrap().digest, rec.digest);
        let (dirs, _) = e.svc.rootfs_layers("alpine").unwrap();
        assert_eq!(run_busybox(&dirs[0]), "hello from layer\n");
    });
}

/// Files of a tree: path → (kind, mode, uid, gid, content digest / link target / rdev).
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ft = m.file_type();
            let what = if ft.is_dir() {
                walk(root, &p, out);
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("link:{}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_file() {
                // No link count: overlayfs reports the lower inode's, which still counts
                // links from files a higher layer replaced.
                format!("file:{}", digest(&std::fs::read(&p).unwrap()))
            } else {
                format!("special:{}", m.rdev())
            };
            let mode = if ft.is_symlink() { 0 } else { m.mode() & 0o7777 };
            out.insert(rel, format!("{what} {mode:o} {}:{}", m.uid(), m.gid()));
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn multi_layer_whiteouts_match_umoci() {
    in_ns("multi_layer_whiteouts_match_umoci", |ns| {
        let reg = Registry::start(ns);
        let tmp = tempfile::tempdir().unwrap();
        let (layout, layers) = multi_layout(&tmp.path().join("multi"));
        reg.push(&layout.dir, "multi", "test/multi:v1");
        let e = env(insecure(&[&reg.addr]));
        let r = format!("{}/test/multi:v1", reg.addr);
        let (rec, _) = pull(&e.svc, &r, None);
        assert_eq!(rec.unwrap().layers.len(), 3);
        let (dirs, _) = e.svc.rootfs_layers(&r).unwrap();
        assert_eq!(dirs.len(), layers.len());

        // Whiteouts and opaque markers in overlayfs form.
        let wh = std::fs::symlink_metadata(dirs[1].join("etc/gone")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        assert!(
            std::fs::symlink_metadata(dirs[1].join("rmdir")).unwrap().file_type().is_char_device()
        );
        assert!(!dirs[1].join("etc/.wh.gone").exists());
        assert!(!dirs[1].join("data/.wh..wh..opq").exists());
        let opq = xattr(&dirs[1].join("data"), "trusted.overlay.opaque");
        assert_eq!(opq.as_deref(), Some(&b"y"[..]));
        let owned = std::fs::metadata(dirs[0].join("owned")).unwrap();
        assert_eq!((owned.uid(), owned.gid(), owned.mode() & 0o7777), (1000, 1000, 0o640));
        assert_eq!(std::fs::metadata(dirs[0].join("suid")).unwrap().mode() & 0o7777, 0o4755);
        assert_eq!(std::fs::metadata(dirs[0].join("etc/keep")).unwrap().nlink(), 2);

        // Merge with overlayfs (uppermost first) and compare with umoci's unpack.
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let lower: Vec<String> = dirs.iter().rev().map(|d| d.display().to_string()).collect();
        let st = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("lowerdir={}", lower.join(":")))
            .arg(&mnt)
            .status()
            .unwrap();
        assert!(st.success(), "overlay mount failed");
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = Command::new("umount").arg(&self.0).status();
            }
        }
        let _u = Unmount(mnt.clone());
        let bundle = tmp.path().join("bundle");
        let out = Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:multi", layout.dir.display()))
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(out.status.success(), "umoci: {}", String::from_utf8_lossy(&out.stderr));
        let ours = tree(&mnt);
        let theirs = tree(&bundle.join("rootfs"));
        assert_eq!(ours, theirs);
        assert!(ours.contains_key("etc/keep") && !ours.contains_key("etc/gone"));
        assert!(ours.contains_key("data/new") && !ours.contains_key("data/old1"));
        assert!(!ours.contains_key("rmdir") && !ours.contains_key("etc/added"));
    });
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(p, name, &mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

#[test]
fn multi_platform_index() {
    in_ns("multi_platform_index", |ns| {
        let reg = Registry::start(ns);
        let tmp = tempfile::tempdir().unwrap();
        let mut l = OciLayout::new(&tmp.path().join("mp"));
        let amd =
            l.image(&[Layer::gzip(&busybox_tar(&[("etc/arch", b"amd64")]))], "amd64", &["sh"]);
        let arm =
            l.image(&[Layer::gzip(&busybox_tar(&[("etc/arch", b"arm64")]))], "arm64", &["sh"]);
        let idx = l.index(vec![amd, arm]);
        let idx_digest = idx["digest"].as_str().unwrap().to_string();
        l.add(idx, "latest", None);
        reg.push(&l.dir, "latest", "library/multiarch:latest");
        let e = env(insecure(&[&reg.addr]));
        let r = format!("{}/library/multiarch", reg.addr);

        let host = rauha::image::Platform::host();
        let (rec, _) = pull(&e.svc, &r, None);
        let rec = rec.unwrap();
        assert_eq!(rec.platform, format!("linux/{}", host.arch));
        assert_eq!(rec.index_digest.as_deref(), Some(idx_digest.as_str()));
        let (dirs, _) = e.svc.rootfs_layers(&r).unwrap();
        assert_eq!(std::fs::read(dirs[0].join("etc/arch")).unwrap(), host.arch.as_bytes());

        let (arm_rec, _) = pull(&e.svc, &r, Some("linux/arm64"));
        let arm_rec = arm_rec.unwrap();
        assert_eq!(arm_rec.platform, "linux/arm64");
        let (dirs, _) = e.svc.rootfs_layers(&arm_rec.digest).unwrap();
        assert_eq!(std::fs::read(dirs[0].join("etc/arch")).unwrap(), b"arm64");

        let (err, _) = pull(&e.svc, &r, Some("linux/s390x"));
        let err = err.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains("linux/s390x"), "{err}");
        let (err, _) = pull(&e.svc, &r, Some("linux"));
        assert_eq!(err.unwrap_err().kind(), ErrorKind::InvalidArgument);
    });
}

#[test]
fn basic_auth_registry() {
    in_ns("basic_auth_registry", |ns| {
        let reg = Registry::start_with_auth(ns, "tester", "s3cret");
        let tmp = tempfile::tempdir().unwrap();
        let (layout, _) = busybox_layout(&tmp.path().join("bb"));
        reg.push(&layout.dir, "latest", "private/bb:1");
        let r = format!("{}/private/bb:1", reg.addr);

        let e = env(insecure(&[&reg.addr]));
        let (err, _) = pull(&e.svc, &r, None);
        let err = err.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
        assert!(err.to_string().contains(&reg.addr), "{err}");

        let with = |user: &str, pass: &str| {
            let mut c = RegistryConfig::default();
            c.set(
                &reg.addr,
                RegistryEntry {
                    insecure: true,
                    username: Some(user.into()),
                    password: Some(pass.into()),
                    ..Default::default()
                },
            );
            c
        };
        let e = env(with("tester", "wrong"));
        let (err, _) = pull(&e.svc, &r, None);
        assert_eq!(err.unwrap_err().kind(), ErrorKind::Unauthorized);

        let e = env(with("tester", "s3cret"));
        let (rec, _) = pull(&e.svc, &r, None);
        assert_eq!(rec.unwrap().tags, vec![r.clone()]);

        // Credentials from a docker config.json ("tester:s3cret").
        let mut c = insecure(&[&reg.addr]);
        let dc = tmp.path().join("config.json");
        std::fs::write(
            &dc,
            format!(r#"{{"auths":{{"{}":{{"auth":"dGVzdGVyOnMzY3JldA=="}}}}}}"#, reg.addr),
        )
        .unwrap();
        c.load_docker_config(&dc).unwrap();
        let e = env(c);
        let (rec, _) = pull(&e.svc, &r, None);
        rec.unwrap();
    });
}

#[test]
fn digest_mismatch_is_refused() {
    in_ns("digest_mismatch_is_refused", |ns| {
        let reg = Registry::start(ns);
        let tmp = tempfile::tempdir().unwrap();
        let (layout, layer) = busybox_layout(&tmp.path().join("bb"));
        reg.push(&layout.dir, "latest", "library/busybox:latest");
        let ld = digest(&layer.blob);
        let data = reg.blob_data(&ld);
        let mut bytes = std::fs::read(&data).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&data, &bytes).unwrap();

        let e = env(insecure(&[&reg.addr]));
        let (err, _) = pull(&e.svc, &format!("{}/library/busybox", reg.addr), None);
        let err = err.unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
        let msg = err.to_string();
        assert!(msg.contains(&ld) && msg.contains(&reg.addr), "{msg}");
        assert!(!blob_file(&e.svc, &ld).exists());
        assert!(e.svc.list().unwrap().is_empty());
    });
}

#[test]
fn unreachable_and_unknown() {
    in_ns("unreachable_and_unknown", |ns| {
        let port = free_port(ns);
        let addr = format!("127.0.0.1:{port}");
        let e = env(insecure(&[&addr]));
        let (err, _) = pull(&e.svc, &format!("{addr}/library/busybox:latest"), None);
        let err = err.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.to_string().contains(&addr), "{err}");

        let reg = Registry::start(ns);
        let e = env(insecure(&[&reg.addr]));
        let (err, _) = pull(&e.svc, &format!("{}/library/nothere:latest", reg.addr), None);
        let err = err.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains(&reg.addr), "{err}");

        // Not listed as insecure: HTTPS is attempted and fails against the plain-HTTP registry.
        let e = env(RegistryConfig::default());
        let (err, _) = pull(&e.svc, &format!("{}/library/busybox:latest", reg.addr), None);
        assert_eq!(err.unwrap_err().kind(), ErrorKind::Unavailable);

        // A mirror that is down: the error names every endpoint tried, mirror first.
        let cfg = RegistryConfig::from_toml(
            &format!("[registries.\"docker.io\"]\nmirrors = [\"{addr}\"]\n"),
            Path::new("registries.toml"),
        )
        .unwrap();
        let (err, _) = pull(&env(cfg).svc, "alpine", None);
        let err = err.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.to_string().contains(&format!("(tried {addr}, docker.io)")), "{err}");

        let (err, _) = pull(&e.svc, "Not/Valid", None);
        assert_eq!(err.unwrap_err().kind(), ErrorKind::InvalidArgument);
    });
}

#[test]
fn resume_fetches_only_missing_blobs() {
    in_ns("resume_fetches_only_missing_blobs", |ns| {
        let reg = Registry::start(ns);
        let tmp = tempfile::tempdir().unwrap();
        let (layout, layers) = multi_layout(&tmp.path().join("multi"));
        reg.push(&layout.dir, "multi", "test/multi:v1");
        let e = env(insecure(&[&reg.addr]));
        let r = format!("{}/test/multi:v1", reg.addr);
        let (rec, ev) = pull(&e.svc, &r, None);
        rec.unwrap();
        assert_eq!(downloaded(&ev).len(), 3);

        // Simulate an interrupted pull: one layer never made it into the store.
        let missing = digest(&layers[1].blob);
        std::fs::remove_file(blob_file(&e.svc, &missing)).unwrap();
        let (rec, ev) = pull(&e.svc, &r, None);
        rec.unwrap();
        assert_eq!(downloaded(&ev), vec![missing[7..19].to_string()]);
        let existing = ev.lock().unwrap().iter().filter(|p| p.status == "already exists").count();
        assert_eq!(existing, 2);
    });
}

#[test]
fn concurrent_pulls_share_one_download() {
    in_ns("concurrent_pulls_share_one_download", |ns| {
        let reg = Registry::start(ns);
        let tmp = tempfile::tempdir().unwrap();
        let (layout, _) = multi_layout(&tmp.path().join("multi"));
        reg.push(&layout.dir, "multi", "test/multi:v1");
        let e = env(insecure(&[&reg.addr]));
        let r = format!("{}/test/multi:v1", reg.addr);
        let (ev1, f1) = collector();
        let (ev2, f2) = collector();
        let (a, b) =
            block_on(futures::future::join(e.svc.pull(&r, None, f1), e.svc.pull(&r, None, f2)));
        assert_eq!(a.unwrap().digest, b.unwrap().digest);
        assert_eq!(downloaded(&ev1).len() + downloaded(&ev2).len(), 3);

        // And from two threads with their own executors.
        let e2 = env(insecure(&[&reg.addr]));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let svc = e2.svc.clone();
                let r = r.clone();
                std::thread::spawn(move || {
                    let (ev, f) = collector();
                    block_on(svc.pull(&r, None, f)).unwrap();
                    downloaded(&ev).len()
                })
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 3);
    });
}

#[test]
fn import_oci_layout_tar_and_docker_save() {
    let tmp = tempfile::tempdir().unwrap();
    let e = env(RegistryConfig::default());

    let mut l = OciLayout::new(&tmp.path().join("layout"));
    let layer = Layer::gzip(&busybox_tar(&[]));
    let d = l.image(std::slice::from_ref(&layer), "amd64", &["/bin/sh"]);
    l.add(d, "v1", Some("docker.io/library/imported:v1"));
    let recs = e.svc.import(&l.dir, None).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].tags, vec!["docker.io/library/imported:v1"]);
    let (dirs, _) = e.svc.rootfs_layers("imported:v1").unwrap();
    assert_eq!(run_busybox(&dirs[0]), "hello from layer\n");

    // The same layout as a tar archive, tagged explicitly.
    let t = tmp.path().join("layout.tar");
    tar_dir(&l.dir, &t);
    let recs = e.svc.import(&t, Some("localhost/fromtar:1")).unwrap();
    assert_eq!(recs[0].digest, e.svc.inspect("imported:v1").unwrap().digest);
    assert!(recs[0].tags.contains(&"localhost/fromtar:1".to_string()));

    // docker save with an uncompressed and a zstd... (docker save layers are plain tars).
    let e2 = env(RegistryConfig::default());
    let ds = tmp.path().join("save.tar");
    docker_save_tar(&ds, &multi_layer_tars(), "saved:latest");
    let recs = e2.svc.import(&ds, None).unwrap();
    assert_eq!(recs[0].tags, vec!["docker.io/library/saved:latest"]);
    assert_eq!(recs[0].layers.len(), 3);
    // Only manifest, config and layers stay: the archive's own files are not kept.
    assert_eq!(blob_count(&e2.svc), 5);
    let (dirs, cfg) = e2.svc.rootfs_layers("saved").unwrap();
    assert_eq!(cfg.cmd, vec!["/bin/sh"]);
    assert_eq!(run_busybox(&dirs[0]), "hello from layer\n");

    let junk = tmp.path().join("junk");
    std::fs::write(&junk, b"not a tar at all, definitely").unwrap();
    let err = e2.svc.import(&junk, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let empty = tmp.path().join("emptydir");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(e2.svc.import(&empty, None).unwrap_err().kind(), ErrorKind::InvalidArgument);

    // A tampered blob in a layout is refused.
    let bad = tmp.path().join("bad");
    let (bl, layer) = busybox_layout(&bad);
    let p = bl.dir.join("blobs/sha256").join(&digest(&layer.blob)[7..]);
    let mut b = std::fs::read(&p).unwrap();
    b[100] ^= 1;
    std::fs::write(&p, b).unwrap();
    let err = env(RegistryConfig::default()).svc.import(&bl.dir, Some("x")).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
}

#[test]
fn remove_and_prune() {
    in_ns("remove_and_prune", |ns| {
        let reg = Registry::start(ns);
        let tmp = tempfile::tempdir().unwrap();
        let (layout, _) = busybox_layout(&tmp.path().join("bb"));
        reg.push(&layout.dir, "latest", "library/busybox:latest");
        reg.push(&layout.dir, "latest", "library/alpine:latest");
        let e = env(insecure(&[&reg.addr]));
        let bb = format!("{}/library/busybox", reg.addr);
        let al = format!("{}/library/alpine", reg.addr);
        let rec = pull(&e.svc, &bb, None).0.unwrap();
        pull(&e.svc, &al, None).0.unwrap();
        e.svc.rootfs_layers(&bb).unwrap();

        let err = e.svc.remove(&bb, |_| true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
        assert!(matches!(err, ImageError::InUse { .. }));
        e.svc.remove(&al, |_| false).unwrap();
        assert_eq!(e.svc.inspect(&bb).unwrap().tags.len(), 1);
        assert!(e.svc.inspect(&al).is_err());
        assert_eq!(blob_count(&e.svc), 3);
        e.svc.remove(&bb, |_| false).unwrap();
        assert!(e.svc.list().unwrap().is_empty());
        assert_eq!(blob_count(&e.svc), 0);
        assert_eq!(std::fs::read_dir(e.svc.root().join("layers")).unwrap().count(), 0);

        // An untagged image (pulled by digest) is pruned unless in use.
        let by_digest = format!("{bb}@{}", rec.digest);
        let rec = pull(&e.svc, &by_digest, None).0.unwrap();
        assert!(rec.tags.is_empty());
        e.svc.rootfs_layers(&rec.digest).unwrap();
        let report = e.svc.prune(|_| true).unwrap();
        assert!(report.images_removed.is_empty() && report.blobs_removed == 0);
        let report = e.svc.prune(|_| false).unwrap();
        assert_eq!(report.images_removed, vec![rec.digest.clone()]);
        assert_eq!((report.blobs_removed, report.layers_removed), (3, 1));
        assert_eq!(blob_count(&e.svc), 0);
    });
}

#[test]
fn store_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let (l, _) = busybox_layout(&tmp.path().join("bb"));
    let dbp = tmp.path().join("meta.redb");
    {
        let db = Arc::new(redb::Database::create(&dbp).unwrap());
        let svc =
            ImageService::open(&tmp.path().join("images"), db, RegistryConfig::default()).unwrap();
        svc.import(&l.dir, Some("keep:1")).unwrap();
        // A crash mid-write leaves debris in tmp/; reopening clears it.
        std::fs::write(svc.root().join("tmp/blob-junk"), b"x").unwrap();
    }
    let db = Arc::new(redb::Database::create(&dbp).unwrap());
    let svc =
        ImageService::open(&tmp.path().join("images"), db, RegistryConfig::default()).unwrap();
    assert_eq!(svc.list().unwrap().len(), 1);
    assert_eq!(std::fs::read_dir(svc.root().join("tmp")).unwrap().count(), 0);
    svc.rootfs_layers("keep:1").unwrap();
}

#[test]
fn zstd_plain_and_gzip_layers_unpack_alike() {
    let t = busybox_tar(&[("etc/x", b"x")]);
    let mut trees = Vec::new();
    for (layer, comp) in [
        (Layer::gzip(&t), Compression::Gzip),
        (Layer::zstd(&t), Compression::Zstd),
        (Layer::plain(&t), Compression::None),
    ] {
        let d = tempfile::tempdir().unwrap();
        let stats = unpack_stream(Cursor::new(layer.blob), comp, d.path(), "t").unwrap();
        assert_eq!(stats.diff_id, layer.diff_id);
        trees.push(tree(d.path()));
    }
    assert_eq!(trees[0], trees[1]);
    assert_eq!(trees[1], trees[2]);
    // zstd layer through the registry-facing path too (media type + magic detection).
    let tmp = tempfile::tempdir().unwrap();
    let mut l = OciLayout::new(&tmp.path().join("z"));
    let d = l.image(&[Layer::zstd(&t)], "amd64", &["sh"]);
    l.add(d, "z", Some("localhost/z:1"));
    let e = env(RegistryConfig::default());
    e.svc.import(&l.dir, None).unwrap();
    let (dirs, _) = e.svc.rootfs_layers("localhost/z:1").unwrap();
    assert_eq!(std::fs::read(dirs[0].join("etc/x")).unwrap(), b"x");
}

/// Unpacks a hostile layer next to a canary file and an outside directory; asserts both are
/// untouched whatever the outcome, and returns the outcome.
fn hostile(
    name: &str,
    build: impl FnOnce(&Path) -> Vec<u8>,
    check: impl FnOnce(&Path, &Result<(), ImageError>),
) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    std::fs::write(root.join("canary"), b"canary").unwrap();
    std::fs::create_dir(root.join("outside")).unwrap();
    std::fs::write(root.join("outside/canary2"), b"canary2").unwrap();
    let layer = root.join("layer");
    std::fs::create_dir(&layer).unwrap();
    let tar = build(root);
    let res = unpack_stream(Cursor::new(tar), Compression::None, &layer, name).map(|_| ());
    let c = std::fs::symlink_metadata(root.join("canary")).unwrap();
    assert!(c.file_type().is_file(), "{name}: canary replaced");
    assert_eq!(c.nlink(), 1, "{name}: canary hard-linked");
    assert_eq!(std::fs::read(root.join("canary")).unwrap(), b"canary", "{name}");
    let outside: Vec<_> =
        std::fs::read_dir(root.join("outside")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(outside, vec!["canary2"], "{name}: outside dir changed");
    assert_eq!(std::fs::read(root.join("outside/canary2")).unwrap(), b"canary2");
    let top: Vec<_> = {
        let mut v: Vec<_> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(top, vec!["canary", "layer", "outside"], "{name}: created beside the layer");
    check(&layer, &res);
}

#[test]
fn hostile_layers_stay_inside() {
    let root_ok = privileged("hostile_layers_stay_inside (devices, ownership)");
    hostile(
        "dotdot",
        |_| {
            let mut t = TarBuilder::new();
            t.file("../canary", 0o644, b"pwned")
                .file("../../../../../../../outside/canary2", 0o644, b"pwned")
                .file("a/../../canary", 0o644, b"pwned2");
            t.finish()
        },
        |layer, r| {
            assert!(r.is_ok(), "{r:?}");
            // Clamped at the layer root, as containerd does.
            assert_eq!(std::fs::read(layer.join("canary")).unwrap(), b"pwned2");
            assert_eq!(std::fs::read(layer.join("outside/canary2")).unwrap(), b"pwned");
        },
    );
    hostile(
        "absolute",
        |root| {
            let mut t = TarBuilder::new();
            t.file(&format!("{}/canary", root.display()), 0o644, b"pwned");
            t.finish()
        },
        |layer, r| {
            assert!(r.is_ok(), "{r:?}");
            let root = layer.parent().unwrap();
            let inner = layer.join(root.strip_prefix("/").unwrap()).join("canary");
            assert_eq!(std::fs::read(inner).unwrap(), b"pwned");
        },
    );
    hostile(
        "symlink write-through (absolute)",
        |root| {
            let mut t = TarBuilder::new();
            t.symlink("esc", &format!("{}/outside", root.display()))
                .file("esc/canary2", 0o644, b"pwned")
                .file("esc/new", 0o644, b"pwned");
            t.finish()
        },
        |_, _| {},
    );
    hostile(
        "symlink write-through (relative)",
        |_| {
            let mut t = TarBuilder::new();
            t.symlink("up", "../../../../../..").file("up/canary", 0o644, b"pwned");
            t.finish()
        },
        |layer, r| {
            assert!(r.is_ok(), "{r:?}");
            assert_eq!(std::fs::read(layer.join("canary")).unwrap(), b"pwned");
        },
    );
    hostile(
        "dangling relative symlink as parent",
        |_| {
            let mut t = TarBuilder::new();
            t.symlink("d/x", "../../outside").file("d/x/canary2", 0o644, b"pwned");
            t.finish()
        },
        // It resolves to <layer>/outside, which does not exist: refused, nothing created.
        |layer, r| {
            assert!(r.is_err());
            assert!(!layer.join("outside").exists());
        },
    );
    hostile(
        "symlink replaced by file",
        |root| {
            let mut t = TarBuilder::new();
            t.symlink("c", &format!("{}/canary", root.display())).file("c", 0o644, b"pwned");
            t.finish()
        },
        |layer, r| {
            assert!(r.is_ok(), "{r:?}");
            assert!(std::fs::symlink_metadata(layer.join("c")).unwrap().is_file());
        },
    );
    hostile(
        "symlink chain to a directory outside",
        |root| {
            let mut t = TarBuilder::new();
            t.symlink("a", "b")
                .symlink("b", "c")
                .symlink("c", &root.display().to_string())
                .dir("a/outside", 0o755)
                .file("a/outside/canary2", 0o644, b"pwned")
                .file("a/canary", 0o600, b"pwned");
            t.finish()
        },
        |_, _| {},
    );
    hostile(
        "hard link to outside (relative)",
        |_| {
            let mut t = TarBuilder::new();
            t.hardlink("hl", "../canary");
            t.finish()
        },
        |_, r| assert!(r.is_err()),
    );
    hostile(
        "hard link to outside (absolute)",
        |root| {
            let mut t = TarBuilder::new();
            t.hardlink("hl", &format!("{}/canary", root.display()));
            t.finish()
        },
        |_, r| assert!(r.is_err()),
    );
    hostile(
        "hard link through symlink",
        |root| {
            let mut t = TarBuilder::new();
            t.symlink("s", &root.display().to_string()).hardlink("hl", "s/canary");
            t.finish()
        },
        |_, r| assert!(r.is_err()),
    );
    hostile(
        "hard link to symlink, then write",
        |root| {
            let mut t = TarBuilder::new();
            t.symlink("s", &format!("{}/canary", root.display()))
                .hardlink("hl", "s")
                .file("hl", 0o644, b"pwned");
            t.finish()
        },
        |_, _| {},
    );
    hostile(
        "whiteout traversal .wh...",
        |_| {
            let mut t = TarBuilder::new();
            t.file("sub/.wh...", 0o644, b"");
            t.finish()
        },
        |_, r| assert!(matches!(r, Err(ImageError::UnsafeEntry { .. })), "{r:?}"),
    );
    hostile(
        "whiteout ../.wh.canary",
        |_| {
            let mut t = TarBuilder::new();
            t.file("../.wh.canary", 0o644, b"").file("../../.wh.outside", 0o644, b"");
            t.finish()
        },
        |layer, r| {
            if root_is() {
                assert!(r.is_ok(), "{r:?}");
                let m = std::fs::symlink_metadata(layer.join("canary")).unwrap();
                assert!(m.file_type().is_char_device());
            }
        },
    );
    hostile(
        "whiteout through symlink",
        |root| {
            let mut t = TarBuilder::new();
            t.symlink("sl", &root.display().to_string())
                .file("sl/.wh.canary", 0o644, b"")
                .symlink("so", &format!("{}/outside", root.display()))
                .file("so/.wh.canary2", 0o644, b"")
                .file("so/.wh..wh..opq", 0o644, b"");
            t.finish()
        },
        |_, _| {},
    );
    hostile(
        "overlay xattr forgery",
        |_| {
            let mut t = TarBuilder::new();
            t.dir("d", 0o755).file_xattrs(
                "f",
                b"x",
                &[("trusted.overlay.redirect", b"/etc"), ("user.ok", b"1")],
            );
            t.finish()
        },
        |layer, r| {
            assert!(r.is_ok(), "{r:?}");
            assert_eq!(xattr(&layer.join("f"), "trusted.overlay.redirect"), None);
        },
    );
    if !root_ok {
        return;
    }
    hostile(
        "device nodes",
        |_| {
            let mut t = TarBuilder::new();
            t.device("dev/sda", true, 8, 0).device("dev/mem", false, 1, 1).device(
                "../canary",
                false,
                1,
                3,
            );
            t.finish()
        },
        |layer, r| {
            assert!(r.is_ok(), "{r:?}");
            let m = std::fs::symlink_metadata(layer.join("dev/sda")).unwrap();
            assert!(m.file_type().is_block_device());
            assert_eq!(m.rdev(), rustix::fs::makedev(8, 0));
            assert!(
                std::fs::symlink_metadata(layer.join("canary"))
                    .unwrap()
                    .file_type()
                    .is_char_device()
            );
        },
    );
    hostile(
        "setuid and ownership",
        |_| {
            let mut t = TarBuilder::new();
            t.file_owned("suid", 0o4755, 0, 0, b"#!")
                .file_owned("sgid", 0o2755, 1234, 5678, b"#!")
                .file_owned("../canary", 0o4777, 0, 0, b"pwned");
            t.finish()
        },
        |layer, r| {
            assert!(r.is_ok(), "{r:?}");
            let m = std::fs::metadata(layer.join("suid")).unwrap();
            assert_eq!(m.mode() & 0o7777, 0o4755);
            let m = std::fs::metadata(layer.join("sgid")).unwrap();
            assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o2755, 1234, 5678));
        },
    );
}

fn root_is() -> bool {
    rustix::process::geteuid().is_root()
}
