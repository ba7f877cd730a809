//! The listener, the bearer-token check, and the tokio runtime thread the facade runs on.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use super::proto::container::container_service_server::ContainerServiceServer;
use super::proto::image::image_service_server::ImageServiceServer;
use super::proto::zone::zone_service_server::ZoneServiceServer;
use crate::daemon::Daemon;

/// How long shutdown waits for in-flight calls before the daemon exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Where the facade listens (`--grpc-listen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// Plaintext HTTP/2 on TCP.
    Tcp(SocketAddr),
    /// A Unix socket at this path.
    Unix(PathBuf),
}

impl std::str::FromStr for ListenAddr {
    type Err = GrpcError;

    fn from_str(value: &str) -> Result<Self, GrpcError> {
        let invalid = |reason: &str| GrpcError::InvalidListen {
            addr: value.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(path) = value.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(invalid("the socket path is empty"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        value
            .parse::<SocketAddr>()
            .map(Self::Tcp)
            .map_err(|_| invalid("expected IP:PORT ([::1]:9876, 127.0.0.1:9876) or unix:PATH"))
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The facade's settings, resolved from the daemon's flags.
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    pub listen: ListenAddr,
    /// With a token every call needs `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Accept a TCP address that is not loopback (`--grpc-allow-remote`).
    pub allow_remote: bool,
    /// Group (besides root) that may use a Unix socket, as for the API socket.
    pub group: Option<u32>,
}

impl GrpcConfig {
    /// Check the flags together and read the token file.
    pub fn resolve(
        listen: &str,
        token_file: Option<&Path>,
        allow_remote: bool,
        group: Option<u32>,
    ) -> Result<Self, GrpcError> {
        let listen: ListenAddr = listen.parse()?;
        if let ListenAddr::Tcp(addr) = &listen
            && !addr.ip().is_loopback()
            && !allow_remote
        {
            return Err(GrpcError::RemoteRefused { addr: *addr });
        }
        let token = token_file.map(read_token).transpose()?;
        Ok(Self { listen, token, allow_remote, group })
    }
}

/// The token is the file's content without surrounding whitespace (a trailing newline).
fn read_token(path: &Path) -> Result<String, GrpcError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| GrpcError::TokenFile { path: path.to_owned(), source })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(GrpcError::EmptyToken { path: path.to_owned() });
    }
    Ok(token.to_owned())
}

/// Why the facade could not start.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("--grpc-listen {addr:?}: {reason}")]
    InvalidListen { addr: String, reason: String },
    #[error(
        "--grpc-listen {addr}: plaintext gRPC is only served on loopback addresses; pass \
         --grpc-allow-remote to serve it on {addr} anyway"
    )]
    RemoteRefused { addr: SocketAddr },
    #[error("--grpc-token-file {}: {source}", path.display())]
    TokenFile { path: PathBuf, source: std::io::Error },
    #[error("--grpc-token-file {}: the file holds no token", path.display())]
    EmptyToken { path: PathBuf },
    #[error("grpc: another process is serving on {}", path.display())]
    SocketInUse { path: PathBuf },
    #[error("grpc: remove stale socket {}: {source}", path.display())]
    StaleSocket { path: PathBuf, source: std::io::Error },
    #[error("grpc: bind {addr}: {source}")]
    Bind { addr: ListenAddr, source: std::io::Error },
    #[error("grpc: set owner and mode of {}: {source}", path.display())]
    SocketMode { path: PathBuf, source: std::io::Error },
    #[error("grpc: start the tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error("grpc: start the server thread: {0}")]
    Thread(std::io::Error),
}

/// Checks the bearer token on every call, streaming ones included (tonic runs interceptors on
/// the request headers before the handler).
#[derive(Clone)]
struct Auth(Option<Arc<str>>);

impl Interceptor for Auth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.0 else { return Ok(request) };
        let presented = request
            .metadata()
            .get(super::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match presented {
            Some(presented) if constant_time_eq(presented.as_bytes(), token.as_bytes()) => {
                Ok(request)
            }
            Some(_) => Err(Status::unauthenticated("authorization: the bearer token is wrong")),
            None => Err(Status::unauthenticated(
                "authorization: missing; every call needs \"authorization: Bearer <token>\"",
            )),
        }
    }
}

/// Compare without an early exit, so response time does not reveal how much of a guess was
/// right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// A bound listener, made before the daemon reports ready so that bind errors stop start-up.
enum Bound {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

fn bind(config: &GrpcConfig) -> Result<Bound, GrpcError> {
    let bind_error = |source| GrpcError::Bind { addr: config.listen.clone(), source };
    match &config.listen {
        ListenAddr::Tcp(addr) => {
            let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
            listener.set_nonblocking(true).map_err(bind_error)?;
            if !addr.ip().is_loopback() {
                tracing::warn!(
                    %addr,
                    "gRPC is served in plaintext on a non-loopback address (--grpc-allow-remote): \
                     anyone who can reach it can drive the daemon{}",
                    if config.token.is_some() { " with the token" } else { "" }
                );
            } else if config.token.is_none() {
                tracing::warn!(
                    %addr,
                    "gRPC on loopback TCP without --grpc-token-file: any local user can drive the \
                     daemon"
                );
            }
            Ok(Bound::Tcp(listener))
        }
        ListenAddr::Unix(path) => {
            if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(bind_error)?;
            }
            if path.exists() {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(GrpcError::SocketInUse { path: path.clone() });
                }
                std::fs::remove_file(path)
                    .map_err(|source| GrpcError::StaleSocket { path: path.clone(), source })?;
            }
            let listener = std::os::unix::net::UnixListener::bind(path).map_err(bind_error)?;
            listener.set_nonblocking(true).map_err(bind_error)?;
            // The same access rule as the API socket: root, and the configured group.
            let mode_error = |source| GrpcError::SocketMode { path: path.clone(), source };
            if let Some(gid) = config.group {
                std::os::unix::fs::chown(path, Some(0), Some(gid)).map_err(mode_error)?;
            }
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                .map_err(mode_error)?;
            Ok(Bound::Unix(listener, path.clone()))
        }
    }
}

/// The running facade. Dropping it stops the server (waiting briefly for in-flight calls) and
/// removes its Unix socket.
pub struct GrpcServer {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: std::sync::mpsc::Receiver<()>,
    socket: Option<PathBuf>,
}

/// Bind the listener and start serving on a dedicated thread with its own tokio runtime.
pub fn start(daemon: Arc<Daemon>, config: GrpcConfig) -> Result<GrpcServer, GrpcError> {
    let bound = bind(&config)?;
    let socket = match &bound {
        Bound::Unix(_, path) => Some(path.clone()),
        Bound::Tcp(_) => None,
    };
    // One thread drives the connections; the daemon's blocking work runs on tokio's blocking
    // pool, so a current-thread runtime is enough and keeps the facade's footprint small.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("rauhad-grpc")
        .build()
        .map_err(GrpcError::Runtime)?;
    let (shutdown, shutdown_signal) = tokio::sync::oneshot::channel::<()>();
    let (stopped_tx, stopped) = std::sync::mpsc::channel();
    let auth = Auth(config.token.as_deref().map(Arc::from));
    let listen = config.listen.clone();
    std::thread::Builder::new()
        .name("rauhad-grpc".to_owned())
        .spawn(move || {
            let result = runtime.block_on(serve(daemon, bound, auth, async {
                // A dropped sender (the daemon going away) also means stop.
                let _ = shutdown_signal.await;
            }));
            if let Err(error) = result {
                tracing::error!(%error, addr = %listen, "gRPC server stopped");
            }
            // Leave lingering streams (followers) to the process exit instead of waiting.
            runtime.shutdown_background();
            let _ = stopped_tx.send(());
        })
        .map_err(GrpcError::Thread)?;
    tracing::info!(addr = %config.listen, auth = config.token.is_some(), "gRPC facade listening");
    Ok(GrpcServer { shutdown: Some(shutdown), stopped, socket })
}

async fn serve(
    daemon: Arc<Daemon>,
    bound: Bound,
    auth: Auth,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let router = tonic::transport::Server::builder()
        .add_service(ZoneServiceServer::with_interceptor(
            super::zones::ZoneApi::new(Arc::clone(&daemon)),
            auth.clone(),
        ))
        .add_service(ContainerServiceServer::with_interceptor(
            super::containers::ContainerApi::new(Arc::clone(&daemon)),
            auth.clone(),
        ))
        .add_service(ImageServiceServer::with_interceptor(
            super::images::ImageApi::new(daemon),
            auth,
        ));
    match bound {
        Bound::Tcp(listener) => {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(%error, "gRPC: register the TCP listener with tokio");
                    return Ok(());
                }
            };
            // Small unary messages: Nagle's algorithm would only add latency.
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|stream| {
                stream.inspect(|stream| {
                    let _ = stream.set_nodelay(true);
                })
            });
            router.serve_with_incoming_shutdown(incoming, shutdown).await
        }
        Bound::Unix(listener, _) => {
            let listener = match tokio::net::UnixListener::from_std(listener) {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(%error, "gRPC: register the Unix listener with tokio");
                    return Ok(());
                }
            };
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            router.serve_with_incoming_shutdown(incoming, shutdown).await
        }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if self.stopped.recv_timeout(SHUTDOWN_GRACE).is_err() {
            tracing::warn!("gRPC server still busy after {SHUTDOWN_GRACE:?}; leaving it to exit");
        }
        if let Some(path) = &self.socket
            && let Err(error) = std::fs::remove_file(path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, socket = %path.display(), "remove gRPC socket");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(
            "[::1]:9876".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("[::1]:9876".parse().unwrap())
        );
        assert_eq!(
            "unix:/run/rauha/grpc.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/rauha/grpc.sock".into())
        );
        for bad in ["unix:", "localhost:9876", "9876", ""] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn remote_tcp_needs_the_explicit_flag() {
        let refused = GrpcConfig::resolve("0.0.0.0:9876", None, false, None).unwrap_err();
        assert!(matches!(refused, GrpcError::RemoteRefused { .. }), "{refused}");
        assert!(GrpcConfig::resolve("0.0.0.0:9876", None, true, None).is_ok());
        assert!(GrpcConfig::resolve("127.0.0.1:9876", None, false, None).is_ok());
        assert!(GrpcConfig::resolve("[::1]:9876", None, false, None).is_ok());
    }

    #[test]
    fn the_token_check_wants_the_exact_bearer_token() {
        let mut auth = Auth(Some(Arc::from("s3cret")));
        let with = |value: Option<&str>| {
            let mut request = Request::new(());
            if let Some(value) = value {
                request.metadata_mut().insert(super::super::AUTHORIZATION, value.parse().unwrap());
            }
            request
        };
        assert!(auth.call(with(Some("Bearer s3cret"))).is_ok());
        for bad in [None, Some("Bearer s3cre"), Some("Bearer s3cret2"), Some("s3cret")] {
            let status = auth.call(with(bad)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
        assert!(Auth(None).call(with(None)).is_ok());
    }
}
