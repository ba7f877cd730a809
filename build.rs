//! Build facts and BPF skeletons.
//!
//! - `RAUHA_GIT_REVISION` for `rauha --version`.
//! - The eBPF programs in `bpf/`, compiled into libbpf skeletons in `$OUT_DIR`:
//!   `cgroup_dev.bpf.c`, `cgroup_sysctl.bpf.c` and `cgroup_sock.bpf.c` are compiled separately
//!   and linked into one object, `cgroup_zone.skel.rs`: a zone then costs one object load instead of
//!   three. They are compiled without CO-RE (see `compile_bpf`); every other `*.bpf.c`
//!   becomes its own skeleton (`lsm.skel.rs`), with CO-RE.
//!
//! Needs clang with the BPF target. `bpf/vmlinux.h` is committed (generated once with
//! `bpftool btf dump file /sys/kernel/btf/vmlinux format c`), so the build needs no bpftool and
//! no kernel headers; the libbpf headers (`bpf/bpf_helpers.h` …) come from libbpf-sys.
//! - With the `grpc` feature, the gRPC code generated from `proto/`.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use libbpf_cargo::SkeletonBuilder;

/// Sources linked into the per-zone cgroup object.
const CGROUP_ZONE_SOURCES: [&str; 3] = ["cgroup_dev", "cgroup_sysctl", "cgroup_sock"];
const CGROUP_ZONE_OBJECT: &str = "cgroup_zone";

fn main() {
    git_revision();
    compile_bpf();
    #[cfg(feature = "grpc")]
    compile_protos();
}

/// Generate the prost messages and tonic server and client of the `rauha.*.v1` packages. Only
/// with the feature: without it nothing of tonic or prost is built, and protoc is not needed.
#[cfg(feature = "grpc")]
fn compile_protos() {
    const PROTOS: [&str; 3] = [
        "proto/rauha/zone/v1/zone.proto",
        "proto/rauha/container/v1/container.proto",
        "proto/rauha/image/v1/image.proto",
    ];
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    // A build script reports failure by panicking; the message names protoc, the usual cause.
    if let Err(error) = tonic_prost_build::configure().compile_protos(&PROTOS, &["proto"]) {
        panic!("compile proto/ (needs protoc from Debian's protobuf-compiler): {error}");
    }
}

/// Sets RAUHA_GIT_REVISION for `rauha --version`.
fn git_revision() {
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|rev| rev.trim().to_owned())
        .filter(|rev| !rev.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=RAUHA_GIT_REVISION={revision}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
}

/// Compiles `bpf/*.bpf.c` into skeletons in OUT_DIR.
fn compile_bpf() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bpf_dir = manifest_dir.join("bpf");
    println!("cargo:rerun-if-changed={}", bpf_dir.display());

    let mut sources: Vec<PathBuf> = fs::read_dir(&bpf_dir)
        .unwrap_or_else(|err| panic!("read {}: {err}", bpf_dir.display()))
        .map(|entry| entry.unwrap_or_else(|err| panic!("read {}: {err}", bpf_dir.display())).path())
        .collect();
    sources.sort();
    for path in &sources {
        // Headers are inputs too: a change to rauha.h must rebuild every object.
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let mut linker_inputs = Vec::new();
    for source in sources.iter().filter(|p| p.to_string_lossy().ends_with(".bpf.c")) {
        let name = source
            .file_name()
            .and_then(OsStr::to_str)
            .and_then(|n| n.strip_suffix(".bpf.c"))
            .unwrap_or_else(|| panic!("{}: not a UTF-8 .bpf.c name", source.display()));
        let mut builder = SkeletonBuilder::new();
        let cgroup_part = CGROUP_ZONE_SOURCES.contains(&name);
        let mut args = vec![OsStr::new("-Wall"), OsStr::new("-I"), bpf_dir.as_os_str()];
        if cgroup_part {
            // The cgroup programs read only their UAPI context structs, whose layout is
            // stable ABI: compiled without CO-RE relocations, their object loads without
            // libbpf parsing the kernel's BTF, which was half of each zone's load time.
            args.push(OsStr::new("-DBPF_NO_PRESERVE_ACCESS_INDEX"));
        }
        builder.source(source).clang_args(args);
        if cgroup_part {
            let obj = out_dir.join(format!("{name}.part.o"));
            builder
                .obj(&obj)
                .build()
                .unwrap_or_else(|err| panic!("compile {}: {err:#}", source.display()));
            linker_inputs.push(obj);
        } else {
            builder
                .build_and_generate(out_dir.join(format!("{name}.skel.rs")))
                .unwrap_or_else(|err| panic!("compile {}: {err:#}", source.display()));
        }
    }
    assert_eq!(
        linker_inputs.len(),
        CGROUP_ZONE_SOURCES.len(),
        "missing cgroup sources in {}",
        bpf_dir.display()
    );
    link_and_generate(&linker_inputs, &out_dir, CGROUP_ZONE_OBJECT);
}

/// Statically links BPF objects (libbpf's linker, as `bpftool gen object`) into
/// `<name>.bpf.o` and generates `<name>.skel.rs` from it.
fn link_and_generate(inputs: &[PathBuf], out_dir: &Path, name: &str) {
    let linked = out_dir.join(format!("{name}.bpf.o"));
    let mut linker = libbpf_rs::Linker::new(&linked)
        .unwrap_or_else(|err| panic!("create bpf linker for {}: {err:#}", linked.display()));
    for input in inputs {
        linker.add_file(input).unwrap_or_else(|err| panic!("link {}: {err:#}", input.display()));
    }
    linker.link().unwrap_or_else(|err| panic!("link {}: {err:#}", linked.display()));
    SkeletonBuilder::new()
        .obj(&linked)
        .generate(out_dir.join(format!("{name}.skel.rs")))
        .unwrap_or_else(|err| panic!("generate skeleton of {}: {err:#}", linked.display()));
}
