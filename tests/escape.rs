//! Escape tests: a process in zone `a` attacks zone `b` and the host through every boundary the
//! always-on layers hold, against a real daemon; the same operations inside one zone still work
//! where the policy allows them. The same attacks then run with each single layer switched off
//! (`rauhad --unsafe-disable-layer`), to measure that the remaining layers still hold each
//! boundary (defense in depth) and to record honestly which boundaries a single layer holds
//! alone. Each configuration writes its matrix to `$CARGO_TARGET_TMPDIR/escape-matrix-*.md`.
//!
//! Attacks run from the container's init (`rauha run`) and from an exec session
//! (`rauha exec`), which must be confined identically.
//!
//! Attribution: the error an attack gets names the mechanism that stopped it first: `EPERM`
//! (seccomp, or a missing capability), `EACCES` (Landlock; there is no other MAC here),
//! `EROFS` (read-only mounts), `ENOENT`/`ESRCH` (the pid or mount namespace hides the target).

mod harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use harness::TestDaemon;

/// An attack: a shell command run in zone `a` whose success means the boundary was crossed.
/// `$VB` is the host pid of a process in zone `b`, `$VH` of a host process, `$HS` a host file.
struct Attack {
    name: &'static str,
    boundary: &'static str,
    cmd: &'static str,
}

const ATTACKS: &[Attack] = &[
    Attack { name: "see_zone_b", boundary: "visibility", cmd: "ls -d /proc/$VB" },
    Attack { name: "see_host", boundary: "visibility", cmd: "ls -d /proc/$VH" },
    Attack { name: "signal_zone_b", boundary: "signals", cmd: "kill -0 $VB" },
    Attack { name: "signal_host", boundary: "signals", cmd: "kill -0 $VH" },
    Attack { name: "ptrace_zone_b", boundary: "ptrace", cmd: "cat /proc/$VB/environ" },
    Attack { name: "ptrace_host", boundary: "ptrace", cmd: "cat /proc/$VH/environ" },
    Attack { name: "files_zone_b", boundary: "files", cmd: "cat /proc/$VB/root/tmp/secret" },
    Attack { name: "files_host_proc", boundary: "files", cmd: "cat /proc/$VH/root$HS" },
    Attack { name: "files_host_path", boundary: "files", cmd: "cat $HS" },
    Attack { name: "write_rootfs", boundary: "files", cmd: "echo x > /etc/escape" },
    Attack { name: "write_dev", boundary: "files", cmd: "echo x > /dev/escape" },
    Attack { name: "remount_rw", boundary: "mounts", cmd: "mount -o remount,rw /" },
    Attack { name: "mount_tmpfs", boundary: "mounts", cmd: "mount -t tmpfs none /tmp" },
    Attack { name: "load_module", boundary: "kernel", cmd: "insmod /tmp/junk.ko" },
    Attack { name: "unshare_mount", boundary: "namespaces", cmd: "unshare -m true" },
    Attack { name: "unshare_user", boundary: "namespaces", cmd: "unshare -U true" },
    Attack { name: "setns_net", boundary: "namespaces", cmd: "nsenter --net=/proc/1/ns/net true" },
    Attack { name: "mknod_disk", boundary: "devices", cmd: "mknod /tmp/disk b 254 0" },
    Attack {
        name: "write_sysctl",
        boundary: "sysctl",
        // Writes the current value back: harmless even if it got through.
        cmd: "v=$(cat /proc/sys/vm/overcommit_ratio) && echo $v > /proc/sys/vm/overcommit_ratio",
    },
    // Last: if it got through, it would end this container's pid namespace (never the host).
    Attack { name: "reboot", boundary: "kernel", cmd: "reboot -f" },
];

/// Operations inside zone `a` that the policy allows: they must work in every configuration.
const ALLOWED: &[(&str, &str)] = &[
    ("write_tmp", "echo ok > /tmp/own && cat /tmp/own"),
    ("mkdir_tmp", "mkdir /tmp/dir.$$"),
    ("write_shm", "echo ok > /dev/shm/own"),
    ("write_null", "echo ok > /dev/null"),
    ("signal_own", "kill -0 $S"),
    ("ptrace_read_own", "cat /proc/$S/environ > /dev/null"),
    ("files_own_proc_root", "cat /proc/$S/root/tmp/own"),
    ("fork_exec", "sh -c 'echo $$' && ls / > /dev/null"),
    ("layer_state", "grep -E '^(CapEff|Seccomp):' /proc/self/status"),
];

/// Layer switches of one run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Config {
    All,
    NoSeccomp,
    NoLandlock,
    NoCaps,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::All => "all-layers",
            Config::NoSeccomp => "without-seccomp",
            Config::NoLandlock => "without-landlock",
            Config::NoCaps => "without-caps",
        }
    }

    fn daemon_args(self) -> &'static [&'static str] {
        match self {
            Config::All => &[],
            Config::NoSeccomp => &["--unsafe-disable-layer", "seccomp"],
            Config::NoLandlock => &["--unsafe-disable-layer", "landlock"],
            Config::NoCaps => &["--unsafe-disable-layer", "caps"],
        }
    }

    /// Whether `attack` must be denied in this configuration. The exceptions are the
    /// boundaries one layer holds alone, measured and stated here rather than hidden.
    fn must_hold(self, attack: &str) -> bool {
        !matches!(
            (self, attack),
            // Creating a user namespace needs no capability; only the seccomp profile refuses
            // it (as Docker's does).
            (Config::NoSeccomp, "unshare_user")
                // Device nodes and /dev are writable paths only for Landlock: without it, the
                // rootfs /dev tmpfs takes new files and CAP_MKNOD (default set) creates nodes;
                // opening them is then the device allow-list's job (cgroup-BPF, not here).
                | (Config::NoLandlock, "write_dev" | "mknod_disk")
        )
    }
}

/// How one attack ended.
#[derive(Debug, Clone)]
struct Outcome {
    rc: i32,
    output: String,
}

impl Outcome {
    /// The mechanism the error points at, or why the outcome is not a denial.
    fn held_by(&self) -> &'static str {
        let o = &self.output;
        if self.rc == 0 {
            "NOT HELD (attack succeeded)"
        } else if o.contains("Operation not permitted") || o.contains("are you root") {
            "EPERM: seccomp or capabilities"
        } else if o.contains("Permission denied") {
            "EACCES: Landlock"
        } else if o.contains("Read-only file system") {
            "EROFS: read-only mount"
        } else if o.contains("No such file or directory") || o.contains("No such process") {
            "ENOENT/ESRCH: pid/mount namespace"
        } else if o.contains("kernel does not support") {
            // ENOSYS from the kernel itself (e.g. CONFIG_MODULES=n): no layer was needed.
            "ENOSYS: kernel lacks the feature"
        } else {
            "INCONCLUSIVE (failed for another reason)"
        }
    }

    fn denied(&self) -> bool {
        !self.held_by().starts_with("NOT HELD") && !self.held_by().starts_with("INCONCLUSIVE")
    }
}

/// The attack script: sets up helpers, runs every probe, prints `R|name|rc|output` lines.
fn script(vb: u32, vh: u32, hs: &Path, probes: &[(&str, &str)]) -> String {
    let mut s = format!(
        "VB={vb}; VH={vh}; HS={hs}\n\
         echo junk > /tmp/junk.ko; echo ok > /tmp/own\n\
         sleep 1000 & S=$!\n",
        hs = hs.display()
    );
    for (name, cmd) in probes {
        s += &format!(
            "out=$( {{ {cmd} ; }} 2>&1 ); rc=$?; echo \"R|{name}|$rc|$(echo $out | tr '\\n' ' ')\"\n"
        );
    }
    s += "kill $S\n";
    s
}

fn parse(stdout: &str) -> BTreeMap<String, Outcome> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("R|"))
        .filter_map(|l| {
            let mut parts = l.splitn(3, '|');
            let name = parts.next()?.to_owned();
            let rc = parts.next()?.parse().ok()?;
            Some((name, Outcome { rc, output: parts.next().unwrap_or("").to_owned() }))
        })
        .collect()
}

/// Kills and reaps a host process when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn inspect(d: &TestDaemon, container: &str) -> serde_json::Value {
    let text = d.ok(&["inspect", container]);
    serde_json::from_str::<serde_json::Value>(&text).expect("inspect json")[0].clone()
}

/// Runs `args` as an exec session in a running container (`rauha exec`); returns stdout.
fn exec_in(d: &TestDaemon, container: &str, args: &[&str]) -> String {
    let mut cli = vec!["exec", container, "--"];
    cli.extend_from_slice(args);
    d.ok(&cli)
}

fn host_victim() -> KillOnDrop {
    KillOnDrop(
        Command::new("sleep").arg("1000").stdout(Stdio::null()).spawn().expect("spawn host sleep"),
    )
}

/// Runs every attack and allowed operation in one configuration and checks the matrix.
fn run_matrix(config: Config) {
    let Some(d) =
        TestDaemon::start_with(&format!("escape {}", config.name()), config.daemon_args())
    else {
        return;
    };
    if config != Config::All {
        assert!(d.log().contains("UNSAFE: enforcement layer"), "the switch is logged loudly");
    }
    d.import_busybox();
    d.ok(&["zone", "create", "--name", "a"]);
    d.ok(&["zone", "create", "--name", "b"]);
    let deny = d.write_file("deny.toml", "[syscalls]\ndeny = [\"mkdir\", \"mkdirat\"]\n");
    d.ok(&["zone", "create", "--name", "d", "--policy", deny.to_str().expect("utf-8")]);

    let host = host_victim();
    let host_secret = d.write_file("host-secret", "host secret\n");
    let sysctl_before = std::fs::read_to_string("/proc/sys/vm/overcommit_ratio").expect("sysctl");
    d.ok(&[
        "run",
        "-d",
        "--zone",
        "b",
        "--name",
        "victim",
        "busybox",
        "sh",
        "-c",
        "echo secret > /tmp/secret; exec sleep 1000",
    ]);
    let vb = inspect(&d, "victim")["pid"].as_u64().expect("victim pid") as u32;

    let mut probes: Vec<(&str, &str)> = ATTACKS.iter().map(|a| (a.name, a.cmd)).collect();
    probes.extend(ALLOWED.iter().copied());
    let attack_script = script(vb, host.0.id(), &host_secret, &probes);

    let from_init =
        parse(&d.ok(&["run", "--rm", "--zone", "a", "busybox", "sh", "-c", &attack_script]));
    d.ok(&["run", "-d", "--zone", "a", "--name", "target", "busybox", "sleep", "1000"]);
    let from_exec = parse(&exec_in(&d, "target", &["sh", "-c", &attack_script]));
    // Landlock scoping: an exec session is its own Landlock domain, so it cannot signal the
    // container's init (pid 1 inside); the init's own children can (signal_own above).
    let scoping = parse(&exec_in(
        &d,
        "target",
        &[
            "sh",
            "-c",
            &script(vb, host.0.id(), &host_secret, &[("scoped_signal_init", "kill -0 1")]),
        ],
    ));
    let deny_list = parse(&d.ok(&[
        "run",
        "--rm",
        "--zone",
        "d",
        "busybox",
        "sh",
        "-c",
        &script(
            vb,
            host.0.id(),
            &host_secret,
            &[
                ("deny_list_mkdir", "mkdir /tmp/newdir"),
                ("deny_list_other_calls", "touch /tmp/f && ls /tmp"),
            ],
        ),
    ]));

    let mut report = format!(
        "# escape matrix: {}\n\n| attack | boundary | from init | from exec |\n|---|---|---|---|\n",
        config.name()
    );
    let mut failures = Vec::new();
    for attack in ATTACKS {
        for (origin, results) in [("init", &from_init), ("exec", &from_exec)] {
            let Some(o) = results.get(attack.name) else {
                failures.push(format!("{} ({origin}): no result", attack.name));
                continue;
            };
            if config.must_hold(attack.name) && !o.denied() {
                failures.push(format!(
                    "{} ({origin}): {} — {}",
                    attack.name,
                    o.held_by(),
                    o.output
                ));
            }
        }
        let cell = |r: &BTreeMap<String, Outcome>| {
            r.get(attack.name).map_or("missing".to_owned(), |o| o.held_by().to_owned())
        };
        report += &format!(
            "| {} | {} | {} | {} |\n",
            attack.name,
            attack.boundary,
            cell(&from_init),
            cell(&from_exec)
        );
    }
    for (name, _) in ALLOWED {
        for (origin, results) in [("init", &from_init), ("exec", &from_exec)] {
            match results.get(*name) {
                Some(o) if o.rc == 0 => {}
                other => failures.push(format!("allowed {name} ({origin}) failed: {other:?}")),
            }
        }
        report += &format!("| {name} (allowed) | inside zone | ok | ok |\n");
    }
    let seccomp_on = config != Config::NoSeccomp;
    let landlock_on = config != Config::NoLandlock;
    // The switch really took effect (else a "without" run would prove nothing).
    for (origin, results) in [("init", &from_init), ("exec", &from_exec)] {
        let state = results.get("layer_state").map_or("", |o| o.output.as_str());
        let want_seccomp = if seccomp_on { "Seccomp: 2" } else { "Seccomp: 0" };
        // Docker's default 14 capabilities.
        let default_caps = "CapEff: 00000000a80425fb";
        let caps_ok = state.contains(default_caps) == (config != Config::NoCaps);
        if !state.contains(want_seccomp) || !caps_ok {
            failures.push(format!("layer state ({origin}) does not match {config:?}: {state}"));
        }
    }
    for (name, results, must_deny) in
        [("deny_list_mkdir", &deny_list, seccomp_on), ("scoped_signal_init", &scoping, landlock_on)]
    {
        let o = results.get(name).unwrap_or_else(|| panic!("{name}: no result"));
        if o.denied() != must_deny {
            failures.push(format!("{name}: expected denied={must_deny}, got {o:?}"));
        }
        // Landlock scoping answers EPERM too; name it.
        let held = if name == "scoped_signal_init" && o.denied() {
            "EPERM: Landlock signal scoping"
        } else {
            o.held_by()
        };
        report += &format!("| {name} | policy | {held} | |\n");
    }
    match deny_list.get("deny_list_other_calls") {
        Some(o) if o.rc == 0 => {}
        other => failures.push(format!("deny list zone: other calls failed: {other:?}")),
    }

    // The host is never affected.
    let mut host = host;
    assert!(host.0.try_wait().expect("wait host victim").is_none(), "host process was killed");
    assert_eq!(std::fs::read_to_string(&host_secret).expect("host secret"), "host secret\n");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/vm/overcommit_ratio").expect("sysctl"),
        sysctl_before
    );
    assert_eq!(inspect(&d, "victim")["state"], "Running", "zone b's process survived");

    let path =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("escape-matrix-{}.md", config.name()));
    std::fs::write(&path, &report).expect("write matrix");
    eprintln!("{report}");
    d.ok(&["rm", "-f", "victim"]);
    d.ok(&["rm", "-f", "target"]);
    assert!(failures.is_empty(), "{}:\n{}", config.name(), failures.join("\n"));
}

#[test]
fn zones_hold_with_all_layers() {
    run_matrix(Config::All);
}

#[test]
fn zones_hold_without_seccomp() {
    run_matrix(Config::NoSeccomp);
}

#[test]
fn zones_hold_without_landlock() {
    run_matrix(Config::NoLandlock);
}

#[test]
fn zones_hold_without_capability_drop() {
    run_matrix(Config::NoCaps);
}

#[test]
fn unknown_layer_name_is_refused_at_start() {
    if !harness::privileged("unknown layer") {
        return;
    }
    let out = Command::new(harness::RAUHA)
        .args(["daemon", "--unsafe-disable-layer", "apparmor", "--root", "/nonexistent-rauha"])
        .output()
        .expect("run daemon");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown layer \"apparmor\""), "{err}");
}
