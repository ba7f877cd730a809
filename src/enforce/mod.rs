//! Enforcement layers (DESIGN.md §5).
//!
//! Per zone: cgroup-BPF programs; system-wide: the BPF LSM layer, with the ring buffer that
//! carries deny events of both to the daemon. Per process: the always-on userland layers
//! (seccomp, Landlock, capabilities), split in two halves because the container child runs
//! between `clone` and `execve`, where it must not allocate or take locks:
//!
//! - a *prepare* half (allocates, may fail with a descriptive error) that runs in the shim
//!   before `clone`: [`seccomp::SeccompCache::get_or_compile`], [`landlock::PreparedLandlock::new`];
//! - an *apply* half (raw syscalls on prepared memory only) that the child runs:
//!   [`landlock::PreparedLandlock::apply`], then [`seccomp::install`].
//!
//! A child-side failure is a [`child::ChildFailure`] (step, index, errno): three integers that
//! fit the shim's error pipe; the shim turns it back into a typed error naming the layer and the
//! object ([`seccomp::SeccompError::from_child`], [`landlock::PreparedLandlock::error`]).
//!
//! Order in the child (`shim::spawn`): rootfs setup and `pivot_root`, hostname → Landlock
//! (which forbids later mount topology changes) → bounding set, setgroups/setresgid/setresuid,
//! capset, ambient → chdir → seccomp (last, so the filter never sees the setup's own syscalls)
//! → `execve`.

pub mod bpf;
pub mod bpf_abi;
pub mod bpf_events;
pub mod bpf_pin;
pub mod bpf_policy;
pub mod cgroup_bpf;
pub mod child;
pub mod landlock;
pub mod lsm;
pub mod seccomp;
