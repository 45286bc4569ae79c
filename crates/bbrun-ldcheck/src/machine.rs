//! The search inputs of the machine we run on: its `/etc/ld.so.cache`,
//! `LD_LIBRARY_PATH`, default directories and token values.

use std::path::Path;

use crate::cache::{self, CacheError};
use crate::expand::Tokens;
use crate::search::Config;

/// The system cache path ld.so reads.
pub const LD_SO_CACHE: &str = "/etc/ld.so.cache";

/// This machine as the loader sees it now. A missing cache is fine (ld.so
/// then searches the default directories); a corrupt one is an error.
pub fn this_machine() -> Result<Config, CacheError> {
    let cache_path = Path::new(LD_SO_CACHE);
    let cache = if cache_path.exists() {
        cache::load(cache_path)?
    } else {
        vec![]
    };
    let ld_library_path = std::env::var("LD_LIBRARY_PATH")
        .ok()
        .filter(|s| !s.is_empty())
        // ld.so accepts `;` as a separator here too.
        .map(|s| crate::expand::split_path(&s.replace(';', ":")))
        .unwrap_or_default();
    let (default_dirs, lib) = default_dirs(Path::new("/"));
    Ok(Config {
        ld_library_path,
        cache,
        default_dirs,
        tokens: Tokens {
            lib,
            platform: std::env::consts::ARCH.to_string(),
        },
    })
}

/// The GNU multiarch triplet of this build's target (Debian/Ubuntu layout).
pub fn multiarch_triplet() -> Option<&'static str> {
    Some(match std::env::consts::ARCH {
        "x86_64" => "x86_64-linux-gnu",
        "x86" => "i386-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "powerpc64" if cfg!(target_endian = "little") => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        _ => return None,
    })
}

/// The loader's built-in directories and `$LIB`, as the distribution's
/// glibc was configured: multiarch (`/lib/x86_64-linux-gnu`,
/// `/usr/lib/x86_64-linux-gnu`, `/lib`, `/usr/lib`) where that layout
/// exists, else `lib64` on 64-bit systems (Fedora, SUSE), else `lib`.
pub fn default_dirs(sysroot: &Path) -> (Vec<String>, String) {
    if let Some(t) = multiarch_triplet() {
        if sysroot.join("lib").join(t).is_dir() || sysroot.join("usr/lib").join(t).is_dir() {
            let dirs = vec![
                format!("/lib/{t}"),
                format!("/usr/lib/{t}"),
                "/lib".into(),
                "/usr/lib".into(),
            ];
            return (dirs, format!("lib/{t}"));
        }
    }
    if cfg!(target_pointer_width = "64") && sysroot.join("usr/lib64").is_dir() {
        return (vec!["/lib64".into(), "/usr/lib64".into()], "lib64".into());
    }
    (vec!["/lib".into(), "/usr/lib".into()], "lib".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_reads() {
        let c = this_machine().unwrap();
        assert!(!c.default_dirs.is_empty());
        assert!(!c.tokens.platform.is_empty());
    }

    #[test]
    fn layouts() {
        let d = tempfile_dir();
        let (dirs, lib) = default_dirs(&d);
        assert_eq!(dirs, vec!["/lib", "/usr/lib"]);
        assert_eq!(lib, "lib");
        if let Some(t) = multiarch_triplet() {
            std::fs::create_dir_all(d.join("usr/lib").join(t)).unwrap();
            let (dirs, lib) = default_dirs(&d);
            assert_eq!(dirs[0], format!("/lib/{t}"));
            assert_eq!(lib, format!("lib/{t}"));
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ldcheck-machine-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
