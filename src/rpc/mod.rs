//! The daemon's whole API as one tarpc service, its wire types, and the transport both ends use.
//!
//! The CLI and the gRPC facade are clients of this trait; nothing the daemon can do is reachable
//! any other way.

mod codec;
mod connection;
pub mod fds;
mod types;

pub use codec::Postcard;
pub use connection::{Admitted, ConnectError, Handshake, ServerTransport, admit, connect};
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
    /// Run the attack probes inside the zone (with its containers' confinement) and report
    /// which boundaries held, by which layers.
    async fn zone_verify(name: String) -> Result<IsolationReport, ApiError>;

    /// Create a container in a zone from an image already in the store.
    async fn container_create(request: ContainerCreateRequest) -> Result<ContainerInfo, ApiError>;
    /// Start a created container; replies once its process has exec'd (or failed to).
    async fn container_start(container: String) -> Result<ContainerInfo, ApiError>;
    /// SIGTERM, then SIGKILL after `timeout_seconds` (0 = 10).
    async fn container_stop(
        container: String,
        timeout_seconds: u32,
    ) -> Result<ContainerInfo, ApiError>;
    /// Send a signal to the container's init process.
    async fn container_kill(container: String, signal: i32) -> Result<(), ApiError>;
    /// Remove a container; `force` stops a running one first.
    async fn container_delete(container: String, force: bool) -> Result<(), ApiError>;
    /// One container by id, id prefix or name.
    async fn container_get(container: String) -> Result<ContainerInfo, ApiError>;
    /// Containers, optionally of one zone, ordered by creation.
    async fn container_list(zone: Option<String>) -> Result<Vec<ContainerInfo>, ApiError>;
    /// Wait until the container has stopped; replies with its final state.
    async fn container_wait(container: String) -> Result<ContainerInfo, ApiError>;
    /// Ticket for the container's log files (oldest first, current last), read-only, collected
    /// over the fd channel.
    async fn container_logs(container: String) -> Result<Ticket, ApiError>;
    /// Attach to a created or running container's stdio: a ticket for its fds (with a TTY a
    /// dup of the PTY master, for input and resizing, then an output pipe; without, stdin's
    /// write end when the container is interactive and its stdin still open, then stdout and
    /// stderr pipes). The container's output is teed into the pipes from now on; closing the
    /// fds detaches without affecting it.
    async fn container_attach(container: String) -> Result<Ticket, ApiError>;

    /// Start pulling an image. The ticket is for the read end of a pipe carrying
    /// [`PullEvent`]s as JSON lines; the last line says `Done` or `Failed`.
    async fn image_pull(reference: String, platform: Option<String>) -> Result<Ticket, ApiError>;
    /// Import an OCI layout (dir or tar) or a `docker save` tarball from the daemon's host.
    async fn image_import(path: String, tag: Option<String>) -> Result<Vec<ImageInfo>, ApiError>;
    /// All stored images.
    async fn image_list() -> Result<Vec<ImageInfo>, ApiError>;
    /// One image by reference or digest.
    async fn image_inspect(reference: String) -> Result<ImageInfo, ApiError>;
    /// Remove a tag (and the image with its last tag); refused while a container uses it.
    async fn image_remove(reference: String) -> Result<(), ApiError>;
    /// Remove untagged unused images, unreferenced blobs and unpacked layers.
    async fn image_prune() -> Result<PruneSummary, ApiError>;

    /// Start a process in a running container; returns its exec id and a ticket for its stdio
    /// fds (with a TTY the PTY master alone; else stdin's write end when interactive, then the
    /// stdout and stderr read ends).
    async fn container_exec(request: ExecRequest) -> Result<(String, Ticket), ApiError>;
    /// Wait for an exec session to end; its exit code (128 + signal when killed).
    async fn exec_wait(exec_id: String) -> Result<i32, ApiError>;

    /// Ticket for a pipe of events (JSON lines, `daemon::Event`) of one zone or all: recent
    /// history, then with `follow` new events as they happen.
    async fn events(zone: Option<String>, follow: bool) -> Result<Ticket, ApiError>;
}
