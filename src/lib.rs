//! Rauha: an isolation-first container runtime. A zone ties a cgroup, namespaces, a network
//! identity, a rootfs and kernel-enforced policy into one boundary.
//!
//! The crate builds one executable (`src/main.rs`) whose roles live in the modules below; the
//! library target exists so that integration tests can drive the same types.

pub mod backend;
pub mod cli;
pub mod container;
pub mod daemon;
pub mod enforce;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod image;
pub mod net;
pub mod probe;
pub mod rpc;
pub mod shim;
pub mod store;
pub mod zone;

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision the binary was built from ("unknown" outside a checkout).
pub const GIT_REVISION: &str = env!("RAUHA_GIT_REVISION");

/// Cargo features compiled into this binary.
pub fn features() -> &'static [&'static str] {
    &[
        #[cfg(feature = "grpc")]
        "grpc",
    ]
}
