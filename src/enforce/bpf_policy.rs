//! From a zone policy to the contents of its BPF maps: device rules (resolved by stat'ing the
//! host paths of `[devices].allowed`), egress rules (`[network].allowed_egress`), the LSM
//! flags of a zone and the allowed-comms pairs between zones. Pure except for the `stat`.

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::enforce::cgroup_bpf::{DeviceKind, DeviceRule, EgressRule};
use crate::enforce::lsm::ZoneLsmFlags;
use crate::zone::Policy;
use crate::zone::policy::{Capability, CidrRule, ZoneType};

/// Why a `[devices].allowed` entry cannot become a device rule.
#[derive(Debug, thiserror::Error)]
pub enum DeviceRuleError {
    /// The host path could not be inspected.
    #[error("devices.allowed[{index}]: stat {}: {source}", path.display())]
    Stat { index: usize, path: PathBuf, source: std::io::Error },
    /// The host path exists but is no character or block device.
    #[error("devices.allowed[{index}]: {} is not a character or block device", path.display())]
    NotADevice { index: usize, path: PathBuf },
}

/// Resolves `[devices].allowed` to device numbers by stat'ing each host path now (at create or
/// apply time): a device that is replaced later keeps the numbers it had. Symlinks are
/// followed (`/dev/disk/by-id/…`). Each device is allowed read, write and mknod.
pub fn device_rules(allowed: &[String]) -> Result<Vec<DeviceRule>, DeviceRuleError> {
    allowed
        .iter()
        .enumerate()
        .map(|(index, path)| {
            let path = Path::new(path);
            let meta = std::fs::metadata(path).map_err(|source| DeviceRuleError::Stat {
                index,
                path: path.to_owned(),
                source,
            })?;
            let kind = if meta.file_type().is_char_device() {
                DeviceKind::Char
            } else if meta.file_type().is_block_device() {
                DeviceKind::Block
            } else {
                return Err(DeviceRuleError::NotADevice { index, path: path.to_owned() });
            };
            let rdev = meta.rdev();
            Ok(DeviceRule {
                kind,
                major: libc::major(rdev),
                minor: Some(libc::minor(rdev)),
                read: true,
                write: true,
                mknod: true,
            })
        })
        .collect()
}

/// The egress rules of `[network].allowed_egress`.
pub fn egress_rules(allowed: &[CidrRule]) -> Vec<EgressRule> {
    allowed
        .iter()
        .map(|rule| EgressRule {
            addr: rule.network.addr(),
            prefix_len: rule.network.prefix_len(),
            port: rule.port,
        })
        .collect()
}

/// The LSM switches of a zone: ptrace between its own tasks only for a privileged zone that
/// holds CAP_SYS_PTRACE.
pub fn lsm_flags(policy: &Policy) -> ZoneLsmFlags {
    ZoneLsmFlags {
        ptrace_self: policy.zone_type() == ZoneType::Privileged
            && policy.capabilities.contains(Capability::SysPtrace),
    }
}

/// Directed (source, destination) zone-id pairs allowed to talk: both zones must list each
/// other in `allowed_zones`. `zones` is (numeric id, name, allowed_zones) of every zone.
pub fn allowed_comms(zones: &[(u32, &str, &[String])]) -> BTreeSet<(u32, u32)> {
    let mut pairs = BTreeSet::new();
    for &(a_id, a_name, a_allows) in zones {
        for &(b_id, b_name, b_allows) in zones {
            if a_id != b_id
                && a_allows.iter().any(|n| n == b_name)
                && b_allows.iter().any(|n| n == a_name)
            {
                pairs.insert((a_id, b_id));
            }
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_resolve_to_numbers() {
        let rules = device_rules(&["/dev/null".to_owned()]).unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!((rules[0].kind, rules[0].major, rules[0].minor), (DeviceKind::Char, 1, Some(3)));
    }

    #[test]
    fn non_device_names_the_key() {
        let err = device_rules(&["/dev/null".to_owned(), "/etc/hostname".to_owned()]).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("devices.allowed[1]: /etc/hostname is not a"), "{text}");
        let err = device_rules(&["/dev/rauha-nope".to_owned()]).unwrap_err();
        assert!(err.to_string().starts_with("devices.allowed[0]: stat /dev/rauha-nope: "));
    }

    #[test]
    fn comms_need_both_sides() {
        let a = vec!["b".to_owned()];
        let b = vec!["a".to_owned(), "c".to_owned()];
        let c: Vec<String> = vec![];
        let pairs = allowed_comms(&[(1, "a", &a), (2, "b", &b), (3, "c", &c)]);
        assert_eq!(pairs.into_iter().collect::<Vec<_>>(), [(1, 2), (2, 1)]);
    }

    #[test]
    fn ptrace_only_for_privileged_with_the_capability() {
        let plain = Policy::parse("").unwrap();
        assert!(!lsm_flags(&plain).ptrace_self);
        let privileged = Policy::parse(
            "[zone]\ntype = \"privileged\"\n[capabilities]\nallowed = [\"SYS_PTRACE\"]\n",
        )
        .unwrap();
        assert!(lsm_flags(&privileged).ptrace_self);
    }
}
