//! Pseudo-terminals for `exec -t`, opened in the container's own devpts instance.
//!
//! The master is opened through the container's root (`/proc/PID/root`, resolved with
//! `RESOLVE_IN_ROOT` so container-controlled symlinks cannot point outside it) at
//! `dev/pts/ptmx`. A PTY from the host's devpts would work as a byte pipe, but inside the
//! container `ttyname` would find no matching `/dev/pts/N`, so `tty`, `ps` and shells would call
//! it "not a tty". The slave is opened with `TIOCGPTPEER` on the master, never by path, so no
//! name in the container's `/dev/pts` is trusted.
//!
//! A container created with a TTY gets its PTY before its process even sets itself up:
//! [`new_instance`] makes a detached devpts instance (`fsopen`/`fsmount`, the same options as the
//! container's usual `/dev/pts`), allocates the PTY in it, and the child attaches that instance at
//! its `/dev/pts`. So the master exists from `CreateContainer` on (an attacher can connect before
//! `Start` and miss nothing), while `ttyname` inside still finds `/dev/pts/0`.
//!
//! Resizing: whoever holds the master (in the end the CLI, which receives it by fd passing)
//! calls [`set_window_size`] on it directly; the kernel then sends `SIGWINCH` to the terminal's
//! foreground process group. No RPC is involved.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::process::Uid;
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;

/// `DEVPTS_SUPER_MAGIC` from `linux/magic.h`.
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// Errors of PTY handling.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    /// Opening `dev/pts/ptmx` under the container's root failed.
    #[error("open dev/pts/ptmx in the container's root: {0}")]
    OpenPtmx(#[source] io::Error),
    /// Inspecting the opened ptmx failed.
    #[error("inspect the container's dev/pts/ptmx: {0}")]
    Inspect(#[source] io::Error),
    /// The opened file is not a devpts `ptmx` (the container replaced or shadowed it).
    #[error("the container's dev/pts/ptmx is not a devpts ptmx device")]
    NotPtmx,
    /// unlockpt failed.
    #[error("unlock pty: {0}")]
    Unlock(#[source] io::Error),
    /// TIOCGPTPEER failed.
    #[error("open pty slave: {0}")]
    OpenSlave(#[source] io::Error),
    /// Handing the slave to the process's user failed.
    #[error("chown pty slave to uid {uid}: {source}")]
    Chown {
        /// The user.
        uid: u32,
        /// The OS error.
        source: io::Error,
    },
    /// Creating the devpts instance for a container's terminal failed.
    #[error("create a devpts instance for the container's terminal ({step}): {source}")]
    NewInstance {
        /// The failed step (`fsopen`, an option, `fsmount`).
        step: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Opening `ptmx` in the new devpts instance failed.
    #[error("open ptmx of the new devpts instance: {0}")]
    OpenNewPtmx(#[source] io::Error),
    /// TIOCSWINSZ failed.
    #[error("set terminal window size: {0}")]
    SetWindowSize(#[source] io::Error),
    /// TIOCGWINSZ failed.
    #[error("get terminal window size: {0}")]
    GetWindowSize(#[source] io::Error),
}

/// A PTY pair: the master stays outside, the slave becomes the process's terminal.
#[derive(Debug)]
pub struct Pty {
    /// Controller side, passed to the client.
    pub master: OwnedFd,
    /// Terminal side, the process's stdin/stdout/stderr and controlling terminal.
    pub slave: OwnedFd,
}

/// Opens a PTY pair in the devpts instance mounted at `dev/pts` under `root` (a directory fd of
/// the container's root), owned by `uid` like a login terminal.
pub fn open_in_root(root: impl AsFd, uid: u32) -> Result<Pty, PtyError> {
    let master = rustix::fs::openat2(
        root,
        "dev/pts/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| PtyError::OpenPtmx(e.into()))?;
    let fs = rustix::fs::fstatfs(&master).map_err(|e| PtyError::Inspect(e.into()))?;
    let st = rustix::fs::fstat(&master).map_err(|e| PtyError::Inspect(e.into()))?;
    let is_char =
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::CharacterDevice;
    // ptmx is character device 5:2 in every devpts instance.
    let dev = st.st_rdev;
    if fs.f_type as i64 != DEVPTS_SUPER_MAGIC
        || !is_char
        || rustix::fs::major(dev) != 5
        || rustix::fs::minor(dev) != 2
    {
        return Err(PtyError::NotPtmx);
    }
    pair_from_master(master, uid)
}

/// Creates a detached devpts instance (options as the container's `/dev/pts`) and a PTY pair in
/// it owned by `uid`; returns the instance's mount fd (for `move_mount`) and the pair.
pub fn new_instance(uid: u32) -> Result<(OwnedFd, Pty), PtyError> {
    use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};
    let step = |step: &'static str| {
        move |e: rustix::io::Errno| PtyError::NewInstance { step, source: e.into() }
    };
    let fs =
        rustix::mount::fsopen("devpts", FsOpenFlags::FSOPEN_CLOEXEC).map_err(step("fsopen"))?;
    for (key, value) in [("ptmxmode", "0666"), ("mode", "0620"), ("gid", "5")] {
        rustix::mount::fsconfig_set_string(&fs, key, value).map_err(step(key))?;
    }
    rustix::mount::fsconfig_create(&fs).map_err(step("create"))?;
    let mount = rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .map_err(step("fsmount"))?;
    let master = rustix::fs::openat(
        &mount,
        "ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| PtyError::OpenNewPtmx(e.into()))?;
    let pty = pair_from_master(master, uid)?;
    Ok((mount, pty))
}

/// Unlocks `master` and opens its slave (never by path), owned by `uid`.
fn pair_from_master(master: OwnedFd, uid: u32) -> Result<Pty, PtyError> {
    // grantpt is a no-op on devpts (ownership comes from the mount options); unlockpt is not.
    rustix::pty::unlockpt(&master).map_err(|e| PtyError::Unlock(e.into()))?;
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )
    .map_err(|e| PtyError::OpenSlave(e.into()))?;
    if uid != 0 {
        rustix::fs::fchown(&slave, Some(Uid::from_raw(uid)), None)
            .map_err(|e| PtyError::Chown { uid, source: e.into() })?;
    }
    Ok(Pty { master, slave })
}

/// Sets the terminal's window size (`TIOCSWINSZ`); call it on the master to resize.
pub fn set_window_size(fd: impl AsFd, rows: u16, cols: u16) -> Result<(), PtyError> {
    let ws = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    rustix::termios::tcsetwinsize(fd, ws).map_err(|e| PtyError::SetWindowSize(e.into()))
}

/// Reads the terminal's window size as `(rows, cols)` (`TIOCGWINSZ`).
pub fn window_size(fd: impl AsFd) -> Result<(u16, u16), PtyError> {
    let ws = rustix::termios::tcgetwinsize(fd).map_err(|e| PtyError::GetWindowSize(e.into()))?;
    Ok((ws.ws_row, ws.ws_col))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_size_round_trips_on_a_host_pty() {
        let Ok(master) = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY) else {
            eprintln!("skipping: no /dev/ptmx");
            return;
        };
        rustix::pty::unlockpt(&master).unwrap();
        set_window_size(&master, 33, 101).unwrap();
        assert_eq!(window_size(&master).unwrap(), (33, 101));
    }

    #[test]
    fn a_new_instance_numbers_its_first_pty_zero() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: creating a devpts instance needs root");
            return;
        }
        let (mount, pty) = new_instance(0).unwrap();
        let st = rustix::fs::fstat(&pty.slave).unwrap();
        let entry = rustix::fs::statat(&mount, "0", rustix::fs::AtFlags::empty()).unwrap();
        assert_eq!(st.st_rdev, entry.st_rdev);
    }

    #[test]
    fn a_non_devpts_root_is_refused() {
        // /dev/pts/ptmx resolved under "/" is the host's real ptmx, accepted; a directory
        // without dev/pts fails to open.
        let dir = std::env::temp_dir();
        let root = rustix::fs::open(&dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        assert!(matches!(open_in_root(&root, 0), Err(PtyError::OpenPtmx(_))));
    }
}
