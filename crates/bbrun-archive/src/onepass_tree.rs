//! A `.tar.zst` of a tree written while the tree is still being listed.
//!
//! Listing a Plone tree (29k entries) is ~0.1-0.2 s of `stat`s, and tar
//! spends it while its compressor already runs; bbrun listed the whole
//! tree first (the archive is sorted, hardlinks go to their first name,
//! the manifest and the archive's timestamp need every entry), so those
//! 0.1-0.2 s were spent before the first byte. Here a listing thread walks
//! the tree in archive order ([`walk::walk_sorted`]) and hands entries over
//! as it reaches them; the writer ([`onepass_file::write_fed`]) tars,
//! hashes and compresses them as they come. What needs the whole list (the
//! manifest's reserve, the timestamp of the manifest's entry) is only
//! needed for the manifest's frame, written last.
//!
//! The archive is byte for byte the one [`onepass_file`] writes for the
//! [`PackSet`] of the same tree with the same entries left out (tested).

use std::fs::File;
use std::path::Path;
use std::sync::mpsc;

use anyhow::{anyhow, Result};

use crate::manifest::{EntryKind, Manifest, MANIFEST_PATH};
use crate::onepass_file::{self, StandIn};
use crate::packset::{PackEntry, PackSet, Progress};
use crate::tarball::Compression;
use crate::walk::{self, FirstNames, Found};

/// Entries handed to the writer at a time.
const BATCH: usize = 256;

/// What [`write_tree_to_file`] packed.
pub struct TreePack {
    /// Every entry packed (the manifest not among them), and the
    /// archive's timestamp.
    pub set: PackSet,
    pub manifest: Manifest,
}

/// Which listed entries go into the archive (`path`, `kind`); called once
/// per entry, in archive order, from the listing thread.
pub type Keep<'a> = &'a (dyn Fn(&str, EntryKind) -> bool + Sync);

/// Pack the tree at `root` (what `keep` keeps, never a manifest it holds)
/// with a fresh manifest as a zstd-compressed tar into `file` (empty, at
/// offset 0). `listed` is told the content bytes to come once the tree is
/// listed. gzip, which has no skippable frame to hold a reserve, lists
/// first and goes through [`onepass_file::write_with_manifest_to_file`].
pub fn write_tree_to_file(
    root: &Path,
    keep: Keep,
    compression: Compression,
    file: &mut File,
    progress: Progress,
    listed: &(dyn Fn(u64) + Sync),
) -> Result<TreePack> {
    // Read before anything is listed: a bad value is not the tree's fault.
    let clamp = crate::reproducible::source_date_epoch()?;
    if !matches!(compression, Compression::Zstd(_)) {
        let listed_set = PackSet::from_tree(root).map_err(|e| anyhow::Error::new(TreeFault(e)))?;
        let set = kept(listed_set, keep);
        listed(set.content_bytes());
        let manifest =
            onepass_file::write_with_manifest_to_file(&set, compression, file, progress)?;
        return Ok(TreePack { set, manifest });
    }
    std::thread::scope(|s| {
        let (entries_tx, entries_rx) = mpsc::channel::<Vec<PackEntry>>();
        let (listed_tx, listed_rx) = mpsc::sync_channel(1);
        let lister = s.spawn(move || {
            let found = list(root, keep, clamp, &entries_tx).map_err(|e| {
                if e.is::<WriterStopped>() {
                    e
                } else {
                    anyhow::Error::new(TreeFault(e))
                }
            });
            drop(entries_tx);
            let outcome = found.and_then(|(stand_in, sockets, newest, total)| {
                let mtime = crate::reproducible::archive_mtime_of(clamp, newest);
                let done = stand_in.listed(mtime, compression)?;
                Ok((done, sockets, mtime, total))
            });
            match outcome {
                Ok((done, sockets, mtime, total)) => {
                    listed(total);
                    let _ = listed_tx.send(Ok(done));
                    Ok((sockets, mtime))
                }
                Err(e) => {
                    let _ = listed_tx.send(Err(format!("{e:#}")));
                    Err(e)
                }
            }
        });
        let fed = onepass_file::write_fed(
            entries_rx.into_iter().flatten(),
            listed_rx,
            compression,
            file,
            progress,
            0,
        );
        let listing = lister
            .join()
            .map_err(|_| anyhow!("the listing thread panicked"))?;
        // A listing error (a fault of the tree, or the manifest's trial
        // compression) is the cause of whatever the writer saw; a writer
        // that stopped first stopped the listing.
        match (listing, fed) {
            (Ok((skipped_sockets, mtime)), Ok(fed)) => Ok(TreePack {
                set: PackSet {
                    entries: fed.entries,
                    mtime,
                    skipped_sockets,
                },
                manifest: fed.manifest,
            }),
            (Err(e), _) if !e.is::<WriterStopped>() => Err(e),
            (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
        }
    })
}

/// What was wrong with the tree itself (a name that is not UTF-8, a fifo,
/// an unreadable directory): the cause, not a failure to write, so a
/// caller can report it as such ([`TreeFault::is_in`]).
#[derive(Debug)]
pub struct TreeFault(anyhow::Error);

impl TreeFault {
    /// Is `e` a fault of the tree (as opposed to of the writing)?
    pub fn is_in(e: &anyhow::Error) -> bool {
        e.is::<TreeFault>()
    }
}

impl std::fmt::Display for TreeFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for TreeFault {}

/// The listing's sign that the writer is gone (it failed, and says why).
#[derive(Debug)]
struct WriterStopped;

impl std::fmt::Display for WriterStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the archive writer stopped")
    }
}

impl std::error::Error for WriterStopped {}

/// What the listing gathered besides the entries it sent: the manifest's
/// stand-in, the sockets left out, the newest mtime listed and the
/// content bytes sent.
type Gathered = (StandIn, Vec<String>, i64, u64);

/// Walk the tree at `root` in archive order and send what `keep` keeps to
/// `tx`, in batches, hardlinks resolved among what is kept.
fn list(
    root: &Path,
    keep: Keep,
    clamp: Option<i64>,
    tx: &mpsc::Sender<Vec<PackEntry>>,
) -> Result<Gathered> {
    let mut stand_in = StandIn::default();
    let mut first_names = FirstNames::default();
    let mut sockets = Vec::new();
    let mut newest = 0i64;
    let mut total = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    walk::walk_sorted(root, &mut |found| {
        let (mut item, identity) = match found {
            Found::Socket(rel) => {
                sockets.push(rel);
                return Ok(());
            }
            Found::Item(item, identity) => (item, identity),
        };
        if item.path == MANIFEST_PATH {
            return Ok(());
        }
        // The timestamp counts every listed entry, kept or not, as
        // `PackSet::from_tree` does before state is taken out.
        newest = newest.max(item.mtime);
        if !keep(&item.path, item.kind) {
            return Ok(());
        }
        // Among kept names only: a name whose first name is left out
        // becomes the file, as `PackSet::remove` promotes it.
        first_names.name(&mut item, identity);
        let e = PackEntry::from_item(item, clamp);
        total += e.size;
        stand_in.add(&e);
        batch.push(e);
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            tx.send(full).map_err(|_| WriterStopped)?;
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        tx.send(batch).map_err(|_| WriterStopped)?;
    }
    Ok((stand_in, sockets, newest, total))
}

/// `set` without what `keep` leaves out; other names of a removed file
/// keep its content ([`PackSet::remove`]).
fn kept(mut set: PackSet, keep: Keep) -> PackSet {
    let out: Vec<String> = set
        .entries
        .iter()
        .filter(|e| !keep(&e.path, e.kind))
        .map(|e| e.path.clone())
        .collect();
    for path in out {
        set.remove(&path);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    use crate::onepass::tests::tree;

    fn read_all(f: &mut File) -> Vec<u8> {
        let mut bytes = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut bytes).unwrap();
        bytes
    }

    /// Leaves out `var/` files (not the directory) as pack leaves out state.
    fn keep(path: &str, kind: EntryKind) -> bool {
        !(path.starts_with("var/") && kind != EntryKind::Dir)
    }

    fn state_tree(r: &Path) {
        tree(r);
        std::fs::create_dir_all(r.join("var/log")).unwrap();
        std::fs::write(r.join("var/log/a.log"), b"log\n").unwrap();
        // A hardlink whose first name (in archive order) is left out: the
        // kept name becomes the file.
        std::fs::write(r.join("var/Data.fs"), b"data").unwrap();
        std::fs::hard_link(r.join("var/Data.fs"), r.join("zz-copy")).unwrap();
        std::fs::write(r.join(MANIFEST_PATH), b"an old manifest\n").unwrap();
        let _ = std::os::unix::net::UnixListener::bind(r.join("var/zeo.sock")).unwrap();
    }

    #[test]
    fn same_archive_as_from_the_listed_set() {
        let d = tempfile::tempdir().unwrap();
        state_tree(d.path());
        for c in [Compression::Zstd(3), Compression::Gzip(6)] {
            let set = kept(PackSet::from_tree(d.path()).unwrap(), &keep);
            let mut want_file = tempfile::tempfile().unwrap();
            let want_manifest =
                onepass_file::write_with_manifest_to_file(&set, c, &mut want_file, &|_| {})
                    .unwrap();
            let mut f = tempfile::tempfile().unwrap();
            let total = std::sync::atomic::AtomicU64::new(0);
            let got = write_tree_to_file(d.path(), &keep, c, &mut f, &|_| {}, &|n| {
                total.store(n, std::sync::atomic::Ordering::Relaxed)
            })
            .unwrap();
            assert!(read_all(&mut f) == read_all(&mut want_file), "{c:?}");
            assert_eq!(got.manifest, want_manifest);
            let paths = |s: &PackSet| -> Vec<String> {
                s.entries
                    .iter()
                    .map(|e| format!("{} {:?}", e.path, e.kind))
                    .collect()
            };
            assert_eq!(paths(&got.set), paths(&set));
            assert_eq!(got.set.mtime, set.mtime);
            assert_eq!(got.set.skipped_sockets, ["var/zeo.sock"]);
            assert_eq!(total.into_inner(), set.content_bytes());
            let copy = got.manifest.get("zz-copy").unwrap();
            assert_eq!(copy.kind, EntryKind::File);
            assert!(got.manifest.get("var/Data.fs").is_none());
            assert!(got.manifest.get("var/log").is_some());
        }
    }

    #[test]
    fn a_listing_error_is_the_error_reported() {
        use std::os::unix::ffi::OsStrExt;
        let d = tempfile::tempdir().unwrap();
        tree(d.path());
        let bad = std::ffi::OsStr::from_bytes(b"zz-\xff");
        std::fs::write(d.path().join("lib/p3").join(bad), b"x").unwrap();
        let mut f = tempfile::tempfile().unwrap();
        let err = write_tree_to_file(
            d.path(),
            &|_, _| true,
            Compression::Zstd(3),
            &mut f,
            &|_| {},
            &|_| {},
        )
        .err()
        .expect("a name that is not UTF-8");
        assert!(format!("{err:#}").contains("not UTF-8"), "{err:#}");
        assert!(TreeFault::is_in(&err));
    }

    #[test]
    fn a_writer_error_is_the_error_reported() {
        let d = tempfile::tempdir().unwrap();
        tree(d.path());
        // Grown after it is listed, before the writer can have read it
        // (keep runs before the entry is handed over).
        let victim = d.path().join("lib/p2/m2.py");
        let grow = |path: &str, _: EntryKind| {
            if path == "lib/p2/m2.py" {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&victim)
                    .unwrap();
                std::io::Write::write_all(&mut f, b"more").unwrap();
            }
            true
        };
        let mut f = tempfile::tempfile().unwrap();
        let err = write_tree_to_file(
            d.path(),
            &grow,
            Compression::Zstd(3),
            &mut f,
            &|_| {},
            &|_| {},
        )
        .err()
        .expect("a file changed while packing");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("m2.py") && msg.contains("changed while packing"),
            "{msg}"
        );
        assert!(!TreeFault::is_in(&err));
    }
}
