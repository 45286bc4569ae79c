//! Which libraries count as "the system": present on every glibc Linux
//! machine the tree may move to, so never vendored. Everything else an
//! extension needs is copied into the tree by `bbrun freeze --vendor-libs`.
//!
//! The list follows the manylinux policy (PEP 599/600 `lib_whitelist`):
//! - glibc itself, in all its pieces (libc, libm, libpthread, libdl, librt,
//!   libutil, libresolv, libnsl, libcrypt, libanl, libmvec, the loader...):
//!   it is bound to the kernel interface and the loader in use, and a copy
//!   cannot be loaded beside the system's. Newer-glibc requirements are
//!   what `bbrun check` reports instead.
//! - libgcc_s and libstdc++: also system. Two libstdc++ copies in one
//!   Python process (the vendored one and the one another extension or
//!   the interpreter loads) break exceptions and RTTI across them; the
//!   `GLIBCXX_*` version check in `bbrun check` catches a too-old one.
//! - The X11/GL/GLib libraries manylinux allows: they belong to the
//!   display stack of the target machine, not to the application.

/// Exact DT_NEEDED names that are never vendored.
const SYSTEM: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
    "libresolv.so.2",
    "libnsl.so.1",
    "libcrypt.so.1",
    "libanl.so.1",
    "libmvec.so.1",
    "libBrokenLocale.so.1",
    "libthread_db.so.1",
    "libc_malloc_debug.so.0",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libX11.so.6",
    "libXext.so.6",
    "libXrender.so.1",
    "libICE.so.6",
    "libSM.so.6",
    "libGL.so.1",
    "libgobject-2.0.so.0",
    "libgthread-2.0.so.0",
    "libglib-2.0.so.0",
];

/// True for a library the target system provides (see the module docs).
pub fn is_system_library(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    SYSTEM.contains(&base)
        || base.starts_with("ld-linux")
        || base.starts_with("ld64.so")
        || base.starts_with("ld.so")
        || base.starts_with("linux-vdso")
        || base.starts_with("linux-gate")
        || base.starts_with("libnss_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_pieces_are_system_others_are_not() {
        for n in [
            "libc.so.6",
            "ld-linux-x86-64.so.2",
            "/lib64/ld-linux-x86-64.so.2",
            "libstdc++.so.6",
            "libnss_files.so.2",
        ] {
            assert!(is_system_library(n), "{n}");
        }
        for n in [
            "libz.so.1",
            "libssl.so.3",
            "libbbmissing.so",
            "libpython3.11.so.1.0",
        ] {
            assert!(!is_system_library(n), "{n}");
        }
    }
}
