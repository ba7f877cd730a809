//! The always-on enforcement layers (`rauha::enforce`) against the real kernel, outside the
//! shim: each layer applied in a `pre_exec` child running busybox, so a failure points at the
//! layer itself rather than at container setup. The container-level proofs (the same layers
//! applied by the shim, attacked from inside zones) are in `tests/escape.rs`.
//!
//! Needs root for some probes and a kernel with seccomp filters and Landlock ABI >= 6; under
//! `CI=true` a missing feature fails instead of skipping.

#[allow(dead_code)]
mod common {
    //! Helpers for the privileged enforcement tests: feature gates, spawning busybox with layers
    //! applied in `pre_exec`, and process guards.

    use std::io;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, Output, Stdio};

    use rauha::enforce::child::ChildFailure;

    /// Busybox (static) from the `busybox-static` package.
    pub const BUSYBOX: &str = "/bin/busybox";

    /// Whether a test may run: a missing feature fails under `CI=true`, else skips with a reason.
    pub fn gate(what: &str, available: bool) -> bool {
        if available {
            return true;
        }
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("required for this test under CI: {what}");
        }
        eprintln!("skipped: {what} is not available");
        false
    }

    /// Whether the test runs as root (mknod, reboot probes).
    pub fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// Converts a child failure to the io::Error std's pre_exec reports (no allocation).
    pub fn to_io(f: ChildFailure) -> io::Error {
        io::Error::from_raw_os_error(f.errno.raw_os_error())
    }

    /// Runs `program args` with `setup` called in the child between fork and exec.
    pub fn run_with<F>(program: &str, args: &[&str], setup: F) -> io::Result<Output>
    where
        F: FnMut() -> io::Result<()> + Clone + Send + Sync + 'static,
    {
        // Tests copy busybox into their trees while other tests fork: a copy whose write fd a
        // concurrent fork inherited is briefly "text file busy". Retry that, nothing else.
        let mut attempts = 0;
        loop {
            let mut cmd = Command::new(program);
            cmd.args(args).stdin(Stdio::null());
            // SAFETY: every closure passed here only makes raw syscalls on memory prepared before
            // the fork (the layers' child-side apply functions), as the enforce module requires.
            unsafe {
                cmd.pre_exec(setup.clone());
            }
            match cmd.output() {
                Err(error) if error.raw_os_error() == Some(26) && attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                result => return result,
            }
        }
    }

    /// The errno a probe returned in the child, carried back through std's spawn error pipe:
    /// `Ok(())` from `setup` never happens; 0 means the probed syscall succeeded.
    pub fn probe_errno<F>(mut setup: F) -> i32
    where
        F: FnMut() -> i32 + Send + Sync + 'static,
    {
        let mut cmd = Command::new(BUSYBOX);
        cmd.arg("true");
        // SAFETY: as in run_with; io::Error::from_raw_os_error does not allocate.
        unsafe {
            cmd.pre_exec(move || Err(io::Error::from_raw_os_error(setup())));
        }
        match cmd.spawn() {
            Ok(mut child) => {
                let _ = child.wait();
                panic!("probe child exec'd instead of reporting");
            }
            Err(e) => e.raw_os_error().expect("raw os error from pre_exec"),
        }
    }

    /// The calling thread's errno after a failed raw syscall (0 if the call succeeded).
    pub fn errno_of(rc: libc::c_long) -> i32 {
        if rc >= 0 { 0 } else { io::Error::last_os_error().raw_os_error().unwrap_or(0) }
    }

    /// Kills and reaps a helper process when dropped, so a failed test leaves nothing behind.
    pub struct KillOnDrop(pub Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// stdout and stderr of `out` as text, for assertion messages.
    pub fn text(out: &Output) -> (String, String) {
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

mod seccomp_layer {
    //! seccomp layer against the real kernel: busybox under the default profile, the policy deny
    //! list, capability groups, argument filters, and raw probes of dangerous syscalls.

    use std::time::Instant;

    use super::common::{BUSYBOX, errno_of, gate, is_root, probe_errno, run_with, text, to_io};
    use rauha::enforce::seccomp::{
        self, SeccompCache, SeccompProgram, cap, install, kernel_supports_filters,
    };

    fn available() -> bool {
        gate("seccomp filters (CONFIG_SECCOMP_FILTER)", kernel_supports_filters())
    }

    fn busybox(prog: &SeccompProgram, args: &[&str]) -> std::process::Output {
        let prog = prog.clone();
        run_with(BUSYBOX, args, move || install(&prog).map_err(to_io)).expect("spawn busybox")
    }

    fn assert_ok(prog: &SeccompProgram, args: &[&str]) {
        let out = busybox(prog, args);
        let (o, e) = text(&out);
        assert!(out.status.success(), "{args:?}: {:?}\n{o}\n{e}", out.status);
    }

    fn assert_eperm(prog: &SeccompProgram, args: &[&str]) {
        let out = busybox(prog, args);
        let (o, e) = text(&out);
        assert!(!out.status.success(), "{args:?} succeeded:\n{o}\n{e}");
        assert!(e.contains("Operation not permitted"), "{args:?}: {e}");
    }

    #[test]
    fn default_profile_runs_common_commands() {
        if !available() {
            return;
        }
        let prog = seccomp::compile(&[] as &[&str], 0).unwrap();
        assert_ok(&prog, &["true"]);
        assert_ok(&prog, &["ls", "/"]);
        assert_ok(&prog, &["cat", "/proc/self/status"]);
        assert_ok(&prog, &["sleep", "0.05"]);
        // Pipes and background jobs fork through clone without namespace flags.
        assert_ok(&prog, &["sh", "-c", "echo hi | cat >/dev/null; sleep 0 & wait $!"]);
        let out = busybox(&prog, &["sh", "-c", "grep Seccomp: /proc/self/status"]);
        assert!(text(&out).0.contains("Seccomp:\t2"), "{:?}", text(&out));
    }

    #[test]
    fn default_profile_denies_namespaces_and_mounts() {
        if !available() {
            return;
        }
        let prog = seccomp::compile(&[] as &[&str], 0).unwrap();
        assert_eperm(&prog, &["unshare", "-m", "true"]);
        // A missing target: harmless even if the filter were not there (then ENOENT). busybox
        // words EPERM from mount(2) as "permission denied (are you root?)".
        let out = busybox(&prog, &["mount", "-t", "tmpfs", "none", "/nonexistent-rauha-test"]);
        let (_, e) = text(&out);
        assert!(!out.status.success() && e.contains("permission denied"), "{e}");
    }

    #[test]
    fn sys_admin_unlocks_namespaces() {
        if !available() || !gate("root (to unshare)", is_root()) {
            return;
        }
        let prog = seccomp::compile(&[] as &[&str], 1 << cap::SYS_ADMIN).unwrap();
        assert_ok(&prog, &["unshare", "-m", "true"]);
    }

    #[test]
    fn dangerous_syscalls_fail_with_eperm() {
        if !available() || !gate("root (probes must not fail for lack of privilege)", is_root()) {
            return;
        }
        let on = seccomp::compile(&[] as &[&str], 0).unwrap();
        let off = SeccompProgram::disabled();
        // Each probe is harmless when allowed: invalid arguments make the kernel refuse it
        // (EINVAL/EFAULT) after the permission check, while the filter answers EPERM before.
        type Probe = fn() -> i32;
        let probes: [(&str, Probe); 5] = [
            ("reboot", || {
                // SAFETY: wrong magic numbers: the kernel returns EINVAL without rebooting.
                errno_of(unsafe { libc::syscall(libc::SYS_reboot, 0, 0, 0, 0) })
            }),
            ("kexec_load", || {
                // SAFETY: no segments and unknown flags: EINVAL, nothing is loaded.
                errno_of(unsafe {
                    libc::syscall(
                        libc::SYS_kexec_load,
                        0,
                        0,
                        std::ptr::null::<u8>(),
                        0xdead_0000u64,
                    )
                })
            }),
            ("init_module", || {
                // SAFETY: a null image of length 0: the kernel fails to read it (EFAULT/EINVAL/ENOEXEC).
                errno_of(unsafe {
                    libc::syscall(libc::SYS_init_module, std::ptr::null::<u8>(), 0, c"".as_ptr())
                })
            }),
            ("bpf", || {
                // SAFETY: an unknown command with a null attribute: EINVAL.
                errno_of(unsafe { libc::syscall(libc::SYS_bpf, 9999, std::ptr::null::<u8>(), 0) })
            }),
            ("personality(PER_BSD)", || {
                // SAFETY: personality takes no pointers; PER_BSD only changes this child's persona,
                // which the immediate exit discards.
                errno_of(unsafe { libc::syscall(libc::SYS_personality, 0x0006) })
            }),
        ];
        for (name, probe) in probes {
            let denied = {
                let on = on.clone();
                probe_errno(move || match install(&on) {
                    Ok(()) => probe(),
                    Err(f) => -f.errno.raw_os_error(),
                })
            };
            assert_eq!(denied, libc::EPERM, "{name} under the default profile");
            let without = {
                let off = off.clone();
                probe_errno(move || match install(&off) {
                    Ok(()) => probe(),
                    Err(f) => -f.errno.raw_os_error(),
                })
            };
            assert_ne!(without, libc::EPERM, "{name} without a filter (probe is meaningless)");
        }
    }

    #[test]
    fn clone3_is_enosys_and_namespace_clone_eperm() {
        if !available() {
            return;
        }
        let on = seccomp::compile(&[] as &[&str], 0).unwrap();
        let p = on.clone();
        let clone3 = probe_errno(move || match install(&p) {
            Ok(()) => {
                // SAFETY: a null clone_args: EFAULT/EINVAL when allowed, never creates a process.
                errno_of(unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 88) })
            }
            Err(f) => -f.errno.raw_os_error(),
        });
        assert_eq!(clone3, libc::ENOSYS);
        let p = on.clone();
        let ns_clone = probe_errno(move || match install(&p) {
            Ok(()) => {
                // SAFETY: fork-like clone; if the filter let it through, the new child exits at
                // once and is reaped, so nothing is left behind.
                let rc = unsafe {
                    libc::syscall(libc::SYS_clone, libc::CLONE_NEWUTS | libc::SIGCHLD, 0, 0, 0, 0)
                };
                if rc == 0 {
                    // SAFETY: _exit in the cloned child; async-signal-safe.
                    unsafe { libc::_exit(0) }
                }
                if rc > 0 {
                    // SAFETY: reaping our own child; the status pointer may be null.
                    unsafe { libc::waitpid(rc as i32, std::ptr::null_mut(), 0) };
                }
                errno_of(rc)
            }
            Err(f) => -f.errno.raw_os_error(),
        });
        assert_eq!(ns_clone, libc::EPERM);
    }

    #[test]
    fn deny_list_blocks_mkdir_only() {
        if !available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        let target = target.to_str().unwrap();
        let prog = seccomp::compile(&["mkdir", "mkdirat"], 0).unwrap();
        assert_eperm(&prog, &["mkdir", target]);
        assert!(!dir.path().join("x").exists());
        assert_ok(&prog, &["true"]);
        assert_ok(&prog, &["ls", dir.path().to_str().unwrap()]);
        // The same command under the default profile works.
        let default = seccomp::compile(&[] as &[&str], 0).unwrap();
        assert_ok(&default, &["mkdir", target]);
        assert!(dir.path().join("x").is_dir());
    }

    #[test]
    fn unknown_deny_name_is_named_in_the_error() {
        let e = seccomp::compile(&["mkdir", "frobnicate"], 0).unwrap_err();
        assert!(e.to_string().contains("\"frobnicate\""), "{e}");
    }

    #[test]
    fn cache_hit_skips_compilation() {
        let cache = SeccompCache::default();
        let t = Instant::now();
        let a = cache.get_or_compile(&["mount", "umount2"], 0).unwrap();
        let compile = t.elapsed();
        let t = Instant::now();
        let b = cache.get_or_compile(&["umount2", "mount"], 1 << 0).unwrap();
        let hit = t.elapsed();
        assert!(a.same_program(&b));
        let stats = cache.stats();
        assert_eq!((stats.compiles, stats.hits, stats.len), (1, 1, 1));
        eprintln!("compile {compile:?}, cached lookup {hit:?}");
    }
}

mod landlock_layer {
    //! Landlock layer against the real kernel: a temp tree stands in for the container rootfs
    //! (rules on its absolute paths, no pivot_root needed), busybox copied inside it.

    use std::fs;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output, Stdio};
    use std::sync::Arc;
    use std::time::Duration;

    use super::common::{
        BUSYBOX, KillOnDrop, errno_of, gate, is_root, probe_errno, run_with, text, to_io,
    };
    use rauha::enforce::child::{ChildFailure, ChildStep};
    use rauha::enforce::landlock::{PreparedLandlock, probe_abi};
    use rustix::io::Errno;

    /// A rootfs stand-in: `root/{bin/busybox, ro/file, rw/, dev/null, dev/other}`, plus a file
    /// outside it.
    struct Tree {
        _dir: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    impl Tree {
        fn new() -> Tree {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            for d in ["bin", "ro", "rw", "dev"] {
                fs::create_dir_all(root.join(d)).unwrap();
            }
            fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
            fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755))
                .unwrap();
            fs::write(root.join("ro/file"), "data\n").unwrap();
            fs::write(root.join("dev/other"), "").unwrap();
            if is_root() {
                let null = root.join("dev/null");
                let c = std::ffi::CString::new(null.as_os_str().as_bytes()).unwrap();
                // SAFETY: a valid NUL-terminated path; creates the 1:3 character device node.
                let rc =
                    unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
                assert_eq!(rc, 0, "mknod {}", null.display());
            }
            let outside = dir.path().join("outside");
            fs::write(&outside, "secret\n").unwrap();
            Tree { _dir: dir, root, outside }
        }

        fn p(&self, rel: &str) -> String {
            self.root.join(rel).to_str().unwrap().to_owned()
        }

        fn busybox(&self) -> String {
            self.p("bin/busybox")
        }

        fn prepared(&self) -> PreparedLandlock {
            PreparedLandlock::new(probe_abi().unwrap(), &self.root, &["/rw"], &[]).unwrap()
        }
    }

    fn available() -> bool {
        let abi = probe_abi().unwrap_or(0);
        gate(&format!("landlock abi >= 6 (kernel offers {abi})"), abi >= 6)
    }

    fn sh(tree: &Tree, ll: &Arc<PreparedLandlock>, script: &str) -> Output {
        let ll = Arc::clone(ll);
        run_with(&tree.busybox(), &["sh", "-c", script], move || ll.apply().map_err(to_io))
            .expect("spawn busybox sh")
    }

    fn assert_ok(out: &Output, what: &str) {
        let (o, e) = text(out);
        assert!(out.status.success(), "{what}: {:?}\n{o}\n{e}", out.status);
    }

    fn assert_denied(out: &Output, what: &str) {
        let (o, e) = text(out);
        assert!(!out.status.success(), "{what} succeeded:\n{o}\n{e}");
        assert!(e.contains("Permission denied"), "{what}: {e}");
    }

    #[test]
    fn writes_only_under_writable_paths() {
        if !available() {
            return;
        }
        let tree = Tree::new();
        let ll = Arc::new(tree.prepared());
        let (rw, ro) = (tree.p("rw"), tree.p("ro"));

        assert_ok(
            &sh(
                &tree,
                &ll,
                &format!(
                    "echo x > {rw}/f && cat {rw}/f && mkdir {rw}/d && mv {rw}/f {rw}/d/g && rm -r {rw}/d"
                ),
            ),
            "write under rw",
        );
        assert_denied(&sh(&tree, &ll, &format!("echo x > {ro}/new")), "create under ro");
        assert_denied(&sh(&tree, &ll, &format!("echo x >> {ro}/file")), "append under ro");
        assert_denied(&sh(&tree, &ll, &format!("mkdir {ro}/d")), "mkdir under ro");
        assert_denied(&sh(&tree, &ll, &format!("rm {ro}/file")), "unlink under ro");
        assert_denied(&sh(&tree, &ll, &format!("mv {ro}/file {rw}/stolen")), "rename ro into rw");
        assert!(tree.root.join("ro/file").exists());
        assert!(!tree.root.join("ro/new").exists());

        // Read and execute inside the root.
        let out = sh(&tree, &ll, &format!("cat {ro}/file && ls {ro}"));
        assert_ok(&out, "read under ro");
        assert!(text(&out).0.starts_with("data\n"));
    }

    #[test]
    fn nothing_outside_the_root() {
        if !available() {
            return;
        }
        let tree = Tree::new();
        let ll = Arc::new(tree.prepared());
        let outside = tree.outside.to_str().unwrap().to_owned();
        assert_denied(&sh(&tree, &ll, &format!("cat {outside}")), "read outside root");
        // Executing a binary outside the root fails in execve itself.
        let ll2 = Arc::clone(&ll);
        let err = run_with(BUSYBOX, &["true"], move || ll2.apply().map_err(to_io)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EACCES), "exec outside root: {err}");
    }

    #[test]
    fn device_nodes_are_writable() {
        if !available() || !gate("root (mknod)", is_root()) {
            return;
        }
        let tree = Tree::new();
        let ll = Arc::new(tree.prepared());
        let dev = tree.p("dev");
        assert_ok(&sh(&tree, &ll, &format!("echo x > {dev}/null")), "write /dev/null");
        assert_denied(&sh(&tree, &ll, &format!("echo x > {dev}/other")), "write /dev/other");
    }

    #[test]
    fn disabled_switch_applies_nothing() {
        let tree = Tree::new();
        let ll = Arc::new(PreparedLandlock::disabled());
        let ro = tree.p("ro");
        assert_ok(&sh(&tree, &ll, &format!("echo x > {ro}/new")), "write with landlock off");
    }

    #[test]
    fn signals_stay_inside_the_domain() {
        if !available() {
            return;
        }
        // Scoping does not depend on file rules: the host root keeps /bin/busybox and the
        // /dev/null busybox sh gives background jobs inside the domain.
        let ll = Arc::new(
            PreparedLandlock::new(probe_abi().unwrap(), Path::new("/"), &[] as &[&str], &[])
                .unwrap(),
        );
        let sh = |script: &str| {
            let ll = Arc::clone(&ll);
            run_with(BUSYBOX, &["sh", "-c", script], move || ll.apply().map_err(to_io)).unwrap()
        };
        let victim = KillOnDrop(
            Command::new(BUSYBOX).args(["sleep", "100"]).stdout(Stdio::null()).spawn().unwrap(),
        );
        let pid = victim.0.id().to_string();
        let out = sh(&format!("kill -TERM {pid}"));
        let (_, e) = text(&out);
        assert!(!out.status.success() && e.contains("Operation not permitted"), "{e}");
        std::thread::sleep(Duration::from_millis(50));
        let mut victim = victim;
        assert!(victim.0.try_wait().unwrap().is_none(), "outside process was killed");

        // Its own children are in its domain.
        let out = sh("sleep 100 & kill -TERM $!; wait $!; echo rc=$?");
        assert_ok(&out, "signal own child");
        assert!(text(&out).0.contains("rc=143"), "{:?}", text(&out));
    }

    #[test]
    fn abstract_unix_sockets_outside_are_unreachable() {
        if !available() {
            return;
        }
        use std::os::linux::net::SocketAddrExt;
        let name = format!("rauha-enforce-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();

        // sockaddr_un for the abstract name, built before the fork.
        // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
        let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (i, b) in name.bytes().enumerate() {
            sun.sun_path[i + 1] = b as libc::c_char;
        }
        let len = (std::mem::size_of::<libc::sa_family_t>() + 1 + name.len()) as libc::socklen_t;
        let connect = move || {
            // SAFETY: plain socket/connect syscalls on a stack-copied sockaddr of length `len`.
            unsafe {
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                if fd < 0 {
                    return errno_of(-1);
                }
                let rc = libc::connect(fd, &sun as *const _ as *const libc::sockaddr, len);
                errno_of(rc as libc::c_long)
            }
        };

        let tree = Tree::new();
        let ll = Arc::new(tree.prepared());
        let denied = probe_errno(move || match ll.apply() {
            Ok(()) => connect(),
            Err(f) => -f.errno.raw_os_error(),
        });
        assert_eq!(denied, libc::EPERM, "connect from inside the domain");
        let allowed = probe_errno(connect);
        assert_eq!(allowed, 0, "connect without landlock");
    }

    #[test]
    fn missing_writable_path_is_reported_with_its_name() {
        if !available() {
            return;
        }
        let tree = Tree::new();
        let ll = Arc::new(
            PreparedLandlock::new(probe_abi().unwrap(), &tree.root, &["/missing"], &[]).unwrap(),
        );
        // std's pre_exec pipe carries one integer: encode step and index, the errno is checked
        // through the message.
        let child = Arc::clone(&ll);
        let code = probe_errno(move || match child.apply() {
            Ok(()) => 0,
            Err(f) if f.errno == Errno::NOENT => f.step as i32 * 1000 + f.index as i32,
            Err(f) => -f.errno.raw_os_error(),
        });
        let step = ChildStep::from_code((code / 1000) as u32).expect("a landlock step");
        let failure = ChildFailure { step, index: (code % 1000) as u32, errno: Errno::NOENT };
        let msg = ll.error(failure).unwrap().to_string();
        assert!(msg.ends_with("/missing: open: no such file or directory"), "{msg}");
    }
}

mod both_layers {
    //! Both always-on layers in one child, in the shim's order: Landlock, then seccomp last.

    use std::sync::Arc;

    use super::common::{BUSYBOX, gate, run_with, text, to_io};
    use rauha::enforce::landlock::{PreparedLandlock, probe_abi};
    use rauha::enforce::seccomp::{self, SeccompProgram, install, kernel_supports_filters};

    fn run(ll: &Arc<PreparedLandlock>, sc: &SeccompProgram, script: &str) -> std::process::Output {
        let (ll, sc) = (Arc::clone(ll), sc.clone());
        run_with(BUSYBOX, &["sh", "-c", script], move || {
            ll.apply().map_err(to_io)?;
            install(&sc).map_err(to_io)
        })
        .expect("spawn busybox")
    }

    #[test]
    fn landlock_then_seccomp_each_hold_their_boundary() {
        let abi = probe_abi().unwrap_or(0);
        if !gate(&format!("landlock abi >= 6 (kernel offers {abi})"), abi >= 6)
            || !gate("seccomp filters", kernel_supports_filters())
        {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let rw = dir.path().join("rw");
        std::fs::create_dir(&rw).unwrap();
        let rw = rw.to_str().unwrap().to_owned();
        // The host root stands in for the rootfs, so /bin/busybox is inside it.
        let ll = Arc::new(
            PreparedLandlock::new(abi, std::path::Path::new("/"), &[rw.as_str()], &[]).unwrap(),
        );
        let sc = seccomp::compile(&["mkdir", "mkdirat"], 0).unwrap();

        let out = run(&ll, &sc, &format!("echo x > {rw}/f && cat {rw}/f && ls / >/dev/null"));
        assert!(out.status.success(), "{:?}", text(&out));
        // seccomp holds where Landlock allows: mkdir under the writable path.
        let out = run(&ll, &sc, &format!("mkdir {rw}/d"));
        assert!(text(&out).1.contains("Operation not permitted"), "{:?}", text(&out));
        // Landlock holds where seccomp allows: writes outside the writable path.
        let out = run(&ll, &sc, &format!("echo x > {}/g", dir.path().display()));
        assert!(text(&out).1.contains("Permission denied"), "{:?}", text(&out));
        // With each layer switched off, the other still holds.
        let off = Arc::new(PreparedLandlock::disabled());
        let out = run(&off, &sc, &format!("mkdir {rw}/d"));
        assert!(text(&out).1.contains("Operation not permitted"), "{:?}", text(&out));
        let out =
            run(&ll, &SeccompProgram::disabled(), &format!("echo x > {}/g", dir.path().display()));
        assert!(text(&out).1.contains("Permission denied"), "{:?}", text(&out));
    }
}

mod probe_role {
    //! The `rauha probe` role (the attack probes of `zone verify`) run on the host under the
    //! layers, applied in `pre_exec` as the shim would: every check must report the attack
    //! denied and name the mechanism that held, except seeing the foreign process, which only
    //! a pid namespace hides (there is none here).

    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::Arc;

    use rauha::enforce::landlock::{PreparedLandlock, probe_abi};
    use rauha::enforce::seccomp::{self, install, kernel_supports_filters};

    use super::common::{KillOnDrop, gate, run_with, text, to_io};

    #[test]
    fn every_probe_is_denied_under_seccomp_and_landlock() {
        let abi = probe_abi().unwrap_or(0);
        if !gate("landlock abi >= 6", abi >= 6) || !gate("seccomp", kernel_supports_filters()) {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let rw = tmp.path().to_str().unwrap().to_owned();
        let ll = Arc::new(PreparedLandlock::new(abi, Path::new("/"), &[rw.as_str()], &[]).unwrap());
        let sc = seccomp::compile(&[] as &[&str], 0).unwrap();
        // A process outside the probe's Landlock domain stands in for another zone's.
        let foreign =
            KillOnDrop(Command::new("sleep").arg("100").stdout(Stdio::null()).spawn().unwrap());
        let pid = foreign.0.id().to_string();
        let target = format!("zone:{pid}");
        let out = run_with(env!("CARGO_BIN_EXE_rauha"), &["probe", "--foreign-pid", &target], {
            move || {
                ll.apply().map_err(to_io)?;
                install(&sc).map_err(to_io)
            }
        })
        .unwrap();
        let (stdout, stderr) = text(&out);
        let checks: Vec<serde_json::Value> =
            stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(checks.len(), 16, "{stdout}\n{stderr}");
        let named = |name: &str| checks.iter().find(|c| c["check"] == name).expect(name);
        for c in &checks {
            assert_eq!(c["passed"], c["check"] != "see_zone", "{c}");
        }
        assert_eq!(named("see_zone")["errno"], 0);
        // Held by what answered: Landlock scopes signals; the profile refuses ptrace, and the
        // capability allow-list is not credited, as this process holds CAP_SYS_PTRACE.
        assert_eq!(named("signal_zone")["held_by"][0], "landlock");
        assert_eq!(named("ptrace_zone")["held_by"], serde_json::json!(["seccomp", "lsm"]));
        assert_eq!(named("write_dev")["held_by"], serde_json::json!(["landlock"]));
        assert!(!out.status.success(), "exit 1: a check did not pass\n{stderr}");
    }
}
