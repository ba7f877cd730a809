//! Zone networking through the daemon: bridged zones, mutual allow-lists, isolation, the
//! bridge address closed to zones, published ports, live policy changes, restart and delete.
//! Everything happens inside the harness's network namespace: the daemon's "host" side is that
//! namespace, never the machine's.

mod harness;

use std::process::{Child, Stdio};
use std::time::Duration;

use harness::TestDaemon;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text}"))
}

fn zone(d: &TestDaemon, name: &str, policy: &str) -> String {
    let file = d.write_file(&format!("{name}.toml"), policy);
    d.ok(&["zone", "create", "--name", name, "--policy", file.to_str().unwrap()]);
    address(d, name)
}

fn address(d: &TestDaemon, name: &str) -> String {
    json(&d.ok(&["zone", "inspect", name]))["address"].as_str().unwrap().to_owned()
}

fn apply(d: &TestDaemon, name: &str, policy: &str) {
    let file = d.write_file(&format!("{name}-apply.toml"), policy);
    d.ok(&["policy", "apply", "--zone", name, file.to_str().unwrap()]);
}

/// A TCP server in `zone` answering every connection with `reply`.
fn server(d: &TestDaemon, zone: &str, name: &str, port: u16, reply: &str, publish: Option<&str>) {
    let port = port.to_string();
    let mut args = vec!["run", "--zone", zone, "-d", "--name", name];
    if let Some(mapping) = publish {
        args.extend(["-p", mapping]);
    }
    args.extend(["busybox", "nc", "-ll", "-p", &port, "-e", "echo", reply]);
    d.ok(&args);
}

/// What a client in `zone` reads from ip:port within two seconds ("" when it cannot connect).
fn fetch(d: &TestDaemon, zone: &str, ip: &str, port: u16) -> String {
    let script = format!("nc -w 2 {ip} {port} </dev/null 2>/dev/null; true");
    d.ok(&["run", "--zone", zone, "--rm", "busybox", "sh", "-c", &script]).trim().to_owned()
}

/// The same from the daemon's own network namespace (the "host" side).
fn fetch_from_host(d: &TestDaemon, ip: &str, port: u16) -> String {
    let out = d
        .netns
        .command("busybox")
        .args(["nc", "-w", "2", ip, &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

const BRIDGED: &str = "[network]\nmode = \"bridged\"\n";

fn bridged_allowing(peers: &[&str]) -> String {
    let list: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    format!("[network]\nmode = \"bridged\"\nallowed_zones = [{}]\n", list.join(", "))
}

#[test]
fn bridged_zones_talk_only_when_both_allow_and_changes_apply_live() {
    let Some(d) = TestDaemon::start("zone_to_zone") else { return };
    d.import_busybox();
    let a = zone(&d, "a", &bridged_allowing(&["b"]));
    let b = zone(&d, "b", BRIDGED);
    assert!(a.starts_with("10.89.") && b.starts_with("10.89.") && a != b, "{a} {b}");
    server(&d, "b", "srv", 8080, "pong", None);

    // a allows b, but b does not allow a: no traffic.
    assert_eq!(fetch(&d, "a", &b, 8080), "");
    // b allows a now; the server keeps running and is reached.
    apply(&d, "b", &bridged_allowing(&["a"]));
    assert_eq!(fetch(&d, "a", &b, 8080), "pong");
    // Zone↔zone traffic is filtered statelessly: the daemon's namespace keeps no conntrack
    // entry for it (br_netfilter hands bridged frames to the inet hooks too).
    let conntrack = d.netns.command("cat").arg("/proc/net/nf_conntrack").output().unwrap();
    assert!(conntrack.status.success(), "{}", String::from_utf8_lossy(&conntrack.stderr));
    let tracked = String::from_utf8_lossy(&conntrack.stdout).into_owned();
    assert!(!tracked.contains(&format!("src={a} dst={b} ")), "{tracked}");
    let ping = format!("ping -c 1 -W 2 {b} >/dev/null && echo reachable");
    assert_eq!(
        d.ok(&["run", "--zone", "a", "--rm", "busybox", "sh", "-c", &ping]).trim(),
        "reachable"
    );
    // And withdrawn again.
    apply(&d, "b", BRIDGED);
    assert_eq!(fetch(&d, "a", &b, 8080), "");
    apply(&d, "b", &bridged_allowing(&["a"]));
    let stats = json(&d.ok(&["zone", "stats", "b", "--json"]));
    assert!(stats["network_rx_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["network_tx_bytes"].as_u64().unwrap() > 0, "{stats}");
}

#[test]
fn isolated_zones_reach_nothing_and_zones_cannot_reach_the_bridge() {
    let Some(d) = TestDaemon::start("isolation") else { return };
    d.import_busybox();
    let b = zone(&d, "b", &bridged_allowing(&["a", "iso"]));
    zone(&d, "a", &bridged_allowing(&["b"]));
    zone(&d, "iso", "[network]\nmode = \"isolated\"\n");
    assert_eq!(address(&d, "iso"), "");
    server(&d, "b", "srv", 8080, "pong", None);
    assert_eq!(fetch(&d, "a", &b, 8080), "pong", "control: a reaches b");
    assert_eq!(fetch(&d, "iso", &b, 8080), "");
    let links = d.ok(&["run", "--zone", "iso", "--rm", "busybox", "ls", "/sys/class/net"]);
    assert_eq!(links.trim(), "lo");

    // A service on the bridge address, in the daemon's namespace.
    let mut listener: Child = d
        .netns
        .command("busybox")
        .args(["nc", "-ll", "-p", "9999", "-e", "echo", "host-service"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(fetch_from_host(&d, "10.89.0.1", 9999), "host-service", "control: the service runs");
    assert_eq!(fetch(&d, "a", "10.89.0.1", 9999), "");
    listener.kill().unwrap();
    listener.wait().unwrap();
}

#[test]
fn published_ports_reach_the_container_from_the_host_side() {
    let Some(d) = TestDaemon::start("publish") else { return };
    d.import_busybox();
    zone(&d, "web", BRIDGED);
    server(&d, "web", "site", 8080, "published", Some("18080:8080"));
    assert!(d.ok(&["ps"]).contains("18080->8080/tcp"));
    assert_eq!(fetch_from_host(&d, "10.89.0.1", 18080), "published");
    let error = d.fails(&["run", "--zone", "web", "-d", "-p", "18080:80", "busybox", "sleep", "5"]);
    assert!(error.contains("site"), "{error}");
    zone(&d, "quiet", "[network]\nmode = \"isolated\"\n");
    let error = d.fails(&["run", "--zone", "quiet", "-p", "18081:80", "busybox", "true"]);
    assert!(error.contains("not bridged"), "{error}");
    d.ok(&["rm", "-f", "site"]);
    assert_eq!(fetch_from_host(&d, "10.89.0.1", 18080), "");
}

#[test]
fn restart_keeps_addresses_and_rules_and_delete_removes_them() {
    let Some(mut d) = TestDaemon::start("network_restart") else { return };
    d.import_busybox();
    let a = zone(&d, "a", &bridged_allowing(&["b"]));
    let b = zone(&d, "b", &bridged_allowing(&["a"]));
    server(&d, "b", "srv", 8080, "pong", None);
    d.kill();
    d.spawn();
    assert_eq!(address(&d, "a"), a);
    assert_eq!(address(&d, "b"), b);
    assert_eq!(fetch(&d, "a", &b, 8080), "pong");

    let numeric = json(&d.ok(&["zone", "inspect", "b"]))["numeric_id"].as_u64().unwrap();
    d.ok(&["zone", "delete", "--force", "b"]);
    // The veth goes with the zone's namespace, reaped by the kernel once it is freed.
    let veth = format!("rz{numeric}@");
    let mut links = String::new();
    for _ in 0..200 {
        let out = d.netns.command("ip").args(["-o", "link"]).output().unwrap();
        links = String::from_utf8_lossy(&out.stdout).to_string();
        if !links.contains(&veth) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(!links.contains(&veth), "veth left: {links}");
    let rules = d.netns.command("nft").args(["list", "ruleset"]).output().unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout).to_string();
    assert!(!rules.contains(&format!("z{numeric}-")), "rules left: {rules}");
    assert!(!d.run_dir.join("netns").join(format!("zone-{numeric}")).exists());

    // The freed address goes to the next bridged zone; held ones are never handed out.
    let c = zone(&d, "c", BRIDGED);
    assert_eq!(c, b);
    let mut seen = std::collections::BTreeSet::from([a, c]);
    for n in 0..12 {
        assert!(seen.insert(zone(&d, &format!("z{n}"), BRIDGED)), "duplicate address");
    }
}
