//! Safe unpacking of a tar.zst or tar.gz archive into an empty directory.
//!
//! The archive is untrusted: every entry is checked before anything is
//! written, and nothing is ever written outside DEST. The rules:
//!
//! - names are plain relative paths: no `..`, not absolute, UTF-8;
//! - each path appears once;
//! - only files, directories, symlinks and hardlinks (no devices or fifos);
//! - no entry is written through a symlink of the archive, and symlinks are
//!   created last, after every check and every other write, each one
//!   resolved against the final layout (through the archive's other
//!   symlinks) and refused if it leads outside DEST;
//! - a hardlink names an earlier regular file of the archive.
//!
//! Content is hashed as it is written, so the caller gets a [`Manifest`] of
//! what is on disk without reading it back. Decompression runs on the
//! calling thread and file writes on a second one, so the two overlap.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::manifest::{EntryKind, Manifest, ManifestEntry};

/// Compression of an archive, told by its first bytes (never its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Gzip,
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Files up to this size are read whole and written by a writer thread;
/// larger ones are streamed by the reader so memory stays bounded.
const BUFFERED_MAX: u64 = 4 << 20;
/// Jobs queued for the writer threads at most (each at most `BUFFERED_MAX`).
const QUEUE: usize = 64;
/// Writer threads. Creating files is kernel work that dominates unpacking
/// many small files; two writers keep both cores busy while the reader
/// decompresses and hashes.
const WRITERS: usize = 2;

pub fn detect(archive: &Path) -> Result<Compression> {
    let mut head = [0u8; 4];
    let mut f =
        File::open(archive).with_context(|| format!("{}: cannot open", archive.display()))?;
    let n = read_up_to(&mut f, &mut head)
        .with_context(|| format!("{}: cannot read", archive.display()))?;
    compression_of(&head[..n], archive)
}

/// The compression named by an archive's first (up to four) bytes.
pub fn compression_of(head: &[u8], archive: &Path) -> Result<Compression> {
    if head.len() >= 4 && head[..4] == ZSTD_MAGIC {
        Ok(Compression::Zstd)
    } else if head.len() >= 2 && head[..2] == GZIP_MAGIC {
        Ok(Compression::Gzip)
    } else if head.is_empty() {
        bail!("{}: empty, not an archive", archive.display())
    } else {
        bail!(
            "{}: not a tar.zst or tar.gz archive (unknown magic bytes)",
            archive.display()
        )
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct UnpackOptions {
    /// Keep symlinks that point outside DEST (absolute or `..` past it)
    /// instead of refusing the archive. Nothing is ever written through
    /// them: entries below any symlink stay refused, and symlinks are
    /// created after every other write.
    pub allow_external_symlinks: bool,
    /// Write modes as archived. By default setuid, setgid and sticky bits
    /// and group/world write are removed ([`safe_mode`]): an archive from
    /// elsewhere must not install a setuid program or a directory anyone
    /// can change when root installs it. Manifests keep the archived mode.
    pub keep_modes: bool,
    /// Leave symlinks that point outside DEST uncreated and report them
    /// (`Unpacked::skipped_symlinks`) instead of refusing the archive: the
    /// caller decides (a virtualenv's interpreter link is re-pointed at an
    /// interpreter of this machine). Ignored with `allow_external_symlinks`.
    pub skip_external_symlinks: bool,
}

/// Bits an install removes unless asked to keep them.
pub const UNSAFE_MODE_BITS: u32 = 0o7022;

/// `mode` without setuid, setgid, sticky and group/world write.
pub fn safe_mode(mode: u32) -> u32 {
    mode & !UNSAFE_MODE_BITS
}

/// What [`unpack_with`] wrote.
#[derive(Debug)]
pub struct Unpacked {
    pub manifest: Manifest,
    /// Symlinks kept although they point outside DEST: (path, target).
    pub external_symlinks: Vec<(String, String)>,
    /// Files and directories written with fewer mode bits than archived:
    /// (path, archived mode, written mode).
    pub stripped_modes: Vec<(String, u32, u32)>,
    /// Symlinks out of DEST left uncreated (`skip_external_symlinks`):
    /// (path, target).
    pub skipped_symlinks: Vec<(String, String)>,
}

/// Unpack `archive` into `dest`, an existing empty directory, refusing
/// every symlink that leads outside it. See [`unpack_with`].
pub fn unpack(archive: &Path, dest: &Path, progress: &dyn Fn(u64)) -> Result<Manifest> {
    Ok(unpack_with(archive, dest, UnpackOptions::default(), progress)?.manifest)
}

/// Unpack `archive` into `dest`, an existing empty directory. `progress`
/// is called with the compressed bytes read so far. Returns the manifest
/// of what was written. On error, `dest` may hold a partial tree (the
/// caller owns it and removes it); nothing outside it was touched.
pub fn unpack_with(
    archive: &Path,
    dest: &Path,
    opts: UnpackOptions,
    progress: &dyn Fn(u64),
) -> Result<Unpacked> {
    let file =
        File::open(archive).with_context(|| format!("{}: cannot open", archive.display()))?;
    unpack_reader(file, archive, dest, opts, progress)
}

/// [`unpack_with`] from any reader, in one pass: the magic bytes are read
/// from the same stream that is then decompressed, so a pipe, a FIFO or
/// `/dev/stdin` works. `archive` only names the input in errors.
pub fn unpack_reader<R: Read>(
    input: R,
    archive: &Path,
    dest: &Path,
    opts: UnpackOptions,
    progress: &dyn Fn(u64),
) -> Result<Unpacked> {
    let read = Arc::new(AtomicU64::new(0));
    let mut counting = Counting {
        inner: input,
        read: read.clone(),
    };
    let mut head = [0u8; 4];
    let n = read_up_to(&mut counting, &mut head)
        .with_context(|| format!("{}: cannot read", archive.display()))?;
    let compression = compression_of(&head[..n], archive)?;
    let stream = io::Cursor::new(head[..n].to_vec()).chain(counting);
    let buffered = BufReader::with_capacity(1 << 20, stream);
    let decoder: Box<dyn Read + '_> = match compression {
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .with_context(|| format!("{}: cannot start zstd decoder", archive.display()))?,
        ),
        // Multi-member, as gzip(1) reads; each member's CRC-32 and length
        // are checked by flate2 when the member ends, which `run` makes
        // sure is reached by reading the stream to its end.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
    };
    unpack_decoded(decoder, archive, dest, opts, &|| {
        progress(read.load(Ordering::Relaxed))
    })
}

/// Unpack an uncompressed tar stream (what the decoders yield; also the
/// fuzzing entry point).
pub fn unpack_decoded<'r>(
    decoder: Box<dyn Read + 'r>,
    archive: &Path,
    dest: &Path,
    opts: UnpackOptions,
    progress: &dyn Fn(),
) -> Result<Unpacked> {
    let mut unpacker = Unpacker::new(archive, dest);
    unpacker.keep_modes = opts.keep_modes;
    let result = unpacker.run(decoder, progress);
    // A writer's error (a full disk) comes first: it is why the reader
    // stopped, if it did.
    unpacker.finish_writers()?;
    result?;
    unpacker.finish(opts)
}

struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// What an entry is, as far as later entries are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// A directory created only because a later entry lives in it.
    ImplicitDir,
    Dir,
    File,
    Symlink,
    Hardlink,
}

struct FileJob {
    path: PathBuf,
    data: Vec<u8>,
    mode: u32,
    mtime: u64,
}

struct Unpacker<'a> {
    archive: &'a Path,
    dest: &'a Path,
    seen: HashMap<String, Seen>,
    /// Mode of each regular file, for the hardlinks that share it.
    file_modes: HashMap<String, u32>,
    keep_modes: bool,
    stripped: Vec<(String, u32, u32)>,
    /// In archive order; sha256 of files filled in when written.
    entries: Vec<ManifestEntry>,
    /// Symlinks to create at the end: (path, target).
    symlinks: Vec<(String, String)>,
    /// Hardlinks to create once every file is written: (path, target).
    hardlinks: Vec<(String, String)>,
    /// Directories' archived mtimes, set back once their content exists.
    dir_mtimes: Vec<(String, u64)>,
    jobs: Option<mpsc::SyncSender<FileJob>>,
    writers: Vec<std::thread::JoinHandle<Result<()>>>,
    /// The process umask: a file created with its mode needs no chmod
    /// unless the umask would strip bits from it.
    umask: u32,
}

impl<'a> Unpacker<'a> {
    fn new(archive: &'a Path, dest: &'a Path) -> Unpacker<'a> {
        let (tx, rx) = mpsc::sync_channel::<FileJob>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let umask = current_umask();
        let writers = (0..WRITERS)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || -> Result<()> {
                    loop {
                        // The lock is held only to take one job.
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return Ok(()),
                        };
                        let Ok(job) = job else { return Ok(()) };
                        write_file(&job.path, &job.data, job.mode, job.mtime, umask)?;
                    }
                })
            })
            .collect();
        Unpacker {
            archive,
            dest,
            seen: HashMap::new(),
            file_modes: HashMap::new(),
            keep_modes: false,
            stripped: Vec::new(),
            dir_mtimes: Vec::new(),
            entries: Vec::new(),
            symlinks: Vec::new(),
            hardlinks: Vec::new(),
            jobs: Some(tx),
            writers,
            umask,
        }
    }

    fn err(&self, entry: &str, msg: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("{}: {entry}: {msg}", self.archive.display())
    }

    fn run(&mut self, decoder: Box<dyn Read + '_>, progress: &dyn Fn()) -> Result<()> {
        let mut tar = tar::Archive::new(decoder);
        let entries = tar.entries().map_err(|e| self.corrupt(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.corrupt(e))?;
            self.entry(&mut entry)?;
            progress();
        }
        // The tar end marker is not the end of the stream: read on, so the
        // compressed stream's own checks (gzip CRC-32 and length, zstd
        // checksum) run, and refuse anything but the zero padding tar
        // writers add.
        let mut rest = tar.into_inner();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match rest.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.corrupt(e)),
            };
            if buf[..n].iter().any(|&b| b != 0) {
                bail!(
                    "{}: data after the end of the tar archive; refused (corrupt or tampered)",
                    self.archive.display()
                );
            }
        }
        Ok(())
    }

    fn corrupt(&self, e: io::Error) -> anyhow::Error {
        anyhow!(
            "{}: corrupt or truncated archive ({})",
            self.archive.display(),
            one_line(&e.to_string())
        )
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            return Ok(());
        }
        let path = clean_path(&raw).map_err(|e| self.err(&shown, e))?;
        let mode = entry.header().mode().map_err(|e| self.err(&shown, e))? & 0o7777;
        if path.is_empty() {
            // `./` itself: DEST is the caller's, its mode stays.
            if kind.is_dir() {
                return Ok(());
            }
            return Err(self.err(&shown, "names the destination directory itself"));
        }
        let seen = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => Seen::File,
            tar::EntryType::Directory => Seen::Dir,
            tar::EntryType::Symlink => Seen::Symlink,
            tar::EntryType::Link => Seen::Hardlink,
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(self.err(&path, "device node refused"));
            }
            tar::EntryType::Fifo => return Err(self.err(&path, "fifo refused")),
            other => {
                return Err(self.err(
                    &path,
                    format!(
                        "unsupported entry type {:?} refused",
                        other.as_byte() as char
                    ),
                ))
            }
        };
        self.claim(&path, seen)?;
        let abs = self.dest.join(&path);
        match seen {
            Seen::Dir => {
                if !abs.is_dir() {
                    fs::create_dir(&abs)
                        .map_err(|e| self.err(&path, format!("cannot create directory: {e}")))?;
                }
                self.dir_mtimes.push((path.clone(), entry_mtime(entry)));
                self.entries
                    .push(entry_of(&path, EntryKind::Dir, mode, 0, None));
                // Set in `finish`, from the entry.
                self.write_mode(&path, mode);
            }
            Seen::File => {
                let size = entry.header().size().map_err(|e| self.err(&path, e))?;
                let mtime = entry_mtime(entry);
                let index = self.entries.len();
                self.file_modes.insert(path.clone(), mode);
                self.entries
                    .push(entry_of(&path, EntryKind::File, mode, size, None));
                let mode = self.write_mode(&path, mode);
                if size <= BUFFERED_MAX {
                    let mut data = Vec::with_capacity(size as usize);
                    entry
                        .read_to_end(&mut data)
                        .map_err(|e| self.err(&path, format!("truncated or corrupt data ({e})")))?;
                    // Hashed here, so the writers do nothing but write.
                    self.entries[index].sha256 = Some(crate::manifest::sha256_hex(&data));
                    let job = FileJob {
                        path: abs,
                        data,
                        mode,
                        mtime,
                    };
                    let sent = self.jobs.as_ref().map(|tx| tx.send(job).is_ok());
                    if sent != Some(true) {
                        // A writer stopped on an error; finish_writers reports it.
                        bail!("{}: writing stopped", self.archive.display());
                    }
                } else {
                    let sha = stream_file(&abs, entry, mode, mtime, self.umask)
                        .map_err(|e| self.err(&path, format!("{e:#}")))?;
                    self.entries[index].sha256 = Some(sha);
                }
            }
            Seen::Symlink | Seen::Hardlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.err(&path, "link without a target"))?
                    .into_owned();
                let target = String::from_utf8(target)
                    .map_err(|_| self.err(&path, "link target is not UTF-8"))?;
                if seen == Seen::Symlink {
                    if target.is_empty() || target.contains('\0') {
                        return Err(self.err(&path, "empty symlink target"));
                    }
                    let size = target.len() as u64;
                    self.entries.push(entry_of(
                        &path,
                        EntryKind::Symlink,
                        0o777,
                        size,
                        Some(target.clone()),
                    ));
                    self.symlinks.push((path, target));
                } else {
                    let t = clean_path(target.as_bytes())
                        .map_err(|e| self.err(&path, format!("hardlink target {target:?}: {e}")))?;
                    if self.seen.get(&t) != Some(&Seen::File) {
                        return Err(self.err(
                            &path,
                            format!("hardlink to {target:?}, which is not an earlier file of the archive"),
                        ));
                    }
                    let m = self.file_modes.get(&t).copied().unwrap_or(mode);
                    self.entries
                        .push(entry_of(&path, EntryKind::Hardlink, m, 0, Some(t.clone())));
                    self.hardlinks.push((path, t));
                }
            }
            Seen::ImplicitDir => unreachable!("never an entry's own kind"),
        }
        Ok(())
    }

    /// Record `path` as `kind`, refusing duplicates and paths below
    /// anything but a directory; create missing parent directories.
    fn claim(&mut self, path: &str, kind: Seen) -> Result<()> {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let parent = &path[..at + i];
            match self.seen.get(parent) {
                Some(Seen::Dir | Seen::ImplicitDir) => {}
                Some(Seen::Symlink) => {
                    return Err(self.err(
                        path,
                        format!(
                            "would be written through the archive's symlink {parent:?}; refused"
                        ),
                    ))
                }
                Some(_) => {
                    return Err(self.err(path, format!("parent {parent:?} is not a directory")))
                }
                None => {
                    let abs = self.dest.join(parent);
                    fs::create_dir(&abs).map_err(|e| {
                        self.err(path, format!("cannot create directory {parent:?}: {e}"))
                    })?;
                    self.seen.insert(parent.to_string(), Seen::ImplicitDir);
                    self.entries
                        .push(entry_of(parent, EntryKind::Dir, 0o755, 0, None));
                }
            }
            at += i + 1;
        }
        match self.seen.get(path) {
            None => {}
            Some(Seen::ImplicitDir) if kind == Seen::Dir => {
                // Listed after its contents: the explicit entry wins.
                self.entries.retain(|e| e.path != path);
            }
            Some(Seen::ImplicitDir) => {
                return Err(self.err(path, "already a directory of earlier entries; refused"))
            }
            Some(_) => return Err(self.err(path, "duplicate entry refused")),
        }
        self.seen.insert(path.to_string(), kind);
        Ok(())
    }

    /// Close the job queue and wait for the writers.
    fn finish_writers(&mut self) -> Result<()> {
        drop(self.jobs.take());
        let mut first = Ok(());
        for handle in self.writers.drain(..) {
            let r = handle
                .join()
                .map_err(|_| anyhow!("{}: writer thread failed", self.archive.display()))
                .and_then(|r| r);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// The mode to write for an entry archived with `mode`; a stripped
    /// one is recorded for the report.
    fn write_mode(&mut self, path: &str, mode: u32) -> u32 {
        if self.keep_modes {
            return mode;
        }
        let safe = safe_mode(mode);
        if safe != mode {
            self.stripped.push((path.to_string(), mode, safe));
        }
        safe
    }

    /// Hardlinks, directory modes, then the checked symlinks.
    fn finish(mut self, opts: UnpackOptions) -> Result<Unpacked> {
        for (path, target) in &self.hardlinks {
            fs::hard_link(self.dest.join(target), self.dest.join(path))
                .map_err(|e| self.err(path, format!("cannot create hardlink: {e}")))?;
        }
        // Every symlink is checked before any is created, so a link that
        // only escapes through a later one is caught too.
        let table: HashMap<&str, &str> = self
            .symlinks
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let mut external = Vec::new();
        let mut skipped: Vec<(String, String)> = Vec::new();
        for (path, target) in &self.symlinks {
            match resolve_inside(path, target, &table) {
                Ok(()) => {}
                Err(Escape::Outside(_)) if opts.allow_external_symlinks => {
                    external.push((path.clone(), target.clone()));
                }
                Err(Escape::Outside(_)) if opts.skip_external_symlinks => {
                    skipped.push((path.clone(), target.clone()));
                }
                Err(Escape::Outside(why)) => {
                    return Err(self.err(
                        path,
                        format!("symlink to {target:?} {why}; refused (allow links out of the tree, like a virtualenv's interpreter, with --allow-external-symlinks)"),
                    ))
                }
                Err(Escape::Loop) => {
                    return Err(self.err(
                        path,
                        format!("symlink to {target:?} loops through too many symlinks; refused"),
                    ))
                }
            }
        }
        // Deepest first, so a read-only directory is closed after its
        // children got their modes.
        let mut dirs: Vec<&ManifestEntry> = self
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .collect();
        dirs.sort_by(|a, b| b.path.cmp(&a.path));
        for (path, target) in &self.symlinks {
            if skipped.iter().any(|(p, _)| p == path) {
                continue;
            }
            std::os::unix::fs::symlink(target, self.dest.join(path))
                .map_err(|e| self.err(path, format!("cannot create symlink: {e}")))?;
        }
        // mkdir gave every directory 0o777 minus the umask already.
        let created = 0o777 & !self.umask;
        let keep = self.keep_modes;
        let mode_of = |d: &ManifestEntry| if keep { d.mode } else { safe_mode(d.mode) };
        for d in dirs.into_iter().filter(|d| mode_of(d) != created) {
            fs::set_permissions(
                self.dest.join(&d.path),
                fs::Permissions::from_mode(mode_of(d)),
            )
            .map_err(|e| self.err(&d.path, format!("cannot set mode: {e}")))?;
        }
        // Last, deepest first, as tar does: creating a directory's content
        // changed its mtime, and the import index (a frozen tree's
        // .bbrun/index) trusts a directory only while its mtime is the
        // packed one. Best effort: a wrong mtime only costs speed.
        self.dir_mtimes.sort_by(|a, b| b.0.cmp(&a.0));
        for (path, mtime) in &self.dir_mtimes {
            set_mtime(&self.dest.join(path), *mtime);
        }
        let entries = std::mem::take(&mut self.entries);
        Ok(Unpacked {
            manifest: Manifest::from_entries(entries),
            external_symlinks: external,
            stripped_modes: std::mem::take(&mut self.stripped),
            skipped_symlinks: skipped,
        })
    }
}

/// Set a directory's mtime (and atime) to `secs`, following no symlink.
fn set_mtime(path: &Path, secs: u64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: a valid NUL-terminated path and two timespecs.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            [t, t].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        );
    }
}

fn entry_of(
    path: &str,
    kind: EntryKind,
    mode: u32,
    size: u64,
    target: Option<String>,
) -> ManifestEntry {
    ManifestEntry {
        path: path.to_string(),
        kind,
        mode,
        size,
        sha256: None,
        target,
    }
}

/// Create `path` (never existing before: duplicates are refused, and
/// `O_CREAT|O_EXCL` never follows a symlink anyway), write, set mode and
/// mtime; return the content's sha256.
fn write_file(path: &Path, data: &[u8], mode: u32, mtime: u64, umask: u32) -> Result<()> {
    let mut f = create(path, mode)?;
    f.write_all(data)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    finish_file(&f, path, mode, mtime, umask)
}

fn stream_file(
    path: &Path,
    src: &mut impl Read,
    mode: u32,
    mtime: u64,
    umask: u32,
) -> Result<String> {
    let mut f = create(path, mode)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src
            .read(&mut buf)
            .map_err(|e| anyhow!("truncated or corrupt data ({})", one_line(&e.to_string())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        f.write_all(&buf[..n])
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    finish_file(&f, path, mode, mtime, umask)?;
    Ok(crate::manifest::hex(&hasher.finalize()))
}

fn create(path: &Path, mode: u32) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o777)
        .open(path)
        .with_context(|| format!("{}: cannot create", path.display()))
}

/// An entry's mtime in whole seconds: the PAX `mtime` record when there is
/// one (POSIX-format archives, Python's tarfile), else the header field.
/// The header field of a PAX archive may be rounded (tarfile rounds
/// 458.6 up to 459); a `.pyc` records the source's truncated seconds, so
/// only the PAX value, truncated, keeps byte-compiled modules valid.
fn entry_mtime<R: Read>(entry: &mut tar::Entry<'_, R>) -> u64 {
    let header = entry.header().mtime().unwrap_or(0);
    let Ok(Some(pax)) = entry.pax_extensions() else {
        return header;
    };
    for ext in pax.flatten() {
        if ext.key() == Ok("mtime") {
            if let Some(secs) = ext
                .value()
                .ok()
                .and_then(|v| v.split('.').next())
                .and_then(|v| v.parse::<u64>().ok())
            {
                return secs;
            }
        }
    }
    header
}

fn finish_file(f: &File, path: &Path, mode: u32, mtime: u64, umask: u32) -> Result<()> {
    // Created with `mode`; only bits the umask took (or setuid, setgid,
    // sticky, which open ignores) need a chmod.
    if mode & 0o7000 != 0 || mode & umask != 0 {
        f.set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| format!("{}: cannot set mode", path.display()))?;
    }
    // Python compares a source's mtime with its cached bytecode: keep it.
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime))
        .with_context(|| format!("{}: cannot set mtime", path.display()))?;
    Ok(())
}

/// The process umask (set back at once; bbrun creates no files meanwhile).
fn current_umask() -> u32 {
    // SAFETY: umask cannot fail; the old value is restored right away.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old as u32
    }
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

#[path = "unpack_paths.rs"]
mod paths;
pub use paths::clean_path;
use paths::{resolve_inside, Escape};

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
