//! The local socket transport. A client names the channel it wants in one byte (tarpc requests,
//! or collecting file descriptors); the daemon answers with a one-byte admission verdict, then
//! the channel runs.
//!
//! The verdict lets a refused client print why it was refused instead of a bare "connection
//! reset": the daemon decides from the peer's credentials before any request is read.

use std::io;
use std::path::{Path, PathBuf};

use async_compat::Compat;
use futures::{AsyncReadExt, AsyncWriteExt};
use smol::net::unix::UnixStream;
use tokio_util::codec::LengthDelimitedCodec;

use super::{Postcard, RauhaClient, RauhaRequest, RauhaResponse};

const ACCEPTED: u8 = 1;
const REFUSED: u8 = 0;
/// Channel bytes a client sends first.
const CHANNEL_RPC: u8 = b'R';
const CHANNEL_FDS: u8 = b'F';
/// Longest refusal reason a client reads; the daemon's are one line.
const MAX_REASON: u64 = 4096;
/// Largest tarpc frame either side accepts (a 1000-zone listing is well under 1 MiB).
const MAX_FRAME: usize = 64 << 20;

/// The daemon's admission decision for one connection.
pub enum Handshake {
    Accepted,
    Refused(String),
}

/// Why the CLI could not reach the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("daemon not running at {}", path.display())]
    NotRunning { path: PathBuf },
    #[error("permission denied on {}: only root and members of the daemon's group may use it", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("connect to {}: {source}", path.display())]
    Connect { path: PathBuf, source: io::Error },
    #[error("daemon at {} refused the connection: {reason}", path.display())]
    Refused { path: PathBuf, reason: String },
    #[error("read admission verdict from {}: {source}", path.display())]
    Handshake { path: PathBuf, source: io::Error },
}

fn framed<S>(stream: S) -> tokio_util::codec::Framed<S, LengthDelimitedCodec>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME).new_framed(stream)
}

fn connect_error(path: &Path) -> impl FnOnce(io::Error) -> ConnectError + '_ {
    move |source| match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            ConnectError::NotRunning { path: path.to_owned() }
        }
        io::ErrorKind::PermissionDenied => ConnectError::PermissionDenied { path: path.to_owned() },
        _ => ConnectError::Connect { path: path.to_owned(), source },
    }
}

/// Connect to the daemon at `path` and return a client. Must be polled inside
/// [`async_compat::Compat`], since tarpc spawns its dispatch task on tokio.
pub async fn connect(path: &Path) -> Result<RauhaClient, ConnectError> {
    let mut stream = UnixStream::connect(path).await.map_err(connect_error(path))?;
    let handshake_error = |source| ConnectError::Handshake { path: path.to_owned(), source };
    stream.write_all(&[CHANNEL_RPC]).await.map_err(handshake_error)?;
    let mut verdict = [0u8; 1];
    stream.read_exact(&mut verdict).await.map_err(handshake_error)?;
    if verdict[0] != ACCEPTED {
        let mut reason = String::new();
        (&mut stream)
            .take(MAX_REASON)
            .read_to_string(&mut reason)
            .await
            .map_err(handshake_error)?;
        return Err(ConnectError::Refused { path: path.to_owned(), reason });
    }
    let transport = tarpc::serde_transport::new(framed(Compat::new(stream)), Postcard::default());
    Ok(RauhaClient::new(tarpc::client::Config::default(), transport).spawn())
}

/// The server end of an accepted RPC connection: postcard-encoded tarpc frames.
pub type ServerTransport = tarpc::serde_transport::Transport<
    Compat<UnixStream>,
    tarpc::ClientMessage<RauhaRequest>,
    tarpc::Response<RauhaResponse>,
    Postcard<tarpc::ClientMessage<RauhaRequest>, tarpc::Response<RauhaResponse>>,
>;

/// An admitted connection, by the channel the client asked for.
pub enum Admitted {
    Rpc(Box<ServerTransport>),
    /// A blocking stream on which the client claims fds with a ticket (`fds::serve_claim`).
    Fds(std::os::unix::net::UnixStream),
}

/// Read the client's channel byte, tell it the verdict, and hand back the channel when it was
/// accepted and the peer is still there.
pub async fn admit(mut stream: UnixStream, verdict: Handshake) -> Option<Admitted> {
    let mut channel = [0u8; 1];
    if let Err(error) = stream.read_exact(&mut channel).await {
        tracing::debug!(%error, "client left before naming a channel");
        return None;
    }
    let reason = match (&verdict, channel[0]) {
        (Handshake::Refused(reason), _) => Some(reason.clone()),
        (Handshake::Accepted, CHANNEL_RPC | CHANNEL_FDS) => None,
        (Handshake::Accepted, other) => Some(format!("unknown channel byte {other:#04x}")),
    };
    if let Some(reason) = reason {
        let mut message = vec![REFUSED];
        message.extend_from_slice(reason.as_bytes());
        // The peer may already be gone; there is nobody else to tell.
        let _ = stream.write_all(&message).await;
        return None;
    }
    if let Err(error) = stream.write_all(&[ACCEPTED]).await {
        tracing::debug!(%error, "client left before the admission verdict");
        return None;
    }
    if channel[0] == CHANNEL_RPC {
        return Some(Admitted::Rpc(Box::new(tarpc::serde_transport::new(
            framed(Compat::new(stream)),
            Postcard::default(),
        ))));
    }
    // The fd channel is short and blocking: hand over a blocking duplicate of the socket.
    let fd = match rustix::io::fcntl_dupfd_cloexec(&stream, 0) {
        Ok(fd) => fd,
        Err(error) => {
            tracing::warn!(%error, "duplicate fd-channel socket");
            return None;
        }
    };
    drop(stream);
    let blocking = std::os::unix::net::UnixStream::from(fd);
    match blocking.set_nonblocking(false) {
        Ok(()) => Some(Admitted::Fds(blocking)),
        Err(error) => {
            tracing::warn!(%error, "make fd-channel socket blocking");
            None
        }
    }
}

/// Open the fd channel: a blocking connection already admitted by the daemon.
pub fn connect_fds(path: &Path) -> Result<std::os::unix::net::UnixStream, ConnectError> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(connect_error(path))?;
    let handshake_error = |source| ConnectError::Handshake { path: path.to_owned(), source };
    stream.write_all(&[CHANNEL_FDS]).map_err(handshake_error)?;
    let mut verdict = [0u8; 1];
    stream.read_exact(&mut verdict).map_err(handshake_error)?;
    if verdict[0] != ACCEPTED {
        let mut reason = String::new();
        (&mut stream).take(MAX_REASON).read_to_string(&mut reason).map_err(handshake_error)?;
        return Err(ConnectError::Refused { path: path.to_owned(), reason });
    }
    Ok(stream)
}
