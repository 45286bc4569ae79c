//! Writing one unpacked file or directory: created exclusively (never
//! through a symlink), content hashed on the way, mode and mtime set as
//! archived.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};

/// Set a directory's mtime (and atime) to `secs`, following no symlink.
pub(super) fn set_mtime(path: &Path, secs: u64) {
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

/// Create `path` (never existing before: duplicates are refused, and
/// `O_CREAT|O_EXCL` never follows a symlink anyway), write, set mode and
/// mtime; return the content's sha256.
pub(super) fn write_file(
    path: &Path,
    data: &[u8],
    mode: u32,
    mtime: u64,
    umask: u32,
) -> Result<()> {
    let mut f = create(path, mode)?;
    f.write_all(data)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    finish_file(&f, path, mode, mtime, umask)
}

pub(super) fn stream_file(
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

pub(super) fn create(path: &Path, mode: u32) -> Result<File> {
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
pub(super) fn entry_mtime<R: Read>(entry: &mut tar::Entry<'_, R>) -> u64 {
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
pub(super) fn current_umask() -> u32 {
    // SAFETY: umask cannot fail; the old value is restored right away.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old as u32
    }
}

pub(super) fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}
