//! Reading container logs from the fds the daemon hands over: CRI lines
//! (`TIMESTAMP STREAM TAG TEXT`), tail, and follow until the container stops.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use futures::future::Either;

use super::{CliError, context, unbounded};
use crate::rpc::{self, RauhaClient};

/// How often a follower looks for new output.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(50);
/// How often a follower checks whether the log was rotated under it.
const ROTATION_CHECK: Duration = Duration::from_secs(1);

/// One parsed log line.
#[derive(Debug, PartialEq, Eq)]
pub struct LogLine<'a> {
    pub timestamp: &'a str,
    pub stream: &'a str,
    /// `F` for a full line, `P` for a partial one (a long line split by the writer).
    pub full: bool,
    pub text: &'a str,
}

/// Parse a CRI log line; `None` for a malformed one.
pub fn parse_line(line: &str) -> Option<LogLine<'_>> {
    let mut parts = line.splitn(4, ' ');
    let timestamp = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some(LogLine { timestamp, stream, full: tag != "P", text })
}

/// How to print the lines.
#[derive(Debug, Clone, Copy)]
pub struct Printing {
    pub timestamps: bool,
}

fn print(line: &str, printing: Printing) {
    let Some(parsed) = parse_line(line) else { return };
    let end = if parsed.full { "\n" } else { "" };
    let text = if printing.timestamps {
        format!("{} {}{end}", parsed.timestamp, parsed.text)
    } else {
        format!("{}{end}", parsed.text)
    };
    // A closed pipe on our side (`| head`) ends the output, not the program with a panic.
    let _ = if parsed.stream == "stderr" {
        std::io::stderr().write_all(text.as_bytes())
    } else {
        std::io::stdout().write_all(text.as_bytes())
    };
}

/// Reads whole lines from one log file, keeping a partial last line until it completes.
struct Reader {
    file: File,
    pending: Vec<u8>,
}

impl Reader {
    fn new(fd: OwnedFd) -> Self {
        Self { file: File::from(fd), pending: Vec::new() }
    }

    /// Every complete line available now.
    fn lines(&mut self) -> std::io::Result<Vec<String>> {
        let mut chunk = Vec::new();
        self.file.read_to_end(&mut chunk)?;
        self.pending.extend_from_slice(&chunk);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            lines.push(String::from_utf8_lossy(&line[..end]).into_owned());
        }
        Ok(lines)
    }

    fn inode(&self) -> Option<u64> {
        rustix::fs::fstat(self.file.as_fd()).ok().map(|stat| stat.st_ino)
    }
}

fn claim(socket: &Path, ticket: rpc::Ticket) -> Result<Vec<OwnedFd>, CliError> {
    Ok(rpc::fds::claim(socket, ticket)?)
}

/// The container's log files, oldest first, opened by the daemon and handed over.
pub struct LogFiles(Vec<Reader>);

/// Claim the container's log files. `run` does this before it starts the container, so that a
/// container removed at exit (`--rm`) cannot take its output with it.
pub async fn open(
    client: &RauhaClient,
    socket: &Path,
    container: &str,
) -> Result<LogFiles, CliError> {
    let ticket = client.container_logs(context(), container.to_owned()).await??;
    Ok(LogFiles(claim(socket, ticket)?.into_iter().map(Reader::new).collect()))
}

/// Print a container's logs; with `follow`, keep printing until it has stopped.
pub async fn show(
    client: &RauhaClient,
    socket: &Path,
    container: &str,
    tail: Option<usize>,
    follow: bool,
    printing: Printing,
) -> Result<(), CliError> {
    let files = open(client, socket, container).await?;
    stream(client, socket, container, files, tail, follow, printing).await
}

/// Print what `files` hold (the last `tail` lines), then follow the container's output.
pub async fn stream(
    client: &RauhaClient,
    socket: &Path,
    container: &str,
    LogFiles(mut files): LogFiles,
    tail: Option<usize>,
    follow: bool,
    printing: Printing,
) -> Result<(), CliError> {
    let mut backlog = VecDeque::new();
    for reader in &mut files {
        for line in reader.lines().map_err(CliError::ReadLog)? {
            backlog.push_back(line);
            if tail.is_some_and(|n| backlog.len() > n) {
                backlog.pop_front();
            }
        }
    }
    for line in &backlog {
        print(line, printing);
    }
    if !follow {
        return Ok(());
    }
    let mut current = files.pop();
    let drain = |reader: &mut Option<Reader>| -> Result<(), CliError> {
        if let Some(reader) = reader.as_mut() {
            for line in reader.lines().map_err(CliError::ReadLog)? {
                print(&line, printing);
            }
        }
        Ok(())
    };
    // The daemon announces the exit (the shim writes all output before it reports one), so
    // following ends the moment the container does instead of on the next poll.
    let mut exited = Box::pin(client.container_wait(unbounded(), container.to_owned()));
    let mut rotation_checked = Instant::now();
    loop {
        drain(&mut current)?;
        let tick = smol::Timer::after(FOLLOW_INTERVAL);
        if let Either::Left(_) = futures::future::select(exited.as_mut(), tick).await {
            return drain(&mut current);
        }
        if rotation_checked.elapsed() < ROTATION_CHECK {
            continue;
        }
        rotation_checked = Instant::now();
        // The log rotates by renaming: when the daemon's current file is another inode, drain
        // ours and move on to it.
        let ticket = match client.container_logs(context(), container.to_owned()).await? {
            Ok(ticket) => ticket,
            // Removed (`--rm`) since the last look: what our fd still reads is all there is.
            Err(error) if error.kind == rpc::ErrorKind::NotFound => return drain(&mut current),
            Err(error) => return Err(error.into()),
        };
        if let Some(newest) = claim(socket, ticket)?.pop().map(Reader::new) {
            if current.as_ref().is_none_or(|r| r.inode() != newest.inode()) {
                drain(&mut current)?;
                current = Some(newest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines_parse() {
        let line = parse_line("2026-11-28T10:00:00.1Z stdout F hello world").unwrap();
        assert_eq!(
            line,
            LogLine {
                timestamp: "2026-11-28T10:00:00.1Z",
                stream: "stdout",
                full: true,
                text: "hello world"
            }
        );
        let partial = parse_line("2026-11-28T10:00:00.1Z stderr P abc").unwrap();
        assert!(!partial.full);
        assert_eq!(parse_line("2026-11-28T10:00:00.1Z stdout F").unwrap().text, "");
        assert!(parse_line("garbage").is_none());
    }
}
