//! Resolving a container's `USER` (`name`, `uid`, `name:group`, `uid:gid`) against the image's
//! own `/etc/passwd` and `/etc/group`, read from its layers without mounting them.

use std::path::{Path, PathBuf};

/// The ids a container process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the groups of `/etc/group` that list the user.
    pub additional_gids: Vec<u32>,
    /// Home directory from `/etc/passwd`, for `HOME`.
    pub home: String,
}

/// A user specification that does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("user {user:?}: no such user in the image's /etc/passwd")]
    UnknownUser { user: String },
    #[error("user {user:?}: no such group {group:?} in the image's /etc/group")]
    UnknownGroup { user: String, group: String },
}

/// The topmost version of `relative` in `layers` (lowest first), honouring whiteouts.
fn layered_file(layers: &[PathBuf], relative: &str) -> Option<String> {
    let path = Path::new(relative);
    for layer in layers.iter().rev() {
        let candidate = layer.join(path);
        if let Ok(text) = std::fs::read_to_string(&candidate) {
            return Some(text);
        }
        // A whiteout (overlay char device 0:0) or an opaque parent hides lower versions.
        if std::fs::symlink_metadata(&candidate).is_ok() {
            return None;
        }
    }
    None
}

struct Entry<'a> {
    name: &'a str,
    id: u32,
    gid_or_members: &'a str,
    home: &'a str,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = Entry<'_>> {
    text.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        Some(Entry {
            name: fields.first()?,
            id: fields.get(2)?.parse().ok()?,
            gid_or_members: fields.get(3)?,
            home: fields.get(5).copied().unwrap_or("/"),
        })
    })
}

/// Resolve `spec` (empty = root) for an image whose layers are `layers`.
pub fn resolve_user(spec: &str, layers: &[PathBuf]) -> Result<ResolvedUser, UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let passwd = layered_file(layers, "etc/passwd").unwrap_or_default();
    let groups = layered_file(layers, "etc/group").unwrap_or_default();

    let entry = passwd_entries(&passwd).find(|e| e.name == user || e.id.to_string() == user);
    let (uid, mut gid, name, home) = match (entry, user.parse::<u32>()) {
        (Some(e), _) => (e.id, e.gid_or_members.parse().unwrap_or(0), e.name.to_owned(), e.home),
        // A numeric uid need not exist in the image, as with Docker.
        (None, Ok(uid)) => (uid, 0, String::new(), "/"),
        (None, Err(_)) => return Err(UserError::UnknownUser { user: spec.to_owned() }),
    };
    if let Some(group) = group {
        gid = match passwd_entries(&groups).find(|g| g.name == group) {
            Some(g) => g.id,
            None => group.parse().map_err(|_| UserError::UnknownGroup {
                user: spec.to_owned(),
                group: group.to_owned(),
            })?,
        };
    }
    let additional_gids = if name.is_empty() {
        Vec::new()
    } else {
        passwd_entries(&groups)
            .filter(|g| g.id != gid && g.gid_or_members.split(',').any(|member| member == name))
            .map(|g| g.id)
            .collect()
    };
    Ok(ResolvedUser { uid, gid, additional_gids, home: home.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers() -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("l0");
        let upper = dir.path().join("l1");
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(lower.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(
            upper.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(upper.join("etc/group"), "root:x:0:\nalice:x:1000:\nwheel:x:10:alice,bob\n")
            .unwrap();
        (dir, vec![lower, upper])
    }

    #[test]
    fn users_resolve_by_name_and_number_with_groups() {
        let (_dir, layers) = layers();
        let root = resolve_user("", &layers).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let alice = resolve_user("alice", &layers).unwrap();
        assert_eq!((alice.uid, alice.gid, alice.additional_gids), (1000, 1000, vec![10]));
        assert_eq!(resolve_user("alice:wheel", &layers).unwrap().gid, 10);
        assert_eq!(resolve_user("4242:4343", &layers).unwrap().uid, 4242);
        assert_eq!(resolve_user("4242:4343", &layers).unwrap().gid, 4343);
        assert!(matches!(resolve_user("mallory", &layers), Err(UserError::UnknownUser { .. })));
        assert!(matches!(resolve_user("alice:nope", &layers), Err(UserError::UnknownGroup { .. })));
    }
}
