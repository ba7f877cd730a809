//! Containers: the model the daemon stores, name rules, and the OCI runtime spec built for each
//! one from its image config, the request and its zone's policy.

pub mod init_layer;
pub mod spec;
mod user;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use user::{ResolvedUser, UserError, resolve_user};

/// Longest container name.
pub const MAX_NAME_BYTES: usize = 128;

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Stopped,
}

impl ContainerState {
    /// The contract's string form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Running => "Running",
            Self::Stopped => "Stopped",
        }
    }
}

/// How a container's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code; 128 + signal for a process killed by a signal, as shells report it.
    pub code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// The kernel's OOM killer ended it.
    pub oom_killed: bool,
    pub finished_at: Timestamp,
}

/// A container as persisted (the current layout of its record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub id: Uuid,
    pub name: String,
    pub zone_id: Uuid,
    /// The image reference in full form.
    pub image: String,
    /// The image's manifest digest when the container was created.
    pub image_digest: String,
    /// argv the process was started with.
    pub args: Vec<String>,
    pub state: ContainerState,
    /// Pid of the container's init in the host pid namespace while it runs.
    pub pid: u32,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub exit: Option<ExitInfo>,
    /// Remove the container once it stops (`run --rm`).
    pub auto_remove: bool,
    /// Host ports forwarded to the container's zone address (`run -p`).
    pub ports: Vec<crate::net::PortMapping>,
    /// Created with a PTY as its terminal (`-t`).
    pub tty: bool,
    /// Created with stdin kept open for attachers (`-i`).
    pub interactive: bool,
}

/// A container name that breaks the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerNameError {
    #[error("name is empty")]
    Empty,
    #[error("name is too long ({0} bytes, max {MAX_NAME_BYTES})")]
    TooLong(usize),
    #[error(
        "name must start with a letter or digit and contain only letters, digits, '_', '.' and '-'"
    )]
    Characters,
}

/// Docker's container name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; it doubles as the hostname, so it
/// stays ASCII.
pub fn validate_name(name: &str) -> Result<(), ContainerNameError> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else { return Err(ContainerNameError::Empty) };
    if name.len() > MAX_NAME_BYTES {
        return Err(ContainerNameError::TooLong(name.len()));
    }
    if !first.is_ascii_alphanumeric()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(ContainerNameError::Characters);
    }
    Ok(())
}

/// A generated name for a container created without one: the zone-unique short id.
pub fn default_name(id: Uuid) -> String {
    id.simple().to_string()[..12].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for good in ["web", "Web-1", "a.b_c", "0"] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        assert_eq!(validate_name(""), Err(ContainerNameError::Empty));
        assert_eq!(validate_name(&"a".repeat(129)), Err(ContainerNameError::TooLong(129)));
        for bad in ["-x", ".x", "a b", "a/b", "ä"] {
            assert_eq!(validate_name(bad), Err(ContainerNameError::Characters), "{bad}");
        }
        assert_eq!(default_name(Uuid::nil()), "000000000000");
    }
}
