//! The unpacker: checks each entry of an untrusted archive against the
//! rules of [`super`] as it comes, queues small files for the writer
//! threads, and creates hardlinks and symlinks once every check is done.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use anyhow::{anyhow, bail, Result};

use super::files::{current_umask, entry_mtime, one_line, set_mtime, stream_file, write_file};
use super::paths::{clean_path, resolve_inside, Escape};
use super::{safe_mode, UnpackOptions, Unpacked, BUFFERED_MAX, QUEUE, WRITERS};
use crate::manifest::{EntryKind, Manifest, ManifestEntry};

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

pub(super) struct Unpacker<'a> {
    archive: &'a Path,
    dest: &'a Path,
    seen: HashMap<String, Seen>,
    /// Mode of each regular file, for the hardlinks that share it.
    file_modes: HashMap<String, u32>,
    pub(super) keep_modes: bool,
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
    pub(super) fn new(archive: &'a Path, dest: &'a Path) -> Unpacker<'a> {
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

    pub(super) fn run(&mut self, decoder: Box<dyn Read + '_>, progress: &dyn Fn()) -> Result<()> {
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
    pub(super) fn finish_writers(&mut self) -> Result<()> {
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
    pub(super) fn finish(mut self, opts: UnpackOptions) -> Result<Unpacked> {
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
