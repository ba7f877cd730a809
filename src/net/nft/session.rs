//! One long-lived `nft -j -i` process that applies the daemon's batches.
//!
//! Why not one `nft -j -f -` per batch: starting nft costs a few milliseconds (it links a
//! dozen libraries), and a process whose transaction deleted anything waits in `close` on
//! its netlink socket for an RCU grace period, because nf_tables flushes its deferred-free
//! work when a netfilter socket goes away (~9 ms per zone delete on a small VM). A session
//! keeps one socket open for the daemon's life, so a batch costs its parse and commit and
//! the kernel frees deleted rules later in its own worker.
//!
//! Protocol: in interactive mode nft reads one command per line (JSON, with `-j`), writes
//! errors to stderr and answers to stdout, flushed per command. Each batch is followed by
//! [`MARK`], whose one answer line on stdout says the batch is done; whatever reached stderr
//! before it is the batch's error. nft ends when its stdin
//! closes, so it never outlives the daemon, not even one killed with SIGKILL.

use std::io::{self, Read, Write};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;

use crate::net::NetError;

/// The command that marks the end of a batch: its one-line answer comes from nft's own type
/// tables, so unlike a listing it needs no fresh dump of the ruleset after the batch changed it.
const MARK: &[u8] = b"describe meta mark";
/// How the answer to [`MARK`] begins.
const MARK_ANSWER: &[u8] = b"meta expression";
/// Longest wait for one batch: nft holds the kernel's commit lock for far less, so a batch
/// still running after this is stuck and its session is abandoned.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A running `nft -j -i`.
pub(super) struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    stderr: ChildStderr,
}

/// Why an exchange with the session failed.
pub(super) enum Failure {
    /// nft answered and rejected the batch (its stderr); the session is still good.
    Rejected(String),
    /// The session is broken (nft gone, stuck or answering out of step) and must be replaced.
    Broken(NetError),
}

impl Session {
    /// Starts `command` (an `nft -j -i` set up by the caller) with piped stdio.
    pub(super) fn start(mut command: Command, program: &str) -> Result<Self, NetError> {
        let spawn_err = |source| NetError::NftSpawn { program: program.to_owned(), source };
        // No history file: nft would write one under $HOME when it exits. A terminal type
        // every terminfo database has, so the line editor has nothing to complain about.
        command
            .env("HOME", "/nonexistent")
            .env("TERM", "dumb")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(spawn_err)?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_err(io::Error::other("nft started without its pipes")));
        };
        // Drained after each batch without waiting: nft writes errors before it reads on.
        if let Err(e) = rustix::io::ioctl_fionbio(&stderr, true) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_err(e.into()));
        }
        let mut session = Self { child, stdin, stdout, stderr };
        // The line editor may still write to stderr while it sets itself up (a system without
        // any terminfo database): one mark before the first batch takes that in, so it is
        // never read as a batch's rejection.
        let settled = session.send("start", b"").and_then(|()| match session.finish("start") {
            Ok(()) | Err(Failure::Rejected(_)) => Ok(()),
            Err(Failure::Broken(error)) => Err(error),
        });
        settled.map(|()| session)
    }

    /// Queues `batch` (one line of JSON) and the mark behind it; [`Session::finish`] waits.
    /// The pipe holds far more than a batch, so this does not wait for nft.
    pub(super) fn send(&mut self, action: &str, batch: &[u8]) -> Result<(), NetError> {
        let broken = |source| NetError::NftSession { action: action.to_owned(), source };
        let mut line = Vec::with_capacity(batch.len() + MARK.len() + 2);
        if !batch.is_empty() {
            line.extend_from_slice(batch);
            line.push(b'\n');
        }
        line.extend_from_slice(MARK);
        line.push(b'\n');
        self.stdin.write_all(&line).map_err(broken)
    }

    /// Waits for the mark's answer; the batch's stderr, if any, is its rejection.
    pub(super) fn finish(&mut self, action: &str) -> Result<(), Failure> {
        let answer = self.read_line(action)?;
        if !answer.starts_with(MARK_ANSWER) {
            return Err(Failure::Broken(NetError::NftAnswer {
                action: action.to_owned(),
                answer: String::from_utf8_lossy(&answer).into_owned(),
            }));
        }
        let stderr = self.drain_stderr(action)?;
        if stderr.trim().is_empty() {
            Ok(())
        } else {
            Err(Failure::Rejected(stderr.trim().to_owned()))
        }
    }

    /// Reads stdout up to and including one newline.
    fn read_line(&mut self, action: &str) -> Result<Vec<u8>, Failure> {
        let broken =
            |source| Failure::Broken(NetError::NftSession { action: action.to_owned(), source });
        let deadline = Instant::now() + TIMEOUT;
        let mut line = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Broken(NetError::NftTimeout {
                    action: action.to_owned(),
                    seconds: TIMEOUT.as_secs(),
                }));
            }
            let timeout = rustix::fs::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos().into(),
            };
            let mut fds = [PollFd::new(&self.stdout, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) | Err(Errno::INTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(broken(e.into())),
            }
            match self.stdout.read(&mut chunk) {
                Ok(0) => return Err(broken(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => {
                    line.extend_from_slice(&chunk[..n]);
                    if line.ends_with(b"\n") {
                        return Ok(line);
                    }
                    // One answer per batch; bytes past a newline mean nft is out of step.
                    if line.contains(&b'\n') {
                        return Err(Failure::Broken(NetError::NftAnswer {
                            action: action.to_owned(),
                            answer: String::from_utf8_lossy(&line).into_owned(),
                        }));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(broken(e)),
            }
        }
    }

    /// Everything nft wrote to stderr so far.
    fn drain_stderr(&mut self, action: &str) -> Result<String, Failure> {
        let mut text = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match self.stderr.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => text.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Failure::Broken(NetError::NftSession {
                        action: action.to_owned(),
                        source,
                    }));
                }
            }
        }
        Ok(String::from_utf8_lossy(&text).into_owned())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Killed, not just left to read EOF: a broken session may be stuck mid-batch.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
