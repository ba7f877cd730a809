//! Container log files: CRI-format lines (`TIMESTAMP STREAM F|P TEXT`), size-capped, rotated.
//!
//! The CRI format needs no escaping (the text runs to the end of the line, raw bytes allowed),
//! is what kubelet and containerd write, and `--tail` can read it backwards line by line. `F`
//! marks a complete line, `P` a piece of a line longer than [`MAX_LINE`] (or one the process
//! left unterminated when its pipe closed mid-line, which is then completed with `F`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::shim::protocol::LogSpec;

/// Longest line piece written as one record.
pub const MAX_LINE: usize = 16 * 1024;

/// Errors of log writing.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log directory could not be created.
    #[error("create log directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The log file could not be opened.
    #[error("open log file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing a record failed.
    #[error("write log file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Rotating files failed.
    #[error("rotate log file {path}: {source}")]
    Rotate {
        /// The file being renamed or removed.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// fd 1.
    Stdout,
    /// fd 2.
    Stderr,
}

impl Stream {
    /// The tag written in the log line.
    pub fn tag(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Formats one log record.
pub fn format_record(ts: jiff::Timestamp, stream: Stream, partial: bool, text: &[u8]) -> Vec<u8> {
    let head = format!("{ts:.9} {} {} ", stream.tag(), if partial { "P" } else { "F" });
    let mut out = Vec::with_capacity(head.len() + text.len() + 1);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

/// Splits a byte stream into log records, buffering an unterminated tail.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; returns `(partial, text)` records that are complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<(bool, Vec<u8>)> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                if nl <= MAX_LINE {
                    let line: Vec<u8> = self.buf.drain(..=nl).take(nl).collect();
                    out.push((false, line));
                    continue;
                }
            }
            if self.buf.len() > MAX_LINE {
                out.push((true, self.buf.drain(..MAX_LINE).collect()));
                continue;
            }
            return out;
        }
    }

    /// Ends the stream: an unterminated tail becomes a complete record.
    pub fn finish(&mut self) -> Option<(bool, Vec<u8>)> {
        if self.buf.is_empty() { None } else { Some((false, std::mem::take(&mut self.buf))) }
    }
}

/// Appends records to a container's log file, rotating at `max_size`.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    max_size: u64,
    max_files: u32,
    file: File,
    size: u64,
}

fn open_append(path: &Path) -> Result<(File, u64), LogError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LogError::Open { path: path.to_owned(), source })?;
    let size =
        file.metadata().map_err(|source| LogError::Open { path: path.to_owned(), source })?.len();
    Ok((file, size))
}

/// The path of rotated file number `n` (`log.1` is the newest rotated one).
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl LogWriter {
    /// Opens (appending) the log file of `spec`, creating its directory.
    pub fn open(spec: &LogSpec) -> Result<Self, LogError> {
        if let Some(dir) = spec.path.parent() {
            fs::create_dir_all(dir)
                .map_err(|source| LogError::CreateDir { path: dir.to_owned(), source })?;
        }
        let (file, size) = open_append(&spec.path)?;
        Ok(LogWriter {
            path: spec.path.clone(),
            max_size: spec.max_size.max(1),
            max_files: spec.max_files.max(1),
            file,
            size,
        })
    }

    /// Writes one record with the current time.
    pub fn write(&mut self, stream: Stream, partial: bool, text: &[u8]) -> Result<(), LogError> {
        let rec = format_record(jiff::Timestamp::now(), stream, partial, text);
        if self.size > 0 && self.size + rec.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file
            .write_all(&rec)
            .map_err(|source| LogError::Write { path: self.path.clone(), source })?;
        self.size += rec.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        let rot = |path: PathBuf, source| LogError::Rotate { path, source };
        if self.max_files > 1 {
            let oldest = rotated_path(&self.path, self.max_files - 1);
            match fs::remove_file(&oldest) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(rot(oldest, e)),
            }
            for n in (1..self.max_files - 1).rev() {
                let from = rotated_path(&self.path, n);
                match fs::rename(&from, rotated_path(&self.path, n + 1)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(rot(from, e)),
                }
            }
            fs::rename(&self.path, rotated_path(&self.path, 1))
                .map_err(|e| rot(self.path.clone(), e))?;
        } else {
            fs::remove_file(&self.path).map_err(|e| rot(self.path.clone(), e))?;
        }
        let (file, size) = open_append(&self.path)?;
        self.file = file;
        self.size = size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_emits_lines_and_pieces() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"a\nb"), vec![(false, b"a".to_vec())]);
        assert_eq!(s.push(b"c\n"), vec![(false, b"bc".to_vec())]);
        let long = vec![b'x'; MAX_LINE + 5];
        let out = s.push(&long);
        assert_eq!(out, vec![(true, vec![b'x'; MAX_LINE])]);
        assert_eq!(s.finish(), Some((false, vec![b'x'; 5])));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn record_format_is_cri() {
        let ts: jiff::Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        let rec = format_record(ts, Stream::Stderr, false, b"hi there");
        assert_eq!(
            String::from_utf8(rec).unwrap(),
            "2026-01-02T03:04:05.000000000Z stderr F hi there\n"
        );
    }

    #[test]
    fn writer_rotates_and_keeps_max_files() {
        let dir = std::env::temp_dir().join(format!("rauha-shim-logtest-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let spec = LogSpec { path: dir.join("c.log"), max_size: 200, max_files: 3 };
        let mut w = LogWriter::open(&spec).unwrap();
        for i in 0..40 {
            w.write(Stream::Stdout, false, format!("line {i}").as_bytes()).unwrap();
        }
        assert!(spec.path.exists());
        assert!(rotated_path(&spec.path, 1).exists());
        assert!(rotated_path(&spec.path, 2).exists());
        assert!(!rotated_path(&spec.path, 3).exists());
        for p in [spec.path.clone(), rotated_path(&spec.path, 1), rotated_path(&spec.path, 2)] {
            assert!(fs::metadata(&p).unwrap().len() <= 200);
        }
        let current = fs::read_to_string(&spec.path).unwrap();
        assert!(current.ends_with("stdout F line 39\n"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
