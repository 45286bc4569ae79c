//! Replacing the launcher with the interpreter: `execve` with an
//! environment made from the inherited one without copying it.
//!
//! `std::env::set_var` for each variable the launch sets went through
//! glibc's `setenv`: a lock, a copy of each string, and a copy of the
//! whole `environ` array for each new name (~22k instructions a launch).
//! Here the inherited entries are passed by pointer and only the set
//! ones are built. The result is what `setenv` would have made: a set
//! name replaces the inherited entry in place, new names follow in order.

use std::ffi::{c_char, CStr, CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result};

extern "C" {
    /// The process environment (POSIX): NULL-terminated `NAME=VALUE`.
    static environ: *const *const c_char;
}

/// Replace this process with `python argv...`, its environment the
/// inherited one with `set` applied (a name set twice: the last wins).
/// Returns only on failure.
pub fn exec_with(python: &Path, argv: &[OsString], set: &[(OsString, OsString)]) -> Result<i32> {
    let path = cstring(python.as_os_str().as_bytes())?;
    let argv: Vec<CString> = argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<_>>()?;
    let set = last_of_each(set);
    let entries: Vec<CString> = set
        .iter()
        .map(|(k, v)| {
            let mut e = Vec::with_capacity(k.len() + v.len() + 1);
            e.extend_from_slice(k.as_bytes());
            e.push(b'=');
            e.extend_from_slice(v.as_bytes());
            cstring(&e)
        })
        .collect::<Result<_>>()?;
    // SAFETY: `environ` is read once, before anything in this
    // single-threaded process could change it.
    let inherited = unsafe { inherited_entries() };
    let envp = merged(&inherited, &set, &entries);
    let argvp: Vec<*const c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    // SAFETY: every pointer is to a NUL-terminated string that outlives
    // the call (owned above, or glibc's environment), and both arrays end
    // with NULL.
    unsafe { libc::execve(path.as_ptr(), argvp.as_ptr(), envp.as_ptr()) };
    Err(std::io::Error::last_os_error())
        .with_context(|| format!("{}: cannot execute", python.display()))
}

fn cstring(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).context("argument contains a NUL byte")
}

fn last_of_each(set: &[(OsString, OsString)]) -> Vec<&(OsString, OsString)> {
    set.iter()
        .enumerate()
        .filter(|(i, (k, _))| !set[i + 1..].iter().any(|(later, _)| later == k))
        .map(|(_, kv)| kv)
        .collect()
}

/// The inherited environment's entries.
///
/// # Safety
/// `environ` must be a valid NULL-terminated array (or NULL) that nothing
/// changes while the returned references are used.
unsafe fn inherited_entries() -> Vec<&'static CStr> {
    let mut out = Vec::with_capacity(64);
    let mut p = environ;
    if p.is_null() {
        return out;
    }
    while !(*p).is_null() {
        out.push(CStr::from_ptr(*p));
        p = p.add(1);
    }
    out
}

/// The NULL-terminated `envp`: `inherited` with each entry whose name is
/// set replaced by its new entry, then the new names' entries.
fn merged(
    inherited: &[&CStr],
    set: &[&(OsString, OsString)],
    entries: &[CString],
) -> Vec<*const c_char> {
    let mut used = vec![false; set.len()];
    let mut out = Vec::with_capacity(inherited.len() + set.len() + 1);
    for entry in inherited {
        let bytes = entry.to_bytes();
        let name = bytes.split(|&b| b == b'=').next().unwrap_or(bytes);
        match set.iter().position(|(k, _)| k.as_bytes() == name) {
            // A repeat of a name already replaced is dropped, as
            // `setenv` leaves only one.
            Some(i) if used[i] => {}
            Some(i) => {
                used[i] = true;
                out.push(entries[i].as_ptr());
            }
            None => out.push(entry.as_ptr()),
        }
    }
    for (i, entry) in entries.iter().enumerate() {
        if !used[i] {
            out.push(entry.as_ptr());
        }
    }
    out.push(std::ptr::null());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_and_values(envp: &[*const c_char]) -> Vec<String> {
        envp[..envp.len() - 1]
            .iter()
            // SAFETY: test pointers come from live CStr/CString values.
            .map(|&p| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn set_names_replace_in_place_and_new_ones_follow() {
        let inherited: Vec<CString> = ["A=1", "PYTHONPATH=/old", "B=2", "EMPTY", "A=dup"]
            .iter()
            .map(|s| CString::new(*s).unwrap())
            .collect();
        let refs: Vec<&CStr> = inherited.iter().map(|c| c.as_c_str()).collect();
        let given: Vec<(OsString, OsString)> = vec![
            ("NEW".into(), "x".into()),
            ("PYTHONPATH".into(), "/first".into()),
            ("A".into(), "".into()),
            ("PYTHONPATH".into(), "/shim".into()),
        ];
        let set = last_of_each(&given);
        let entries: Vec<CString> = set
            .iter()
            .map(|(k, v)| {
                CString::new(format!("{}={}", k.to_str().unwrap(), v.to_str().unwrap())).unwrap()
            })
            .collect();
        let envp = merged(&refs, &set, &entries);
        assert!(envp.last().unwrap().is_null());
        assert_eq!(
            names_and_values(&envp),
            ["A=", "PYTHONPATH=/shim", "B=2", "EMPTY", "NEW=x"]
        );
    }
}
