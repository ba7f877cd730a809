//! `rauha zone verify` against a real daemon: the probes run inside the zone (from a memfd of
//! the rauha binary, with the zone's confinement) and attack a host process, another zone's
//! container, planted host files, foreign cgroups and foreign addresses. With every layer on,
//! every check holds and names the layer that answered; with one layer switched off
//! (`rauhad --unsafe-disable-layer`), the report shows the next layer holding where there is
//! one, and the boundary not held where that layer was alone. Nothing the run made survives it.

mod harness;

use std::collections::BTreeSet;
use std::path::Path;

use harness::TestDaemon;
use serde_json::Value;

/// Every check a run with a foreign zone's container and a foreign address makes.
const CHECKS: &[&str] = &[
    "see_host",
    "signal_host",
    "ptrace_host",
    "files_host",
    "exec_host",
    "see_zone",
    "signal_zone",
    "ptrace_zone",
    "files_zone",
    "exec_zone",
    "files_host_path",
    "exec_host_path",
    "cgroup_procs_host",
    "cgroup_procs_zone",
    "write_rootfs",
    "write_dev",
    "write_sysctl",
    "open_device",
    "mount",
    "load_module",
    "kexec",
    "reboot",
    "unshare_mount",
    "unshare_user",
    "setns",
    "connect_zone",
    "connect_host",
    "namespace_mnt",
    "namespace_pid",
    "namespace_uts",
    "namespace_ipc",
    "namespace_cgroup",
    "namespace_net",
    "namespace_net_zone",
    "cgroup_placement",
    "cgroup_limits",
];

/// `zone verify NAME --json`: whether it exited 0, and the report.
fn verify(d: &TestDaemon, zone: &str) -> (bool, Value) {
    let out = d.cli(&["zone", "verify", zone, "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "verify {zone}: not JSON ({e}): {text}\nstderr: {}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            d.log()
        )
    });
    (out.status.success(), report)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name}: {report:#}"))
}

fn held_by(report: &Value, name: &str) -> Vec<String> {
    check(report, name)["held_by"]
        .as_array()
        .map(|v| v.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn layer<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["layers"]
        .as_array()
        .and_then(|layers| layers.iter().find(|l| l["name"] == name))
        .unwrap_or_else(|| panic!("no layer {name}: {report:#}"))
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default()
}

/// The names of the checks that did not hold.
fn not_held(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .filter(|c| c["passed"] == false && c["skipped"] == "")
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Nothing of a run survives it: no probe cgroup under the zone's, no probe files, no probe
/// or host-target process left by the daemon.
fn assert_no_leftovers(d: &TestDaemon, zone: &str) {
    let inspect: Value = serde_json::from_str(&d.ok(&["zone", "inspect", zone])).expect("json");
    let cgroup = Path::new(inspect["cgroup_path"].as_str().expect("cgroup path")).to_owned();
    let zone_dir = cgroup.file_name().and_then(|n| n.to_str()).expect("zone cgroup name");
    for hierarchy in ["unified", "memory", "pids"] {
        let dir = d.cgroup_dir(hierarchy, zone_dir);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let probes: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains("probe"))
            .collect();
        assert!(probes.is_empty(), "probe cgroups left in {}: {probes:?}", dir.display());
    }
    let probes = d.root.join("probes");
    let files: Vec<_> =
        std::fs::read_dir(&probes).map(|r| r.flatten().collect()).unwrap_or_default();
    assert!(files.is_empty(), "probe files left in {}: {files:?}", probes.display());
    let daemon = d.pid().expect("daemon running").to_string();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let parent = status.lines().find_map(|l| l.strip_prefix("PPid:")).map(str::trim);
        let probe = cmdline.split(|b| *b == 0).any(|arg| arg == b"probe");
        assert!(
            !(probe && parent == Some(daemon.as_str())),
            "a probe process of the daemon is left: {:?}",
            String::from_utf8_lossy(&cmdline)
        );
    }
}

#[test]
fn a_standard_zone_holds_every_boundary_and_names_the_layers() {
    let Some(d) = TestDaemon::start("verify standard") else { return };
    d.import_busybox();
    let bridged = d.write_file("bridged.toml", "[network]\nmode = \"bridged\"\n");
    let bridged = bridged.to_str().expect("utf-8");
    d.ok(&["zone", "create", "--name", "a", "--policy", bridged]);
    d.ok(&["zone", "create", "--name", "b", "--policy", bridged]);
    d.ok(&["run", "-d", "--zone", "b", "--name", "victim", "busybox", "sleep", "1000"]);

    let (success, report) = verify(&d, "a");
    assert!(success, "exit 0 when isolated: {report:#}");
    assert_eq!(keys(&report), BTreeSet::from(["zone", "is_isolated", "checks", "layers"]));
    assert_eq!(report["zone"], "a");
    assert_eq!(report["is_isolated"], true, "{report:#}");
    let checks = report["checks"].as_array().expect("checks");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names.len(), CHECKS.len(), "{names:?}");
    for name in CHECKS {
        assert!(names.contains(name), "missing {name}: {names:?}");
    }
    let check_keys = BTreeSet::from([
        "name", "boundary", "passed", "required", "skipped", "held_by", "errno", "detail",
    ]);
    for c in checks {
        assert_eq!(keys(c), check_keys, "{c:#}");
        assert_eq!(c["passed"], true, "{c:#}");
        assert_eq!(c["required"], true, "{c:#}");
        assert_eq!(c["skipped"], "", "{c:#}");
        assert!(!held_by(&report, c["name"].as_str().unwrap_or_default()).is_empty(), "{c:#}");
        assert!(!c["detail"].as_str().unwrap_or_default().is_empty(), "{c:#}");
    }
    // The layers that answered, where only one can.
    assert_eq!(held_by(&report, "unshare_user"), ["seccomp"]);
    assert_eq!(held_by(&report, "mount"), ["seccomp", "capabilities"]);
    assert_eq!(held_by(&report, "write_dev"), ["landlock"]);
    assert_eq!(held_by(&report, "write_rootfs"), ["read-only-mounts"]);
    assert_eq!(held_by(&report, "see_zone"), ["namespaces"]);
    assert_eq!(held_by(&report, "cgroup_limits"), ["cgroups"]);
    // Bridged zones that do not list each other: the egress program refuses the connect.
    assert_eq!(check(&report, "connect_zone")["errno"], "EPERM");
    assert!(held_by(&report, "connect_zone").contains(&"cgroup-bpf".to_owned()));
    for name in ["namespaces", "seccomp", "landlock", "capabilities", "cgroup-bpf", "nftables"] {
        assert_eq!(layer(&report, name)["active"], true, "{name}: {report:#}");
    }
    // The LSM layer is named either way; where the kernel refuses it, with the reason.
    let lsm = layer(&report, "lsm");
    assert!(lsm["active"] == true || !lsm["reason"].as_str().unwrap_or_default().is_empty());

    let table = d.ok(&["zone", "verify", "a"]);
    assert!(table.starts_with("zone a: ISOLATED"), "{table}");
    for header in ["CHECK", "BOUNDARY", "RESULT", "HELD BY", "LAYER", "lsm"] {
        assert!(table.contains(header), "{header}: {table}");
    }
    assert_no_leftovers(&d, "a");
    let victim: Value = serde_json::from_str(&d.ok(&["inspect", "victim"])).expect("json");
    assert_eq!(victim[0]["state"], "Running", "the attacked container survived");
    d.ok(&["rm", "-f", "victim"]);
}

#[test]
fn without_landlock_the_device_allow_list_still_holds_and_dev_writes_do_not() {
    let Some(d) =
        TestDaemon::start_with("verify no landlock", &["--unsafe-disable-layer", "landlock"])
    else {
        return;
    };
    // A zone alone, no image: the probes need nothing from one.
    d.ok(&["zone", "create", "--name", "solo"]);
    let (success, report) = verify(&d, "solo");
    assert!(!success, "exit 1 when a required boundary did not hold");
    assert_eq!(report["is_isolated"], false);
    // /dev is a writable tmpfs that only Landlock keeps read-only: not held, and said so.
    assert_eq!(not_held(&report), ["write_dev"], "{report:#}");
    assert_eq!(check(&report, "write_dev")["errno"], "0");
    assert!(held_by(&report, "write_dev").is_empty());
    // Making a device node: CAP_MKNOD is granted, so the device allow-list holds it.
    assert_eq!(held_by(&report, "open_device"), ["cgroup-bpf"], "{report:#}");
    let landlock = layer(&report, "landlock");
    assert_eq!(landlock["active"], false);
    assert!(landlock["reason"].as_str().unwrap_or_default().contains("--unsafe-disable-layer"));
    // Without another zone or address, those checks are skipped, with the reason.
    let skipped = check(&report, "connect_zone");
    assert_eq!(
        (skipped["passed"].clone(), skipped["required"].clone()),
        (false.into(), true.into())
    );
    assert!(skipped["skipped"].as_str().unwrap_or_default().contains("no other zone"));
    assert!(
        check(&report, "signal_zone")["skipped"]
            .as_str()
            .unwrap_or_default()
            .contains("another zone")
    );
    let table = String::from_utf8_lossy(&d.cli(&["zone", "verify", "solo"]).stdout).into_owned();
    assert!(table.starts_with("zone solo: NOT ISOLATED: not held: write_dev"), "{table}");
    assert!(table.contains("NOT HELD"), "{table}");
    assert_no_leftovers(&d, "solo");
}

#[test]
fn without_the_capability_drop_seccomp_alone_holds_the_privileged_calls() {
    let Some(d) = TestDaemon::start_with("verify no caps", &["--unsafe-disable-layer", "caps"])
    else {
        return;
    };
    d.ok(&["zone", "create", "--name", "solo"]);
    let (success, report) = verify(&d, "solo");
    assert!(success, "{report:#}");
    assert_eq!(report["is_isolated"], true);
    // The probe holds every capability: only the profile can have refused these.
    for name in ["mount", "unshare_mount", "setns", "load_module", "kexec", "reboot", "ptrace_host"]
    {
        assert_eq!(held_by(&report, name), ["seccomp"], "{name}: {report:#}");
    }
    assert_eq!(layer(&report, "capabilities")["active"], false);
    assert_no_leftovers(&d, "solo");
}

#[test]
fn unknown_and_invalid_zones_are_refused_with_the_reason() {
    let Some(d) = TestDaemon::start("verify errors") else { return };
    let err = d.fails(&["zone", "verify", "nowhere"]);
    assert!(err.contains("zone \"nowhere\" not found"), "{err}");
    let err = d.fails(&["zone", "verify", "a/b"]);
    assert!(err.contains("invalid zone name \"a/b\""), "{err}");
    let err = d.fails(&["zone", "verify", "nowhere", "--json"]);
    assert!(err.contains("not found"), "{err}");
    // Refused before anything was made.
    let probes = std::fs::read_dir(d.root.join("probes")).map(|r| r.count()).unwrap_or(0);
    assert_eq!(probes, 0);
}

#[test]
fn a_probe_that_crashes_is_an_error_that_leaves_nothing_behind() {
    let Some(d) = TestDaemon::start("verify crash") else { return };
    // The zone's seccomp profile denies write(2): the probe cannot report and dies of it.
    let mute = d.write_file("mute.toml", "[syscalls]\ndeny = [\"write\"]\n");
    d.ok(&["zone", "create", "--name", "mute", "--policy", mute.to_str().expect("utf-8")]);
    let err = d.fails(&["zone", "verify", "mute"]);
    assert!(err.contains("verify zone \"mute\": the probe exited with code"), "{err}");
    assert!(err.contains("after 0 checks"), "{err}");
    assert_no_leftovers(&d, "mute");
    // The zone is still usable, and verifying it again fails the same way.
    let err = d.fails(&["zone", "verify", "mute"]);
    assert!(err.contains("the probe exited"), "{err}");
    assert_no_leftovers(&d, "mute");
}
