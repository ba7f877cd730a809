//! Hostile-input-safe layer unpacking into overlayfs-ready directories.
//!
//! Every path is cleaned lexically (`..` clamps at the layer root, as containerd does) and then
//! resolved by the kernel with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` relative to a
//! dirfd of the layer root, so symlinks planted by earlier entries also resolve inside the layer.
//! Objects are created with `*at` calls on the resolved parent dirfd with a plain final name and
//! `O_NOFOLLOW`/`O_EXCL`, so nothing outside the layer directory can be reached.
//! OCI whiteouts `.wh.<name>` become overlayfs whiteouts (char device 0:0) and `.wh..wh..opq`
//! becomes `trusted.overlay.opaque=y` on the directory.
//! Ownership is applied only as root; `trusted.*` xattrs need CAP_SYS_ADMIN, so layers with
//! opaque directories unpack only as root (rootless would need `user.overlay.opaque` and the
//! `userxattr` mount option). Layer-supplied `trusted.overlay.*` xattrs are dropped: a layer
//! must not forge overlay metadata. Symlinks keep ownership and mtime but not xattrs.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, sync_channel};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, Timespec, Timestamps,
    XattrFlags,
};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};

use crate::image::error::ImageError;
use crate::image::store::{ContentStore, sync_dir};

/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// What one unpack did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries applied.
    pub entries: u64,
    /// Uncompressed tar bytes read.
    pub bytes: u64,
    /// `sha256:` of the uncompressed stream (the layer's diff id).
    pub diff_id: String,
}

const CHUNK: usize = 256 << 10;
const OPAQUE: &[u8] = b".wh..wh..opq";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";

/// Picks the decompressor: magic bytes win, the media type decides otherwise.
pub fn detect_compression(media_type: &str, magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if media_type.ends_with("gzip") {
        Compression::Gzip
    } else if media_type.ends_with("zstd") {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Makes sure layer `diff_id` is unpacked from blob `blob_digest` and returns its directory.
///
/// Unpacks into `tmp/`, checks the diff id, syncs the file system and renames the directory
/// into `layers/<hex>` only then, so a crash never leaves a half layer that looks complete.
pub fn ensure_layer(
    store: &ContentStore,
    blob_digest: &str,
    media_type: &str,
    diff_id: &str,
) -> Result<PathBuf, ImageError> {
    let hex = crate::image::reference::validate_digest(diff_id)?;
    let dest = store.layers_dir().join(hex);
    if dest.is_dir() {
        return Ok(dest);
    }
    let blob = store.blob_path(blob_digest)?;
    let tmp = store.tmp_path("layer");
    std::fs::create_dir(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
    let result = (|| {
        let stats = unpack_file(&blob, media_type, &tmp, diff_id)?;
        if stats.diff_id != diff_id {
            return Err(ImageError::DigestMismatch {
                digest: diff_id.to_string(),
                actual: stats.diff_id,
                origin: format!("layer blob {blob_digest}"),
            });
        }
        let fd =
            rfs::open(&tmp, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| ImageError::io(&tmp, e.into()))?;
        // One syncfs instead of an fsync per file: everything must be durable before the rename
        // makes the layer visible as complete.
        rfs::syncfs(&fd).map_err(|e| ImageError::io(&tmp, e.into()))?;
        match rfs::renameat_with(rfs::CWD, &tmp, rfs::CWD, &dest, RenameFlags::NOREPLACE) {
            // Another unpack of the same layer won the race; its copy is equivalent.
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(ImageError::io(&dest, e.into())),
        }
    })();
    if tmp.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result?;
    sync_dir(store.layers_dir())?;
    Ok(dest)
}

/// Unpacks a layer blob file (compression detected by magic, else media type) into `dest`.
pub fn unpack_file(
    blob: &Path,
    media_type: &str,
    dest: &Path,
    layer: &str,
) -> Result<UnpackStats, ImageError> {
    let mut f = File::open(blob).map_err(|e| ImageError::io(blob, e))?;
    let mut magic = [0u8; 4];
    let n = read_full(&mut f, &mut magic).map_err(|e| ImageError::io(blob, e))?;
    f.seek(SeekFrom::Start(0)).map_err(|e| ImageError::io(blob, e))?;
    let comp = detect_compression(media_type, &magic[..n]);
    unpack_stream(f, comp, dest, layer)
}

/// Unpacks a (compressed) tar stream into the existing directory `dest`.
///
/// Decompression and hashing run on a second thread feeding the extractor, the way
/// `tar -xzf` pipes through a separate gzip process.
pub fn unpack_stream<R: Read + Send>(
    input: R,
    comp: Compression,
    dest: &Path,
    layer: &str,
) -> Result<UnpackStats, ImageError> {
    let root = rfs::open(dest, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| ImageError::io(dest, e.into()))?;
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(16);
        let producer = s.spawn(move || -> (String, u64) {
            let mut hasher = Sha256::new();
            let mut total = 0u64;
            let mut dec: Box<dyn Read> = match comp {
                Compression::None => Box::new(input),
                Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
                    io::BufReader::with_capacity(CHUNK, input),
                )),
                Compression::Zstd => match zstd::stream::read::Decoder::new(input) {
                    Ok(d) => Box::new(d),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return (String::new(), 0);
                    }
                },
            };
            loop {
                let mut buf = vec![0u8; CHUNK];
                match read_full(&mut dec, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        hasher.update(&buf);
                        total += n as u64;
                        if tx.send(Ok(buf)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            }
            (format!("sha256:{}", hex::encode(hasher.finalize())), total)
        });
        let reader = ChannelReader { rx, cur: Vec::new(), pos: 0 };
        let extracted = extract(reader, root, layer);
        let joined = producer.join();
        let (entries, _reader) = extracted?;
        let (diff_id, bytes) = joined.map_err(|_| ImageError::TarStream {
            layer: layer.to_string(),
            source: io::Error::other("decompression thread panicked"),
        })?;
        Ok(UnpackStats { entries, bytes, diff_id })
    })
}

/// Reads until `buf` is full or EOF.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(buf)) => {
                    self.cur = buf;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Applies every entry, then drains the stream (so the diff id covers trailing padding).
fn extract<R: Read>(reader: R, root: OwnedFd, layer: &str) -> Result<(u64, R), ImageError> {
    let mut ex = Extractor {
        root: Rc::new(root),
        layer,
        chown: rustix::process::geteuid().is_root(),
        cache: None,
        dir_times: Vec::new(),
        buf: vec![0u8; CHUNK],
    };
    let stream_err = |source| ImageError::TarStream { layer: layer.to_string(), source };
    let mut ar = tar::Archive::new(reader);
    let mut count = 0u64;
    for entry in ar.entries().map_err(stream_err)? {
        let mut entry = entry.map_err(stream_err)?;
        ex.entry(&mut entry)?;
        count += 1;
    }
    ex.finish_dirs()?;
    let mut reader = ar.into_inner();
    io::copy(&mut reader, &mut io::sink()).map_err(stream_err)?;
    Ok((count, reader))
}

struct Extractor<'a> {
    root: Rc<OwnedFd>,
    layer: &'a str,
    /// Ownership is applied only when we may (root); rootless keeps our own ids.
    chown: bool,
    /// Last resolved parent directory: consecutive entries usually share it.
    cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
    /// Directory mtimes, applied last because creating children changes them.
    dir_times: Vec<(Vec<u8>, i64)>,
    buf: Vec<u8>,
}

/// Lexically cleaned path components; `..` clamps at the root.
fn clean(p: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    for c in p.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            n => out.push(n),
        }
    }
    out
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn join(c: &[&[u8]]) -> Vec<u8> {
    c.join(&b'/')
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

impl Extractor<'_> {
    fn err(&self, entry: &[u8], source: impl Into<io::Error>) -> ImageError {
        ImageError::Unpack {
            layer: self.layer.to_string(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            source: source.into(),
        }
    }

    fn unsafe_entry(&self, entry: &[u8], reason: &str) -> ImageError {
        ImageError::UnsafeEntry {
            layer: self.layer.to_string(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.to_string(),
        }
    }

    /// openat2 under the layer root.
    fn open_in_root(&self, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
        let path: &[u8] = if path.is_empty() { b"." } else { path };
        loop {
            match rfs::openat2(
                &*self.root,
                os(path),
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                resolve_flags(),
            ) {
                // EAGAIN: a concurrent rename raced the lookup; nothing else renames here.
                Err(Errno::AGAIN) => continue,
                r => return r,
            }
        }
    }

    /// The directory `comps` (resolved in root), creating missing components as 0755 dirs.
    fn parent_dir(&mut self, comps: &[&[u8]]) -> Result<Rc<OwnedFd>, Errno> {
        if comps.is_empty() {
            return Ok(self.root.clone());
        }
        let key = join(comps);
        if let Some((k, fd)) = &self.cache {
            if *k == key {
                return Ok(fd.clone());
            }
        }
        let fd = match self.open_in_root(&key, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                let mut cur: Option<OwnedFd> = None;
                for i in 0..comps.len() {
                    let prefix = join(&comps[..=i]);
                    let fd = match self.open_in_root(&prefix, OFlags::PATH | OFlags::DIRECTORY) {
                        Ok(fd) => fd,
                        Err(Errno::NOENT) => {
                            let at: &OwnedFd = cur.as_ref().unwrap_or(&self.root);
                            match rfs::mkdirat(at, os(comps[i]), Mode::from_raw_mode(0o755)) {
                                Ok(()) | Err(Errno::EXIST) => {}
                                Err(e) => return Err(e),
                            }
                            self.open_in_root(&prefix, OFlags::PATH | OFlags::DIRECTORY)?
                        }
                        Err(e) => return Err(e),
                    };
                    cur = Some(fd);
                }
                cur.ok_or(Errno::NOENT)?
            }
            Err(e) => return Err(e),
        };
        let fd = Rc::new(fd);
        self.cache = Some((key, fd.clone()));
        Ok(fd)
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw = e.path_bytes().into_owned();
        let comps = clean(&raw);
        let kind = e.header().entry_type();
        let Some((&name, parent)) = comps.split_last() else {
            // The layer root itself ("./"): only a directory entry may touch it.
            if kind.is_dir() {
                let root = self.root.clone();
                self.apply_meta(root.as_fd(), e, &raw)?;
                self.dir_times.push((Vec::new(), e.header().mtime().unwrap_or(0) as i64));
            }
            return Ok(());
        };
        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(&raw, parent, name, target);
        }
        let pfd = self.parent_dir(parent).map_err(|er| self.err(&raw, er))?;
        let h = e.header();
        let mode = h.mode().map_err(|er| self.err(&raw, er))? & 0o7777;
        match kind {
            tar::EntryType::Directory => {
                match rfs::mkdirat(&*pfd, os(name), Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let st = rfs::statat(&*pfd, os(name), AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(|er| self.err(&raw, er))?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            self.replace(&pfd, name, &raw)?;
                            rfs::mkdirat(&*pfd, os(name), Mode::from_raw_mode(0o700))
                                .map_err(|er| self.err(&raw, er))?;
                        }
                    }
                    Err(er) => return Err(self.err(&raw, er)),
                }
                let fd = rfs::openat(
                    &*pfd,
                    os(name),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|er| self.err(&raw, er))?;
                self.apply_meta(fd.as_fd(), e, &raw)?;
                let mtime = e.header().mtime().unwrap_or(0) as i64;
                self.dir_times.push((join(&comps), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd = match rfs::openat(&*pfd, os(name), flags, Mode::from_raw_mode(0o600)) {
                    Err(Errno::EXIST) => {
                        self.replace(&pfd, name, &raw)?;
                        rfs::openat(&*pfd, os(name), flags, Mode::from_raw_mode(0o600))
                    }
                    r => r,
                }
                .map_err(|er| self.err(&raw, er))?;
                let mut file = File::from(fd);
                loop {
                    let n = match e.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(er) if er.kind() == io::ErrorKind::Interrupted => continue,
                        Err(er) => {
                            return Err(ImageError::TarStream {
                                layer: self.layer.to_string(),
                                source: er,
                            });
                        }
                    };
                    file.write_all(&self.buf[..n]).map_err(|er| self.err(&raw, er))?;
                }
                self.apply_meta(file.as_fd(), e, &raw)?;
                let mtime = e.header().mtime().unwrap_or(0) as i64;
                rfs::futimens(&file, &times(mtime)).map_err(|er| self.err(&raw, er))?;
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_entry(&raw, "symlink without target"))?
                    .into_owned();
                // The target is stored verbatim; it is only ever followed inside the root.
                match rfs::symlinkat(os(&target), &*pfd, os(name)) {
                    Err(Errno::EXIST) => {
                        self.replace(&pfd, name, &raw)?;
                        rfs::symlinkat(os(&target), &*pfd, os(name))
                    }
                    r => r,
                }
                .map_err(|er| self.err(&raw, er))?;
                self.chown_at(&pfd, name, e, &raw)?;
                let mtime = e.header().mtime().unwrap_or(0) as i64;
                rfs::utimensat(&*pfd, os(name), &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|er| self.err(&raw, er))?;
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_entry(&raw, "hard link without target"))?
                    .into_owned();
                let tcomps = clean(&target);
                let Some((&tname, tparent)) = tcomps.split_last() else {
                    return Err(self.unsafe_entry(&raw, "hard link to the layer root"));
                };
                if tcomps == comps {
                    return Ok(());
                }
                let tdir = self
                    .open_in_root(&join(tparent), OFlags::PATH | OFlags::DIRECTORY)
                    .map_err(|er| self.err(&raw, er))?;
                // No AT_SYMLINK_FOLLOW: a symlink target is linked as the symlink itself.
                match rfs::linkat(&tdir, os(tname), &*pfd, os(name), AtFlags::empty()) {
                    Err(Errno::EXIST) => {
                        self.replace(&pfd, name, &raw)?;
                        rfs::linkat(&tdir, os(tname), &*pfd, os(name), AtFlags::empty())
                    }
                    r => r,
                }
                .map_err(|er| self.err(&raw, er))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let dev = rfs::makedev(major, minor);
                let perm = Mode::from_raw_mode(mode & 0o777);
                match rfs::mknodat(&*pfd, os(name), ft, perm, dev) {
                    Err(Errno::EXIST) => {
                        self.replace(&pfd, name, &raw)?;
                        rfs::mknodat(&*pfd, os(name), ft, perm, dev)
                    }
                    // Without CAP_MKNOD (rootless) device nodes cannot exist; runtimes bind
                    // /dev anyway.
                    Err(Errno::PERM) if !self.chown && ft != FileType::Fifo => {
                        tracing::warn!(layer = self.layer, entry = %String::from_utf8_lossy(&raw), "skipping device node: no CAP_MKNOD");
                        return Ok(());
                    }
                    r => r,
                }
                .map_err(|er| self.err(&raw, er))?;
                self.chown_at(&pfd, name, e, &raw)?;
                // Set after chown, which clears setuid/setgid bits; we just created a node
                // (not a symlink) in a directory only we write, so following is harmless.
                rfs::chmodat(&*pfd, os(name), Mode::from_raw_mode(mode), AtFlags::empty())
                    .map_err(|er| self.err(&raw, er))?;
            }
            other => {
                tracing::debug!(layer = self.layer, ?other, "skipping tar entry type");
            }
        }
        Ok(())
    }

    /// `.wh..wh..opq` marks the parent opaque; `.wh.<name>` becomes a 0:0 char device.
    fn whiteout(
        &mut self,
        raw: &[u8],
        parent: &[&[u8]],
        name: &[u8],
        target: &[u8],
    ) -> Result<(), ImageError> {
        if name == OPAQUE {
            // O_PATH fds refuse xattrs, so open the directory for reading.
            let pdir = self.parent_dir(parent).map_err(|er| self.err(raw, er))?;
            let dir = rfs::openat(
                &*pdir,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|er| self.err(raw, er))?;
            rfs::fsetxattr(&dir, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                .map_err(|er| self.err(raw, er))?;
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(self.unsafe_entry(raw, "whiteout names no entry"));
        }
        if target.starts_with(WHITEOUT_PREFIX) {
            // aufs metadata (.wh..wh.plnk, .wh..wh.aufs) has no meaning for overlayfs.
            return Ok(());
        }
        let pfd = self.parent_dir(parent).map_err(|er| self.err(raw, er))?;
        self.replace(&pfd, target, raw)?;
        rfs::mknodat(
            &*pfd,
            os(target),
            FileType::CharacterDevice,
            Mode::empty(),
            rfs::makedev(0, 0),
        )
        .map_err(|er| self.err(raw, er))?;
        Ok(())
    }

    /// Removes whatever exists at `parent/name` (recursively for directories).
    fn replace(&mut self, parent: &OwnedFd, name: &[u8], raw: &[u8]) -> Result<(), ImageError> {
        // The removed object may be a cached parent; forget the cache.
        self.cache = None;
        remove_at(parent.as_fd(), os(name)).map_err(|er| self.err(raw, er))
    }

    fn chown_at(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        e: &tar::Entry<'_, impl Read>,
        raw: &[u8],
    ) -> Result<(), ImageError> {
        if !self.chown {
            return Ok(());
        }
        let (uid, gid) = ids(e.header()).map_err(|er| self.err(raw, er))?;
        rfs::chownat(parent, os(name), Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|er| self.err(raw, er))
    }

    /// Ownership, then mode (chown clears setuid), then xattrs.
    fn apply_meta(
        &self,
        fd: BorrowedFd<'_>,
        e: &mut tar::Entry<'_, impl Read>,
        raw: &[u8],
    ) -> Result<(), ImageError> {
        let h = e.header();
        if self.chown {
            let (uid, gid) = ids(h).map_err(|er| self.err(raw, er))?;
            rfs::fchown(fd, Some(uid), Some(gid)).map_err(|er| self.err(raw, er))?;
        }
        let mode = h.mode().map_err(|er| self.err(raw, er))? & 0o7777;
        rfs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(|er| self.err(raw, er))?;
        let Some(pax) = e.pax_extensions().map_err(|er| self.err(raw, er))? else {
            return Ok(());
        };
        for ext in pax {
            let ext = ext.map_err(|er| self.err(raw, er))?;
            let Ok(key) = ext.key() else { continue };
            let Some(xname) = key.strip_prefix("SCHILY.xattr.") else {
                continue;
            };
            // A layer must not forge overlayfs metadata (opaque, redirect, metacopy).
            if xname.starts_with(OVERLAY_XATTR_PREFIX) {
                tracing::warn!(layer = self.layer, xattr = xname, "dropping overlay xattr");
                continue;
            }
            match rfs::fsetxattr(fd, xname, ext.value_bytes(), XattrFlags::empty()) {
                Ok(()) | Err(Errno::NOTSUP) => {}
                Err(er) => return Err(self.err(raw, er)),
            }
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<(), ImageError> {
        let dirs = std::mem::take(&mut self.dir_times);
        for (path, mtime) in dirs.iter().rev() {
            // A later entry may have replaced the directory; then there is nothing to date.
            let Ok(fd) = self.open_in_root(path, OFlags::RDONLY | OFlags::DIRECTORY) else {
                continue;
            };
            rfs::futimens(&fd, &times(*mtime)).map_err(|er| self.err(path, er))?;
        }
        Ok(())
    }
}

fn ids(h: &tar::Header) -> io::Result<(rustix::fs::Uid, rustix::fs::Gid)> {
    let uid = u32::try_from(h.uid()?).map_err(|_| io::Error::other("uid out of range"))?;
    let gid = u32::try_from(h.gid()?).map_err(|_| io::Error::other("gid out of range"))?;
    Ok((rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid)))
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

/// Removes `name` in `dir` without following symlinks; directories recursively.
fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return rfs::unlinkat(dir, name, AtFlags::empty());
    }
    let sub = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for ent in rfs::Dir::read_from(&sub)? {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    for n in names {
        remove_at(sub.as_fd(), os(&n))?;
    }
    rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_detection() {
        let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
        assert_eq!(detect_compression(gz, b"\x1f\x8b\x08\x00"), Compression::Gzip);
        // Magic wins over a wrong media type.
        assert_eq!(detect_compression(gz, b"\x28\xb5\x2f\xfd"), Compression::Zstd);
        assert_eq!(detect_compression(gz, b"bin/"), Compression::Gzip);
        assert_eq!(
            detect_compression("application/vnd.oci.image.layer.v1.tar", b"bin/"),
            Compression::None
        );
    }

    #[test]
    fn clean_clamps_at_root() {
        assert_eq!(clean(b"../../a/./b//c/.."), vec![&b"a"[..], b"b"]);
        assert_eq!(clean(b"/etc/passwd"), vec![&b"etc"[..], b"passwd"]);
        assert!(clean(b"./").is_empty());
        assert!(clean(b"a/../..").is_empty());
    }
}
