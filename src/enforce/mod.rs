//! Enforcement layers (DESIGN.md §5): per-zone cgroup-BPF programs, the system-wide BPF LSM
//! layer and the ring buffer that carries their deny events to the daemon; the always-on
//! process layers (seccomp, Landlock, capabilities) live beside them.

pub mod bpf;
pub mod bpf_abi;
pub mod bpf_events;
pub mod bpf_policy;
pub mod cgroup_bpf;
pub mod lsm;
