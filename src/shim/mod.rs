//! The shim role and the shim protocol (shared with the guest agent).
//!
//! - [`protocol`]: versioned request/response/event enums and postcard framing.
//! - [`spawn`]: clone3 into namespaces and cgroups, child setup, exec, failure reporting.
//! - [`rootfs`]: the mount plan (overlay, pivot_root, /proc, /dev, /sys, masks, read-only root).
//! - [`caps`]: capability allow-list planning and application.
//! - [`layers`]: the seccomp and Landlock layers of a container, prepared once per container.
//! - [`exec`]: starting a process inside a running container (`rauha exec`).
//! - [`fdpass`]: `SCM_RIGHTS` fd passing, the transport of every byte stream.
//! - [`pty`]: PTYs in the container's devpts, window size.
//! - [`logs`]: CRI-format log files with rotation.
//! - [`server`]: the shim's single-threaded poll loop.

pub mod caps;
pub mod exec;
pub mod fdpass;
pub mod layers;
pub mod logs;
pub mod protocol;
pub mod pty;
pub mod rootfs;
pub mod server;
pub mod spawn;

pub use server::{ShimArgs, ShimError, run_shim};
