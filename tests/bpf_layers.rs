//! The eBPF layers against a real daemon and the real kernel: the layer report in `rauha info`
//! (cgroup-BPF active, BPF LSM honestly unavailable on this kernel), the device allow-list, the
//! sysctl write ban and the egress allow-list of the per-zone cgroup programs, live map updates
//! through `policy apply`, and deny events on the event bus.
//!
//! The LSM object's CO-RE relocation against this kernel's BTF is tested in
//! `src/enforce/lsm.rs` (unit test: it needs libbpf's log inside the process).

mod harness;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::TestDaemon;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text}"))
}

/// A daemon with the busybox image and one zone `z` with the given policy.
fn daemon_with_zone(test: &str, policy: &str) -> Option<TestDaemon> {
    daemon_with_zone_and(test, policy, &[])
}

fn daemon_with_zone_and(test: &str, policy: &str, daemon_args: &[&str]) -> Option<TestDaemon> {
    let d = TestDaemon::start_with(test, daemon_args)?;
    d.import_busybox();
    let file = d.write_file("zone.toml", policy);
    d.ok(&["zone", "create", "--name", "z", "--policy", file.to_str().unwrap()]);
    Some(d)
}

/// `policy apply` to zone `z`; the "live:" line of its report.
fn apply(d: &TestDaemon, policy: &str) -> String {
    let file = d.write_file("apply.toml", policy);
    let out = d.ok(&["policy", "apply", "--zone", "z", file.to_str().unwrap()]);
    out.lines().find(|l| l.trim_start().starts_with("live:")).unwrap_or_default().to_owned()
}

/// Runs `script` with busybox sh in a new container of zone `z`; its stdout and stderr.
fn run_sh(d: &TestDaemon, script: &str) -> String {
    let out = d.cli(&["run", "--zone", "z", "--rm", "busybox", "sh", "-c", script]);
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Waits until `rauha events --zone z` shows an event of `event_type` whose message contains
/// `needle` (the ring buffer is read on a thread, so events arrive shortly after the deny).
fn wait_for_event(d: &TestDaemon, event_type: &str, needle: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = d.ok(&["events", "--zone", "z", "--json"]);
        let found = out.lines().map(json).find(|e| {
            e["event_type"] == event_type && e["message"].as_str().unwrap_or("").contains(needle)
        });
        if let Some(event) = found {
            return event;
        }
        assert!(Instant::now() < deadline, "no {event_type} event with {needle:?}; events:\n{out}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn info_reports_cgroup_bpf_active_and_lsm_unavailable_with_reason() {
    let Some(d) = TestDaemon::start("bpf_info") else { return };
    let info = json(&d.ok(&["info", "--json"]));
    let layers = info["enforcement"].as_array().expect("enforcement list");
    let layer = |name: &str| layers.iter().find(|l| l["name"] == name).cloned().unwrap();
    assert_eq!(layer("cgroup-bpf")["active"], true, "{info}");
    let lsm = layer("lsm");
    if std::env::var("RAUHA_EXPECT_BPF_LSM").as_deref() == Ok("1") {
        assert_eq!(lsm["active"], true, "{info}");
    } else {
        // This kernel refuses LSM programs: the daemon says so, with the kernel's answer.
        assert_eq!(lsm["active"], false, "{info}");
        let reason = lsm["reason"].as_str().unwrap();
        assert!(reason.contains("kernel refused to load a bpf lsm program"), "{reason}");
    }
    let text = d.ok(&["info"]);
    assert!(text.contains("cgroup-bpf: active"), "{text}");
    assert!(text.contains("lsm: "), "{text}");
    assert!(d.log().contains("enforcement layer"), "{}", d.log());
}

/// Device allow-list. The cgroup program checks mknod as well as open, so a container cannot
/// even create a node of a device it is not allowed; to show that open is denied too, the test
/// plants the node from the host through /proc/PID/root. `policy apply` changes the BPF map
/// live: a running container gains (and loses) access at its next open. (The device nodes in
/// a container's /dev are bound at container start; the map is the gate for every node.)
#[test]
fn device_allow_list_is_enforced_and_changes_live() {
    let writable = "[filesystem]\nwritable_paths = [\"/tmp\"]\n";
    // Landlock also refuses device nodes in writable paths; it is switched off here so the
    // test shows the BPF layer holding on its own.
    let args = ["--unsafe-disable-layer", "landlock"];
    let Some(d) = daemon_with_zone_and("bpf_devices", writable, &args) else { return };
    // /dev/fuse (char 10:229) is not in the built-in set; /dev/null is.
    let out = run_sh(&d, "mknod /tmp/fuse c 10 229; echo rc=$?; echo x >/dev/null && echo null-ok");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("null-ok"), "{out}");
    let event = wait_for_event(&d, "deny.device", "char device 10:229 (m)");
    assert_eq!(event["zone"], "z");

    // A container running across the applies, opening the node in a loop.
    d.ok(&[
        "run",
        "--zone",
        "z",
        "-d",
        "--name",
        "long",
        "busybox",
        "sh",
        "-c",
        "while true; do if (: </tmp/fuse) 2>/dev/null; then s=allowed; else s=denied; fi; \
         echo $s >/tmp/state.new; mv /tmp/state.new /tmp/state; sleep 0.05; done",
    ]);
    let info = json(&d.ok(&["inspect", "long"]));
    let pid = info[0]["pid"].as_u64().unwrap();
    let node = std::ffi::CString::new(format!("/proc/{pid}/root/tmp/fuse")).unwrap();
    // SAFETY: `node` is a NUL-terminated path that outlives the call.
    let made = unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(10, 229)) };
    assert_eq!(made, 0, "plant /tmp/fuse: {}; {info}", std::io::Error::last_os_error());
    // What the container's loop saw last, read through its root from the host.
    let state_file = format!("/proc/{pid}/root/tmp/state");
    let state = || std::fs::read_to_string(&state_file).unwrap_or_default();
    let wait_state = |_: &TestDaemon, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while state().trim() != want {
            assert!(Instant::now() < deadline, "state stayed {:?}, want {want}", state());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_state(&d, "denied");
    // Denied by the program (an event for a read open), not missing.
    wait_for_event(&d, "deny.device", "char device 10:229 (r)");
    let applied = apply(&d, &format!("{writable}[devices]\nallowed = [\"/dev/fuse\"]\n"));
    assert!(applied.contains("bpf map rauha_devices"), "{applied}");
    wait_state(&d, "allowed");
    let out = run_sh(&d, "mknod /tmp/fuse c 10 229 && (: </tmp/fuse) && echo opened");
    assert!(out.contains("opened"), "{out}");
    apply(&d, writable);
    wait_state(&d, "denied");
    d.ok(&["rm", "--force", "long"]);

    // A path that is not a device is refused by name, and nothing changes.
    let file = d.write_file("bad.toml", "[devices]\nallowed = [\"/dev/shm\"]\n");
    let error = d.fails(&["policy", "apply", "--zone", "z", file.to_str().unwrap()]);
    assert!(error.contains("devices.allowed[0]: /dev/shm is not a"), "{error}");
    let error = d.fails(&["zone", "create", "--name", "y", "--policy", file.to_str().unwrap()]);
    assert!(error.contains("devices.allowed[0]"), "{error}");
    let zones = d.ok(&["zone", "list", "--json"]);
    assert!(!zones.contains("\"y\""), "zone y must not exist: {zones}");
}

/// Sysctl writes: inside a container /proc/sys is read-only anyway, so to show the BPF layer
/// holds on its own the test puts a process of its own into the zone's cgroup2 node with a
/// writable /proc/sys and its own UTS namespace (so a failing layer could only change that
/// namespace's hostname), and checks the write fails with EPERM and a deny.sysctl event names it.
#[test]
fn sysctl_writes_are_denied_by_the_bpf_layer() {
    let Some(d) = TestDaemon::start("bpf_sysctl") else { return };
    d.ok(&["zone", "create", "--name", "z"]);
    let zone = json(&d.ok(&["zone", "inspect", "z"]));
    let zone = if zone.is_array() { zone[0].clone() } else { zone };
    let cgroup = Path::new(zone["cgroup_path"].as_str().unwrap());
    let write_hostname = |join: Option<&Path>| {
        let mut command = Command::new("unshare");
        command.args(["--uts", "sh", "-c", "echo rauha-test >/proc/sys/kernel/hostname"]);
        if let Some(cgroup) = join {
            harness::join_cgroup(&mut command, cgroup);
        }
        command.output().expect("run unshare")
    };
    // Outside the zone the same write works (in the private UTS namespace).
    let outside = write_hostname(None);
    assert!(outside.status.success(), "{}", String::from_utf8_lossy(&outside.stderr));
    let inside = write_hostname(Some(cgroup));
    // The write fails (this 6.18 kernel reports EIO for a sysctl write a cgroup program
    // refused, not EPERM), and the event shows it was the BPF layer that refused it.
    let stderr = String::from_utf8_lossy(&inside.stderr);
    assert!(!inside.status.success(), "sysctl write in the zone succeeded");
    assert!(stderr.contains("error") || stderr.contains("not permitted"), "{stderr}");
    wait_for_event(&d, "deny.sysctl", "kernel/hostname");
}

/// Egress allow-list on a host-mode zone (its containers share the daemon's network namespace,
/// which is the test's): 10.203.0.0/24:8080 allowed, 10.203.1.1 not; `policy apply` flips it
/// live. "Connection refused" means the connect reached the network stack (no listener),
/// "Operation not permitted" means the cgroup program denied it.
#[test]
fn egress_allow_list_holds_for_host_mode_zones_and_changes_live() {
    let policy =
        |allowed: &str| format!("[network]\nmode = \"host\"\nallowed_egress = [{allowed}]\n");
    let Some(d) = daemon_with_zone("bpf_egress", &policy("\"10.203.0.0/24:8080\"")) else {
        return;
    };
    for addr in ["10.203.0.1/24", "10.203.1.1/24"] {
        let status =
            d.netns.command("ip").args(["addr", "add", addr, "dev", "lo"]).status().expect("ip");
        assert!(status.success(), "add {addr} to lo in the test netns");
    }
    let connect = |d: &TestDaemon, target: &str| {
        run_sh(d, &format!("nc -w 1 {target} </dev/null; echo rc=$?"))
    };
    let allowed = connect(&d, "10.203.0.1 8080");
    assert!(allowed.contains("Connection refused"), "{allowed}");
    let denied = connect(&d, "10.203.1.1 8080");
    assert!(denied.contains("Operation not permitted"), "{denied}");
    let other_port = connect(&d, "10.203.0.1 9090");
    assert!(other_port.contains("Operation not permitted"), "{other_port}");
    // Loopback is always allowed.
    let lo = connect(&d, "127.0.0.1 8080");
    assert!(lo.contains("Connection refused"), "{lo}");
    // UDP goes through sendmsg4.
    let udp = run_sh(&d, "echo x | nc -u -w 1 10.203.1.1 53; echo rc=$?");
    wait_for_event(&d, "deny.connect4", "10.203.1.1:8080");
    let _ = udp;

    let applied = apply(&d, &policy("\"10.203.1.0/24\""));
    assert!(applied.contains("bpf map rauha_egress"), "{applied}");
    let now_allowed = connect(&d, "10.203.1.1 8080");
    assert!(now_allowed.contains("Connection refused"), "{now_allowed}");
    let now_denied = connect(&d, "10.203.0.1 8080");
    assert!(now_denied.contains("Operation not permitted"), "{now_denied}");
}

/// Zone create with the cgroup programs, delete detaches them, and a restarted daemon
/// re-attaches them for every existing zone.
#[test]
fn programs_follow_the_zone_lifecycle_and_daemon_restarts() {
    let policy = "[network]\nmode = \"host\"\nallowed_egress = []\n";
    let Some(mut d) = daemon_with_zone("bpf_lifecycle", policy) else { return };
    let zone = json(&d.ok(&["zone", "inspect", "z"]));
    let zone = if zone.is_array() { zone[0].clone() } else { zone };
    let dir = zone["cgroup_path"].as_str().unwrap().to_owned();
    let attached = |dir: &str| {
        let out = Command::new("bpftool").args(["cgroup", "show", dir]).output();
        out.ok().map(|o| String::from_utf8_lossy(&o.stdout).matches("rauha_").count())
    };
    let denied = |d: &TestDaemon| {
        run_sh(d, "nc -w 1 10.203.9.9 80 </dev/null; echo rc=$?")
            .contains("Operation not permitted")
    };
    assert!(denied(&d));
    if let Some(count) = attached(&dir) {
        assert_eq!(count, 6, "six programs on {dir}");
    }
    d.restart();
    assert!(denied(&d), "programs re-attached after a daemon restart");
    assert!(d.log().contains("bpf_attached=1"), "{}", d.log());
    d.ok(&["zone", "delete", "-f", "z"]);
}
