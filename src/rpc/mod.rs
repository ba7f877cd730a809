//! The daemon's whole API as one tarpc service, its wire types, and the transport both ends use.
//!
//! The CLI and the gRPC facade are clients of this trait; nothing the daemon can do is reachable
//! any other way.

mod codec;
mod connection;
mod types;

pub use codec::Postcard;
pub use connection::{ConnectError, Handshake, ServerTransport, admit, connect};
pub use types::*;

/// Every operation the daemon offers.
#[tarpc::service]
pub trait Rauha {
    /// Version and build facts of the running daemon.
    async fn daemon_info() -> DaemonInfo;
    /// Create a zone; all-or-nothing.
    async fn zone_create(request: ZoneCreateRequest) -> Result<ZoneInfo, ApiError>;
    /// All zones, ordered by name.
    async fn zone_list() -> Result<Vec<ZoneInfo>, ApiError>;
    /// One zone by name.
    async fn zone_get(name: String) -> Result<ZoneInfo, ApiError>;
    /// Delete a zone and every kernel object it owns.
    async fn zone_delete(name: String, force: bool) -> Result<(), ApiError>;
    /// Live usage and limits read from the kernel.
    async fn zone_stats(name: String) -> Result<ZoneStats, ApiError>;
    /// Validate and apply a policy to a running zone, in place.
    async fn policy_apply(zone: String, policy_toml: String) -> Result<PolicyApplied, ApiError>;
    /// The zone's effective policy, every key, in the format of POLICY.md.
    async fn policy_get(zone: String) -> Result<String, ApiError>;
}
