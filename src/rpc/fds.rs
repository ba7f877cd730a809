//! The fd channel: how byte streams reach a client without relaying through the daemon. An RPC
//! (logs, exec, attach) parks file descriptors under a one-time [`Ticket`]; the client collects
//! them on a second connection, where they arrive with `SCM_RIGHTS`.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::Ticket;
use super::connection::{ConnectError, connect_fds};
use crate::shim::fdpass::{recv_with_fds, send_with_fds};

const CLAIM_OK: u8 = 1;
const CLAIM_FAILED: u8 = 0;

/// Why collecting fds failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("send ticket: {0}")]
    SendTicket(std::io::Error),
    #[error("receive file descriptors: {0}")]
    Receive(crate::shim::fdpass::FdPassError),
    #[error("daemon closed the fd channel without an answer")]
    NoAnswer,
    #[error("{0}")]
    Refused(String),
}

/// Collect the fds parked under `ticket` (client side, blocking).
pub fn claim(socket: &Path, ticket: Ticket) -> Result<Vec<OwnedFd>, ClaimError> {
    let mut stream = connect_fds(socket)?;
    stream.write_all(&ticket.0.to_le_bytes()).map_err(ClaimError::SendTicket)?;
    let mut status = [0u8; 1];
    let (n, fds) = recv_with_fds(stream.as_fd(), &mut status).map_err(ClaimError::Receive)?;
    match (n, status[0]) {
        (0, _) => Err(ClaimError::NoAnswer),
        (_, CLAIM_OK) => Ok(fds),
        _ => {
            let mut reason = String::new();
            let _ = stream.take(4096).read_to_string(&mut reason);
            Err(ClaimError::Refused(reason))
        }
    }
}

/// Serve one claim (daemon side, blocking): read the ticket, send what `lookup` yields.
pub fn serve_claim(
    mut stream: UnixStream,
    lookup: impl FnOnce(Ticket) -> Result<Vec<OwnedFd>, String>,
) -> std::io::Result<()> {
    let mut raw = [0u8; 16];
    stream.read_exact(&mut raw)?;
    match lookup(Ticket(u128::from_le_bytes(raw))) {
        Ok(fds) => {
            let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
            send_with_fds(stream.as_fd(), &[CLAIM_OK], &borrowed).map_err(std::io::Error::other)
        }
        Err(reason) => {
            let mut message = vec![CLAIM_FAILED];
            message.extend_from_slice(reason.as_bytes());
            stream.write_all(&message)
        }
    }
}
