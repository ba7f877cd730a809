//! Privileged tests of the network module, all inside namespaces the tests create.

mod netlab;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use netlab::{Lab, UPLINK_HOST, UPLINK_OUT, eventually, ping, privileged, tcp};
use rauha::net::ipam::Ipam;
use rauha::net::link::{self, Rtnl};
use rauha::net::{
    self as net, CidrPort, NetError, NetMode, PeerInfo, PortMapping, Proto, host_veth_name,
};

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 201, 0, last)
}

#[test]
fn zone_to_zone_only_when_both_allow_and_reapply_is_atomic() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let s1 = lab.spec(11, 11);
    let s2 = lab.spec(12, 12);
    let s3 = lab.spec(13, 13);
    let z1 = lab.zone(&s1).unwrap();
    let z2 = lab.zone(&s2).unwrap();
    let z3 = lab.zone(&s3).unwrap();
    lab.server(z1.as_fd(), 7000);
    lab.server(z2.as_fd(), 7000);
    let cfg = lab.cfg.clone();

    // z1 lists z2, z2 lists nobody: no traffic.
    lab.nft.apply_zone(&cfg, &s1, &[PeerInfo { zone_id: 12, ip: Some(ip(12)) }]).unwrap();
    lab.nft.apply_zone(&cfg, &s2, &[]).unwrap();
    lab.nft.apply_zone(&cfg, &s3, &[PeerInfo { zone_id: 11, ip: Some(ip(11)) }]).unwrap();
    assert!(!ping(z1.as_fd(), ip(12)));
    assert!(!tcp(z1.as_fd(), ip(12), 7000));
    assert!(!tcp(z2.as_fd(), ip(11), 7000));

    // z2 lists z1 back: both directions, ping and TCP.
    lab.nft.apply_zone(&cfg, &s2, &[PeerInfo { zone_id: 11, ip: Some(ip(11)) }]).unwrap();
    assert!(eventually(|| ping(z1.as_fd(), ip(12))));
    assert!(eventually(|| tcp(z1.as_fd(), ip(12), 7000)));
    assert!(eventually(|| tcp(z2.as_fd(), ip(11), 7000)));
    // z3 lists z1 but z1 does not list z3.
    assert!(!ping(z3.as_fd(), ip(11)));
    assert!(!tcp(z3.as_fd(), ip(11), 7000));

    // Re-apply z2 without z1: blocked again.
    lab.nft.apply_zone(&cfg, &s2, &[]).unwrap();
    assert!(!tcp(z1.as_fd(), ip(12), 7000));
    assert!(!tcp(z2.as_fd(), ip(11), 7000));

    // Counters moved for the zone's eth0.
    let mut r = Rtnl::open_in(z1.as_fd()).unwrap();
    let c = link::zone_counters(&mut r).unwrap();
    assert!(c.tx_bytes > 0 && c.rx_bytes > 0, "{c:?}");
}

#[test]
fn isolated_reaches_nothing_and_bridge_address_is_closed() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let host = lab.host.try_clone().unwrap();
    lab.server(host.as_fd(), 5300);
    lab.server(host.as_fd(), 53);

    let mut iso = lab.spec(21, 21);
    iso.mode = NetMode::Isolated;
    iso.ip = None;
    let zi = lab.zone(&iso).unwrap();
    assert!(!ping(zi.as_fd(), lab.cfg.gateway));
    assert!(!tcp(zi.as_fd(), lab.cfg.gateway, 5300));
    // Loopback works inside it.
    assert!(ping(zi.as_fd(), Ipv4Addr::LOCALHOST));

    let mut b = lab.spec(22, 22);
    let zb = lab.zone(&b).unwrap();
    let cfg = lab.cfg.clone();
    lab.nft.apply_zone(&cfg, &b, &[]).unwrap();
    assert!(!ping(zb.as_fd(), lab.cfg.gateway));
    assert!(!tcp(zb.as_fd(), lab.cfg.gateway, 5300));
    assert!(!tcp(zb.as_fd(), lab.cfg.gateway, 53));

    // DNS on the gateway when configured, nothing else.
    b.host_dns = true;
    lab.nft.apply_zone(&cfg, &b, &[]).unwrap();
    assert!(eventually(|| tcp(zb.as_fd(), lab.cfg.gateway, 53)));
    assert!(!tcp(zb.as_fd(), lab.cfg.gateway, 5300));

    // A zone without rules (none applied) is closed by the base chains.
    let s3 = lab.spec(23, 23);
    let z3 = lab.zone(&s3).unwrap();
    assert!(!tcp(z3.as_fd(), lab.cfg.gateway, 53));
    assert!(!ping(z3.as_fd(), ip(22)));
}

#[test]
fn egress_allow_list_with_masquerade() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.with_outside();
    let out = lab.outside.as_ref().unwrap().try_clone().unwrap();
    lab.server(out.as_fd(), 8443);
    lab.server(out.as_fd(), 9000);

    let mut s1 = lab.spec(31, 31);
    s1.allowed_egress = vec![CidrPort { net: "10.201.1.0/24".parse().unwrap(), port: Some(8443) }];
    let s2 = lab.spec(32, 32);
    let z1 = lab.zone(&s1).unwrap();
    let z2 = lab.zone(&s2).unwrap();
    let cfg = lab.cfg.clone();
    lab.nft.apply_zone(&cfg, &s1, &[]).unwrap();
    lab.nft.apply_zone(&cfg, &s2, &[]).unwrap();

    assert!(eventually(|| tcp(z1.as_fd(), UPLINK_OUT, 8443)));
    assert!(!tcp(z1.as_fd(), UPLINK_OUT, 9000));
    assert!(!ping(z1.as_fd(), UPLINK_OUT));
    assert!(!tcp(z2.as_fd(), UPLINK_OUT, 8443));
    // The host's uplink address is the host, not "outside": closed.
    assert!(!tcp(z1.as_fd(), UPLINK_HOST, 8443));

    // Without a port the whole CIDR is open (ICMP too).
    s1.allowed_egress[0].port = None;
    lab.nft.apply_zone(&cfg, &s1, &[]).unwrap();
    assert!(eventually(|| ping(z1.as_fd(), UPLINK_OUT)));
    assert!(eventually(|| tcp(z1.as_fd(), UPLINK_OUT, 9000)));
}

#[test]
fn published_port_and_ingress_sources() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.with_outside();
    let out = lab.outside.as_ref().unwrap().try_clone().unwrap();
    let host = lab.host.try_clone().unwrap();

    let mut s = lab.spec(41, 41);
    s.published = vec![PortMapping { host_port: 8080, container_port: 80, proto: Proto::Tcp }];
    let z = lab.zone(&s).unwrap();
    lab.server(z.as_fd(), 80);
    let cfg = lab.cfg.clone();
    lab.nft.apply_zone(&cfg, &s, &[]).unwrap();

    // From the host namespace itself (output DNAT) and from outside (prerouting DNAT).
    assert!(eventually(|| tcp(host.as_fd(), UPLINK_HOST, 8080)));
    assert!(eventually(|| tcp(out.as_fd(), UPLINK_HOST, 8080)));
    // The zone's port is not directly reachable from outside without an ingress rule.
    assert!(!tcp(out.as_fd(), ip(41), 80));
    assert!(!tcp(out.as_fd(), UPLINK_HOST, 8081));

    s.allowed_ingress = vec![CidrPort { net: "10.201.1.2/32".parse().unwrap(), port: Some(80) }];
    lab.nft.apply_zone(&cfg, &s, &[]).unwrap();
    assert!(eventually(|| tcp(out.as_fd(), ip(41), 80)));

    // Unpublish: the host port is closed again, stale map element removed atomically.
    s.published.clear();
    s.allowed_ingress.clear();
    lab.nft.apply_zone(&cfg, &s, &[]).unwrap();
    assert!(!tcp(out.as_fd(), UPLINK_HOST, 8080));
    assert!(!tcp(out.as_fd(), ip(41), 80));
    let inst = lab.nft.installed().unwrap();
    assert!(inst.zones[&41].elements.iter().all(|e| e.map != "published"), "{inst:?}");
}

#[test]
fn delete_removes_veth_netns_rules_and_restart_finds_state() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let mut s = lab.spec(51, 51);
    s.published = vec![PortMapping { host_port: 8080, container_port: 80, proto: Proto::Udp }];
    let z = lab.zone(&s).unwrap();
    let cfg = lab.cfg.clone();
    lab.nft.apply_zone(&cfg, &s, &[PeerInfo { zone_id: 52, ip: Some(ip(52)) }]).unwrap();
    drop(z);

    // "Restart": fresh handles find the namespace, the link and the rules again.
    let entries = lab.zones.list().unwrap();
    assert_eq!(entries.len(), 1);
    assert!(entries[0].mounted && entries[0].zone_id == 51);
    let ns = lab.zones.open(51).unwrap();
    let mut zr = Rtnl::open_in(ns.as_fd()).unwrap();
    assert!(zr.link_index("eth0").unwrap().is_some());
    let inst = lab.nft.installed().unwrap();
    assert_eq!(inst.zones.keys().copied().collect::<Vec<_>>(), vec![51]);
    assert_eq!(inst.zones[&51].chains.len(), 9);
    assert_eq!(inst.zones[&51].elements.len(), 9);
    // Re-applying the same spec is idempotent.
    lab.nft.apply_zone(&cfg, &s, &[PeerInfo { zone_id: 52, ip: Some(ip(52)) }]).unwrap();
    assert_eq!(lab.nft.installed().unwrap(), inst);

    lab.nft.remove_zone(51).unwrap();
    net::delete_zone(&lab.zones, &mut lab.rtnl, 51).unwrap();
    assert!(lab.rtnl.link_index(&host_veth_name(51)).unwrap().is_none());
    assert!(lab.zones.list().unwrap().is_empty());
    assert!(!lab.zones.path_of(51).exists());
    assert!(lab.nft.installed().unwrap().zones.is_empty());
    // Idempotent.
    net::delete_zone(&lab.zones, &mut lab.rtnl, 51).unwrap();
    lab.nft.remove_zone(51).unwrap();
    // Base chains survive and re-ensuring them is a no-op.
    lab.nft.ensure_base(&cfg).unwrap();
    assert_eq!(link::ensure_bridge(&mut lab.rtnl, &cfg).unwrap(), lab.bridge);
}

#[test]
fn isolated_to_bridged_and_back_live() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let mut s = lab.spec(61, 61);
    s.mode = NetMode::Isolated;
    let peer = lab.spec(62, 62);
    let z = lab.zone(&s).unwrap();
    let zp = lab.zone(&peer).unwrap();
    lab.server(zp.as_fd(), 7000);
    let cfg = lab.cfg.clone();
    lab.nft.apply_zone(&cfg, &peer, &[PeerInfo { zone_id: 61, ip: Some(ip(61)) }]).unwrap();
    assert!(!tcp(z.as_fd(), ip(62), 7000));

    s.mode = NetMode::Bridged;
    let mut zr = Rtnl::open_in(z.as_fd()).unwrap();
    net::attach_zone(&mut lab.rtnl, z.as_fd(), &mut zr, &cfg, lab.bridge, &s).unwrap();
    lab.nft.apply_zone(&cfg, &s, &[PeerInfo { zone_id: 62, ip: Some(ip(62)) }]).unwrap();
    assert!(eventually(|| tcp(z.as_fd(), ip(62), 7000)));

    s.mode = NetMode::Isolated;
    lab.nft.apply_zone(&cfg, &s, &[]).unwrap();
    net::detach_zone(&mut lab.rtnl, 61).unwrap();
    assert!(!tcp(z.as_fd(), ip(62), 7000));
    assert!(zr.link_index("eth0").unwrap().is_none());
    assert!(!lab.nft.installed().unwrap().zones.contains_key(&61));
}

#[test]
fn fifty_zones_get_fifty_distinct_addresses() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let ipam = Ipam::new(&lab.cfg).unwrap();
    let mut held = BTreeSet::new();
    let mut fds = Vec::new();
    for id in 100..150u32 {
        let addr = ipam.allocate(&held).unwrap();
        held.insert(addr);
        let mut s = lab.spec(id, 0);
        s.ip = Some(addr);
        fds.push((id, lab.zone(&s).unwrap()));
    }
    assert_eq!(held.len(), 50);
    assert!(!held.contains(&lab.cfg.gateway));
    // Each zone's eth0 carries the address the allocator gave it: probe via the kernel by
    // binding a route lookup, i.e. ping our own address from inside.
    let mut seen = BTreeSet::new();
    for ((id, fd), addr) in fds.iter().zip(held.iter()) {
        assert!(ping(fd.as_fd(), *addr), "zone {id} lacks {addr}");
        seen.insert(*addr);
    }
    assert_eq!(seen.len(), 50);
    assert_eq!(lab.zones.list().unwrap().len(), 50);
    for (id, _) in &fds {
        net::delete_zone(&lab.zones, &mut lab.rtnl, *id).unwrap();
    }
    assert!(lab.zones.list().unwrap().is_empty());
}

/// Control for the negative probes above: with the daemon's tables removed the same
/// topology passes everything, so the blocked probes are blocked by the rules.
#[test]
fn control_without_rules_everything_flows() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let host = lab.host.try_clone().unwrap();
    lab.server(host.as_fd(), 5300);
    let s1 = lab.spec(71, 71);
    let s2 = lab.spec(72, 72);
    let z1 = lab.zone(&s1).unwrap();
    let z2 = lab.zone(&s2).unwrap();
    lab.server(z2.as_fd(), 7000);
    let cfg = lab.cfg.clone();
    lab.nft.apply_zone(&cfg, &s1, &[]).unwrap();
    assert!(!tcp(z1.as_fd(), ip(72), 7000));
    assert!(!tcp(z1.as_fd(), lab.cfg.gateway, 5300));
    lab.nft.remove_all().unwrap();
    assert!(eventually(|| tcp(z1.as_fd(), ip(72), 7000)));
    assert!(eventually(|| ping(z1.as_fd(), ip(72))));
    assert!(eventually(|| tcp(z1.as_fd(), lab.cfg.gateway, 5300)));
}

#[test]
fn deferred_delete_reaps_veth_and_same_id_can_return_at_once() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let s = lab.spec(81, 81);
    drop(lab.zone(&s));
    net::delete_zone_deferred(&lab.zones, 81).unwrap();
    // The same zone id comes back immediately, replacing a host end not yet reaped.
    let z = lab.zone(&s).unwrap();
    let mut zr = Rtnl::open_in(z.as_fd()).unwrap();
    assert!(zr.link_index("eth0").unwrap().is_some());
    drop(zr);
    drop(z);
    net::delete_zone_deferred(&lab.zones, 81).unwrap();
    // The kernel reaps the pair once nothing holds the namespace (bounded wait).
    let name = host_veth_name(81);
    let gone = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(25));
        lab.rtnl.link_index(&name).unwrap().is_none()
    });
    assert!(gone, "{name} still present 5 s after deferred delete");
}

/// A zone that routes to a peer through the gateway's MAC (hairpin: the host forwards it back
/// onto the bridge, bypassing the bridge forward hook) still needs both zones' consent.
#[test]
fn routed_hairpin_between_zones_needs_both_allow() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let s1 = lab.spec(91, 91);
    let s2 = lab.spec(92, 92);
    let z1 = lab.zone(&s1).unwrap();
    let z2 = lab.zone(&s2).unwrap();
    lab.server(z2.as_fd(), 7000);
    // The "attacker" setup: host routes to each other via the gateway (test tooling only).
    for (z, peer) in [(&z1, ip(92)), (&z2, ip(91))] {
        let dst = format!("{peer}/32");
        let c =
            netlab::cmd_in(z.as_fd(), &["/usr/sbin/ip", "route", "add", &dst, "via", "10.201.0.1"]);
        assert!(netlab::run_bounded(c, std::time::Duration::from_secs(5)).0);
    }
    let cfg = lab.cfg.clone();
    let p1 = PeerInfo { zone_id: 91, ip: Some(ip(91)) };
    let p2 = PeerInfo { zone_id: 92, ip: Some(ip(92)) };
    lab.nft.apply_zone(&cfg, &s1, &[p2]).unwrap();
    lab.nft.apply_zone(&cfg, &s2, &[]).unwrap();
    assert!(!tcp(z1.as_fd(), ip(92), 7000));
    assert!(!ping(z1.as_fd(), ip(92)));

    lab.nft.apply_zone(&cfg, &s2, &[p1]).unwrap();
    assert!(eventually(|| tcp(z1.as_fd(), ip(92), 7000)));

    lab.nft.apply_zone(&cfg, &s2, &[]).unwrap();
    assert!(!tcp(z1.as_fd(), ip(92), 7000));
}

#[test]
fn apply_after_known_previous_and_fallback_on_wrong_previous() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let mut s = lab.spec(95, 95);
    s.published = vec![PortMapping { host_port: 8080, container_port: 80, proto: Proto::Tcp }];
    let _z = lab.zone(&s).unwrap();
    let cfg = lab.cfg.clone();
    lab.nft.apply_zone_after(&cfg, None, &s, &[]).unwrap();
    let mut s2 = s.clone();
    s2.published[0].host_port = 9090;
    lab.nft.apply_zone_after(&cfg, Some(&s), &s2, &[]).unwrap();
    let keys = |lab: &Lab| -> Vec<serde_json::Value> {
        let inst = lab.nft.installed().unwrap();
        inst.zones[&95]
            .elements
            .iter()
            .filter(|e| e.map == "published")
            .map(|e| e.key.clone())
            .collect()
    };
    assert_eq!(keys(&lab), vec![serde_json::json!({"concat": ["tcp", 9090]})]);
    // A wrong "previous" (port 7070 never installed) makes the fast batch fail as a whole;
    // the fallback lists and still converges.
    let mut wrong = s.clone();
    wrong.published[0].host_port = 7070;
    lab.nft.apply_zone_after(&cfg, Some(&wrong), &s, &[]).unwrap();
    assert_eq!(keys(&lab), vec![serde_json::json!({"concat": ["tcp", 8080]})]);
    lab.nft.remove_zone_after(&cfg, &wrong).unwrap();
    assert!(lab.nft.installed().unwrap().zones.is_empty());
}

/// Live `nft` processes (not zombies) inside the network namespace `ns`.
fn nft_processes_in(ns: BorrowedFd<'_>) -> Vec<u32> {
    let target = std::fs::read_link(format!("/proc/self/fd/{}", ns.as_raw_fd())).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let running = stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'));
            let netns = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
            comm.trim() == "nft" && running && netns.as_ref() == Some(&target)
        })
        .collect()
}

/// The batches' nft session: a rejected batch reports nft's reason and leaves the session in
/// service; an nft that died (killed here) is replaced at the next batch; dropping the runner
/// ends its nft.
#[test]
fn nft_session_reports_rejections_replaces_a_dead_nft_and_ends_with_its_runner() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let cfg = lab.cfg.clone();
    let host = lab.host.try_clone().unwrap();
    let missing = serde_json::json!({"nftables": [
        {"delete": {"table": {"family": "inet", "name": "rauha-no-such-table"}}}
    ]});
    match lab.nft.apply("delete a missing table", &missing) {
        Err(NetError::NftFailed { action, stderr }) => {
            assert_eq!(action, "delete a missing table");
            assert!(stderr.contains("No such file or directory"), "{stderr}");
        }
        other => panic!("a missing table must be rejected, got {other:?}"),
    }
    let s = lab.spec(81, 81);
    let _zone = lab.zone(&s).unwrap();
    lab.nft.apply_zone(&cfg, &s, &[]).unwrap();
    assert!(lab.nft.installed().unwrap().zones.contains_key(&81));
    let sessions = nft_processes_in(host.as_fd());
    assert_eq!(sessions.len(), 1, "one nft session per runner: {sessions:?}");

    let killed = rustix::process::Pid::from_raw(sessions[0] as i32).unwrap();
    rustix::process::kill_process(killed, rustix::process::Signal::KILL).unwrap();
    for _ in 0..100 {
        if nft_processes_in(host.as_fd()).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    lab.nft.remove_zone(81).unwrap();
    assert!(!lab.nft.installed().unwrap().zones.contains_key(&81));
    let replacement = nft_processes_in(host.as_fd());
    assert_eq!(replacement.len(), 1, "{replacement:?}");
    assert_ne!(replacement[0], sessions[0]);

    drop(lab);
    let gone = std::path::Path::new(&format!("/proc/{}", replacement[0])).exists();
    assert!(!gone, "nft session {} outlived its runner", replacement[0]);
}

/// Rules in the daemon's chain `chain` of `family`, as nft lists them in `ns`.
fn rules_in_chain(ns: BorrowedFd<'_>, family: &str, chain: &str) -> usize {
    let c = netlab::cmd_in(ns, &["nft", "-j", "list", "chain", family, "rauha", chain]);
    let (ok, out) = netlab::run_bounded(c, std::time::Duration::from_secs(10));
    assert!(ok, "list chain {family} {chain}");
    let listing: serde_json::Value = serde_json::from_str(&out).unwrap();
    listing["nftables"].as_array().unwrap().iter().filter(|o| o.get("rule").is_some()).count()
}

/// The fast paths trust the daemon's own record of what is installed; when the kernel holds
/// something else (chains of an earlier zone with the same id, a zone already gone) they fall
/// back to listing and end in the same state, with no rule doubled.
#[test]
fn new_zone_and_known_removal_fall_back_when_the_kernel_disagrees() {
    if !privileged() {
        return;
    }
    let lab = Lab::new();
    let cfg = lab.cfg.clone();
    let host = lab.host.try_clone().unwrap();
    let s = lab.spec(91, 91);
    lab.nft.apply_zone(&cfg, &s, &[]).unwrap();
    let pre_rules = rules_in_chain(host.as_fd(), "bridge", "z91-pre");
    assert!(pre_rules > 0);

    // Stale chains of the same id: `create chain` fails, the fallback flushes and refills.
    lab.nft.begin_new_zone(&cfg, &s, &[]).unwrap().finish().unwrap();
    assert_eq!(rules_in_chain(host.as_fd(), "bridge", "z91-pre"), pre_rules);
    let installed = lab.nft.installed().unwrap();
    assert_eq!(installed.zones[&91].elements.len(), net::nft::zone_elements(&cfg, &s).len());

    lab.nft.remove_zone_after(&cfg, &s).unwrap();
    assert!(!lab.nft.installed().unwrap().zones.contains_key(&91));
    // Already gone: the delete-only batch fails and the listing fallback finds nothing to do.
    lab.nft.remove_zone_after(&cfg, &s).unwrap();
    assert!(!lab.nft.installed().unwrap().zones.contains_key(&91));
}

/// Whatever nft's line editor writes to stderr while it sets itself up (here it complains about
/// an unknown terminal type, as it does about a missing terminfo database on minimal systems)
/// is not read as the first batch's rejection.
#[test]
fn nft_session_is_not_confused_by_the_line_editor_at_start() {
    if !privileged() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new();
    let wrapper = lab.root.join("nft-unknown-terminal");
    std::fs::write(&wrapper, "#!/bin/sh\nTERM=rauha-no-such-terminal exec /usr/sbin/nft \"$@\"\n")
        .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let nft = rauha::net::nft::Nft::with_program(lab.host.as_fd(), &wrapper).unwrap();
    let s = lab.spec(95, 95);
    nft.apply_zone(&lab.cfg, &s, &[]).unwrap();
    assert!(nft.installed().unwrap().zones.contains_key(&95));
    nft.remove_zone(95).unwrap();
    assert!(!nft.installed().unwrap().zones.contains_key(&95));
}
