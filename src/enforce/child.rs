//! Child-side failures of the enforcement layers: what the container child reports through the
//! shim's error pipe as `(step, index, errno)`, and how the shim turns it back into a message.

use std::fmt;
use std::io;

use rustix::io::Errno;

/// A child-side step of an enforcement layer, as reported through the shim's error pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ChildStep {
    /// `prctl(PR_SET_NO_NEW_PRIVS)` before installing the seccomp filter.
    SeccompNoNewPrivs = 1,
    /// `seccomp(SECCOMP_SET_MODE_FILTER)`.
    SeccompInstall,
    /// `landlock_create_ruleset`.
    LandlockCreateRuleset,
    /// `open(O_PATH)` of a rule's path (index = rule).
    LandlockOpen,
    /// `fstat` of a rule's path (index = rule).
    LandlockStat,
    /// `landlock_add_rule` (index = rule).
    LandlockAddRule,
    /// `prctl(PR_SET_NO_NEW_PRIVS)` before `landlock_restrict_self`.
    LandlockNoNewPrivs,
    /// `landlock_restrict_self`.
    LandlockRestrict,
}

impl ChildStep {
    const ALL: [ChildStep; 8] = [
        ChildStep::SeccompNoNewPrivs,
        ChildStep::SeccompInstall,
        ChildStep::LandlockCreateRuleset,
        ChildStep::LandlockOpen,
        ChildStep::LandlockStat,
        ChildStep::LandlockAddRule,
        ChildStep::LandlockNoNewPrivs,
        ChildStep::LandlockRestrict,
    ];

    /// The step for a code read back from the error pipe.
    pub fn from_code(code: u32) -> Option<ChildStep> {
        ChildStep::ALL.into_iter().find(|s| *s as u32 == code)
    }
}

/// What failed in the child: the step, an index within it (a Landlock rule), the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildFailure {
    /// The step that failed.
    pub step: ChildStep,
    /// Index of the rule for per-rule steps, else 0.
    pub index: u32,
    /// The OS error.
    pub errno: Errno,
}

impl ChildFailure {
    pub(crate) const fn new(step: ChildStep, index: u32, errno: Errno) -> Self {
        ChildFailure { step, index, errno }
    }
}

/// An OS error number displayed as a lowercase message (`operation not permitted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsError(pub Errno);

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = io::Error::from_raw_os_error(self.0.raw_os_error()).to_string();
        let msg = full.split(" (os error").next().unwrap_or(&full);
        let mut chars = msg.chars();
        match chars.next() {
            Some(c) => write!(f, "{}{}", c.to_lowercase(), chars.as_str()),
            None => write!(f, "os error {}", self.0.raw_os_error()),
        }
    }
}

impl std::error::Error for OsError {}

impl From<Errno> for OsError {
    fn from(e: Errno) -> Self {
        OsError(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_is_lowercase() {
        assert_eq!(OsError(Errno::PERM).to_string(), "operation not permitted");
    }

    #[test]
    fn step_codes_round_trip() {
        for s in ChildStep::ALL {
            assert_eq!(ChildStep::from_code(s as u32), Some(s));
        }
        assert_eq!(ChildStep::from_code(0), None);
    }
}
