//! Containers in zones against a real daemon, real shims, namespaces, cgroups and overlayfs,
//! with the busybox image built by `packaging/busybox-image.sh`.

mod harness;

use std::time::{Duration, Instant};

use harness::TestDaemon;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text}"))
}

/// A daemon with the busybox image and one zone named `z` (optional policy TOML).
fn daemon_with_zone(test: &str, policy: Option<&str>) -> Option<TestDaemon> {
    let d = TestDaemon::start(test)?;
    d.import_busybox();
    match policy {
        Some(text) => {
            let file = d.write_file("zone.toml", text);
            d.ok(&["zone", "create", "--name", "z", "--policy", file.to_str().unwrap()]);
        }
        None => {
            d.ok(&["zone", "create", "--name", "z"]);
        }
    }
    Some(d)
}

fn inspect(d: &TestDaemon, container: &str) -> serde_json::Value {
    json(&d.ok(&["inspect", container]))[0].clone()
}

#[test]
fn run_streams_output_and_exits_with_the_containers_code() {
    let Some(d) = daemon_with_zone("run_exit_code", None) else { return };
    let out = d.cli(&[
        "run",
        "--zone",
        "z",
        "--name",
        "c",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let info = inspect(&d, "c");
    assert_eq!(info["state"], "Stopped");
    assert_eq!(info["exit_code"], 7);
    assert_eq!(d.ok(&["logs", "c"]), "out\n");

    let error = d.fails(&["run", "--zone", "z", "busybox", "/bin/nonexistent"]);
    assert!(error.contains("nonexistent"), "{error}");
    // A step that fails while the process sets itself up, before its release, is reported
    // by name too.
    let error = d.fails(&["run", "--zone", "z", "--workdir", "/etc/passwd/x", "busybox", "true"]);
    assert!(error.contains("/etc/passwd/x"), "{error}");
    let error = d.fails(&["run", "--zone", "nowhere", "busybox", "true"]);
    assert!(error.contains("zone \"nowhere\" not found"), "{error}");
    let error = d.fails(&["run", "--zone", "z", "--name", "c", "busybox", "true"]);
    assert!(error.contains("already exists"), "{error}");
}

#[test]
fn env_workdir_and_user_apply() {
    let Some(d) = daemon_with_zone("env_workdir_user", None) else { return };
    let out = d.ok(&[
        "run",
        "--zone",
        "z",
        "--rm",
        "-e",
        "FOO=bar baz",
        "-w",
        "/tmp",
        "--user",
        "65534:65534",
        "busybox",
        "sh",
        "-c",
        "echo \"$FOO\"; pwd; id -u; id -g; echo $HOSTNAME",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..4], ["bar baz", "/tmp", "65534", "65534"]);
    let out = d.ok(&["run", "--zone", "z", "--rm", "--user", "nobody", "busybox", "id", "-un"]);
    assert_eq!(out.trim(), "nobody");
    let error = d.fails(&["run", "--zone", "z", "--user", "mallory", "busybox", "true"]);
    assert!(error.contains("mallory"), "{error}");
}

#[test]
fn detached_container_logs_follow_until_exit() {
    let Some(d) = daemon_with_zone("logs_follow", None) else { return };
    let id = d.ok(&[
        "run",
        "--zone",
        "z",
        "-d",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.2; done",
    ]);
    let id = id.trim();
    let followed = d.ok(&["logs", "-f", id]);
    assert_eq!(followed, "line1\nline2\nline3\n");
    assert_eq!(d.ok(&["logs", "--tail", "1", id]), "line3\n");
    let stamped = d.ok(&["logs", "-t", id]);
    assert!(stamped.lines().all(|l| l.contains('T') && l.ends_with(char::is_numeric)), "{stamped}");
    assert_eq!(inspect(&d, id)["state"], "Stopped");
}

#[test]
fn stop_escalates_to_sigkill_and_honours_term_handlers() {
    let Some(d) = daemon_with_zone("stop_escalation", None) else { return };
    // PID 1 without a TERM handler ignores SIGTERM: stop must escalate.
    d.ok(&["run", "--zone", "z", "-d", "--name", "stubborn", "busybox", "sleep", "100"]);
    assert_eq!(inspect(&d, "stubborn")["state"], "Running");
    let started = Instant::now();
    d.ok(&["stop", "-t", "1", "stubborn"]);
    assert!(started.elapsed() >= Duration::from_secs(1), "stop waited for the grace period");
    let info = inspect(&d, "stubborn");
    assert_eq!(info["state"], "Stopped");
    assert_eq!(info["exit_signal"], 9);
    assert_eq!(info["exit_code"], 137);

    d.ok(&[
        "run",
        "--zone",
        "z",
        "-d",
        "--name",
        "polite",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    d.ok(&["stop", "-t", "30", "polite"]);
    let info = inspect(&d, "polite");
    assert_eq!(info["exit_code"], 0);
    assert_eq!(info["exit_signal"], serde_json::Value::Null);
}

#[test]
fn kill_delivers_signals_and_rm_force_removes_running_containers() {
    let Some(d) = daemon_with_zone("kill_rm", None) else { return };
    d.ok(&[
        "run",
        "--zone",
        "z",
        "-d",
        "--name",
        "k",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-usr1; exit 5' USR1; while true; do sleep 0.1; done",
    ]);
    d.ok(&["kill", "-s", "USR1", "k"]);
    assert_eq!(d.ok(&["wait", "k"]).trim(), "5");
    assert_eq!(d.ok(&["logs", "k"]), "got-usr1\n");

    d.ok(&["run", "--zone", "z", "-d", "--name", "r", "busybox", "sleep", "100"]);
    let error = d.fails(&["rm", "r"]);
    assert!(error.contains("running"), "{error}");
    d.ok(&["rm", "-f", "r"]);
    assert!(d.fails(&["inspect", "r"]).contains("not found"));
    assert!(!d.ok(&["ps", "-a"]).contains(" r "));
    let leftovers = std::fs::read_dir(d.root.join("containers")).unwrap().count();
    assert_eq!(leftovers, 1, "only k's dir remains");
}

#[test]
fn zone_force_delete_stops_and_removes_containers() {
    let Some(d) = daemon_with_zone("zone_force_delete", None) else { return };
    for name in ["a", "b"] {
        d.ok(&["run", "--zone", "z", "-d", "--name", name, "busybox", "sleep", "100"]);
    }
    let error = d.fails(&["zone", "delete", "z"]);
    assert!(error.contains("2 container(s)"), "{error}");
    assert_eq!(inspect(&d, "a")["state"], "Running");
    let pid = inspect(&d, "a")["pid"].as_u64().unwrap();
    d.ok(&["zone", "delete", "--force", "z"]);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "container process gone");
    assert_eq!(d.ok(&["ps", "-a", "--json"]).trim(), "[]");
    assert!(!d.cgroup_dir("unified", "zone-1").exists(), "zone cgroup gone");
    assert!(harness::mounts_under(&d.run_dir.join("netns")).len() <= 1, "zone netns unmounted");
}

#[test]
fn containers_see_only_their_own_processes_and_hostname() {
    let Some(d) = daemon_with_zone("pid_uts_isolation", None) else { return };
    d.ok(&["run", "--zone", "z", "-d", "--name", "neighbour", "busybox", "sleep", "100"]);
    let out = d.ok(&[
        "run",
        "--zone",
        "z",
        "--rm",
        "--name",
        "looker",
        "busybox",
        "sh",
        "-c",
        "ps -o pid,args; hostname",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(!out.contains("sleep 100"), "sees a neighbour's process: {out}");
    assert!(lines.iter().any(|l| l.trim_start().starts_with("1 ")), "is pid 1: {out}");
    assert_eq!(lines.last().copied(), Some("looker"));
    assert!(lines.len() <= 4, "{out}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    // Changing the hostname needs CAP_SYS_ADMIN, which the default policy withholds.
    let error = d.fails(&["run", "--zone", "z", "--rm", "busybox", "hostname", "evil"]);
    assert!(!error.is_empty());
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host);
}

#[test]
fn privileged_hostname_change_stays_inside() {
    let policy = "[zone]\ntype = \"privileged\"\n[capabilities]\nallowed = [\"SYS_ADMIN\"]\n";
    let Some(d) = daemon_with_zone("hostname_inside", Some(policy)) else { return };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = d.ok(&[
        "run",
        "--zone",
        "z",
        "--rm",
        "--name",
        "h",
        "busybox",
        "sh",
        "-c",
        "hostname changed && hostname",
    ]);
    assert_eq!(out.trim(), "changed");
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host);
}

#[test]
fn root_filesystem_is_read_only_except_writable_paths() {
    let policy = "[filesystem]\nwritable_paths = [\"/tmp\", \"/var\"]\n";
    let Some(d) = daemon_with_zone("readonly_rootfs", Some(policy)) else { return };
    let script = "touch /etc/x 2>/dev/null && echo etc-writable; touch /x 2>/dev/null && echo root-writable; \
                  touch /tmp/ok && echo tmp-ok; mkdir -p /var/lib && touch /var/lib/ok && echo var-ok";
    let out = d.ok(&["run", "--zone", "z", "--rm", "busybox", "sh", "-c", script]);
    assert_eq!(out, "tmp-ok\nvar-ok\n");
}

#[test]
fn capabilities_match_the_policy() {
    let policy = "[capabilities]\nallowed = [\"CHOWN\", \"KILL\"]\n";
    let Some(d) = daemon_with_zone("capabilities", Some(policy)) else { return };
    let out = d.ok(&[
        "run",
        "--zone",
        "z",
        "--rm",
        "busybox",
        "grep",
        "-E",
        "^Cap(Eff|Bnd|Prm)|NoNewPrivs",
        "/proc/self/status",
    ]);
    // CAP_CHOWN = 0, CAP_KILL = 5.
    for line in [
        "CapPrm:\t0000000000000021",
        "CapEff:\t0000000000000021",
        "CapBnd:\t0000000000000021",
        "NoNewPrivs:\t1",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }
    let out =
        d.ok(&["run", "--zone", "z", "--rm", "busybox", "grep", "^CapEff", "/proc/self/status"]);
    assert!(out.contains("0000000000000021"), "{out}");
}

#[test]
fn memory_limit_oom_kills_and_reports_it() {
    let policy = "[resources]\nmemory_limit = \"8Mi\"\n";
    let Some(d) = daemon_with_zone("oom", Some(policy)) else { return };
    let out = d.cli(&[
        "run",
        "--zone",
        "z",
        "--name",
        "hog",
        "busybox",
        "sh",
        "-c",
        "x=0123456789; while true; do x=$x$x; done",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OOM"));
    let info = inspect(&d, "hog");
    assert_eq!(info["oom_killed"], true);
    assert!(d.ok(&["ps", "-a"]).contains("OOM killed"));
    let stats = json(&d.ok(&["zone", "stats", "z", "--json"]));
    assert!(stats["oom_kills"].as_u64().unwrap() >= 1, "{stats}");
}

#[test]
fn containers_survive_a_daemon_crash_and_are_readopted() {
    let Some(mut d) = daemon_with_zone("survive_restart", None) else { return };
    d.ok(&[
        "run",
        "--zone",
        "z",
        "-d",
        "--name",
        "longrun",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done",
    ]);
    let pid = inspect(&d, "longrun")["pid"].as_u64().unwrap();
    d.kill();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "container died with the daemon"
    );
    d.spawn();
    let info = inspect(&d, "longrun");
    assert_eq!(info["state"], "Running");
    assert_eq!(info["pid"].as_u64(), Some(pid));
    let before = d.ok(&["logs", "longrun"]).lines().count();
    std::thread::sleep(Duration::from_millis(400));
    let after = d.ok(&["logs", "longrun"]).lines().count();
    assert!(after > before, "logs continue after the restart ({before} → {after})");
    d.ok(&["stop", "-t", "1", "longrun"]);
    assert_eq!(inspect(&d, "longrun")["state"], "Stopped");
}

#[test]
fn exit_state_is_recorded_from_the_exit_event() {
    let Some(d) = daemon_with_zone("exit_event", None) else { return };
    let id = d.ok(&["run", "--zone", "z", "-d", "busybox", "sh", "-c", "sleep 0.3; exit 4"]);
    let id = id.trim();
    // No polling of the process by the daemon: the state flips when the shim reports the exit.
    assert_eq!(d.ok(&["wait", id]).trim(), "4");
    let info = inspect(&d, id);
    assert_eq!(info["state"], "Stopped");
    assert!(!info["finished_at"].as_str().unwrap().is_empty());
}

#[test]
fn images_in_use_cannot_be_removed() {
    let Some(d) = daemon_with_zone("image_in_use", None) else { return };
    d.ok(&["create", "--zone", "z", "--name", "holder", "busybox", "true"]);
    let error = d.fails(&["image", "rm", "busybox"]);
    assert!(error.contains("in use") || error.contains("used"), "{error}");
    d.ok(&["rm", "holder"]);
    d.ok(&["image", "rm", "busybox"]);
    assert!(d.fails(&["run", "--zone", "z", "--rm", "busybox:latest", "true"]).contains("busybox"));
}

#[test]
fn lifecycle_events_are_recorded_and_followed() {
    let Some(d) = daemon_with_zone("events", None) else { return };
    let mut follower = d
        .command(&["events", "--zone", "z", "-f", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    d.ok(&["run", "--zone", "z", "--name", "e", "busybox", "true"]);
    let policy = d.write_file("p.toml", "[resources]\npids_max = 99\n");
    d.ok(&["policy", "apply", "--zone", "z", policy.to_str().unwrap()]);
    let history = d.ok(&["events", "--zone", "z"]);
    for kind in [
        "zone.created",
        "container.created",
        "container.started",
        "container.exited",
        "policy.applied",
    ] {
        assert!(history.contains(kind), "{kind} missing from {history}");
    }
    std::thread::sleep(Duration::from_millis(300));
    follower.kill().unwrap();
    let out = follower.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(json).collect();
    assert!(lines.iter().any(|e| e["event_type"] == "container.exited" && e["zone"] == "z"));
    assert!(lines.iter().any(|e| e["event_type"] == "policy.applied"));
    assert!(d.fails(&["events", "--zone", "nowhere"]).contains("not found"));
}

#[test]
fn exec_without_a_tty_keeps_streams_apart_and_returns_the_code() {
    let Some(d) = daemon_with_zone("exec_pipes", None) else { return };
    d.ok(&[
        "run",
        "--zone",
        "z",
        "-d",
        "--name",
        "box",
        "busybox",
        "sh",
        "-c",
        "echo inside > /tmp/mark; sleep 100",
    ]);
    let out = d.cli(&[
        "exec",
        "box",
        "sh",
        "-c",
        "echo out; echo err >&2; cat /tmp/mark; hostname; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\ninside\nbox\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // The exec joins the container's pid namespace: pid 1 is the container's sleep.
    let ps = d.ok(&["exec", "box", "ps", "-o", "pid,args"]);
    assert!(
        ps.lines().any(|l| l.trim_start().starts_with("1 ") && l.contains("sleep 100")),
        "{ps}"
    );
    // Same cgroup as the container's init.
    let own = d.ok(&["exec", "box", "cat", "/proc/self/cgroup"]);
    let init = d.ok(&["exec", "box", "cat", "/proc/1/cgroup"]);
    assert_eq!(own, init);
    assert_eq!(
        d.ok(&[
            "exec",
            "-e",
            "GREETING=hi",
            "-w",
            "/tmp",
            "box",
            "sh",
            "-c",
            "echo $GREETING; pwd"
        ]),
        "hi\n/tmp\n"
    );
    assert_eq!(d.ok(&["exec", "-u", "nobody", "box", "id", "-u"]).trim(), "65534");

    let mut child = d
        .command(&["exec", "-i", "box", "sh", "-c", "tr a-z A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"piped input\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PIPED INPUT\n");

    let error = d.fails(&["exec", "box", "/bin/nonexistent"]);
    assert!(error.contains("nonexistent"), "{error}");
    d.ok(&["stop", "-t", "1", "box"]);
    let error = d.fails(&["exec", "box", "true"]);
    assert!(error.contains("Stopped"), "{error}");
    assert!(d.fails(&["exec", "ghost", "true"]).contains("not found"));
}

#[test]
fn exec_with_a_tty_follows_window_size_changes() {
    let Some(d) = daemon_with_zone("exec_tty", None) else { return };
    d.ok(&["run", "--zone", "z", "-d", "--name", "term", "busybox", "sleep", "100"]);
    // Without a local terminal the session still gets a PTY inside.
    assert!(d.ok(&["exec", "-t", "term", "tty"]).starts_with("/dev/pts/"));

    // A terminal of our own for the CLI, so it takes the local size and forwards resizes.
    let (mut terminal, mut cli) =
        Terminal::spawn(d.command(&["exec", "-it", "term", "sh"]), 30, 100);
    terminal.type_text("stty size\n");
    terminal.read_until("30 100");
    terminal.resize(40, 120);
    std::thread::sleep(Duration::from_millis(300));
    terminal.type_text("stty size\n");
    terminal.read_until("40 120");
    terminal.type_text("exit 5\n");
    let status = cli.wait().unwrap();
    assert_eq!(status.code(), Some(5));
}

#[test]
fn zone_stats_measure_a_busy_container() {
    let Some(d) = daemon_with_zone("cpu_stats", None) else { return };
    d.ok(&[
        "run",
        "--zone",
        "z",
        "-d",
        "--name",
        "spin",
        "busybox",
        "sh",
        "-c",
        "while true; do :; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let stats = json(&d.ok(&["zone", "stats", "z", "--json"]));
    assert!(stats["cpu_usage_percent"].as_f64().unwrap() > 5.0, "{stats}");
    assert_eq!(stats["container_count"], 1);
    assert!(stats["pids_current"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["memory_usage_bytes"].as_u64().unwrap() > 0, "{stats}");
    d.ok(&["rm", "-f", "spin"]);
}

/// A terminal the test makes for one CLI process: the CLI gets the slave as stdio and
/// controlling terminal (so it goes raw and follows resizes); the test types into the master and
/// reads what the CLI prints.
struct Terminal {
    master: std::fs::File,
    seen: String,
    /// Where the next `read_until` starts looking, so a needle is matched once.
    cursor: usize,
}

impl Terminal {
    fn spawn(
        mut command: std::process::Command,
        rows: u16,
        cols: u16,
    ) -> (Self, std::process::Child) {
        use std::os::fd::AsFd;
        use std::os::unix::process::CommandExt;
        let master =
            rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY)
                .unwrap();
        rustix::pty::grantpt(&master).unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
        let slave =
            std::fs::File::options().read(true).write(true).open(name.to_str().unwrap()).unwrap();
        rauha::shim::pty::set_window_size(&master, rows, cols).unwrap();
        command
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave.try_clone().unwrap());
        // SAFETY: setsid and TIOCSCTTY on fd 0 are single syscalls; nothing is allocated.
        unsafe {
            command.pre_exec(|| {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(std::io::stdin().as_fd())?;
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        drop(slave);
        (Self { master: std::fs::File::from(master), seen: String::new(), cursor: 0 }, child)
    }

    fn type_text(&mut self, text: &str) {
        use std::io::Write;
        self.master.write_all(text.as_bytes()).unwrap();
    }

    fn resize(&self, rows: u16, cols: u16) {
        use std::os::fd::AsFd;
        rauha::shim::pty::set_window_size(self.master.as_fd(), rows, cols).unwrap();
    }

    /// Reads until `needle` appears after the previous match.
    fn read_until(&mut self, needle: &str) {
        use std::io::Read;
        use std::os::fd::AsFd;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buffer = [0u8; 4096];
        loop {
            if let Some(at) = self.seen[self.cursor..].find(needle) {
                self.cursor += at + needle.len();
                return;
            }
            assert!(Instant::now() < deadline, "no {needle:?} in terminal output: {:?}", self.seen);
            let fd = self.master.as_fd();
            let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
            let timeout = rustix::event::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
            if rustix::event::poll(&mut fds, Some(&timeout)).unwrap() > 0 {
                match self.master.read(&mut buffer) {
                    Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buffer[..n])),
                    // EIO: the CLI closed the terminal; the needle will never come.
                    Err(e) => panic!("terminal closed ({e}) without {needle:?}: {:?}", self.seen),
                }
            }
        }
    }
}

/// Waits until the window size of the container's console (`/dev/pts/0`) is `rows cols`: an
/// attacher on a terminal sets it once it holds its streams.
fn wait_for_console_size(d: &TestDaemon, container: &str, size: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = d.cli(&["exec", container, "stty", "-F", "/dev/pts/0", "size"]);
        let now = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if now == size {
            return;
        }
        assert!(Instant::now() < deadline, "console size stays {now:?}, expected {size:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn run_interactive_pipes_stdin_and_exits_with_the_containers_code() {
    use std::io::Write;
    let Some(d) = daemon_with_zone("run_interactive", None) else { return };
    let mut child = d
        .command(&["run", "--zone", "z", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z; exit 3"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped into run\nsecond line\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PIPED INTO RUN\nSECOND LINE\n");
    // --rm still removes it (right after the exit the CLI reports).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !json(&d.ok(&["ps", "-a", "--json"])).as_array().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the --rm container was not removed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn run_with_a_tty_gets_its_own_pts_follows_resizes_and_exits_with_its_code() {
    let Some(d) = daemon_with_zone("run_tty", None) else { return };
    let (mut t, mut cli) = Terminal::spawn(
        d.command(&["run", "--zone", "z", "--name", "tt", "-it", "busybox", "sh"]),
        30,
        100,
    );
    t.read_until("# ");
    t.type_text("tty\n");
    t.read_until("/dev/pts/0");
    t.type_text("stty size\n");
    t.read_until("30 100");
    t.resize(40, 120);
    std::thread::sleep(Duration::from_millis(300));
    t.type_text("stty size\n");
    t.read_until("40 120");
    t.type_text("echo $((6*7))\n");
    t.read_until("42");
    t.type_text("exit 4\n");
    assert_eq!(cli.wait().unwrap().code(), Some(4));
    // The shim logged the terminal's output as stdout lines, without the tty's "\r\n" endings.
    let logs = d.ok(&["logs", "tt"]);
    assert!(logs.contains("/dev/pts/0\n") && logs.contains("\n42\n"), "{logs:?}");
    assert!(!logs.contains("\r\n"), "{logs:?}");
    assert_eq!(inspect(&d, "tt")["exit_code"], 4);
}

#[test]
fn detached_tty_containers_take_several_attachers_that_come_and_go() {
    let Some(d) = daemon_with_zone("attach_tty", None) else { return };
    d.ok(&["run", "--zone", "z", "-d", "-it", "--name", "bg", "busybox", "sh"]);
    let (mut first, mut first_cli) = Terminal::spawn(d.command(&["attach", "bg"]), 24, 80);
    wait_for_console_size(&d, "bg", "24 80");
    let (mut second, mut second_cli) = Terminal::spawn(d.command(&["attach", "bg"]), 33, 111);
    wait_for_console_size(&d, "bg", "33 111");

    // Both see what the container prints, whoever typed it.
    first.type_text("echo $((6*7))\n");
    first.read_until("42");
    second.read_until("42");
    second.type_text("echo $((5*5))\n");
    first.read_until("25");
    second.read_until("25");

    // One attacher leaving (even killed) does not touch the container.
    second_cli.kill().unwrap();
    second_cli.wait().unwrap();
    assert_eq!(inspect(&d, "bg")["state"], "Running");
    first.type_text("echo $((9*9))\n");
    first.read_until("81");

    first.type_text("exit 3\n");
    assert_eq!(first_cli.wait().unwrap().code(), Some(3));
    let logs = d.ok(&["logs", "bg"]);
    assert!(logs.contains("42") && logs.contains("25") && logs.contains("81"), "{logs:?}");

    let error = d.fails(&["attach", "bg"]);
    assert!(error.contains("Stopped") && error.contains("attach"), "{error}");
    assert!(d.fails(&["attach", "ghost"]).contains("not found"));
}

#[test]
fn attach_to_an_interactive_container_without_a_tty_keeps_streams_apart() {
    use std::io::{BufRead, BufReader, Write};
    let Some(d) = daemon_with_zone("attach_pipes", None) else { return };
    d.ok(&[
        "run",
        "--zone",
        "z",
        "-d",
        "-i",
        "--name",
        "rd",
        "busybox",
        "sh",
        "-c",
        "while read line; do echo out:$line; echo err:$line >&2; done; exit 6",
    ]);
    let mut attacher = d
        .command(&["attach", "rd"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = attacher.stdin.take().unwrap();
    let mut stdout = BufReader::new(attacher.stdout.take().unwrap());
    let mut stderr = BufReader::new(attacher.stderr.take().unwrap());
    // The attacher may still be connecting: repeat until its copy arrives.
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (done, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = stdout.read_line(&mut first);
        let _ = done.send((first, stdout));
    });
    let (first, mut stdout) = loop {
        stdin.write_all(b"ping\n").unwrap();
        if let Ok(got) = seen.recv_timeout(Duration::from_millis(300)) {
            break got;
        }
        assert!(Instant::now() < deadline, "attacher never saw the container's output");
    };
    assert_eq!(first, "out:ping\n");
    stderr.read_line(&mut line).unwrap();
    assert_eq!(line, "err:ping\n");
    // Closing this attacher's input detaches; the container's stdin stays open (no --rm
    // foreground run), so it keeps waiting for input.
    drop(stdin);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(inspect(&d, "rd")["state"], "Running");
    // PID 1 ignores SIGTERM without a handler; KILL ends it, and the attacher with it.
    d.ok(&["kill", "-s", "KILL", "rd"]);
    let status = attacher.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(rest.lines().all(|l| l == "out:ping"), "{rest:?}");
    assert_eq!(status.code(), Some(128 + 9));
}

#[test]
fn a_container_that_writes_nothing_leaves_its_upper_dir_empty() {
    // The busybox image has no /proc, /sys, /dev or /etc/hosts: the daemon's init layer holds
    // those mount points, so setting up the rootfs copies nothing up.
    let Some(d) = daemon_with_zone("init_layer", None) else { return };
    d.ok(&["run", "--zone", "z", "--name", "quiet", "busybox", "true"]);
    let id = inspect(&d, "quiet")["id"].as_str().expect("container id").to_owned();
    let upper = d.root.join("containers").join(&id).join("upper");
    let entries: Vec<_> = std::fs::read_dir(&upper)
        .unwrap_or_else(|e| panic!("read {}: {e}", upper.display()))
        .map(|entry| entry.expect("dir entry").file_name())
        .collect();
    assert!(entries.is_empty(), "upper dir {} holds {entries:?}", upper.display());
    // The mount points still work, and the generated files are the ones bound.
    let out = d.ok(&[
        "run",
        "--rm",
        "--zone",
        "z",
        "busybox",
        "sh",
        "-c",
        "ls /proc/self/ns && cat /etc/hosts",
    ]);
    assert!(out.contains("pid") && out.contains("localhost"), "{out}");
}

#[test]
fn the_shipped_privileged_policy_runs_or_names_the_capability_rauha_lacks() {
    let policy = include_str!("../policies/privileged.toml");
    let Some(d) = daemon_with_zone("privileged_policy", Some(policy)) else { return };
    // The daemon inherits this process's bounding set; a sandbox may have taken
    // CAP_SYS_RESOURCE (number 24) out of it, as this project's development machine does.
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("CapBnd in /proc/self/status");
    let out =
        d.cli(&["run", "--rm", "--zone", "z", "busybox", "grep", "CapEff", "/proc/self/status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if bounding & (1 << 24) != 0 {
        assert!(out.status.success(), "privileged container failed: {stderr}");
    } else {
        assert!(!out.status.success(), "a capability outside the bounding set was granted");
        assert!(stderr.contains("CAP_SYS_RESOURCE") && stderr.contains("bounding set"), "{stderr}");
    }
}
