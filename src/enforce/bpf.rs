//! What the eBPF layers share: the generated libbpf skeletons, the error type of every BPF
//! step, and the helpers that turn kernel objects into map keys (cgroup ids, superblock devs).
//!
//! The BPF C sources live in `bpf/`; `build.rs` compiles them into libbpf skeletons that the
//! [`skel`] module includes. Map keys and values are defined once in `bpf/rauha.h` and mirrored
//! once in [`super::bpf_abi`].

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::enforce::bpf_abi::MapBytes;

/// Generated libbpf skeletons (see build.rs for which sources make which object).
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    missing_docs,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    unsafe_op_in_unsafe_fn
)]
pub(crate) mod skel {
    /// `cgroup_dev`, `cgroup_sysctl` and `cgroup_sock` linked into one object (build.rs).
    pub(crate) mod cgroup_zone {
        include!(concat!(env!("OUT_DIR"), "/cgroup_zone.skel.rs"));
    }
    pub(crate) mod lsm {
        include!(concat!(env!("OUT_DIR"), "/lsm.skel.rs"));
    }
}

/// Why an eBPF enforcement step failed: one variant per step, naming the object and the cause.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("open bpf object {object}: {source}")]
    OpenObject { object: &'static str, source: libbpf_rs::Error },
    #[error("bpf object {object} has no read-only data section to configure")]
    MissingRodata { object: &'static str },
    #[error("share map {map} with bpf object {object}: {source}")]
    ReuseMap { object: &'static str, map: &'static str, source: libbpf_rs::Error },
    #[error("load bpf object {object}: {source}")]
    LoadObject { object: &'static str, source: libbpf_rs::Error },
    #[error("create bpf map {map}: {source}")]
    CreateMap { map: &'static str, source: libbpf_rs::Error },
    #[error("duplicate fd of bpf map {map}: {source}")]
    DupMap { map: &'static str, source: libbpf_rs::Error },
    #[error("duplicate fd of bpf program {program}: {source}")]
    DupProgram { program: &'static str, source: io::Error },
    #[error("query bpf program {program}: {source}")]
    QueryProgram { program: &'static str, source: io::Error },
    #[error("open cgroup {}: {source}", path.display())]
    OpenCgroup { path: PathBuf, source: io::Error },
    #[error("attach bpf program {program} to {target}: {source}")]
    Attach { program: &'static str, target: String, source: libbpf_rs::Error },
    #[error("update bpf map {map}: {source}")]
    UpdateMap { map: &'static str, source: libbpf_rs::Error },
    #[error("delete from bpf map {map}: {source}")]
    DeleteMap { map: &'static str, source: libbpf_rs::Error },
    #[error("zone id 0 is reserved for \"no zone\" in the bpf maps")]
    ZoneIdZero,
    #[error("egress rule {addr}/{prefix_len}: prefix longer than the address")]
    EgressPrefix { addr: std::net::IpAddr, prefix_len: u8 },
    #[error("stat {}: {source}", path.display())]
    Stat { path: PathBuf, source: io::Error },
    #[error("set up ring buffer consumer for map {map}: {source}")]
    RingBuffer { map: &'static str, source: libbpf_rs::Error },
    #[error("spawn bpf event thread: {source}")]
    SpawnThread { source: io::Error },
    #[error("bpf event thread ended before it was ready")]
    EventThreadGone,
    #[error("read bpf map {map}: {source}")]
    ReadMap { map: &'static str, source: libbpf_rs::Error },
    #[error(transparent)]
    Pin(#[from] crate::enforce::bpf_pin::PinError),
}

/// Every key of `map` (a map the daemon reads back when it adopts pinned maps).
pub(crate) fn map_keys<K: MapBytes>(map: &MapHandle) -> Vec<K> {
    map.keys().filter_map(|key| K::from_map_bytes(&key)).collect()
}

/// Every `(key, value)` of a map with `u32` values.
pub(crate) fn map_u32_entries<K: MapBytes>(
    map: &MapHandle,
    name: &'static str,
) -> Result<Vec<(K, u32)>, BpfError> {
    let mut entries = Vec::new();
    for key in map.keys() {
        let value = map
            .lookup(&key, MapFlags::ANY)
            .map_err(|source| BpfError::ReadMap { map: name, source })?;
        // A key deleted since the walk saw it has no value: it is not an entry any more.
        if let (Some(key), Some(value)) = (K::from_map_bytes(&key), value)
            && let Ok(value) = <[u8; 4]>::try_from(value.as_slice())
        {
            entries.push((key, u32::from_ne_bytes(value)));
        }
    }
    Ok(entries)
}

/// The cgroup2 id of a cgroup directory: what `bpf_get_current_cgroup_id()` returns for its
/// tasks (on 64-bit kernels the kernfs node id is the directory's inode number).
pub fn cgroup_id(cgroup_dir: &Path) -> Result<u64, BpfError> {
    std::fs::metadata(cgroup_dir)
        .map(|meta| meta.ino())
        .map_err(|source| BpfError::Stat { path: cgroup_dir.to_owned(), source })
}

/// The kernel's `s_dev` of the filesystem holding `path` (e.g. a container's overlay rootfs),
/// the key of the LSM layer's superblock map.
pub fn superblock_dev(path: &Path) -> Result<u32, BpfError> {
    let dev = std::fs::metadata(path)
        .map(|meta| meta.dev())
        .map_err(|source| BpfError::Stat { path: path.to_owned(), source })?;
    Ok(kernel_dev(dev))
}

/// Re-encodes a user-space `st_dev` as the kernel's internal dev_t (`MKDEV`: major << 20 |
/// minor), which is what `super_block.s_dev` holds; the two encodings differ.
fn kernel_dev(user_dev: u64) -> u32 {
    let major = libc::major(user_dev);
    let minor = libc::minor(user_dev);
    (major << 20) | (minor & 0xf_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_dev_encoding() {
        // 0:51 (a typical overlay anon dev) and 259:65537 (a large minor).
        assert_eq!(kernel_dev(libc::makedev(0, 51)), 51);
        assert_eq!(kernel_dev(libc::makedev(259, 65537)), (259 << 20) | 65537);
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
    }
}
