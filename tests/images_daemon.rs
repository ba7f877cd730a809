//! Images through the real daemon and CLI: pull from a docker-registry running in the daemon's
//! own test-made network namespace (never the host's loopback), a registries.toml that makes
//! the local registry a docker.io mirror, ls/inspect/rm/prune, `rauha run` pulling a missing
//! image, and the errors a user sees.

mod harness;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use harness::registry::{Registry, free_port, port_open_on_host};
use harness::{NetNs, TestDaemon, privileged};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text}"))
}

/// A daemon and a registry in one namespace, the registry holding the busybox image of
/// `packaging/busybox-image.sh` as `library/busybox:latest` and `library/alpine:latest`, and a
/// registries.toml making it docker.io's mirror (plain HTTP, as it is listed insecure).
struct Setup {
    d: TestDaemon,
    reg: Registry,
    /// 127.0.0.1:PORT where nothing listens in the namespace.
    closed: String,
}

fn setup(test: &str) -> Option<Setup> {
    if !privileged(test) {
        return None;
    }
    let ns = NetNs::new();
    let reg = Registry::start(&ns);
    let layout = reg.dir.path().join("busybox-layout");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/busybox-image.sh");
    let out = Command::new("bash").arg(script).arg(&layout).output().expect("busybox-image.sh");
    assert!(out.status.success(), "busybox-image.sh: {}", String::from_utf8_lossy(&out.stderr));
    reg.push(&layout, "latest", "library/busybox:latest");
    reg.push(&layout, "latest", "library/alpine:latest");
    let closed = format!("127.0.0.1:{}", free_port(&ns));
    let config = reg.dir.path().join("registries.toml");
    std::fs::write(
        &config,
        format!(
            "[registries.\"docker.io\"]\nmirrors = [\"{0}\"]\n\n\
             [registries.\"{0}\"]\ninsecure = true\n\n\
             [registries.\"{closed}\"]\ninsecure = true\n",
            reg.addr
        ),
    )
    .expect("write registries.toml");
    let d = TestDaemon::start_in(Arc::clone(&ns), &["--registries", path(&config)]);
    Some(Setup { d, reg, closed })
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn pull_ls_inspect_rm_prune() {
    let Some(Setup { d, reg, .. }) = setup("image_pull_ls_inspect_rm_prune") else { return };
    assert!(!port_open_on_host(reg.port), "the registry must not be on the host's loopback");
    let busybox = format!("{}/library/busybox:latest", reg.addr);

    // Off a terminal: plain progress lines on stderr, one result line on stdout.
    let out = d.cli(&["image", "pull", &busybox]);
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pull failed: {stderr}\n{}", d.log());
    assert!(stdout.starts_with(&format!("pulled {busybox} (sha256:")), "{stdout}");
    assert!(stderr.lines().any(|l| l.contains("download complete")), "{stderr}");
    assert!(!stderr.contains('\x1b') && !stderr.contains('\r'), "no bars off a terminal");

    // --quiet: only the digest. `docker.io/library/alpine` comes from the mirror.
    let out = d.cli(&["image", "pull", "--quiet", "docker.io/library/alpine:latest"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let digest = String::from_utf8(out.stdout).unwrap();
    let digest = digest.strip_suffix('\n').expect("one line");
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "--quiet prints nothing else");
    // Plain `alpine` is the same image; busybox and alpine share one record.
    assert_eq!(d.ok(&["image", "pull", "-q", "alpine"]).trim(), digest);

    let images = json(&d.ok(&["image", "ls", "--json"]));
    let images = images.as_array().expect("array");
    assert_eq!(images.len(), 1, "{images:?}");
    let tags: Vec<&str> =
        images[0]["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(tags.contains(&busybox.as_str()), "{tags:?}");
    assert!(tags.contains(&"docker.io/library/alpine:latest"), "{tags:?}");
    let table = d.ok(&["image", "ls"]);
    assert!(table.contains("docker.io/library/alpine:latest"), "{table}");

    let info = json(&d.ok(&["image", "inspect", "alpine"]));
    assert_eq!(info["digest"], digest);
    assert!(info["size"].as_u64().unwrap() > 500_000, "{info}");
    assert_eq!(info["layers"].as_array().unwrap().len(), 1, "{info}");
    assert!(info["layers"][0].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(info["config"]["config"]["Cmd"][0], "sh", "{info}");
    assert_eq!(json(&d.ok(&["image", "inspect", digest]))["digest"], digest);

    // In use by a (stopped) container: refused; after the container is gone: allowed.
    d.ok(&["zone", "create", "--name", "z"]);
    d.ok(&["run", "--zone", "z", "--name", "c", "alpine", "true"]);
    let error = d.fails(&["image", "rm", "alpine"]);
    assert!(error.contains("in use"), "{error}");
    d.ok(&["rm", "c"]);
    d.ok(&["image", "rm", "alpine"]);
    d.ok(&["image", "rm", &busybox]);
    assert_eq!(json(&d.ok(&["image", "ls", "--json"])), serde_json::json!([]));
    let error = d.fails(&["image", "inspect", "alpine"]);
    assert!(error.contains("not found"), "{error}");

    // Pulled by digest it has no tag: prune removes it with its blobs and layers.
    let by_digest = format!("{}/library/busybox@{digest}", reg.addr);
    d.ok(&["image", "pull", "-q", &by_digest]);
    let prune = d.ok(&["image", "prune"]);
    assert!(prune.starts_with("removed 1 image(s), 3 blob(s)"), "{prune}");
    assert_eq!(json(&d.ok(&["image", "ls", "--json"])), serde_json::json!([]));
}

#[test]
fn run_pulls_a_missing_image_through_the_mirror() {
    // Bind the registry: a field left to `..` would be dropped (killed) right here.
    let Some(Setup { d, reg: _reg, .. }) = setup("image_run_pulls_through_mirror") else {
        return;
    };
    d.ok(&["zone", "create", "--name", "z"]);
    let out = d.cli(&["run", "--zone", "z", "alpine", "echo", "hi"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run failed: {stderr}\n{}", d.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert!(stderr.contains("image alpine not found locally; pulling"), "{stderr}");
    let info = json(&d.ok(&["image", "inspect", "docker.io/library/alpine:latest"]));
    assert_eq!(info["tags"], serde_json::json!(["docker.io/library/alpine:latest"]));
    // The second run finds it locally.
    let out = d.cli(&["run", "--zone", "z", "alpine", "echo", "again"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "again\n");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("pulling"));
}

#[test]
fn pull_errors_say_what_and_where() {
    let Some(Setup { d, reg, closed }) = setup("image_pull_errors") else { return };

    let error = d.fails(&["image", "pull", &format!("{}/library/nothere:latest", reg.addr)]);
    assert!(error.contains("not found"), "{error}");
    assert!(error.contains(&format!("registry {}", reg.addr)), "{error}");

    let error = d.fails(&["image", "pull", &format!("{closed}/library/busybox:latest")]);
    assert!(error.contains("unreachable"), "{error}");
    assert!(error.contains(&format!("registry {closed}")), "{error}");

    // Through the mirror: the mirror's answer is the one reported.
    let error = d.fails(&["image", "pull", "docker.io/library/nothere"]);
    assert!(error.contains("not found") && error.contains(&reg.addr), "{error}");
    assert!(error.contains(&format!("(tried {}, docker.io)", reg.addr)), "{error}");

    for bad in ["Not/Valid", "alpine:", "a b", "busybox@sha256:123"] {
        let error = d.fails(&["image", "pull", bad]);
        assert!(error.contains("invalid image reference"), "{bad}: {error}");
    }
    // Nothing half-pulled stays behind.
    assert_eq!(json(&d.ok(&["image", "ls", "--json"])), serde_json::json!([]));
}
