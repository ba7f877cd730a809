//! Image fixtures: a real `docker-registry` inside a test-made network namespace, and OCI
//! layouts / docker-save tarballs / hostile tar streams built from Debian's static busybox.
//!
//! Every registry listens on 127.0.0.1 inside the [`NetNs`] it was started in, never on the
//! host's loopback; whoever talks to it (skopeo, the daemon, a library pull) must run in that
//! namespace too.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::NetNs;

/// Busybox applets linked in test images.
pub const APPLETS: &[&str] = &["sh", "ls", "cat", "echo", "true", "env"];

/// A loopback port that was free inside `ns` a moment ago (bound there, then released).
pub fn free_port(ns: &NetNs) -> u16 {
    ns.run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a port in the test netns");
        listener.local_addr().expect("local addr").port()
    })
}

/// Whether something accepts TCP connections on 127.0.0.1:`port` in the calling thread's
/// namespace.
pub fn port_open_here(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).is_ok()
}

/// Whether 127.0.0.1:`port` accepts connections in the host's namespace. The probe runs on a
/// fresh thread that first joins the namespace of this process's main thread
/// (`/proc/self/ns/net` is the thread-group leader's), because a thread spawned from a test
/// thread inside a namespace would inherit that namespace.
pub fn port_open_on_host(port: u16) -> bool {
    std::thread::spawn(move || {
        let host = File::open("/proc/self/ns/net").expect("open the main thread's netns");
        rustix::thread::move_into_link_name_space(
            host.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns into the host netns");
        port_open_here(port)
    })
    .join()
    .expect("probe thread")
}

/// A `docker-registry` process serving 127.0.0.1:port inside a test netns from a temp dir;
/// killed by its PID on drop.
pub struct Registry {
    /// `127.0.0.1:port`, reachable only inside [`Registry::ns`].
    pub addr: String,
    pub port: u16,
    /// The namespace it listens in.
    pub ns: Arc<NetNs>,
    /// Temp dir holding config, storage and htpasswd.
    pub dir: tempfile::TempDir,
    child: Child,
    /// Basic-auth credentials, when started with them.
    pub creds: Option<(String, String)>,
}

impl Registry {
    /// An anonymous registry in `ns`.
    pub fn start(ns: &Arc<NetNs>) -> Self {
        Self::start_inner(ns, None)
    }

    /// A registry in `ns` requiring HTTP basic auth (htpasswd with a bcrypt hash).
    pub fn start_with_auth(ns: &Arc<NetNs>, user: &str, pass: &str) -> Self {
        Self::start_inner(ns, Some((user.to_string(), pass.to_string())))
    }

    fn start_inner(ns: &Arc<NetNs>, creds: Option<(String, String)>) -> Self {
        // Retry on the rare port race between free_port() and the registry binding it.
        for _ in 0..5 {
            let dir = tempfile::Builder::new().prefix("rauha-registry-").tempdir().expect("tmp");
            let data = dir.path().join("data");
            std::fs::create_dir(&data).expect("registry data dir");
            let port = free_port(ns);
            let addr = format!("127.0.0.1:{port}");
            // Our own config: the packaged default listens on all interfaces and wants auth.
            let mut cfg = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n",
                data.display()
            );
            if let Some((u, p)) = &creds {
                let hash = bcrypt::hash_with_result(p, 4)
                    .expect("bcrypt")
                    .format_for_version(bcrypt::Version::TwoY);
                let ht = dir.path().join("htpasswd");
                std::fs::write(&ht, format!("{u}:{hash}\n")).expect("write htpasswd");
                cfg.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    ht.display()
                ));
            }
            let cfg_path = dir.path().join("config.yml");
            std::fs::write(&cfg_path, cfg).expect("write registry config");
            let log = File::create(dir.path().join("registry.log")).expect("registry log");
            let child = ns
                .command("docker-registry")
                .arg("serve")
                .arg(&cfg_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log)
                .spawn()
                .expect("docker-registry (Debian package docker-registry) must be installed");
            let mut reg =
                Registry { addr, port, ns: Arc::clone(ns), dir, child, creds: creds.clone() };
            if reg.wait_ready() {
                // The point of the namespace: nothing of this registry is on the host.
                assert!(
                    !port_open_on_host(port),
                    "registry port {port} is reachable on the host's loopback"
                );
                return reg;
            }
            // Drop kills it; try another port.
        }
        panic!("docker-registry did not start");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let addr = self.addr.clone();
            let ready = self.ns.run(move || {
                let Ok(mut s) = TcpStream::connect(&addr) else { return false };
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n");
                if s.write_all(req.as_bytes()).is_err() {
                    return false;
                }
                let mut buf = [0u8; 32];
                let Ok(n) = s.read(&mut buf) else { return false };
                let head = String::from_utf8_lossy(&buf[..n]);
                head.contains(" 200") || head.contains(" 401")
            });
            if ready {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Registry storage root (`docker/registry/v2/...` lives below it).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Path of a blob's data file in the registry's storage.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Push image `layout_ref` of OCI layout `layout` as `repo_tag` (e.g.
    /// `library/busybox:latest`), with skopeo running inside the registry's namespace.
    pub fn push(&self, layout: &Path, layout_ref: &str, repo_tag: &str) {
        let mut cmd = self.ns.command("skopeo");
        cmd.args(["--insecure-policy", "copy", "--quiet", "--all", "--dest-tls-verify=false"]);
        if let Some((u, p)) = &self.creds {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        cmd.arg(format!("oci:{}:{layout_ref}", layout.display()))
            .arg(format!("docker://{}/{repo_tag}", self.addr));
        let out = cmd.output().expect("skopeo must be installed");
        assert!(
            out.status.success(),
            "skopeo push failed: {}\nregistry log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Killed by its own PID, never by name.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sha256:<hex>`.
pub fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Builds tar archives entry by entry, with raw names so hostile paths are possible.
pub struct TarBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl Default for TarBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TarBuilder {
    /// An empty archive.
    pub fn new() -> Self {
        Self { b: tar::Builder::new(Vec::new()) }
    }

    fn header(name: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        // Raw bytes: tar's set_path refuses "..", which hostile tests need.
        let raw = name.as_bytes();
        assert!(raw.len() < 100, "test names must fit the old header");
        let n = &mut h.as_old_mut().name;
        n.fill(0);
        n[..raw.len()].copy_from_slice(raw);
        h
    }

    fn finish_append(&mut self, mut h: tar::Header, data: &[u8]) {
        h.set_cksum();
        self.b.append(&h, data).unwrap();
    }

    /// A directory.
    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let h = Self::header(name, tar::EntryType::Directory, mode, 0);
        self.finish_append(h, &[]);
        self
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        let h = Self::header(name, tar::EntryType::Regular, mode, data.len() as u64);
        self.finish_append(h, data);
        self
    }

    /// A regular file owned by uid/gid.
    pub fn file_owned(
        &mut self,
        name: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        data: &[u8],
    ) -> &mut Self {
        let mut h = Self::header(name, tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.finish_append(h, data);
        self
    }

    /// A regular file carrying PAX xattrs.
    pub fn file_xattrs(&mut self, name: &str, data: &[u8], xattrs: &[(&str, &[u8])]) -> &mut Self {
        let exts: Vec<(String, &[u8])> =
            xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v)).collect();
        self.b.append_pax_extensions(exts.iter().map(|(k, v)| (k.as_str(), *v))).unwrap();
        self.file(name, 0o644, data)
    }

    fn link(&mut self, name: &str, target: &str, kind: tar::EntryType) -> &mut Self {
        let mut h = Self::header(name, kind, 0o777, 0);
        let raw = target.as_bytes();
        let l = &mut h.as_old_mut().linkname;
        l.fill(0);
        l[..raw.len()].copy_from_slice(raw);
        self.finish_append(h, &[]);
        self
    }

    /// A symlink.
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(name, target, tar::EntryType::Symlink)
    }

    /// A hard link.
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(name, target, tar::EntryType::Link)
    }

    /// A character or block device node.
    pub fn device(&mut self, name: &str, block: bool, major: u32, minor: u32) -> &mut Self {
        let kind = if block { tar::EntryType::Block } else { tar::EntryType::Char };
        let mut h = Self::header(name, kind, 0o660, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.finish_append(h, &[]);
        self
    }

    /// The finished archive.
    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

/// The busybox rootfs layer: bin/busybox plus applet symlinks, and `extra` files.
pub fn busybox_tar(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let bb = std::fs::read("/bin/busybox").expect("busybox-static must be installed");
    let mut t = TarBuilder::new();
    t.dir("bin/", 0o755).file("bin/busybox", 0o755, &bb);
    for a in APPLETS {
        t.symlink(&format!("bin/{a}"), "busybox");
    }
    t.dir("etc/", 0o755);
    for (name, data) in extra {
        t.file(name, 0o644, data);
    }
    t.finish()
}

/// A layer as stored in a layout: blob bytes, media type, diff id.
pub struct Layer {
    /// Compressed (or plain) blob.
    pub blob: Vec<u8>,
    /// OCI media type.
    pub media_type: &'static str,
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
}

impl Layer {
    /// gzip-compressed layer.
    pub fn gzip(tar: &[u8]) -> Self {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(tar).unwrap();
        Layer {
            blob: e.finish().unwrap(),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
            diff_id: digest(tar),
        }
    }

    /// zstd-compressed layer.
    pub fn zstd(tar: &[u8]) -> Self {
        Layer {
            blob: zstd::encode_all(tar, 3).unwrap(),
            media_type: "application/vnd.oci.image.layer.v1.tar+zstd",
            diff_id: digest(tar),
        }
    }

    /// Uncompressed layer.
    pub fn plain(tar: &[u8]) -> Self {
        Layer {
            blob: tar.to_vec(),
            media_type: "application/vnd.oci.image.layer.v1.tar",
            diff_id: digest(tar),
        }
    }
}

/// An OCI image layout directory written by our own code.
pub struct OciLayout {
    /// Layout root.
    pub dir: PathBuf,
    entries: Vec<Value>,
}

impl OciLayout {
    /// Creates `dir` with `oci-layout` and an empty blob dir.
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Self { dir: dir.to_path_buf(), entries: Vec::new() }
    }

    /// Writes a blob; returns its descriptor (without media type).
    pub fn blob(&self, bytes: &[u8]) -> (String, u64) {
        let d = digest(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
        (d, bytes.len() as u64)
    }

    /// Writes config + manifest for `layers`; returns the manifest descriptor JSON.
    pub fn image(&self, layers: &[Layer], arch: &str, cmd: &[&str]) -> Value {
        let config = json!({
            "created": "2024-01-02T03:04:05Z",
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        });
        let cb = serde_json::to_vec(&config).unwrap();
        let (cd, cs) = self.blob(&cb);
        let mut ls = Vec::new();
        for l in layers {
            let (d, s) = self.blob(&l.blob);
            ls.push(json!({"mediaType": l.media_type, "digest": d, "size": s}));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": ls,
        });
        let mb = serde_json::to_vec(&manifest).unwrap();
        let (md, ms) = self.blob(&mb);
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": ms,
            "platform": {"architecture": arch, "os": "linux"},
        })
    }

    /// Adds `desc` to index.json under ref name `name` (plus a containerd image name).
    pub fn add(&mut self, mut desc: Value, name: &str, full_name: Option<&str>) -> &mut Self {
        let mut ann = json!({"org.opencontainers.image.ref.name": name});
        if let Some(f) = full_name {
            ann["io.containerd.image.name"] = json!(f);
        }
        desc["annotations"] = ann;
        self.entries.push(desc);
        self.write_index();
        self
    }

    /// Wraps `manifests` in a nested image index; returns its descriptor.
    pub fn index(&self, manifests: Vec<Value>) -> Value {
        let idx = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        let b = serde_json::to_vec(&idx).unwrap();
        let (d, s) = self.blob(&b);
        json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": s})
    }

    fn write_index(&self) {
        let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": self.entries});
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    }
}

/// Tars directory `dir` (contents at the archive root) into `out`.
pub fn tar_dir(dir: &Path, out: &Path) {
    let f = std::fs::File::create(out).unwrap();
    let mut b = tar::Builder::new(f);
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap().sync_all().unwrap();
}

/// A `docker save`-style tarball (manifest.json, <id>.json, <id>/layer.tar) of plain layers.
pub fn docker_save_tar(out: &Path, layer_tars: &[Vec<u8>], repo_tag: &str) {
    let diff_ids: Vec<String> = layer_tars.iter().map(|t| digest(t)).collect();
    let config = json!({
        "created": "2024-01-02T03:04:05Z", "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let cb = serde_json::to_vec(&config).unwrap();
    let cname = format!("{}.json", &digest(&cb)[7..]);
    let mut t = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        t.append_data(&mut h, name, data).unwrap();
    };
    let mut layer_names = Vec::new();
    for (i, lt) in layer_tars.iter().enumerate() {
        let n = format!("{}/layer.tar", &diff_ids[i][7..]);
        add(&n, lt);
        layer_names.push(n);
    }
    add(&cname, &cb);
    let manifest = json!([{"Config": cname, "RepoTags": [repo_tag], "Layers": layer_names}]);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    std::fs::write(out, t.into_inner().unwrap()).unwrap();
}

/// The multi-layer test image: busybox base, then whiteouts and an opaque directory.
pub fn multi_layer_tars() -> Vec<Vec<u8>> {
    let base = {
        let mut t = TarBuilder::new();
        let bb = std::fs::read("/bin/busybox").unwrap();
        t.dir("bin/", 0o755).file("bin/busybox", 0o755, &bb);
        for a in APPLETS {
            t.symlink(&format!("bin/{a}"), "busybox");
        }
        t.dir("etc/", 0o755)
            .file("etc/keep", 0o644, b"keep\n")
            .file("etc/gone", 0o644, b"gone\n")
            .dir("data/", 0o755)
            .file("data/old1", 0o644, b"1")
            .file("data/old2", 0o600, b"2")
            .dir("data/sub/", 0o700)
            .file("data/sub/deep", 0o644, b"deep")
            .dir("rmdir/", 0o755)
            .file("rmdir/x", 0o644, b"x")
            .file_owned("owned", 0o640, 1000, 1000, b"owned")
            .file("suid", 0o4755, b"#!/bin/sh\n")
            .hardlink("etc/keep-link", "etc/keep");
        t.finish()
    };
    let middle = {
        let mut t = TarBuilder::new();
        t.file("etc/.wh.gone", 0o644, b"")
            .file("data/.wh..wh..opq", 0o644, b"")
            .file("data/new", 0o644, b"new")
            .file(".wh.rmdir", 0o644, b"")
            .file("etc/added", 0o644, b"added\n");
        t.finish()
    };
    let top = {
        let mut t = TarBuilder::new();
        t.file("etc/keep", 0o644, b"changed\n").symlink("etc/link", "keep").file(
            "etc/.wh.added",
            0o644,
            b"",
        );
        t.finish()
    };
    vec![base, middle, top]
}
