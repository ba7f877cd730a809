//! `rauhad --pin` against a real daemon and the real kernel: a zone's cgroup-BPF programs (the
//! device allow-list, the sysctl write ban, the egress allow-list) keep denying while the
//! daemon is down, after a SIGKILL and after a clean stop; the restarted daemon adopts the
//! pinned links and maps (no second set of programs on the cgroup, `policy apply` changes the
//! adopted maps live, deny events keep flowing through the pinned ring); pins that do not match
//! (a re-created cgroup) are replaced and pins of zones that are gone removed; deleting a zone
//! removes its pins; a daemon without `--pin` removes the pins of an earlier `--pin` run.
//!
//! The probes are processes the test puts into the zone's cgroup2 node (and the test's network
//! namespace): nothing of the daemon has to run for them.

mod harness;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::TestDaemon;
use libbpf_rs::query::{LinkInfoIter, LinkTypeInfo};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text}"))
}

/// A host-mode zone (its probes share the test's network namespace) whose egress is
/// `allowed_egress` and whose extra devices are `devices`.
fn policy(allowed_egress: &str, devices: &str) -> String {
    format!(
        "[network]\nmode = \"host\"\nallowed_egress = [{allowed_egress}]\n\
         [devices]\nallowed = [{devices}]\n"
    )
}

const FIRST: (&str, &str) = ("\"10.203.0.0/24:8080\"", "");
const SECOND: (&str, &str) = ("\"10.203.1.0/24\"", "\"/dev/kmsg\"");

struct ZoneRef {
    id: String,
    cgroup: PathBuf,
    cgroup_id: u64,
}

fn create_zone(d: &TestDaemon, name: &str, (egress, devices): (&str, &str)) -> ZoneRef {
    let file = d.write_file(&format!("{name}.toml"), &policy(egress, devices));
    d.ok(&["zone", "create", "--name", name, "--policy", file.to_str().unwrap()]);
    zone_ref(d, name)
}

fn zone_ref(d: &TestDaemon, name: &str) -> ZoneRef {
    let zone = json(&d.ok(&["zone", "inspect", name]));
    let zone = if zone.is_array() { zone[0].clone() } else { zone };
    ZoneRef {
        id: zone["id"].as_str().unwrap().to_owned(),
        cgroup: PathBuf::from(zone["cgroup_path"].as_str().unwrap()),
        cgroup_id: zone["cgroup_id"].as_u64().unwrap(),
    }
}

fn apply(d: &TestDaemon, name: &str, (egress, devices): (&str, &str)) -> String {
    let file = d.write_file("apply.toml", &policy(egress, devices));
    d.ok(&["policy", "apply", "--zone", name, file.to_str().unwrap()])
}

/// BPF links attached to the cgroup with id `cgroup_id`, over the whole system.
fn links_on(cgroup_id: u64) -> usize {
    LinkInfoIter::default()
        .filter(|link| matches!(&link.info, LinkTypeInfo::Cgroup(c) if c.cgroup_id == cgroup_id))
        .count()
}

/// Waits until `links_on(cgroup_id)` is `want`: the kernel releases an unpinned link from a
/// work queue, shortly after the pin goes.
fn assert_links(cgroup_id: u64, want: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = links_on(cgroup_id);
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {now} links on cgroup {cgroup_id}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Adds the test's destination addresses to lo in the daemon's (the test's) namespace.
fn add_addresses(d: &TestDaemon) {
    for addr in ["10.203.0.1/24", "10.203.1.1/24"] {
        let status =
            d.netns.command("ip").args(["addr", "add", addr, "dev", "lo"]).status().expect("ip");
        assert!(status.success(), "add {addr} to lo in the test netns");
    }
}

/// Runs `sh -c script` in the test's network namespace as a member of `cgroup`.
fn in_zone(d: &TestDaemon, cgroup: &Path, args: &[&str]) -> Output {
    let mut command = d.netns.command(args[0]);
    command.args(&args[1..]);
    harness::join_cgroup(&mut command, cgroup);
    command.output().expect("run a probe in the zone's cgroup")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A char node 1:11 (/dev/kmsg: harmless to open for reading) in the test dir, made from the
/// host, outside any zone.
fn kmsg_node(d: &TestDaemon) -> PathBuf {
    let path = d.dir.path().join("kmsg-1-11");
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 11)) };
    assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
    path
}

/// Whether a process in the zone may open the node: the cgroup/dev program decides.
fn device_allowed(d: &TestDaemon, cgroup: &Path, node: &Path) -> bool {
    let out = in_zone(d, cgroup, &["sh", "-c", &format!(": <{}", node.display())]);
    if !out.status.success() {
        assert!(text(&out).contains("Operation not permitted"), "{}", text(&out));
    }
    out.status.success()
}

/// Whether a process in the zone connects through to `target` (nothing listens: "Connection
/// refused" means the connect reached the network stack) or is stopped by cgroup/connect4.
fn egress_allowed(d: &TestDaemon, cgroup: &Path, target: &str) -> bool {
    let (host, port) = target.split_once(':').unwrap();
    let out = in_zone(d, cgroup, &["busybox", "nc", "-w", "1", host, port]);
    let said = text(&out);
    let allowed = said.contains("Connection refused");
    assert!(allowed || said.contains("Operation not permitted"), "nc {target}: {said}");
    allowed
}

/// Writes a sysctl from the zone (in a UTS namespace of its own, so a failing layer could only
/// rename that); whether the write went through.
fn sysctl_write_allowed(d: &TestDaemon, cgroup: &Path) -> bool {
    let script = "echo rauha-pin-test >/proc/sys/kernel/hostname";
    in_zone(d, cgroup, &["unshare", "--uts", "sh", "-c", script]).status.success()
}

/// The zone's policy as the first one wrote it, with or without a daemon.
fn assert_first_policy_holds(d: &TestDaemon, zone: &ZoneRef, node: &Path, when: &str) {
    assert!(!device_allowed(d, &zone.cgroup, node), "{when}: unlisted device opened");
    assert!(egress_allowed(d, &zone.cgroup, "10.203.0.1:8080"), "{when}: allowed egress denied");
    assert!(!egress_allowed(d, &zone.cgroup, "10.203.1.1:8080"), "{when}: egress not denied");
}

/// The zone's policy after `policy apply` of the second one.
fn assert_second_policy_holds(d: &TestDaemon, zone: &ZoneRef, node: &Path, when: &str) {
    assert!(device_allowed(d, &zone.cgroup, node), "{when}: allowed device denied");
    assert!(egress_allowed(d, &zone.cgroup, "10.203.1.1:8080"), "{when}: allowed egress denied");
    assert!(!egress_allowed(d, &zone.cgroup, "10.203.0.1:8080"), "{when}: revoked egress open");
}

/// Waits until `rauha events --zone z` shows an event of `event_type` whose message contains
/// `needle`.
fn wait_for_event(d: &TestDaemon, zone: &str, event_type: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = d.ok(&["events", "--zone", zone, "--json"]);
        let found = out.lines().map(json).any(|e| {
            e["event_type"] == event_type && e["message"].as_str().unwrap_or("").contains(needle)
        });
        if found {
            return;
        }
        assert!(Instant::now() < deadline, "no {event_type} event with {needle:?}; events:\n{out}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

const ADOPTED: &str = "adopted the zone's pinned cgroup-bpf programs";

#[test]
fn pinned_enforcement_holds_while_the_daemon_is_down_and_is_adopted_at_restart() {
    let Some(mut d) = TestDaemon::start_with("pin_restart", &["--pin"]) else { return };
    add_addresses(&d);
    let zone = create_zone(&d, "z", FIRST);
    let node = kmsg_node(&d);
    let zone_pins = d.pin_dir().join("zones").join(&zone.id);
    assert!(zone_pins.join("link_rauha_dev").exists(), "zone pins in {}", zone_pins.display());
    assert!(d.pin_dir().join("events/map_rauha_events").exists());
    assert_first_policy_holds(&d, &zone, &node, "daemon up");
    assert_links(zone.cgroup_id, 6, "daemon up");

    // A crash: the pinned links stay attached and keep denying.
    d.kill();
    assert_first_policy_holds(&d, &zone, &node, "after SIGKILL");
    assert!(!sysctl_write_allowed(&d, &zone.cgroup), "after SIGKILL: sysctl write went through");
    assert_links(zone.cgroup_id, 6, "after SIGKILL");

    // The restarted daemon adopts them: no second set of programs on the cgroup.
    d.spawn();
    assert_eq!(count(&d.log(), ADOPTED), 1, "{}", d.log());
    assert!(d.log().contains("bpf_adopted=1"), "{}", d.log());
    assert_links(zone.cgroup_id, 6, "adopted, not attached again");
    assert_first_policy_holds(&d, &zone, &node, "after restart");
    // The pinned ring kept the deny from while no daemon ran, under the zone's name, and
    // new denies of the adopted programs arrive through it.
    wait_for_event(&d, "z", "deny.sysctl", "kernel/hostname");
    wait_for_event(&d, "z", "deny.device", "char device 1:11 (r)");

    // `policy apply` rewrites the adopted maps live.
    let applied = apply(&d, "z", SECOND);
    assert!(applied.contains("bpf map rauha_devices"), "{applied}");
    assert!(applied.contains("bpf map rauha_egress"), "{applied}");
    assert_second_policy_holds(&d, &zone, &node, "after apply");

    // A clean stop leaves the links too, with the applied policy.
    assert!(d.terminate().success());
    assert!(d.log().contains("bpf links stay pinned"), "{}", d.log());
    assert_second_policy_holds(&d, &zone, &node, "after SIGTERM");
    assert!(!sysctl_write_allowed(&d, &zone.cgroup), "after SIGTERM: sysctl write went through");
    assert_links(zone.cgroup_id, 6, "after SIGTERM");

    d.spawn();
    assert_eq!(count(&d.log(), ADOPTED), 2, "{}", d.log());
    assert_links(zone.cgroup_id, 6, "after the second restart");
    assert_second_policy_holds(&d, &zone, &node, "after the second restart");

    // Deleting the zone unpins and detaches its programs.
    d.ok(&["zone", "delete", "z"]);
    assert!(!zone_pins.exists(), "zone pins removed: {}", zone_pins.display());
    assert_links(zone.cgroup_id, 0, "after zone delete");
    assert!(d.pin_dir().join("events").exists(), "the daemon's event maps stay pinned");
}

#[test]
fn mismatched_and_orphaned_pins_are_replaced_and_a_daemon_without_pin_removes_them() {
    let Some(mut d) = TestDaemon::start_with("pin_reconcile", &["--pin"]) else { return };
    add_addresses(&d);
    let kept = create_zone(&d, "kept", FIRST);
    let moved = create_zone(&d, "moved", FIRST);
    let gone = create_zone(&d, "gone", FIRST);
    let node = kmsg_node(&d);
    d.kill();

    // Behind the daemon's back: zone "moved" loses its cgroups (the daemon re-creates them, a
    // new cgroup id that its pinned links are not attached to), zone "gone" its store record.
    let moved_dir = d.cgroup_dir("unified", "zone-2");
    assert_eq!(moved_dir, moved.cgroup);
    for hierarchy in ["unified", "memory", "pids", "cpu", "cpuacct", "blkio"] {
        let dir = d.cgroup_dir(hierarchy, "zone-2");
        if dir.exists() {
            std::fs::remove_dir(&dir).unwrap();
        }
    }
    {
        let store = rauha::store::Store::open(&d.root).unwrap();
        store.delete_zone(gone.id.parse().unwrap()).unwrap();
    }

    d.spawn();
    let log = d.log();
    assert!(log.contains(&format!("{ADOPTED} zone=kept")), "{log}");
    assert!(log.contains("zone=moved"), "{log}");
    assert!(log.contains("pinned cgroup-bpf programs not adopted; attaching anew"), "{log}");
    assert!(log.contains("does not match this daemon: attached to cgroup id"), "{log}");
    assert!(log.contains("a zone that no longer exists"), "{log}");
    let moved = zone_ref(&d, "moved");
    assert_ne!(moved.cgroup_id, 0);
    assert_links(moved.cgroup_id, 6, "re-created cgroup has the programs once");
    assert_first_policy_holds(&d, &moved, &node, "re-attached");
    assert!(!d.pin_dir().join("zones").join(&gone.id).exists(), "pins of the gone zone removed");
    assert_links(gone.cgroup_id, 0, "gone zone unpinned");
    assert_links(kept.cgroup_id, 6, "kept zone adopted");
    // The re-attached zone's pins hold without the daemon, like the adopted one's.
    d.kill();
    assert_first_policy_holds(&d, &moved, &node, "re-attached, daemon down");

    // Without --pin the earlier run's pins go once the daemon's own links hold.
    d.extra_args.clear();
    d.spawn();
    assert!(d.log().contains("removed the bpf pins an earlier --pin run left"), "{}", d.log());
    assert!(!d.pin_dir().exists(), "pins removed: {}", d.pin_dir().display());
    for zone in [&kept, &moved] {
        assert_links(zone.cgroup_id, 6, "the daemon's own links only");
        assert_first_policy_holds(&d, zone, &node, "daemon without --pin");
    }
    // ... and end with it, as before --pin existed.
    d.kill();
    assert_links(kept.cgroup_id, 0, "without --pin the links end with the daemon");
    assert!(device_allowed(&d, &kept.cgroup, &node), "no programs once the daemon is gone");
    assert!(egress_allowed(&d, &kept.cgroup, "10.203.1.1:8080"));
}

/// The instance directory derives from the state dir: a second daemon with its own state dir
/// pins elsewhere (and a daemon without `--pin` nowhere); a bad `RAUHA_PIN` is refused.
#[test]
fn pin_dirs_are_per_state_dir_and_a_bad_rauha_pin_is_refused() {
    let Some(a) = TestDaemon::start_with("pin_a", &["--pin"]) else { return };
    let b = TestDaemon::start("pin_b").expect("privileged");
    assert_ne!(a.pin_dir(), b.pin_dir());
    assert!(a.pin_dir().join("zones").is_dir());
    assert!(!b.pin_dir().exists(), "no pins without --pin");
    let statfs = rustix::fs::statfs(a.pin_dir().as_path()).unwrap();
    assert_eq!(statfs.f_type as u64, 0xcafe_4a11, "pins live on bpffs");

    let other = b.dir.path().join("other");
    let mut child = Command::new(harness::RAUHA)
        .arg("daemon")
        .arg("--root")
        .arg(other.join("root"))
        .arg("--run-dir")
        .arg(other.join("run"))
        .arg("--cgroup-parent")
        .arg(harness::unique_cgroup_parent("pin-env"))
        .env("RAUHA_PIN", "maybe")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("daemon with RAUHA_PIN=maybe started");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("RAUHA_PIN: \"maybe\" is not one of"), "{stderr}");
}
