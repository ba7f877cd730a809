//! `ContainerLogs`: the container's CRI log files, handed over by the daemon as read-only fds
//! (the same ticket the CLI claims), turned into entries; with `follow`, new lines until the
//! container stops. Mirrors `cli::logs`, which does the same for a terminal.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::proto::container::ContainerLogEntry;
use super::{blocking, status};
use crate::cli::logs::parse_line;
use crate::daemon::Daemon;
use crate::rpc::{ApiError, ErrorKind};

/// How often a follower looks for new output and checks whether the container stopped.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(50);
/// Entries buffered towards a slow client before the reader waits for it.
const BUFFER: usize = 256;

type Entries = ReceiverStream<Result<ContainerLogEntry, Status>>;

/// Open the logs of container `id` (validated as a UUID by the caller) and stream them.
pub(super) async fn stream(
    daemon: &Arc<Daemon>,
    id: String,
    tail: u32,
    follow: bool,
) -> Result<Entries, Status> {
    // Errors (unknown container) end the call before the stream starts.
    let files = blocking(daemon, {
        let id = id.clone();
        move |d| open(d, &id)
    })
    .await?;
    let (sender, receiver) = mpsc::channel(BUFFER);
    let daemon = Arc::clone(daemon);
    // Reading files and waiting between polls is blocking work: it gets a blocking-pool thread
    // for the life of the stream.
    tokio::task::spawn_blocking(move || {
        let tail = (tail > 0).then_some(tail as usize);
        if let Err(error) = send_logs(&daemon, &id, files, tail, follow, &sender) {
            let _ = sender.blocking_send(Err(error));
        }
    });
    Ok(ReceiverStream::new(receiver))
}

fn open(daemon: &Daemon, id: &str) -> Result<Vec<Reader>, ApiError> {
    let ticket = daemon.container_logs(id).map_err(ApiError::from)?;
    let fds = daemon.claim_fds(ticket).map_err(|reason| {
        ApiError::new(
            ErrorKind::Internal,
            format!("claim the log files of container {id}: {reason}"),
        )
    })?;
    Ok(fds.into_iter().map(Reader::new).collect())
}

/// Whether the client is still there to take entries.
struct Gone;

fn send_logs(
    daemon: &Daemon,
    id: &str,
    mut files: Vec<Reader>,
    tail: Option<usize>,
    follow: bool,
    sender: &mpsc::Sender<Result<ContainerLogEntry, Status>>,
) -> Result<(), Status> {
    let mut lines = Lines::default();
    let mut backlog = VecDeque::new();
    for reader in &mut files {
        for entry in lines.entries(reader.read_lines(id)?) {
            backlog.push_back(entry);
            if tail.is_some_and(|n| backlog.len() > n) {
                backlog.pop_front();
            }
        }
    }
    let send = |entry: ContainerLogEntry| sender.blocking_send(Ok(entry)).map_err(|_| Gone);
    if backlog.into_iter().try_for_each(send).is_err() || !follow {
        return Ok(());
    }
    let mut current = files.pop();
    loop {
        let stopped = match daemon.get_container(id) {
            Ok(info) => info.state == "Stopped",
            // Removed meanwhile: what our fd still reads is all there is.
            Err(_) => true,
        };
        // Read after the state check, so lines written before the exit are never missed.
        if let Some(reader) = current.as_mut()
            && lines.entries(reader.read_lines(id)?).into_iter().try_for_each(send).is_err()
        {
            return Ok(());
        }
        if stopped || sender.is_closed() {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_INTERVAL);
        // The log rotates by renaming: when the daemon's current file is another inode, drain
        // ours and move on to it.
        let mut fresh = match open(daemon, id) {
            Ok(fresh) => fresh,
            Err(error) if error.kind == ErrorKind::NotFound => continue,
            Err(error) => return Err(status(error)),
        };
        if let Some(newest) = fresh.pop()
            && current.as_ref().is_none_or(|reader| reader.inode() != newest.inode())
        {
            if let Some(mut old) = current.take()
                && lines.entries(old.read_lines(id)?).into_iter().try_for_each(send).is_err()
            {
                return Ok(());
            }
            current = Some(newest);
        }
    }
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

    fn read_lines(&mut self, id: &str) -> Result<Vec<String>, Status> {
        let mut chunk = Vec::new();
        self.file.read_to_end(&mut chunk).map_err(|error| {
            Status::internal(format!("read the log of container {id}: {error}"))
        })?;
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

/// Joins the writer's partial records (`P`, a long line split up) into whole entries, one
/// per stream.
#[derive(Default)]
struct Lines {
    partial: [String; 2],
}

impl Lines {
    fn entries(&mut self, lines: Vec<String>) -> Vec<ContainerLogEntry> {
        let mut entries = Vec::new();
        for line in &lines {
            let Some(parsed) = parse_line(line) else { continue };
            let slot = &mut self.partial[usize::from(parsed.stream == "stderr")];
            slot.push_str(parsed.text);
            if parsed.full {
                entries.push(ContainerLogEntry {
                    source: if parsed.stream == "stderr" { "stderr" } else { "stdout" }.to_owned(),
                    line: std::mem::take(slot),
                    timestamp: normalise_timestamp(parsed.timestamp),
                });
            }
        }
        entries
    }
}

/// The shim writes nanosecond timestamps; the contract's form has milliseconds.
fn normalise_timestamp(written: &str) -> String {
    match written.parse::<jiff::Timestamp>() {
        Ok(at) => crate::daemon::format_timestamp(at),
        Err(_) => written.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_records_join_and_streams_stay_apart() {
        let mut lines = Lines::default();
        let entries = lines.entries(vec![
            "2026-11-28T10:15:30.123456789Z stdout P hel".to_owned(),
            "2026-11-28T10:15:30.2Z stderr F oops".to_owned(),
            "2026-11-28T10:15:30.3Z stdout F lo world".to_owned(),
            "garbage".to_owned(),
        ]);
        let got: Vec<(&str, &str, &str)> = entries
            .iter()
            .map(|e| (e.source.as_str(), e.line.as_str(), e.timestamp.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("stderr", "oops", "2026-11-28T10:15:30.200Z"),
                ("stdout", "hello world", "2026-11-28T10:15:30.300Z"),
            ]
        );
    }
}
