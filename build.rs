//! Build facts for `rauha --version`, and (feature `grpc`) the gRPC code generated from `proto/`.

use std::process::Command;

fn main() {
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
