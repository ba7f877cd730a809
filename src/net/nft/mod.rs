//! nftables policy built as structured data (libnftables JSON) and applied through a
//! long-lived `nft -j -i` session ([`session`]) inside a given network namespace.
//!
//! Layout: two daemon-owned tables, `bridge rauha` and `inet rauha`. Their base chains are
//! fixed and dispatch through verdict maps keyed by the zone's interface (bridge family) or
//! address (inet family) into per-zone chains `z<id>-<part>`. A zone's rules are therefore
//! its own chains plus its map elements, replaced in one nft transaction (flush + re-add),
//! never touching other zones.
//!
//! Zone ↔ zone (bridge forward): a frame from zone A to zone B passes A's `out` chain only if
//! A lists B, then B's `in` chain only if B lists A; so each zone's rules depend on its own
//! list alone and traffic flows only where both allow it, in both directions (no conntrack in
//! the bridge family).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};

mod session;

use session::{Failure, Session};

use crate::net::{
    Cidr, CidrPort, HOST_VETH_PREFIX, NetConfig, NetError, NetMode, PeerInfo, Proto, ZoneNetSpec,
    host_veth_name,
};

/// Name of both daemon-owned tables.
pub const TABLE: &str = "rauha";
/// Default path of the nft binary.
pub const NFT: &str = "/usr/sbin/nft";

/// Bridge-family per-zone chain parts.
const BRIDGE_PARTS: [&str; 3] = ["pre", "out", "in"];
/// Inet-family per-zone chain parts.
const INET_PARTS: [&str; 6] = ["input", "egress", "ingress", "dnat", "zout", "zin"];

/// Bridge-family maps: name → key type (all map to verdicts).
const BRIDGE_MAPS: [(&str, &str); 3] =
    [("zone_pre", "ifname"), ("zone_out", "ifname"), ("zone_in", "ifname")];
/// Inet-family maps keyed by zone address, and the zone chain part each one dispatches to.
const INET_ADDR_MAPS: [(&str, &str); 5] = [
    ("zone_input", "input"),
    ("zone_egress", "egress"),
    ("zone_ingress", "ingress"),
    ("zone_out4", "zout"),
    ("zone_in4", "zin"),
];
/// Inet-family map of published ports (`proto . port` → the zone's dnat chain).
const PUBLISHED_MAP: &str = "published";

/// Packet mark bit the bridge family sets on zone↔zone frames it accepted, so the inet forward
/// chain (which br_netfilter runs for the same frames) skips its by-address pair check for
/// them. The inet raw chain clears it on everything entering from the bridge, and the bridge
/// forward chain runs before br_netfilter, so only frames the bridge check accepted carry it;
/// routed (hairpinned) zone↔zone packets never do and still get the pair check. A frame
/// leaving through the peer's veth loses its mark when it crosses into that namespace.
pub const BRIDGED_PAIR_MARK: u32 = 0x0020_0000;

/// Name of a zone's chain for `part`.
pub fn zone_chain(zone_id: u32, part: &str) -> String {
    format!("z{zone_id}-{part}")
}

/// The zone id and part of a per-zone chain name, if it is one.
pub fn parse_zone_chain(name: &str) -> Option<(u32, &str)> {
    let (id, part) = name.strip_prefix('z')?.split_once('-')?;
    let known = BRIDGE_PARTS.contains(&part) || INET_PARTS.contains(&part);
    Some((id.parse().ok()?, part)).filter(|_| known)
}

// ---- expression builders (the libnftables JSON schema, nft 1.0) ----

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn matches(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn eq(left: Value, right: Value) -> Value {
    matches("==", left, right)
}

fn ne(left: Value, right: Value) -> Value {
    matches("!=", left, right)
}

/// `meta mark set meta mark OP value`: one bit set (`|`) or cleared (`&` with the inverse).
fn mark_set(op: &str, value: u32) -> Value {
    json!({"mangle": {"key": meta("mark"), "value": {op: [meta("mark"), value]}}})
}

/// `meta mark & bit == bit`.
fn mark_has(bit: u32) -> Value {
    eq(json!({"&": [meta("mark"), bit]}), json!(bit))
}

fn verdict(v: &str) -> Value {
    json!({ v: null })
}

fn jump(chain: &str) -> Value {
    json!({"jump": {"target": chain}})
}

fn vmap(key: Value, map: &str) -> Value {
    json!({"vmap": {"key": key, "data": format!("@{map}")}})
}

/// A value or an anonymous set of values (nft wants a plain value for one element).
fn one_or_set(mut values: Vec<Value>) -> Value {
    if values.len() == 1 { values.remove(0) } else { json!({"set": values}) }
}

/// A CIDR as nft right-hand side: a bare address for a host route, else a prefix.
fn cidr_value(c: &Cidr) -> Value {
    let full = if c.addr.is_ipv4() { 32 } else { 128 };
    if c.prefix == full {
        json!(c.addr.to_string())
    } else {
        json!({"prefix": {"addr": c.addr.to_string(), "len": c.prefix}})
    }
}

/// `ip saddr` / `ip6 daddr` … for the CIDR's family.
fn addr_match(c: &Cidr, field: &str) -> Value {
    let proto = if c.addr.is_ipv4() { "ip" } else { "ip6" };
    eq(payload(proto, field), cidr_value(c))
}

/// Matches for "tcp or udp destination port P" (allow-list ports cover both protocols).
fn any_l4_port(port: u16) -> [Value; 2] {
    [eq(meta("l4proto"), json!({"set": ["tcp", "udp"]})), eq(payload("th", "dport"), json!(port))]
}

fn cidr_port_rule(cp: &CidrPort, field: &str) -> Vec<Value> {
    let mut expr = vec![addr_match(&cp.net, field)];
    if let Some(port) = cp.port {
        expr.extend(any_l4_port(port));
    }
    expr.push(verdict("accept"));
    expr
}

// ---- command builders ----

fn cmd(verb: &str, object: &str, body: Value) -> Value {
    json!({ verb: { object: body } })
}

fn table(family: &str) -> Value {
    json!({"family": family, "name": TABLE})
}

fn chain_ref(family: &str, name: &str) -> Value {
    json!({"family": family, "table": TABLE, "name": name})
}

fn base_chain(family: &str, name: &str, ty: &str, hook: &str, prio: i32) -> Value {
    json!({"family": family, "table": TABLE, "name": name, "type": ty, "hook": hook,
           "prio": prio, "policy": "accept"})
}

fn rule(family: &str, chain: &str, expr: Vec<Value>) -> Value {
    cmd("add", "rule", json!({"family": family, "table": TABLE, "chain": chain, "expr": expr}))
}

fn map_decl(family: &str, name: &str, key_type: Value) -> Value {
    cmd(
        "add",
        "map",
        json!({"family": family, "table": TABLE, "name": name, "type": key_type,
               "map": "verdict"}),
    )
}

fn element(verb: &str, family: &str, map: &str, elem: Value) -> Value {
    cmd(verb, "element", json!({"family": family, "table": TABLE, "name": map, "elem": [elem]}))
}

/// Tables and maps, declared idempotently (`add` of an existing object is a no-op).
fn declarations() -> Vec<Value> {
    let mut out = vec![cmd("add", "table", table("bridge")), cmd("add", "table", table("inet"))];
    for (name, key) in BRIDGE_MAPS {
        out.push(map_decl("bridge", name, json!(key)));
    }
    for (name, _) in INET_ADDR_MAPS {
        out.push(map_decl("inet", name, json!("ipv4_addr")));
    }
    out.push(map_decl("inet", PUBLISHED_MAP, json!(["inet_proto", "inet_service"])));
    out
}

fn batch(commands: Vec<Value>) -> Value {
    json!({ "nftables": commands })
}

/// The daemon's fixed rules: tables, maps and base chains (flushed and re-added, so applying
/// twice is a no-op). Zone state lives in maps and per-zone chains and survives this.
pub fn base_ruleset(cfg: &NetConfig) -> Value {
    let br = cfg.bridge.as_str();
    let ports = format!("{HOST_VETH_PREFIX}*");
    let subnet = json!({"prefix": {"addr": cfg.subnet.network().to_string(),
                                   "len": cfg.subnet.prefix}});
    let mut c = declarations();
    let chains = [
        ("bridge", "prerouting", "filter", "prerouting", -200),
        // Before br_netfilter's forward hook (priority 0), which runs the inet forward chain.
        ("bridge", "forward", "filter", "forward", -200),
        ("inet", "raw", "filter", "prerouting", -300),
        ("inet", "input", "filter", "input", 0),
        ("inet", "forward", "filter", "forward", 0),
        ("inet", "prerouting", "nat", "prerouting", -100),
        ("inet", "output", "nat", "output", -100),
        ("inet", "postrouting", "nat", "postrouting", 100),
    ];
    // Re-created rather than updated: the kernel refuses to change the hook priority of an
    // existing base chain (a table made by an earlier version).
    for (family, name, ty, hook, prio) in chains {
        c.push(cmd("add", "chain", chain_ref(family, name)));
        c.push(cmd("flush", "chain", chain_ref(family, name)));
        c.push(cmd("delete", "chain", chain_ref(family, name)));
        c.push(cmd("add", "chain", base_chain(family, name, ty, hook, prio)));
    }
    let established =
        || matches("in", json!({"ct": {"key": "state"}}), json!(["established", "related"]));

    // bridge prerouting: per-zone anti-spoofing.
    c.push(rule("bridge", "prerouting", vec![vmap(meta("iifname"), "zone_pre")]));
    // bridge forward: ARP passes (address resolution only; the zone's pre chain pins its
    // sender address), then the sending zone's out chain; anything else between our ports
    // is dropped.
    c.push(rule(
        "bridge",
        "forward",
        vec![eq(payload("ether", "type"), json!("arp")), verdict("accept")],
    ));
    c.push(rule("bridge", "forward", vec![vmap(meta("iifname"), "zone_out")]));
    for dir in ["iifname", "oifname"] {
        c.push(rule("bridge", "forward", vec![eq(meta(dir), json!(ports)), verdict("drop")]));
    }

    // inet input: traffic from the bridge to the host itself.
    c.push(rule("inet", "input", vec![ne(meta("iifname"), json!(br)), verdict("accept")]));
    c.push(rule("inet", "input", vec![established(), verdict("accept")]));
    c.push(rule("inet", "input", vec![vmap(payload("ip", "saddr"), "zone_input")]));
    c.push(rule("inet", "input", vec![verdict("drop")]));

    // inet raw: zone↔zone packets seen here (bridged ones via br_netfilter, which presents
    // them as arriving on the bridge itself, and hairpinned ones) are filtered statelessly in
    // both families, so conntrack would only cost throughput. The gateway and anything
    // outside the subnet stay tracked (NAT, established replies).
    c.push(rule(
        "inet",
        "raw",
        vec![
            eq(meta("iifname"), json!(br)),
            eq(payload("ip", "daddr"), subnet.clone()),
            ne(payload("ip", "daddr"), json!(cfg.gateway.to_string())),
            mark_set("&", !BRIDGED_PAIR_MARK),
            json!({"notrack": null}),
        ],
    ));

    // inet forward: routed traffic to and from zones.
    // Zone↔zone within the bridge: bridged packets (br_netfilter) the bridge family already
    // accepted pass on their mark; packets a zone routes via the gateway's MAC (hairpin) get
    // the same pairwise check by address (the bridge prerouting chain pins each port's
    // source address); nothing else passes.
    let intra = || vec![eq(meta("iifname"), json!(br)), eq(meta("oifname"), json!(br))];
    let mut r = intra();
    r.extend([mark_has(BRIDGED_PAIR_MARK), verdict("accept")]);
    c.push(rule("inet", "forward", r));
    let mut r = intra();
    r.push(vmap(payload("ip", "saddr"), "zone_out4"));
    c.push(rule("inet", "forward", r));
    let mut r = intra();
    r.push(verdict("drop"));
    c.push(rule("inet", "forward", r));
    c.push(rule(
        "inet",
        "forward",
        vec![ne(meta("iifname"), json!(br)), ne(meta("oifname"), json!(br)), verdict("accept")],
    ));
    c.push(rule("inet", "forward", vec![established(), verdict("accept")]));
    c.push(rule(
        "inet",
        "forward",
        vec![eq(meta("iifname"), json!(br)), vmap(payload("ip", "saddr"), "zone_egress")],
    ));
    c.push(rule(
        "inet",
        "forward",
        vec![eq(meta("oifname"), json!(br)), vmap(payload("ip", "daddr"), "zone_ingress")],
    ));
    c.push(rule("inet", "forward", vec![verdict("drop")]));

    // nat: published ports for traffic arriving from outside the bridge (prerouting) and
    // from the host itself (output). Zones do not get hairpin access to published ports.
    let published_key = json!({"concat": [meta("l4proto"), payload("th", "dport")]});
    c.push(rule(
        "inet",
        "prerouting",
        vec![
            eq(meta("nfproto"), json!("ipv4")),
            ne(meta("iifname"), json!(br)),
            eq(json!({"fib": {"result": "type", "flags": ["daddr"]}}), json!("local")),
            vmap(published_key.clone(), PUBLISHED_MAP),
        ],
    ));
    c.push(rule(
        "inet",
        "output",
        vec![
            eq(meta("nfproto"), json!("ipv4")),
            eq(json!({"fib": {"result": "type", "flags": ["daddr"]}}), json!("local")),
            vmap(published_key, PUBLISHED_MAP),
        ],
    ));
    c.push(rule(
        "inet",
        "postrouting",
        vec![
            eq(payload("ip", "saddr"), subnet),
            ne(meta("oifname"), json!(br)),
            json!({"masquerade": null}),
        ],
    ));
    batch(c)
}

/// The complete ruleset of one zone as one nft batch: its chains flushed and refilled and its
/// map elements added. `peers` are the zones this zone lists in `allowed_zones`; a peer's own
/// chains decide whether it lists this zone back. Stale elements of a previous version are
/// not known here; [`apply_zone`] deletes them in the same transaction.
///
/// A zone that is not bridged (or has no address) gets empty-ruleset semantics: only
/// declarations, no chains; use [`remove_commands`] to drop what it had.
pub fn zone_ruleset(cfg: &NetConfig, zone: &ZoneNetSpec, peers: &[PeerInfo]) -> Value {
    batch(zone_commands(cfg, zone, peers, Install::Replace))
}

/// How a zone's batch treats what may already be installed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Install {
    /// Declare tables and maps, add and flush the zone's chains: fits any earlier state.
    Replace,
    /// Nothing of the zone exists and the base ruleset is in place: `create` the chains, which
    /// fails (changing nothing) if that is not so. The batch is a third smaller, and nft's
    /// interactive mode reads it a byte at a time.
    Fresh,
}

/// Every chain of a zone, with its family.
fn zone_chains(zone_id: u32) -> impl Iterator<Item = Value> {
    [("bridge", &BRIDGE_PARTS[..]), ("inet", &INET_PARTS[..])].into_iter().flat_map(
        move |(family, parts)| {
            parts.iter().map(move |part| chain_ref(family, &zone_chain(zone_id, part)))
        },
    )
}

fn zone_commands(
    cfg: &NetConfig,
    zone: &ZoneNetSpec,
    peers: &[PeerInfo],
    install: Install,
) -> Vec<Value> {
    let mut c = if install == Install::Replace { declarations() } else { Vec::new() };
    let (NetMode::Bridged, Some(ip)) = (zone.mode, zone.ip) else {
        return c;
    };
    let id = zone.zone_id;
    let ifname = host_veth_name(id);
    let ch = |part: &str| zone_chain(id, part);
    for chain in zone_chains(id) {
        match install {
            Install::Replace => {
                c.push(cmd("add", "chain", chain.clone()));
                c.push(cmd("flush", "chain", chain));
            }
            Install::Fresh => c.push(cmd("create", "chain", chain)),
        }
    }
    let ip_s = ip.to_string();

    // Anti-spoofing: the zone may only send from its own address; no IPv6 on the bridge.
    c.push(rule(
        "bridge",
        &ch("pre"),
        vec![ne(payload("ip", "saddr"), json!(ip_s)), verdict("drop")],
    ));
    c.push(rule(
        "bridge",
        &ch("pre"),
        vec![ne(payload("arp", "saddr ip"), json!(ip_s)), verdict("drop")],
    ));
    c.push(rule(
        "bridge",
        &ch("pre"),
        vec![eq(payload("ether", "type"), json!("ip6")), verdict("drop")],
    ));

    // Zone ↔ zone.
    let peer_names: BTreeSet<String> =
        peers.iter().filter(|p| p.zone_id != id).map(|p| host_veth_name(p.zone_id)).collect();
    if !peer_names.is_empty() {
        let set = one_or_set(peer_names.iter().map(|n| json!(n)).collect());
        c.push(rule(
            "bridge",
            &ch("out"),
            vec![eq(meta("oifname"), set.clone()), vmap(meta("oifname"), "zone_in")],
        ));
        c.push(rule(
            "bridge",
            &ch("in"),
            vec![eq(meta("iifname"), set), mark_set("|", BRIDGED_PAIR_MARK), verdict("accept")],
        ));
    }
    c.push(rule("bridge", &ch("out"), vec![verdict("drop")]));
    c.push(rule("bridge", &ch("in"), vec![verdict("drop")]));
    // The same pairwise check by address for routed zone↔zone packets (inet forward).
    let peer_ips: BTreeSet<String> = peers
        .iter()
        .filter(|p| p.zone_id != id)
        .filter_map(|p| p.ip)
        .map(|ip| ip.to_string())
        .collect();
    if !peer_ips.is_empty() {
        let set = one_or_set(peer_ips.iter().map(|n| json!(n)).collect());
        c.push(rule(
            "inet",
            &ch("zout"),
            vec![eq(payload("ip", "daddr"), set.clone()), vmap(payload("ip", "daddr"), "zone_in4")],
        ));
        c.push(rule("inet", &ch("zin"), vec![eq(payload("ip", "saddr"), set), verdict("accept")]));
    }
    c.push(rule("inet", &ch("zout"), vec![verdict("drop")]));
    c.push(rule("inet", &ch("zin"), vec![verdict("drop")]));

    // Zone → host: nothing but DNS on the gateway when configured.
    if zone.host_dns {
        let mut expr = vec![eq(payload("ip", "daddr"), json!(cfg.gateway.to_string()))];
        expr.extend(any_l4_port(53));
        expr.push(verdict("accept"));
        c.push(rule("inet", &ch("input"), expr));
    }
    c.push(rule("inet", &ch("input"), vec![verdict("drop")]));

    // Zone → outside.
    for cp in &zone.allowed_egress {
        c.push(rule("inet", &ch("egress"), cidr_port_rule(cp, "daddr")));
    }
    c.push(rule("inet", &ch("egress"), vec![verdict("drop")]));

    // Outside → zone: published ports (after DNAT) and allowed sources.
    for p in &zone.published {
        c.push(rule(
            "inet",
            &ch("ingress"),
            vec![
                matches("in", json!({"ct": {"key": "status"}}), json!("dnat")),
                eq(meta("l4proto"), json!(p.proto.as_str())),
                eq(payload("th", "dport"), json!(p.container_port)),
                verdict("accept"),
            ],
        ));
    }
    for cp in &zone.allowed_ingress {
        c.push(rule("inet", &ch("ingress"), cidr_port_rule(cp, "saddr")));
    }
    c.push(rule("inet", &ch("ingress"), vec![verdict("drop")]));

    // Published ports: DNAT host port → zone address:container port.
    for p in &zone.published {
        c.push(rule(
            "inet",
            &ch("dnat"),
            vec![
                eq(meta("l4proto"), json!(p.proto.as_str())),
                eq(payload("th", "dport"), json!(p.host_port)),
                json!({"dnat": {"family": "ip", "addr": ip_s, "port": p.container_port}}),
            ],
        ));
    }

    // Map elements route this zone's traffic into its chains.
    for (map, part) in [("zone_pre", "pre"), ("zone_out", "out"), ("zone_in", "in")] {
        c.push(element("add", "bridge", map, json!([ifname, jump(&ch(part))])));
    }
    for (map, part) in INET_ADDR_MAPS {
        c.push(element("add", "inet", map, json!([ip_s, jump(&ch(part))])));
    }
    let published: BTreeSet<(Proto, u16)> =
        zone.published.iter().map(|p| (p.proto, p.host_port)).collect();
    for (proto, port) in published {
        c.push(element(
            "add",
            "inet",
            PUBLISHED_MAP,
            json!([{"concat": [proto.as_str(), port]}, jump(&ch("dnat"))]),
        ));
    }
    c
}

/// A map element that dispatches into a zone's chain, as listed by nft.
#[derive(Debug, Clone, PartialEq)]
pub struct InstalledElement {
    /// Table family (`bridge` or `inet`).
    pub family: String,
    /// Map name.
    pub map: String,
    /// Element key exactly as nft lists it (reused verbatim to delete it).
    pub key: Value,
}

/// What is installed for one zone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstalledZone {
    /// Per-zone chains as (family, name).
    pub chains: BTreeSet<(String, String)>,
    /// Map elements jumping into the zone's chains.
    pub elements: Vec<InstalledElement>,
}

/// The daemon's tables as found in the kernel, per zone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Installed {
    /// Whether each table exists: (bridge, inet).
    pub tables: (bool, bool),
    /// Per-zone state by zone id.
    pub zones: BTreeMap<u32, InstalledZone>,
}

/// Parses `nft -j list ruleset` output into the daemon's per-zone state (other tables are
/// ignored).
pub fn parse_installed(listing: &Value) -> Installed {
    let mut out = Installed::default();
    let Some(items) = listing.get("nftables").and_then(Value::as_array) else {
        return out;
    };
    let ours = |o: &Value, key: &str| {
        let family = o.get("family").and_then(Value::as_str)?;
        let table = o.get(key).and_then(Value::as_str)?;
        (table == TABLE && (family == "bridge" || family == "inet")).then(|| family.to_owned())
    };
    for item in items {
        if let Some(t) = item.get("table") {
            match ours(t, "name").as_deref() {
                Some("bridge") => out.tables.0 = true,
                Some("inet") => out.tables.1 = true,
                _ => {}
            }
        } else if let Some(chain) = item.get("chain") {
            let (Some(family), Some(name)) =
                (ours(chain, "table"), chain.get("name").and_then(Value::as_str))
            else {
                continue;
            };
            if let Some((id, _)) = parse_zone_chain(name) {
                out.zones.entry(id).or_default().chains.insert((family, name.to_owned()));
            }
        } else if let Some(map) = item.get("map") {
            let (Some(family), Some(name)) =
                (ours(map, "table"), map.get("name").and_then(Value::as_str))
            else {
                continue;
            };
            let elems = map.get("elem").and_then(Value::as_array);
            for elem in elems.into_iter().flatten() {
                // Map elements list as [key, verdict].
                let Some([key, data]) = elem.as_array().map(Vec::as_slice).and_then(|s| {
                    <&[Value; 2]>::try_from(s).ok().map(|a| [a[0].clone(), a[1].clone()])
                }) else {
                    continue;
                };
                let target = data
                    .get("jump")
                    .or_else(|| data.get("goto"))
                    .and_then(|j| j.get("target"))
                    .and_then(Value::as_str);
                if let Some((id, _)) = target.and_then(parse_zone_chain) {
                    out.zones.entry(id).or_default().elements.push(InstalledElement {
                        family: family.clone(),
                        map: name.to_owned(),
                        key,
                    });
                }
            }
        }
    }
    out
}

/// Commands deleting a zone's map elements as installed (first, since they reference its
/// chains).
fn delete_elements(installed: &InstalledZone) -> Vec<Value> {
    installed.elements.iter().map(|e| element("delete", &e.family, &e.map, e.key.clone())).collect()
}

/// The map elements `zone`'s ruleset installs, in the form nft lists them (what a later apply
/// or removal must delete first).
pub fn zone_elements(cfg: &NetConfig, zone: &ZoneNetSpec) -> Vec<InstalledElement> {
    zone_commands(cfg, zone, &[], Install::Replace)
        .iter()
        .filter_map(|c| c.get("add").and_then(|a| a.get("element")))
        .filter_map(|e| {
            Some(InstalledElement {
                family: e.get("family")?.as_str()?.to_owned(),
                map: e.get("name")?.as_str()?.to_owned(),
                key: e.get("elem")?.get(0)?.get(0)?.clone(),
            })
        })
        .collect()
}

/// Commands removing everything of `zone_id`: its elements (as installed), then its chains.
/// Chains are added, flushed and deleted, which works whether or not they exist.
pub fn remove_commands(zone_id: u32, installed: &InstalledZone) -> Vec<Value> {
    let mut c = declarations();
    c.extend(delete_elements(installed));
    for chain in zone_chains(zone_id) {
        c.push(cmd("add", "chain", chain.clone()));
        c.push(cmd("flush", "chain", chain.clone()));
        c.push(cmd("delete", "chain", chain));
    }
    c
}

/// Commands removing a zone whose chains and `elements` are installed as known: deletes only
/// (a chain goes with its rules), so the batch fails as a whole if anything is missing.
fn remove_known_commands(zone_id: u32, elements: &InstalledZone) -> Vec<Value> {
    let mut c = delete_elements(elements);
    c.extend(zone_chains(zone_id).map(|chain| cmd("delete", "chain", chain)));
    c
}

/// A batch handed to the session ([`Nft::send`]), holding the session until it is answered.
struct Sent<'a> {
    action: String,
    session: MutexGuard<'a, Option<Session>>,
}

impl Sent<'_> {
    /// Waits for nft's answer; a broken session is dropped, so the next batch starts a new one.
    fn finish(mut self) -> Result<(), NetError> {
        let Some(session) = self.session.as_mut() else {
            return Err(NetError::NftSession {
                action: self.action,
                source: std::io::ErrorKind::NotConnected.into(),
            });
        };
        match session.finish(&self.action) {
            Ok(()) => Ok(()),
            Err(Failure::Rejected(stderr)) => {
                Err(NetError::NftFailed { action: self.action, stderr })
            }
            Err(Failure::Broken(error)) => {
                *self.session = None;
                Err(error)
            }
        }
    }
}

/// A new zone's rules being installed ([`Nft::begin_new_zone`]).
pub struct PendingZone<'a> {
    nft: &'a Nft,
    cfg: &'a NetConfig,
    zone: ZoneNetSpec,
    peers: Vec<PeerInfo>,
    sent: Sent<'a>,
}

impl PendingZone<'_> {
    /// Waits for the rules. If the kernel refused the batch (chains or elements left by an
    /// earlier zone with the same id, or base tables removed behind the daemon's back), it
    /// lists what is installed and applies the full batch, like [`Nft::apply_zone_after`].
    pub fn finish(self) -> Result<(), NetError> {
        match self.sent.finish() {
            Err(NetError::NftFailed { .. }) => {
                self.nft.apply_zone(self.cfg, &self.zone, &self.peers)
            }
            other => other,
        }
    }
}

/// Runs nft inside one network namespace: batches through one long-lived session
/// ([`session`]), listings with a process each.
pub struct Nft {
    program: PathBuf,
    netns: OwnedFd,
    session: Mutex<Option<Session>>,
}

impl Nft {
    /// An nft runner for namespace `netns` using `/usr/sbin/nft`.
    pub fn new(netns: BorrowedFd<'_>) -> Result<Self, NetError> {
        Self::with_program(netns, NFT)
    }

    /// An nft runner for namespace `netns` using `program`.
    pub fn with_program(
        netns: BorrowedFd<'_>,
        program: impl Into<PathBuf>,
    ) -> Result<Self, NetError> {
        let netns = netns.try_clone_to_owned().map_err(|source| NetError::Setns { source })?;
        Ok(Self { program: program.into(), netns, session: Mutex::new(None) })
    }

    fn program_name(&self) -> String {
        self.program.display().to_string()
    }

    /// `nft -j <args>`, to be run inside the namespace.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.program);
        command.arg("-j").args(args);
        let ns = self.netns.as_raw_fd();
        // SAFETY: runs in the forked child before exec; it only calls setns(2), which is
        // async-signal-safe, allocates nothing and touches no lock. `ns` stays open in the
        // child because the fd table is copied at fork and only closed at exec (CLOEXEC).
        unsafe {
            command.pre_exec(move || {
                // SAFETY: `ns` is a valid open fd for the child's lifetime (see above).
                let fd = BorrowedFd::borrow_raw(ns);
                rustix::thread::move_into_link_name_space(
                    fd,
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(std::io::Error::from)
            });
        }
        command
    }

    /// Hands `batch` to the session (started on first use; one that died since, say killed
    /// by an operator, is replaced once) without waiting for nft's answer.
    fn send(&self, action: &str, batch: &Value) -> Result<Sent<'_>, NetError> {
        let bytes = serde_json::to_vec(batch)
            .map_err(|source| NetError::NftJson { action: action.to_owned(), source })?;
        let mut guard = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let mut retried = false;
        loop {
            let session = match guard.as_mut() {
                Some(session) => session,
                None => guard.insert(Session::start(self.command(&["-i"]), &self.program_name())?),
            };
            match session.send(action, &bytes) {
                Ok(()) => return Ok(Sent { action: action.to_owned(), session: guard }),
                Err(error) => {
                    *guard = None;
                    if retried {
                        return Err(error);
                    }
                    retried = true;
                }
            }
        }
    }

    /// Applies one batch atomically.
    pub fn apply(&self, action: &str, batch: &Value) -> Result<(), NetError> {
        self.send(action, batch)?.finish()
    }

    /// The daemon's tables as installed now.
    pub fn installed(&self) -> Result<Installed, NetError> {
        let action = "list ruleset";
        // A process of its own: the session's answers are one line per command, and telling
        // a listing from the mark that follows it would need more protocol than this rare
        // path is worth.
        let output = self
            .command(&["list", "ruleset"])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| NetError::NftSpawn { program: self.program_name(), source })?;
        if !output.status.success() {
            return Err(NetError::NftFailed {
                action: action.to_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        let out = output.stdout;
        if out.iter().all(u8::is_ascii_whitespace) {
            return Ok(Installed::default());
        }
        let v: Value = serde_json::from_slice(&out)
            .map_err(|source| NetError::NftJson { action: action.to_owned(), source })?;
        Ok(parse_installed(&v))
    }

    /// Installs or refreshes the base tables, maps and chains.
    pub fn ensure_base(&self, cfg: &NetConfig) -> Result<(), NetError> {
        self.apply("ensure base", &base_ruleset(cfg))
    }

    /// Replaces the zone's rules in one transaction (stale elements deleted, chains flushed
    /// and refilled); a zone that is not bridged ends up with no rules.
    pub fn apply_zone(
        &self,
        cfg: &NetConfig,
        zone: &ZoneNetSpec,
        peers: &[PeerInfo],
    ) -> Result<(), NetError> {
        let installed = self.installed()?;
        let current = installed.zones.get(&zone.zone_id).cloned().unwrap_or_default();
        let commands = if zone.mode == NetMode::Bridged && zone.ip.is_some() {
            let mut c = delete_elements(&current);
            c.extend(zone_commands(cfg, zone, peers, Install::Replace));
            c
        } else {
            remove_commands(zone.zone_id, &current)
        };
        self.apply(&format!("apply zone {}", zone.zone_id), &batch(commands))
    }

    /// Like [`Nft::apply_zone`], but trusts that `previous` is what is installed (the daemon
    /// is the only writer), saving the listing: one nft run instead of two. If the kernel
    /// disagrees (a stale element is missing, so the batch fails as a whole and changes
    /// nothing), it falls back to listing.
    pub fn apply_zone_after(
        &self,
        cfg: &NetConfig,
        previous: Option<&ZoneNetSpec>,
        zone: &ZoneNetSpec,
        peers: &[PeerInfo],
    ) -> Result<(), NetError> {
        let current = InstalledZone {
            chains: BTreeSet::new(),
            elements: previous.map(|p| zone_elements(cfg, p)).unwrap_or_default(),
        };
        let commands = if zone.mode == NetMode::Bridged && zone.ip.is_some() {
            let mut c = delete_elements(&current);
            c.extend(zone_commands(cfg, zone, peers, Install::Replace));
            c
        } else {
            remove_commands(zone.zone_id, &current)
        };
        match self.apply(&format!("apply zone {}", zone.zone_id), &batch(commands)) {
            Err(NetError::NftFailed { .. }) => self.apply_zone(cfg, zone, peers),
            other => other,
        }
    }

    /// [`Nft::apply_zone_after`] for a zone with nothing installed, started in the background:
    /// its rules name the zone's interface but do not need it to exist, so the caller can make
    /// the veth meanwhile. [`PendingZone::finish`] waits for it.
    pub fn begin_new_zone<'a>(
        &'a self,
        cfg: &'a NetConfig,
        zone: &ZoneNetSpec,
        peers: &[PeerInfo],
    ) -> Result<PendingZone<'a>, NetError> {
        let commands = zone_commands(cfg, zone, peers, Install::Fresh);
        let sent = self.send(&format!("apply zone {}", zone.zone_id), &batch(commands))?;
        Ok(PendingZone { nft: self, cfg, zone: zone.clone(), peers: peers.to_vec(), sent })
    }

    /// Like [`Nft::remove_zone`] with the installed spec known, so the batch only deletes;
    /// falls back to listing when the kernel disagrees.
    pub fn remove_zone_after(
        &self,
        cfg: &NetConfig,
        previous: &ZoneNetSpec,
    ) -> Result<(), NetError> {
        let current =
            InstalledZone { chains: BTreeSet::new(), elements: zone_elements(cfg, previous) };
        let id = previous.zone_id;
        match self.apply(&format!("remove zone {id}"), &batch(remove_known_commands(id, &current)))
        {
            Err(NetError::NftFailed { .. }) => self.remove_zone(id),
            other => other,
        }
    }

    /// Removes all of the zone's rules in one transaction.
    pub fn remove_zone(&self, zone_id: u32) -> Result<(), NetError> {
        let installed = self.installed()?;
        let current = installed.zones.get(&zone_id).cloned().unwrap_or_default();
        self.apply(&format!("remove zone {zone_id}"), &batch(remove_commands(zone_id, &current)))
    }

    /// Deletes both daemon tables (uninstall and tests); missing tables are fine.
    pub fn remove_all(&self) -> Result<(), NetError> {
        let c = vec![
            cmd("add", "table", table("bridge")),
            cmd("delete", "table", table("bridge")),
            cmd("add", "table", table("inet")),
            cmd("delete", "table", table("inet")),
        ];
        self.apply("remove tables", &batch(c))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::net::PortMapping;

    fn spec() -> ZoneNetSpec {
        ZoneNetSpec {
            zone_id: 7,
            ip: Some(Ipv4Addr::new(10, 89, 0, 7)),
            mode: NetMode::Bridged,
            allowed_egress: vec![
                CidrPort { net: "0.0.0.0/0".parse().unwrap(), port: Some(443) },
                CidrPort { net: "2001:db8::/32".parse().unwrap(), port: None },
            ],
            allowed_ingress: vec![CidrPort { net: "192.0.2.1".parse().unwrap(), port: None }],
            published: vec![PortMapping { host_port: 8080, container_port: 80, proto: Proto::Tcp }],
            host_dns: true,
        }
    }

    fn commands(v: &Value) -> &Vec<Value> {
        v["nftables"].as_array().unwrap()
    }

    fn rules_of<'a>(v: &'a Value, family: &str, chain: &str) -> Vec<&'a Value> {
        commands(v)
            .iter()
            .filter_map(|c| c.get("add").and_then(|a| a.get("rule")))
            .filter(|r| r["family"] == family && r["chain"] == chain)
            .map(|r| &r["expr"])
            .collect()
    }

    fn elements<'a>(v: &'a Value, map: &str) -> Vec<&'a Value> {
        commands(v)
            .iter()
            .filter_map(|c| c.get("add").and_then(|a| a.get("element")))
            .filter(|e| e["name"] == map)
            .map(|e| &e["elem"][0])
            .collect()
    }

    #[test]
    fn zone_chains_are_flushed_before_refill() {
        let v = zone_ruleset(&NetConfig::default(), &spec(), &[]);
        let c = commands(&v);
        for part in BRIDGE_PARTS.iter().chain(INET_PARTS.iter()) {
            let name = zone_chain(7, part);
            let add = c.iter().position(|x| x["add"]["chain"]["name"] == name.as_str());
            let flush = c.iter().position(|x| x["flush"]["chain"]["name"] == name.as_str());
            let first_rule = c.iter().position(|x| x["add"]["rule"]["chain"] == name.as_str());
            assert!(add.unwrap() < flush.unwrap(), "{name}");
            if let Some(r) = first_rule {
                assert!(flush.unwrap() < r, "{name}");
            }
        }
        assert_eq!(c[0], json!({"add": {"table": {"family": "bridge", "name": "rauha"}}}));
    }

    #[test]
    fn zone_to_zone_needs_own_list_and_peer_list() {
        let peers = [
            PeerInfo { zone_id: 3, ip: Some(Ipv4Addr::new(10, 89, 0, 3)) },
            PeerInfo { zone_id: 9, ip: Some(Ipv4Addr::new(10, 89, 0, 9)) },
            PeerInfo { zone_id: 7, ip: Some(Ipv4Addr::new(10, 89, 0, 7)) },
        ];
        let v = zone_ruleset(&NetConfig::default(), &spec(), &peers);
        let out = rules_of(&v, "bridge", "z7-out");
        assert_eq!(
            *out[0],
            json!([
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}},
                           "right": {"set": ["rz3", "rz9"]}}},
                {"vmap": {"key": {"meta": {"key": "oifname"}}, "data": "@zone_in"}}
            ])
        );
        assert_eq!(*out[1], json!([{"drop": null}]));
        let inn = rules_of(&v, "bridge", "z7-in");
        assert_eq!(inn[0][0]["match"]["right"], json!({"set": ["rz3", "rz9"]}));
        // Accepted frames carry the mark that spares them the inet pair check.
        assert_eq!(inn[0][1]["mangle"]["value"]["|"][1], json!(BRIDGED_PAIR_MARK));
        assert_eq!(inn[0][2], json!({"accept": null}));
        assert_eq!(elements(&v, "zone_in"), vec![&json!(["rz7", {"jump": {"target": "z7-in"}}])]);

        // Routed zone↔zone (hairpin via the gateway) gets the same check by address.
        let zout = rules_of(&v, "inet", "z7-zout");
        assert_eq!(zout[0][0]["match"]["right"], json!({"set": ["10.89.0.3", "10.89.0.9"]}));
        assert_eq!(
            zout[0][1],
            json!({"vmap": {"key": {"payload": {"protocol": "ip", "field": "daddr"}},
                            "data": "@zone_in4"}})
        );
        let zin = rules_of(&v, "inet", "z7-zin");
        assert_eq!(zin[0][0]["match"]["left"]["payload"]["field"], "saddr");
        assert_eq!(*zin[1], json!([{"drop": null}]));

        // No peers: both chains are a bare drop.
        let v = zone_ruleset(&NetConfig::default(), &spec(), &[]);
        assert_eq!(rules_of(&v, "bridge", "z7-out"), vec![&json!([{"drop": null}])]);
        assert_eq!(rules_of(&v, "bridge", "z7-in"), vec![&json!([{"drop": null}])]);

        // One peer: a plain value, not a one-element set.
        let v = zone_ruleset(&NetConfig::default(), &spec(), &[PeerInfo { zone_id: 3, ip: None }]);
        assert_eq!(rules_of(&v, "bridge", "z7-in")[0][0]["match"]["right"], json!("rz3"));
    }

    #[test]
    fn anti_spoofing_pins_own_address() {
        let v = zone_ruleset(&NetConfig::default(), &spec(), &[]);
        let pre = rules_of(&v, "bridge", "z7-pre");
        assert_eq!(pre.len(), 3);
        assert_eq!(pre[0][0]["match"]["op"], "!=");
        assert_eq!(pre[0][0]["match"]["right"], "10.89.0.7");
        assert_eq!(pre[1][0]["match"]["left"]["payload"]["field"], "saddr ip");
        assert_eq!(pre[2][0]["match"]["right"], "ip6");
    }

    #[test]
    fn host_input_only_dns_on_gateway() {
        let v = zone_ruleset(&NetConfig::default(), &spec(), &[]);
        let input = rules_of(&v, "inet", "z7-input");
        assert_eq!(input.len(), 2);
        assert_eq!(input[0][0]["match"]["right"], "10.89.0.1");
        assert_eq!(input[0][2]["match"]["right"], 53);
        assert_eq!(*input[1], json!([{"drop": null}]));
        let mut no_dns = spec();
        no_dns.host_dns = false;
        let v = zone_ruleset(&NetConfig::default(), &no_dns, &[]);
        assert_eq!(rules_of(&v, "inet", "z7-input"), vec![&json!([{"drop": null}])]);
    }

    #[test]
    fn egress_ingress_and_published() {
        let v = zone_ruleset(&NetConfig::default(), &spec(), &[]);
        let egress = rules_of(&v, "inet", "z7-egress");
        assert_eq!(
            *egress[0],
            json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                           "right": {"prefix": {"addr": "0.0.0.0", "len": 0}}}},
                {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}},
                           "right": {"set": ["tcp", "udp"]}}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}},
                           "right": 443}},
                {"accept": null}
            ])
        );
        assert_eq!(egress[1][0]["match"]["left"]["payload"]["protocol"], "ip6");
        assert_eq!(*egress[2], json!([{"drop": null}]));

        let ingress = rules_of(&v, "inet", "z7-ingress");
        assert_eq!(ingress[0][0]["match"]["right"], "dnat");
        assert_eq!(ingress[0][2]["match"]["right"], 80);
        assert_eq!(ingress[1][0]["match"]["right"], "192.0.2.1");
        assert_eq!(*ingress[2], json!([{"drop": null}]));

        let dnat = rules_of(&v, "inet", "z7-dnat");
        assert_eq!(dnat[0][2], json!({"dnat": {"family": "ip", "addr": "10.89.0.7", "port": 80}}));
        assert_eq!(
            elements(&v, "published"),
            vec![&json!([{"concat": ["tcp", 8080]}, {"jump": {"target": "z7-dnat"}}])]
        );
        assert_eq!(
            elements(&v, "zone_egress"),
            vec![&json!(["10.89.0.7", {"jump": {"target": "z7-egress"}}])]
        );
    }

    #[test]
    fn policy_text_never_becomes_rule_text() {
        // A hostile-looking value stays a JSON string; nothing is parsed as nft syntax.
        let mut s = spec();
        s.allowed_egress = vec![];
        s.published = vec![];
        let cfg = NetConfig { bridge: "br\"; flush ruleset".into(), ..NetConfig::default() };
        let v = base_ruleset(&cfg);
        let input = rules_of(&v, "inet", "input");
        assert_eq!(input[0][0]["match"]["right"], "br\"; flush ruleset");
    }

    #[test]
    fn base_keeps_intra_bridge_stateless_and_closed() {
        let v = base_ruleset(&NetConfig::default());
        let raw = rules_of(&v, "inet", "raw");
        assert_eq!(raw.len(), 1);
        assert_eq!(raw[0][0]["match"]["right"], "rauha0");
        assert_eq!(raw[0][2]["match"]["op"], "!=");
        assert_eq!(raw[0][2]["match"]["right"], "10.89.0.1");
        // The bridged-pair mark is cleared on everything from the bridge to a zone address.
        assert_eq!(raw[0][3]["mangle"]["value"]["&"][1], json!(!BRIDGED_PAIR_MARK));
        assert_eq!(raw[0][4], json!({"notrack": null}));
        let fwd = rules_of(&v, "inet", "forward");
        // Intra-bridge: frames the bridge family accepted (marked) pass, others get the
        // pairwise vmap then drop, before anything else accepts.
        assert_eq!(fwd[0][2], mark_has(BRIDGED_PAIR_MARK));
        assert_eq!(fwd[0][3], json!({"accept": null}));
        assert_eq!(fwd[1][2]["vmap"]["data"], "@zone_out4");
        assert_eq!(fwd[2][2], json!({"drop": null}));
        for rule in &fwd[..3] {
            assert_eq!(rule[0]["match"]["right"], "rauha0");
            assert_eq!(rule[1]["match"]["right"], "rauha0");
        }
        let bfwd = rules_of(&v, "bridge", "forward");
        assert_eq!(
            *bfwd.last().unwrap(),
            &json!([
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "rz*"}},
                {"drop": null}
            ])
        );
    }

    #[test]
    fn isolated_zone_has_no_chains() {
        let mut s = spec();
        s.mode = NetMode::Isolated;
        let v = zone_ruleset(&NetConfig::default(), &s, &[]);
        assert!(commands(&v).iter().all(|c| c["add"].get("chain").is_none()));
        assert!(commands(&v).iter().all(|c| c["add"].get("element").is_none()));
    }

    #[test]
    fn remove_deletes_elements_before_chains() {
        let installed = InstalledZone {
            chains: BTreeSet::new(),
            elements: vec![InstalledElement {
                family: "inet".into(),
                map: "published".into(),
                key: json!({"concat": ["tcp", 8080]}),
            }],
        };
        let c = remove_commands(7, &installed);
        let del_elem =
            c.iter().position(|x| x.get("delete").and_then(|d| d.get("element")).is_some());
        let del_chain =
            c.iter().position(|x| x.get("delete").and_then(|d| d.get("chain")).is_some());
        assert!(del_elem.unwrap() < del_chain.unwrap());
        let deleted: Vec<_> = c
            .iter()
            .filter_map(|x| x.get("delete").and_then(|d| d.get("chain")))
            .map(|ch| ch["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(deleted.len(), 9);
        assert!(deleted.contains(&"z7-dnat".to_owned()));
    }

    #[test]
    fn zone_elements_match_what_ruleset_adds() {
        let els = zone_elements(&NetConfig::default(), &spec());
        let maps: Vec<_> = els.iter().map(|e| e.map.as_str()).collect();
        assert_eq!(
            maps,
            vec![
                "zone_pre",
                "zone_out",
                "zone_in",
                "zone_input",
                "zone_egress",
                "zone_ingress",
                "zone_out4",
                "zone_in4",
                "published"
            ]
        );
        assert_eq!(els[0].key, json!("rz7"));
        assert_eq!(els[3].key, json!("10.89.0.7"));
        assert_eq!(els[8].key, json!({"concat": ["tcp", 8080]}));
        let mut iso = spec();
        iso.mode = NetMode::Isolated;
        assert!(zone_elements(&NetConfig::default(), &iso).is_empty());
    }

    #[test]
    fn parses_listing() {
        let listing = json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "bridge", "name": "rauha", "handle": 1}},
            {"table": {"family": "inet", "name": "other", "handle": 2}},
            {"map": {"family": "bridge", "name": "zone_pre", "table": "rauha", "type": "ifname",
                     "map": "verdict", "elem": [["rz1", {"jump": {"target": "z1-pre"}}]]}},
            {"map": {"family": "inet", "name": "published", "table": "rauha",
                     "type": ["inet_proto", "inet_service"], "map": "verdict",
                     "elem": [[{"concat": ["tcp", 8080]}, {"jump": {"target": "z2-dnat"}}]]}},
            {"chain": {"family": "bridge", "table": "rauha", "name": "z1-pre", "handle": 3}},
            {"chain": {"family": "bridge", "table": "rauha", "name": "forward", "handle": 4}},
            {"chain": {"family": "inet", "table": "other", "name": "z5-pre", "handle": 5}}
        ]});
        let inst = parse_installed(&listing);
        assert_eq!(inst.tables, (true, false));
        assert_eq!(inst.zones.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(inst.zones[&1].chains.len(), 1);
        assert_eq!(inst.zones[&2].elements[0].key, json!({"concat": ["tcp", 8080]}));
        assert_eq!(parse_zone_chain("z12-egress"), Some((12, "egress")));
        assert_eq!(parse_zone_chain("zx-egress"), None);
        assert_eq!(parse_zone_chain("z1-bogus"), None);
    }
}
