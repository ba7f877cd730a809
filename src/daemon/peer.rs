//! Who may talk to the daemon: root, or members of the configured group, judged from the
//! kernel's record of the peer (SO_PEERCRED), not from anything the client says.

use std::path::Path;

use rustix::fd::AsFd;
use rustix::net::sockopt::socket_peercred;

use crate::rpc::Handshake;

/// Decide whether the peer on `socket` may use the daemon.
pub fn admit(socket: impl AsFd, group: Option<u32>) -> Handshake {
    let cred = match socket_peercred(socket) {
        Ok(cred) => cred,
        Err(errno) => return Handshake::Refused(format!("cannot read peer credentials: {errno}")),
    };
    let uid = cred.uid.as_raw();
    if uid == 0 {
        return Handshake::Accepted;
    }
    let Some(group) = group else {
        return Handshake::Refused(format!("uid {uid} is not root"));
    };
    let pid = cred.pid.as_raw_nonzero().get();
    if cred.gid.as_raw() == group || supplementary_groups(pid).contains(&group) {
        Handshake::Accepted
    } else {
        Handshake::Refused(format!("uid {uid} is neither root nor a member of group {group}"))
    }
}

/// The peer's supplementary groups, from `/proc/PID/status`; empty if it is gone.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| groups.split_whitespace().filter_map(|g| g.parse().ok()).collect())
        .unwrap_or_default()
}

/// Resolve `--group` (a name or a number) from the group database file itself, so the static
/// binary needs no NSS modules.
pub fn resolve_group(spec: &str, group_file: &Path) -> Result<u32, String> {
    if let Ok(gid) = spec.parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string(group_file)
        .map_err(|error| format!("--group: read {}: {error}", group_file.display()))?;
    groups
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?.parse().ok()?;
            Some((name, gid))
        })
        .find(|(name, _)| *name == spec)
        .map(|(_, gid)| gid)
        .ok_or_else(|| format!("--group: no group named {spec:?} in {}", group_file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_resolve_by_number_and_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("group");
        std::fs::write(&file, "root:x:0:\nrauha:x:990:alice,bob\n").unwrap();
        assert_eq!(resolve_group("42", &file).unwrap(), 42);
        assert_eq!(resolve_group("rauha", &file).unwrap(), 990);
        let error = resolve_group("nobody-here", &file).unwrap_err();
        assert!(error.contains("nobody-here"), "{error}");
    }
}
