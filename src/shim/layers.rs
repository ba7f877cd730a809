//! The always-on enforcement layers of one container, prepared by the shim before clone.
//!
//! One [`LayerFactory`] per shim: it probes the Landlock ABI once and keeps one seccomp
//! [`SeccompCache`], so every container start after the first one with the same policy pays a
//! hash lookup instead of a compilation. The prepared [`Layers`] belong to the container and are
//! reused by each of its `exec` sessions, which therefore get exactly the init's confinement.
//!
//! The test-only switch (`rauhad --unsafe-disable-layer`, carried in
//! [`ContainerSpec::disabled_layers`]) replaces a layer by its disabled form: no seccomp filter,
//! no Landlock ruleset, or every capability instead of the allow-list.

use std::path::Path;
use std::sync::Arc;

use crate::enforce::landlock::{self, LandlockError, PreparedLandlock};
use crate::enforce::seccomp::{SeccompCache, SeccompError, SeccompProgram};
use crate::shim::caps::{self, CapsError};
use crate::shim::protocol::{ContainerSpec, Layer};

/// Errors of preparing a container's layers.
#[derive(Debug, thiserror::Error)]
pub enum LayersError {
    /// Compiling the seccomp profile failed (e.g. an unknown `[syscalls] deny` name).
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// Probing or preparing Landlock failed.
    #[error(transparent)]
    Landlock(#[from] LandlockError),
    /// A device path is not valid UTF-8.
    #[error("devices.allowed: {0:?} is not valid UTF-8")]
    DevicePath(std::path::PathBuf),
    /// A writable path is not valid UTF-8.
    #[error("filesystem.writable_paths: {0:?} is not valid UTF-8")]
    WritablePath(std::path::PathBuf),
    /// Reading the kernel's last capability failed (needed for the all-capabilities switch).
    #[error(transparent)]
    Caps(#[from] CapsError),
    /// Reading the shim's own capabilities failed (needed for the all-capabilities switch).
    #[error("read the shim's capabilities: {0}")]
    OwnCaps(#[source] std::io::Error),
}

/// A container's prepared layers, shared by its init and its execs.
#[derive(Debug, Clone)]
pub struct Layers {
    /// The compiled filter installed right before `execve` (or the disabled program).
    pub seccomp: SeccompProgram,
    /// The ruleset applied after `pivot_root` (or the disabled one).
    pub landlock: Arc<PreparedLandlock>,
    /// The capabilities the process keeps: the policy's allow-list, or every capability the
    /// shim itself holds when the caps layer is switched off.
    pub capabilities: Vec<u8>,
    /// Layers switched off for this container.
    pub disabled: Vec<Layer>,
}

/// Prepares [`Layers`]; one per shim.
#[derive(Default)]
pub struct LayerFactory {
    cache: SeccompCache,
    abi: Option<u32>,
}

impl LayerFactory {
    /// The Landlock ABI in use (probed on first use).
    pub fn landlock_abi(&mut self) -> Result<u32, LandlockError> {
        if let Some(abi) = self.abi {
            return Ok(abi);
        }
        let abi = landlock::probe_abi()?;
        self.abi = Some(abi);
        Ok(abi)
    }

    /// Compiles (or fetches) the seccomp program and prepares the Landlock ruleset of `spec`.
    pub fn prepare(&mut self, spec: &ContainerSpec) -> Result<Layers, LayersError> {
        let off = |layer| spec.disabled_layers.contains(&layer);
        let policy_caps =
            spec.capabilities.iter().filter(|c| **c < 64).fold(0u64, |m, c| m | 1 << c);
        let seccomp = if off(Layer::Seccomp) {
            SeccompProgram::disabled()
        } else {
            // The profile follows the policy's capabilities even when the caps layer is off:
            // each layer must hold on its own.
            self.cache.get_or_compile(&spec.syscall_deny, policy_caps)?
        };
        let landlock = if off(Layer::Landlock) {
            PreparedLandlock::disabled()
        } else {
            let abi = self.landlock_abi()?;
            let writable = utf8(&spec.writable_paths, LayersError::WritablePath)?;
            let devices = utf8(&spec.devices, LayersError::DevicePath)?;
            PreparedLandlock::new(abi, Path::new("/"), &writable, &devices)?
        };
        let capabilities = if off(Layer::Caps) {
            // Everything the shim may pass on (a host may withhold some from its root).
            let own = rustix::thread::capabilities(None)
                .map_err(|e| LayersError::OwnCaps(e.into()))?
                .permitted
                .bits();
            (0..=caps::last_cap()?.min(63)).filter(|c| own & (1 << c) != 0).collect()
        } else {
            spec.capabilities.clone()
        };
        Ok(Layers {
            seccomp,
            landlock: Arc::new(landlock),
            capabilities,
            disabled: spec.disabled_layers.clone(),
        })
    }

    /// Compile and hit counters of the seccomp cache.
    pub fn cache_stats(&self) -> crate::enforce::seccomp::CacheStats {
        self.cache.stats()
    }
}

fn utf8(
    paths: &[std::path::PathBuf],
    err: fn(std::path::PathBuf) -> LayersError,
) -> Result<Vec<&str>, LayersError> {
    paths.iter().map(|p| p.to_str().ok_or_else(|| err(p.clone()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::rootfs::tests::spec;

    #[test]
    fn second_container_hits_the_cache() {
        let mut f = LayerFactory::default();
        let mut s = spec();
        s.syscall_deny = vec!["mkdir".into()];
        s.writable_paths = vec!["/tmp".into()];
        let a = f.prepare(&s).unwrap();
        let b = f.prepare(&s).unwrap();
        assert!(a.seccomp.same_program(&b.seccomp));
        assert_eq!((f.cache_stats().compiles, f.cache_stats().hits), (1, 1));
    }

    #[test]
    fn unknown_deny_name_names_the_key() {
        let mut s = spec();
        s.syscall_deny = vec!["frobnicate".into()];
        let e = LayerFactory::default().prepare(&s).unwrap_err();
        assert!(e.to_string().starts_with("syscalls.deny: unknown syscall \"frobnicate\""), "{e}");
    }

    #[test]
    fn disabled_layers_are_replaced() {
        let mut s = spec();
        s.capabilities = vec![0];
        s.disabled_layers = vec![Layer::Seccomp, Layer::Landlock, Layer::Caps];
        let l = LayerFactory::default().prepare(&s).unwrap();
        assert!(l.seccomp.is_disabled());
        assert!(!l.landlock.is_enabled());
        assert!(l.capabilities.len() > 30);
    }
}
