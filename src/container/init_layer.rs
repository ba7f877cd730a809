//! The init layer: one read-only directory the daemon puts above every image's layers, holding
//! the mount points each container needs (`/proc`, `/sys`, `/dev`, `/etc/hosts`,
//! `/etc/resolv.conf`). Without it, an image lacking them would make every container create
//! them in its own upper dir at start (an overlay copy-up and disk writes each time), and
//! leave them there. Docker's `-init` layer serves the same end.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Name of the init layer below the state dir.
pub const DIR_NAME: &str = "init-layer";

const DIRS: [&str; 4] = ["proc", "sys", "dev", "etc"];
const FILES: [&str; 2] = ["etc/hosts", "etc/resolv.conf"];

/// A step of building the init layer that failed.
#[derive(Debug, thiserror::Error)]
#[error("prepare the container init layer: {what} {path}: {source}")]
pub struct InitLayerError {
    what: &'static str,
    path: PathBuf,
    source: io::Error,
}

/// Makes sure the init layer exists at `dir` (idempotent; existing entries are checked, not
/// rewritten) and returns its path.
pub fn ensure(dir: &Path) -> Result<PathBuf, InitLayerError> {
    let fail = |what, path: &Path| {
        let path = path.to_owned();
        move |source| InitLayerError { what, path, source }
    };
    let mut builder = DirBuilder::new();
    builder.recursive(true).mode(0o755);
    builder.create(dir).map_err(fail("create directory", dir))?;
    for name in DIRS {
        let path = dir.join(name);
        builder.create(&path).map_err(fail("create directory", &path))?;
    }
    for name in FILES {
        let path = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(fail("create file", &path))?;
        // A file someone wrote to would show through in containers that do not bind over it.
        let meta = file.metadata().map_err(fail("inspect file", &path))?;
        if meta.len() != 0 {
            let cause = io::Error::other("not empty");
            return Err(InitLayerError { what: "check file", path, source: cause });
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
            .map_err(fail("set the mode of", &path))?;
    }
    Ok(dir.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_mount_points_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(DIR_NAME);
        for _ in 0..2 {
            assert_eq!(ensure(&dir).unwrap(), dir);
        }
        for name in DIRS {
            assert!(dir.join(name).is_dir(), "{name}");
        }
        for name in FILES {
            let meta = fs::metadata(dir.join(name)).unwrap();
            assert!(meta.is_file() && meta.len() == 0, "{name}");
            assert_eq!(meta.permissions().mode() & 0o777, 0o644, "{name}");
        }
    }

    #[test]
    fn a_written_file_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(DIR_NAME);
        ensure(&dir).unwrap();
        fs::write(dir.join("etc/hosts"), "10.0.0.1 evil\n").unwrap();
        let error = ensure(&dir).unwrap_err().to_string();
        assert!(error.contains("etc/hosts") && error.contains("not empty"), "{error}");
    }
}
