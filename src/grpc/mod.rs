//! The gRPC facade (feature `grpc`): the `rauha.{zone,container,image}.v1` services of
//! API-GRPC.md, served by tonic from inside the daemon process.
//!
//! Every rpc is a thin mapping onto the same `Daemon` operations the tarpc handlers call, so
//! nothing can be done here that the CLI cannot do. tonic needs tokio; the facade runs on its
//! own tokio runtime on a dedicated thread (`server`), never on the daemon's smol executor, and
//! runs the daemon's blocking operations with `tokio::task::spawn_blocking`.
//!
//! Decisions the contract leaves open:
//! - `WatchEvents` sends the bus's recent history of the zone (its bounded ring, oldest first)
//!   and then new events as they happen, until the client goes away: the same stream as
//!   `rauha events -f`, so a client that subscribes just after an action still sees it.
//! - `ExecInContainer` keeps at most [`EXEC_CAPTURE_LIMIT`] bytes of stdout and
//!   stderr together; when it cuts, the response carries the `rauha-output-truncated` metadata
//!   (`stdout`, `stderr` or `stdout,stderr`) and stderr ends with a line saying so.
//! - `ExecStream` keeps stdin open until the client half-closes its stream; a `resize` without
//!   a TTY has no window to change and is ignored, as is a second `start`.
//! - `VerifyIsolation` maps onto `Daemon::verify_zone` (`rauha zone verify`): `checks` holds
//!   every boundary check in the daemon's order (`name` as the CLI shows it, `passed` only when
//!   the attack was denied or the fact holds, `detail` = `BOUNDARY: RESULT [by LAYERS]: what was
//!   tried and what came back`, where RESULT is `held`, `NOT HELD` or `open by policy`), a
//!   skipped check with `passed = false` and `detail` = `skipped: why`, then one entry per
//!   enforcement layer, `layer:NAME` with `passed` = active and `detail` saying why not.
//!   `is_isolated` depends only on the required boundary checks that ran.
//! - `Attach` maps onto `Daemon::attach_container` (`rauha attach`): output from the moment of
//!   attaching; without a TTY the container's stderr arrives in `stdout_data` (the contract's
//!   `AttachResponse` has no stderr field); `stdin_data` reaches an interactive container (a
//!   TTY's master, or its stdin pipe) and is dropped for the others; `resize` applies to a TTY;
//!   half-closing the request stream closes this attacher's stdin (the container's end of input
//!   when it was created with stdin-once); the stream ends with `exit_code` once the container
//!   stops. Dropping the stream detaches without affecting the container.

mod attach;
pub mod client;
mod containers;
mod exec;
mod images;
mod logs;
pub mod proto;
mod relay;
mod server;
mod zones;

use std::sync::Arc;

pub use exec::{EXEC_CAPTURE_LIMIT, TRUNCATED_METADATA};
pub use server::{GrpcConfig, GrpcError, GrpcServer, ListenAddr, start};
/// The tonic the generated code was built against, for clients (tests, benchmarks).
pub use tonic;
use tonic::{Code, Status};

use crate::daemon::Daemon;
use crate::rpc::{ApiError, ErrorKind};

/// The metadata key of the bearer token (`authorization: Bearer <token>`).
pub const AUTHORIZATION: &str = "authorization";

/// A daemon error as a gRPC status: the contract's classes map one-to-one.
fn status(error: impl Into<ApiError>) -> Status {
    let error = error.into();
    let code = match error.kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    };
    Status::new(code, error.message)
}

/// Run a blocking daemon operation on tokio's blocking pool.
async fn blocking<T, E>(
    daemon: &Arc<Daemon>,
    work: impl FnOnce(&Arc<Daemon>) -> Result<T, E> + Send + 'static,
) -> Result<T, Status>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    let daemon = Arc::clone(daemon);
    match tokio::task::spawn_blocking(move || work(&daemon)).await {
        Ok(result) => result.map_err(|error| {
            let status = status(error);
            tracing::debug!(code = ?status.code(), message = status.message(), "grpc request failed");
            status
        }),
        Err(error) => Err(Status::internal(format!("request worker failed: {error}"))),
    }
}

/// A container-id field: a UUID, checked before any lookup (the daemon's own lookup also takes
/// names and prefixes, which the contract does not). Returns the canonical hyphenated form.
fn container_id(field: &str, value: &str) -> Result<String, Status> {
    uuid::Uuid::try_parse(value).map(|id| id.to_string()).map_err(|error| {
        Status::invalid_argument(format!("{field}: {value:?} is not a UUID: {error}"))
    })
}

/// A `map<string,string>` environment as the daemon's `KEY=VALUE` list, sorted by key so the
/// order is stable. A key that is empty or holds `=` cannot be expressed that way.
fn env_list(
    env: std::collections::HashMap<String, String>,
    field: &str,
) -> Result<Vec<String>, Status> {
    let mut env: Vec<(String, String)> = env.into_iter().collect();
    env.sort();
    env.into_iter()
        .map(|(key, value)| {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                Err(Status::invalid_argument(format!(
                    "{field}: {key:?} is not a variable name (empty, or holds '=' or NUL)"
                )))
            } else {
                Ok(format!("{key}={value}"))
            }
        })
        .collect()
}

/// The daemon's "optional zone name" from the contract's "empty = all".
fn optional(name: String) -> Option<String> {
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_map_one_to_one_onto_codes() {
        let cases = [
            (ErrorKind::InvalidArgument, Code::InvalidArgument),
            (ErrorKind::NotFound, Code::NotFound),
            (ErrorKind::AlreadyExists, Code::AlreadyExists),
            (ErrorKind::FailedPrecondition, Code::FailedPrecondition),
            (ErrorKind::PermissionDenied, Code::PermissionDenied),
            (ErrorKind::Unavailable, Code::Unavailable),
            (ErrorKind::Internal, Code::Internal),
        ];
        for (kind, code) in cases {
            let status = status(ApiError::new(kind, "zone \"x\" not found"));
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), "zone \"x\" not found");
        }
    }

    #[test]
    fn container_ids_must_be_uuids() {
        let id = "6f1c1a6e-2f53-4b5e-9a56-0d8e7f3b9c21";
        assert_eq!(container_id("container_id", id).unwrap(), id);
        for bad in ["", "web", "6f1c1a6e", "6f1c1a6e-2f53-4b5e-9a56-0d8e7f3b9c2z"] {
            assert_eq!(
                container_id("container_id", bad).unwrap_err().code(),
                Code::InvalidArgument
            );
        }
    }

    #[test]
    fn env_maps_become_sorted_pairs_and_bad_keys_are_refused() {
        let env = [("B", "2"), ("A", "x=y")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(env_list(env.into_iter().collect(), "env").unwrap(), ["A=x=y", "B=2"]);
        for key in ["", "A=B"] {
            let env = [(key.to_owned(), "v".to_owned())].into_iter().collect();
            assert_eq!(env_list(env, "env").unwrap_err().code(), Code::InvalidArgument);
        }
    }
}
