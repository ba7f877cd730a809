//! Zone lifecycle, policies, cgroups, durability and access control, against a real daemon.

mod harness;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use harness::{DaemonUsage, TestDaemon};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text}"))
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

#[test]
fn zone_lifecycle_creates_and_removes_the_cgroups() {
    let Some(d) = TestDaemon::start("zone_lifecycle") else {
        return;
    };
    let id = d.ok(&["zone", "create", "--name", "web"]).trim().to_owned();
    uuid::Uuid::parse_str(&id).expect("create prints the zone's UUID");

    let zone = json(&d.ok(&["zone", "inspect", "web"]));
    assert_eq!(zone["id"], id.as_str());
    assert_eq!(zone["state"], "Ready");
    assert_eq!(zone["zone_type"], "NonGlobal");
    assert_eq!(zone["numeric_id"], 1);
    let identity = d.cgroup_dir("unified", "zone-1");
    assert!(identity.is_dir(), "identity cgroup {} exists", identity.display());
    let inode = std::fs::metadata(&identity).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    assert_eq!(zone["cgroup_id"].as_u64(), inode.ok(), "cgroup id is the cgroup2 inode");

    let listed = json(&d.ok(&["zone", "list", "--json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert!(d.ok(&["zone", "list"]).contains("web"));

    d.ok(&["zone", "delete", "web"]);
    assert!(!identity.exists(), "identity cgroup removed");
    assert!(!d.cgroup_dir("memory", "zone-1").exists(), "memory cgroup removed");
    assert!(d.fails(&["zone", "inspect", "web"]).contains("not found"));
    assert!(d.fails(&["zone", "delete", "web"]).contains("not found"));
}

#[test]
fn duplicate_zone_name_is_refused_and_changes_nothing() {
    let Some(d) = TestDaemon::start("duplicate_zone") else {
        return;
    };
    let id = d.ok(&["zone", "create", "--name", "db"]);
    let error = d.fails(&["zone", "create", "--name", "db"]);
    assert!(error.contains("zone \"db\" already exists"), "{error}");
    let zones = json(&d.ok(&["zone", "list", "--json"]));
    assert_eq!(zones.as_array().map(Vec::len), Some(1));
    assert_eq!(zones[0]["id"], id.trim());
    assert!(!d.cgroup_dir("unified", "zone-2").exists(), "no second cgroup");
}

#[test]
fn every_invalid_name_class_is_refused_with_its_reason() {
    let Some(d) = TestDaemon::start("invalid_names") else {
        return;
    };
    let long = "x".repeat(129);
    let cases = [
        ("", "empty"),
        (long.as_str(), "too long"),
        ("a/b", "/"),
        ("a\\b", "\\"),
        ("a\u{1}b", "control"),
        ("tab\there", "control"),
        (".", "."),
        ("..", ".."),
    ];
    for (name, reason) in cases {
        let error = d.fails(&["zone", "create", "--name", name]);
        assert!(error.contains("invalid zone name"), "{name:?}: {error}");
        assert!(error.contains(reason), "{name:?}: expected {reason:?} in {error}");
    }
    let max = "é".repeat(64); // 128 bytes of UTF-8
    d.ok(&["zone", "create", "--name", &max]);
    assert_eq!(json(&d.ok(&["zone", "list", "--json"])).as_array().map(Vec::len), Some(1));
}

#[test]
fn limits_land_in_the_cgroups_at_create_and_on_apply() {
    let Some(d) = TestDaemon::start("limits") else {
        return;
    };
    let policy = d.write_file(
        "policy.toml",
        "[resources]\nmemory_limit = \"64Mi\"\npids_max = 50\ncpu_shares = 512\n",
    );
    d.ok(&["zone", "create", "--name", "lim", "--policy", policy.to_str().unwrap()]);
    let memory = d.cgroup_dir("memory", "zone-1");
    assert_eq!(read(&memory.join("memory.limit_in_bytes")), (64u64 << 20).to_string());
    assert_eq!(read(&d.cgroup_dir("pids", "zone-1").join("pids.max")), "50");
    assert_eq!(read(&d.cgroup_dir("cpu", "zone-1").join("cpu.shares")), "512");

    let stats = json(&d.ok(&["zone", "stats", "lim", "--json"]));
    assert_eq!(stats["memory_limit_bytes"], 64u64 << 20);
    assert_eq!(stats["pids_max"], 50);

    let newer = d.write_file("newer.toml", "[resources]\nmemory_limit = \"1Gi\"\npids_max = 100\n");
    let out = d.ok(&["policy", "apply", "--zone", "lim", newer.to_str().unwrap()]);
    assert!(out.contains("resources"), "{out}");
    assert_eq!(read(&memory.join("memory.limit_in_bytes")), (1u64 << 30).to_string());
    assert_eq!(read(&d.cgroup_dir("pids", "zone-1").join("pids.max")), "100");
    let stats = json(&d.ok(&["zone", "stats", "lim", "--json"]));
    assert_eq!(stats["memory_limit_bytes"], 1u64 << 30);
    let shown = d.ok(&["policy", "show", "--zone", "lim"]);
    assert!(shown.contains("memory_limit = \"1Gi\""), "{shown}");
}

#[test]
fn invalid_policy_leaves_the_zone_unchanged() {
    let Some(d) = TestDaemon::start("invalid_policy") else {
        return;
    };
    d.ok(&["zone", "create", "--name", "keep"]);
    let before = d.ok(&["policy", "show", "--zone", "keep"]);
    let limit_file = d.cgroup_dir("memory", "zone-1").join("memory.limit_in_bytes");
    let limit_before = read(&limit_file);
    let cases = [
        ("[network]\nmode = \"quantum\"\n", "network.mode: unknown network mode \"quantum\""),
        ("[resources]\nmemory_limit = \"3Mi\"\n", "resources.memory_limit"),
        ("[resources]\npids_max = 0\n", "resources.pids_max"),
        ("[capabilities]\nallowed = [\"SYS_ADMIN\"]\n", "privileged"),
        ("[bogus]\nx = 1\n", "unknown section [bogus]"),
        ("[resources\n", "syntax"),
        ("[zone]\ntype = \"privileged\"\n", "zone.type"),
    ];
    for (n, (text, expected)) in cases.iter().enumerate() {
        let file = d.write_file(&format!("bad{n}.toml"), text);
        let error = d.fails(&["policy", "apply", "--zone", "keep", file.to_str().unwrap()]);
        assert!(error.contains(expected), "{text:?}: expected {expected:?} in {error}");
    }
    assert_eq!(d.ok(&["policy", "show", "--zone", "keep"]), before);
    assert_eq!(read(&limit_file), limit_before);

    // Validation comes before lookup: a broken policy for an unknown zone reads as broken.
    let bad = d.write_file("bad.toml", "[network]\nmode = \"quantum\"\n");
    let error = d.fails(&["policy", "apply", "--zone", "ghost", bad.to_str().unwrap()]);
    assert!(error.contains("unknown network mode"), "{error}");

    // An invalid policy at create leaves no zone and no cgroup behind.
    let error = d.fails(&["zone", "create", "--name", "new", "--policy", bad.to_str().unwrap()]);
    assert!(error.contains("network.mode"), "{error}");
    assert!(d.fails(&["zone", "inspect", "new"]).contains("not found"));
    assert!(!d.cgroup_dir("unified", "zone-2").exists());
}

#[test]
fn policy_show_output_reapplies_as_a_no_op() {
    let Some(d) = TestDaemon::start("policy_round_trip") else {
        return;
    };
    let policy = d.write_file(
        "p.toml",
        "[network]\nmode = \"bridged\"\nallowed_egress = [\"0.0.0.0/0:443\"]\n[resources]\nmemory_limit = \"1Gi\"\n",
    );
    d.ok(&["zone", "create", "--name", "rt", "--policy", policy.to_str().unwrap()]);
    let shown = d.ok(&["policy", "show", "--zone", "rt"]);
    assert!(shown.contains("mode = \"bridged\""), "{shown}");
    assert!(shown.contains("memory_limit = \"1Gi\""), "{shown}");
    let again = d.write_file("again.toml", &shown);
    let out = d.ok(&["policy", "apply", "--zone", "rt", again.to_str().unwrap()]);
    assert!(out.contains("live:          none"), "re-applying changed something: {out}");
    assert_eq!(d.ok(&["policy", "show", "--zone", "rt"]), shown);
}

#[test]
fn privileged_zones_take_privileged_policies() {
    let Some(d) = TestDaemon::start("privileged_zone") else {
        return;
    };
    let admin = d.write_file("admin.toml", "[capabilities]\nallowed = [\"SYS_ADMIN\"]\n");
    let path = admin.to_str().unwrap();
    let error = d.fails(&["zone", "create", "--name", "p", "--policy", path]);
    assert!(error.contains("CAP_SYS_ADMIN"), "{error}");
    d.ok(&["zone", "create", "--name", "p", "--type", "privileged", "--policy", path]);
    assert_eq!(json(&d.ok(&["zone", "inspect", "p"]))["zone_type"], "Privileged");
    let error = d.fails(&["zone", "create", "--name", "g", "--type", "global"]);
    assert!(error.contains("cannot be created"), "{error}");
}

#[test]
fn restart_keeps_zones_and_reconciles_cgroups() {
    let Some(mut d) = TestDaemon::start("restart") else {
        return;
    };
    for name in ["a", "b", "c"] {
        d.ok(&["zone", "create", "--name", name]);
    }
    d.ok(&["zone", "delete", "b"]);
    let before = json(&d.ok(&["zone", "list", "--json"]));
    d.kill();

    // Behind the daemon's back: remove zone a's cgroups, plant an orphan.
    for hierarchy in ["unified", "memory", "pids", "cpu", "cpuacct", "blkio"] {
        let dir = d.cgroup_dir(hierarchy, "zone-1");
        if dir.exists() {
            std::fs::remove_dir(&dir).unwrap();
        }
    }
    let orphan = d.cgroup_dir("unified", "zone-99");
    std::fs::create_dir(&orphan).unwrap();

    d.spawn();
    // The re-created cgroup is a new directory, so only its id may differ.
    let without_cgroup_id = |mut zones: serde_json::Value| {
        for zone in zones.as_array_mut().unwrap() {
            zone.as_object_mut().unwrap().remove("cgroup_id");
        }
        zones
    };
    assert_eq!(
        without_cgroup_id(json(&d.ok(&["zone", "list", "--json"]))),
        without_cgroup_id(before),
        "zones and ids survive"
    );
    assert!(d.cgroup_dir("unified", "zone-1").is_dir(), "missing cgroup re-created");
    let limit = read(&d.cgroup_dir("memory", "zone-1").join("memory.limit_in_bytes"));
    assert_eq!(limit, (512u64 << 20).to_string(), "re-created with the policy's limit");
    assert!(!orphan.exists(), "orphan cgroup removed");
    let log = d.log();
    assert!(log.contains("re-created the zone's missing kernel object zone=a (cgroup)"), "{log}");
    assert!(
        log.contains("removed a kernel object that no zone owns object=cgroup zone-99"),
        "{log}"
    );

    // Numeric ids stay held and go round: the next zone takes 4, after the largest held id,
    // not the held 1 or 3, nor b's freed 2.
    d.ok(&["zone", "create", "--name", "d"]);
    assert_eq!(json(&d.ok(&["zone", "inspect", "d"]))["numeric_id"], 4);
}

#[test]
fn sigterm_shuts_down_cleanly_and_removes_the_socket() {
    let Some(mut d) = TestDaemon::start("sigterm") else {
        return;
    };
    d.ok(&["zone", "create", "--name", "z"]);
    let status = d.terminate();
    assert!(status.success(), "daemon exit status {status}");
    assert!(!d.socket.exists(), "socket removed on shutdown");
    let error = d.fails(&["zone", "list"]);
    assert!(error.contains("daemon not running at"), "{error}");
    d.spawn();
    assert!(d.ok(&["zone", "list"]).contains('z'));
}

#[test]
fn second_daemon_on_the_same_state_dir_is_refused() {
    let Some(d) = TestDaemon::start("second_daemon") else {
        return;
    };
    let out = d
        .netns
        .command(harness::RAUHA)
        .arg("daemon")
        .arg("--root")
        .arg(&d.root)
        .arg("--socket")
        .arg(d.dir.path().join("other.sock"))
        .arg("--cgroup-parent")
        .arg(&d.cgroup_parent)
        .output()
        .expect("run second daemon");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another daemon already uses the state dir"), "{stderr}");
    // The first one is unaffected.
    d.ok(&["zone", "list"]);
}

#[test]
fn unauthorised_peers_are_refused_and_group_members_admitted() {
    let Some(d) = TestDaemon::start_with("peer_credentials", &["--group", "4242"]) else {
        return;
    };
    for dir in [d.dir.path(), d.run_dir.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 4242);

    // Outside the group, the socket's mode keeps the peer out.
    let out = d.command(&["zone", "list"]).uid(65534).gid(65534).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));

    // Even with the mode opened up, the daemon's credential check refuses the peer.
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = d.command(&["zone", "list"]).uid(65534).gid(65534).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the connection"), "{stderr}");
    assert!(stderr.contains("uid 65534"), "{stderr}");

    // A member of the group is admitted.
    let out = d.command(&["zone", "list"]).uid(65534).gid(4242).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn cli_reports_a_missing_daemon_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let out = std::process::Command::new(harness::RAUHA)
        .arg("--socket")
        .arg(&socket)
        .args(["zone", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim(), format!("rauha: daemon not running at {}", socket.display()));
}

#[test]
fn version_names_revision_and_features() {
    let out = std::process::Command::new(harness::RAUHA).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.starts_with(&format!("rauha {} (git ", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.contains("features: "), "{text}");
}

/// Waits for the daemon's fds and threads to fall to `limit`'s: a request may leave a thread
/// finishing (the BPF spare loader) or an idle pool thread behind for a moment.
fn settled(d: &TestDaemon, limit: DaemonUsage) -> DaemonUsage {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let now = d.usage();
        if (now.fds <= limit.fds && now.threads <= limit.threads)
            || std::time::Instant::now() > deadline
        {
            return now;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn zone_create_delete_cycles_leave_no_fds_or_threads_behind() {
    let Some(d) = TestDaemon::start("zone_cycles") else {
        return;
    };
    let bridged = d.write_file("bridged.toml", "[network]\nmode = \"bridged\"\n");
    let cycle = |name: &str, policy: Option<&std::path::Path>| {
        let mut create = vec!["zone", "create", "--name", name];
        if let Some(policy) = policy {
            create.extend(["--policy", policy.to_str().expect("utf-8 path")]);
        }
        d.ok(&create);
        // Stats open the zone's cgroup files and network namespace.
        d.ok(&["zone", "stats", name, "--json"]);
        d.ok(&["zone", "delete", name]);
    };
    // The first zones make what lasts the daemon's lifetime (the bridge, a spare BPF load).
    cycle("warm", None);
    cycle("warm-bridged", Some(&bridged));
    // A spare loader still running holds dups of the event maps: let it finish first.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let baseline = d.usage();
    for n in 0..20 {
        cycle(&format!("c{n}"), if n % 2 == 0 { None } else { Some(&bridged) });
    }
    let after = settled(&d, baseline);
    assert_eq!(after.fds, baseline.fds, "open fds after 20 cycles: {after:?}, before {baseline:?}");
    assert!(
        after.threads <= baseline.threads,
        "threads after 20 cycles: {after:?}, before {baseline:?}"
    );
    assert_eq!(json(&d.ok(&["zone", "list", "--json"])), serde_json::json!([]), "no zone left");
}
