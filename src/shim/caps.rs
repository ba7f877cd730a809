//! Capability reduction to an allow-list: planned before fork, applied by the child.
//!
//! Order in the child (see `spawn`): drop the bounding set while still root, keep capabilities
//! across the uid change, switch ids, set permitted/effective/inheritable with capset(2), then
//! the ambient set. Non-root users get the allow-list in their ambient set so that the policy's
//! capabilities survive execve (without it, a non-root process would end with none at all).

use std::fs;

use rustix::io::Errno;

/// Errors of capability planning.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// `/proc/sys/kernel/cap_last_cap` could not be read.
    #[error("read /proc/sys/kernel/cap_last_cap: {0}")]
    ReadLastCap(#[source] std::io::Error),
    /// `/proc/sys/kernel/cap_last_cap` did not hold a number.
    #[error("parse /proc/sys/kernel/cap_last_cap: {0:?}")]
    ParseLastCap(String),
    /// The allow-list names a capability the kernel does not know.
    #[error("capability number {cap} is unknown to this kernel (last is {last})")]
    Unknown {
        /// The number.
        cap: u8,
        /// The kernel's last capability.
        last: u8,
    },
    /// The allow-list names a capability this process (and so the daemon) does not hold in its
    /// bounding set: no container can be given it, and capset would fail with a bare EPERM.
    #[error(
        "capability {name} is not in the bounding set rauha runs with (the daemon was started \
         without it), so no container can hold it: remove it from the policy or start rauhad \
         with it"
    )]
    NotHeld {
        /// The capability's name.
        name: String,
    },
}

/// Everything the child needs to set capabilities, prepared before fork.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapPlan {
    /// Capabilities to remove from the bounding set.
    pub drop_bounding: Vec<u8>,
    /// Allow-list as a 64-bit mask.
    pub mask: u64,
    /// Allowed capability numbers (for the ambient set).
    pub allowed: Vec<u8>,
    /// Raise the allow-list in the ambient set (non-root users).
    pub ambient: bool,
}

/// Reads the kernel's highest capability number.
pub fn last_cap() -> Result<u8, CapsError> {
    let s = fs::read_to_string("/proc/sys/kernel/cap_last_cap").map_err(CapsError::ReadLastCap)?;
    s.trim().parse().map_err(|_| CapsError::ParseLastCap(s.trim().to_owned()))
}

/// Checks that this process may hand out every capability in `allowed`: each must be in its
/// bounding set (`held` asks that of one capability number).
pub fn check_held(allowed: &[u8], held: impl Fn(u8) -> bool) -> Result<(), CapsError> {
    match allowed.iter().copied().find(|&cap| !held(cap)) {
        None => Ok(()),
        Some(cap) => Err(CapsError::NotHeld { name: cap_name(cap) }),
    }
}

/// Whether `cap` is in this process's bounding set.
pub fn in_bounding_set(cap: u8) -> bool {
    // SAFETY: PR_CAPBSET_READ takes an integer and only reads this thread's bounding set.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
    rc == 1
}

fn cap_name(cap: u8) -> String {
    crate::zone::policy::Capability::ALL
        .iter()
        .find(|c| c.number() == cap)
        .map_or_else(|| format!("number {cap}"), |c| c.name().to_owned())
}

/// Plans the capability sets for `allowed` on a kernel whose last capability is `last`.
pub fn plan(allowed: &[u8], last: u8, uid: u32) -> Result<CapPlan, CapsError> {
    let mut mask = 0u64;
    for &cap in allowed {
        if cap > last || cap > 63 {
            return Err(CapsError::Unknown { cap, last });
        }
        mask |= 1 << cap;
    }
    let drop_bounding = (0..=last.min(63)).filter(|c| mask & (1 << c) == 0).collect();
    let mut allowed: Vec<u8> = allowed.to_vec();
    allowed.sort_unstable();
    allowed.dedup();
    Ok(CapPlan { drop_bounding, mask, allowed, ambient: uid != 0 })
}

/// The capset(2) header, version 3 (64-bit sets).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// One 32-bit half of the capset(2) data.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments only; the glibc wrapper is a plain syscall, safe to
    // call between fork and exec.
    let rc = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if rc < 0 { Err(Errno::from_raw_os_error(crate::shim::rootfs::errno())) } else { Ok(()) }
}

/// Drops every capability outside the allow-list from the bounding set. Child-side, no
/// allocation.
pub fn drop_bounding(plan: &CapPlan) -> Result<(), Errno> {
    for &cap in &plan.drop_bounding {
        prctl(libc::PR_CAPBSET_DROP, cap.into(), 0)?;
    }
    Ok(())
}

/// Keeps permitted capabilities across the coming setresuid (only matters for non-root).
pub fn keep_caps() -> Result<(), Errno> {
    prctl(libc::PR_SET_KEEPCAPS, 1, 0)
}

/// Sets permitted, effective and inheritable to the allow-list. Child-side, no allocation.
pub fn set_sets(plan: &CapPlan) -> Result<(), Errno> {
    let lo = plan.mask as u32;
    let hi = (plan.mask >> 32) as u32;
    let header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [
        CapData { effective: lo, permitted: lo, inheritable: lo },
        CapData { effective: hi, permitted: hi, inheritable: hi },
    ];
    // SAFETY: header and data are valid repr(C) structs of the v3 layout (two data elements)
    // that live across the call; capset is a raw syscall, async-signal-safe.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if rc < 0 { Err(Errno::from_raw_os_error(crate::shim::rootfs::errno())) } else { Ok(()) }
}

/// Clears the ambient set and, for non-root users, raises the allow-list in it.
pub fn set_ambient(plan: &CapPlan) -> Result<(), Errno> {
    prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0)?;
    if plan.ambient {
        for &cap in &plan.allowed {
            prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong, cap.into())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_masks_and_drops_the_rest() {
        let p = plan(&[0, 21, 40, 0], 40, 0).unwrap();
        assert_eq!(p.mask, 1 | (1 << 21) | (1 << 40));
        assert_eq!(p.allowed, [0, 21, 40]);
        assert_eq!(p.drop_bounding.len(), 41 - 3);
        assert!(!p.drop_bounding.contains(&21));
        assert!(!p.ambient);
        assert!(plan(&[], 40, 1000).unwrap().ambient);
    }

    #[test]
    fn unknown_capability_is_an_error() {
        assert!(matches!(plan(&[41], 40, 0), Err(CapsError::Unknown { cap: 41, last: 40 })));
    }

    #[test]
    fn a_capability_outside_the_bounding_set_is_named() {
        let error = check_held(&[0, 24, 21], |cap| cap != 24).unwrap_err().to_string();
        assert!(error.contains("CAP_SYS_RESOURCE") && error.contains("bounding set"), "{error}");
        assert!(check_held(&[0, 21], |_| true).is_ok());
        // This process's own bounding set answers for the capabilities it holds.
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        let bounding = own
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .expect("CapBnd in /proc/self/status");
        for cap in 0..=40u8 {
            assert_eq!(in_bounding_set(cap), bounding & (1 << cap) != 0, "capability {cap}");
        }
    }
}
