//! Passing file descriptors over Unix stream sockets (`SCM_RIGHTS`).
//!
//! This is how every long-lived byte stream leaves the shim and the daemon (DESIGN.md §1
//! "Streams"): the PTY master or the pipe ends travel as fds, so bytes never relay through a
//! daemon. The API is generic (any bytes, any fds) so the daemon reuses it to hand the same fds
//! on to the CLI.
//!
//! On a stream socket the kernel attaches the fds to the first byte of the `sendmsg` that
//! carried them, and a `recvmsg` returns them together with whichever read consumes that byte.
//! Readers therefore collect fds from every `recvmsg` and attach them to the message being read;
//! reading no further than the current message keeps the next message's fds out of it.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::{Errno, IoSlice, IoSliceMut};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Most fds one message may carry (a PTY master, or stdin/stdout/stderr, plus room to grow).
pub const MAX_FDS: usize = 8;

/// Errors of passing fds.
#[derive(Debug, thiserror::Error)]
pub enum FdPassError {
    /// More fds than [`MAX_FDS`] were given.
    #[error("cannot pass {count} file descriptors in one message (limit {MAX_FDS})")]
    TooManyFds {
        /// How many were given.
        count: usize,
    },
    /// fds need at least one byte of data to ride on.
    #[error("file descriptors need at least one data byte to be sent with")]
    NoData,
    /// sendmsg/send failed.
    #[error("send message with file descriptors: {0}")]
    Send(#[source] io::Error),
    /// recvmsg failed.
    #[error("receive message with file descriptors: {0}")]
    Recv(#[source] io::Error),
    /// The peer sent more fds than the receive buffer holds; the kernel closed the excess.
    #[error("received file descriptors were truncated (more than {MAX_FDS} in one message)")]
    Truncated,
}

impl FdPassError {
    /// The underlying OS error kind, if any (timeouts show up as `WouldBlock`).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            FdPassError::Send(e) | FdPassError::Recv(e) => Some(e.kind()),
            _ => None,
        }
    }
}

/// Sends all of `bytes`, with `fds` attached to the first byte.
///
/// Blocking; honours the socket's send timeout. `MSG_NOSIGNAL`, so a vanished peer is an
/// `EPIPE` error rather than a signal.
pub fn send_with_fds(
    sock: impl AsFd,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), FdPassError> {
    if fds.len() > MAX_FDS {
        return Err(FdPassError::TooManyFds { count: fds.len() });
    }
    if bytes.is_empty() {
        return if fds.is_empty() { Ok(()) } else { Err(FdPassError::NoData) };
    }
    let sock = sock.as_fd();
    let mut sent = 0;
    if !fds.is_empty() {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        // Cannot fail: the buffer is sized for MAX_FDS and the count was checked above.
        control.push(SendAncillaryMessage::ScmRights(fds));
        loop {
            match rustix::net::sendmsg(
                sock,
                &[IoSlice::new(bytes)],
                &mut control,
                SendFlags::NOSIGNAL,
            ) {
                Ok(n) => {
                    sent = n;
                    break;
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(FdPassError::Send(e.into())),
            }
        }
    }
    while sent < bytes.len() {
        match rustix::net::send(sock, &bytes[sent..], SendFlags::NOSIGNAL) {
            Ok(n) => sent += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(FdPassError::Send(e.into())),
        }
    }
    Ok(())
}

/// Receives up to `buf.len()` bytes and any fds that came with them (close-on-exec).
///
/// Returns `(0, fds)` at end of stream. Blocking; honours the socket's receive timeout.
pub fn recv_with_fds(
    sock: impl AsFd,
    buf: &mut [u8],
) -> Result<(usize, Vec<OwnedFd>), FdPassError> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(
            sock.as_fd(),
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => break m,
            Err(Errno::INTR) => {}
            Err(e) => return Err(FdPassError::Recv(e.into())),
        }
    };
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        // `fds` drops here, closing what did arrive: a partial set is of no use to anyone.
        return Err(FdPassError::Truncated);
    }
    Ok((msg.bytes, fds))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn fds_arrive_with_their_bytes_and_work() {
        let (a, b) = UnixStream::pair().unwrap();
        let (pr, pw) = rustix::pipe::pipe().unwrap();
        send_with_fds(&a, b"hello", &[pw.as_fd(), pr.as_fd()]).unwrap();
        drop((pr, pw));
        let mut buf = [0u8; 16];
        let (n, fds) = recv_with_fds(&b, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 2);
        let mut w = std::fs::File::from(fds[0].try_clone().unwrap());
        w.write_all(b"x").unwrap();
        let mut r = std::fs::File::from(fds[1].try_clone().unwrap());
        let mut one = [0u8; 1];
        r.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"x");
        let flags = rustix::io::fcntl_getfd(&fds[0]).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    }

    #[test]
    fn short_reads_do_not_take_the_next_messages_fds() {
        let (a, b) = UnixStream::pair().unwrap();
        let (pr, _pw) = rustix::pipe::pipe().unwrap();
        send_with_fds(&a, b"one", &[]).unwrap();
        send_with_fds(&a, b"two", &[pr.as_fd()]).unwrap();
        let mut buf = [0u8; 3];
        let (n, fds) = recv_with_fds(&b, &mut buf).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"one"[..], 0));
        let (n, fds) = recv_with_fds(&b, &mut buf).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"two"[..], 1));
        drop(a);
        assert_eq!(recv_with_fds(&b, &mut buf).unwrap().0, 0);
    }

    #[test]
    fn limits_are_checked() {
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_fd();
        assert!(matches!(
            send_with_fds(&a, b"x", &[fd; MAX_FDS + 1]),
            Err(FdPassError::TooManyFds { count: 9 })
        ));
        assert!(matches!(send_with_fds(&a, b"", &[fd]), Err(FdPassError::NoData)));
    }
}
