//! Symbol version requirements: an object built against a newer glibc
//! needs `GLIBC_2.x` versions this machine's libc does not define, and the
//! loader refuses it ("version `GLIBC_2.38' not found").

use std::path::{Path, PathBuf};

use crate::object::VersionNeed;

/// Versions an object needs from a library that the library (as resolved
/// here) does not define.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionProblem {
    pub object: PathBuf,
    /// The DT_NEEDED name, e.g. `libc.so.6`.
    pub file: String,
    pub provider: PathBuf,
    pub missing: Vec<String>,
    /// The newest version of the same family (`GLIBC_`, `GLIBCXX_`...)
    /// the provider has, for the message.
    pub newest_available: Option<String>,
}

impl VersionProblem {
    pub fn describe(&self) -> String {
        let have = match &self.newest_available {
            Some(v) => format!("; {} here provides up to {v}", self.provider.display()),
            None => format!("; not defined by {}", self.provider.display()),
        };
        format!("needs {} from {}{have}", self.missing.join(", "), self.file)
    }
}

/// Compare one requirement with the provider's definitions. A provider
/// without version definitions satisfies everything (ld.so only warns).
pub fn check(
    object: &Path,
    need: &VersionNeed,
    provider: &Path,
    provider_defs: &[String],
) -> Option<VersionProblem> {
    if provider_defs.is_empty() {
        return None;
    }
    let missing: Vec<String> = need
        .versions
        .iter()
        .filter(|v| !provider_defs.contains(v))
        .cloned()
        .collect();
    if missing.is_empty() {
        return None;
    }
    let family = family(&missing[0]);
    Some(VersionProblem {
        object: object.to_path_buf(),
        file: need.file.clone(),
        provider: provider.to_path_buf(),
        newest_available: newest(provider_defs, family).map(str::to_string),
        missing,
    })
}

/// `GLIBC_2.17` -> `GLIBC_`; the prefix before the first digit.
fn family(version: &str) -> &str {
    let end = version
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(version.len());
    &version[..end]
}

/// Numeric parts of `GLIBC_2.2.5` -> `[2, 2, 5]`; `None` for names such as
/// `GLIBC_PRIVATE`.
pub fn numbers(version: &str) -> Option<Vec<u32>> {
    let rest = &version[family(version).len()..];
    if rest.is_empty() {
        return None;
    }
    rest.split('.').map(|p| p.parse().ok()).collect()
}

/// The highest numbered version of `family` among `defs`.
pub fn newest<'a>(defs: &'a [String], family_prefix: &str) -> Option<&'a str> {
    defs.iter()
        .filter(|d| family(d) == family_prefix)
        .filter_map(|d| numbers(d).map(|n| (n, d.as_str())))
        .max()
        .map(|(_, d)| d)
}

/// Required `GLIBC_2.x` versions newer than anything `libc_defs` defines:
/// the usual reason a binary from a newer distribution fails here.
pub fn newer_than_libc(required: &[String], libc_defs: &[String]) -> Vec<String> {
    let Some(have) = newest(libc_defs, "GLIBC_").and_then(numbers) else {
        return vec![];
    };
    required
        .iter()
        .filter(|v| family(v) == "GLIBC_")
        .filter(|v| numbers(v).is_some_and(|n| n > have))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn numbering_and_newest() {
        assert_eq!(numbers("GLIBC_2.2.5"), Some(vec![2, 2, 5]));
        assert_eq!(numbers("GLIBC_PRIVATE"), None);
        let d = defs(&["GLIBC_2.2.5", "GLIBC_2.36", "GLIBC_2.4", "GLIBC_PRIVATE"]);
        assert_eq!(newest(&d, "GLIBC_"), Some("GLIBC_2.36"));
    }

    #[test]
    fn newer_glibc_requirement_is_flagged() {
        let libc = defs(&["GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.36"]);
        let need = VersionNeed {
            file: "libc.so.6".into(),
            versions: defs(&["GLIBC_2.2.5", "GLIBC_2.38"]),
        };
        assert_eq!(
            newer_than_libc(&need.versions, &libc),
            defs(&["GLIBC_2.38"])
        );
        let p = check(
            Path::new("/t/ext.so"),
            &need,
            Path::new("/lib/libc.so.6"),
            &libc,
        )
        .unwrap();
        assert_eq!(p.missing, defs(&["GLIBC_2.38"]));
        assert_eq!(p.newest_available.as_deref(), Some("GLIBC_2.36"));
        assert!(
            p.describe().contains("needs GLIBC_2.38 from libc.so.6"),
            "{}",
            p.describe()
        );
        assert!(p.describe().contains("up to GLIBC_2.36"));
    }

    #[test]
    fn satisfied_or_unversioned_is_fine() {
        let need = VersionNeed {
            file: "libc.so.6".into(),
            versions: defs(&["GLIBC_2.17"]),
        };
        let libc = defs(&["GLIBC_2.17", "GLIBC_2.36"]);
        assert_eq!(check(Path::new("a"), &need, Path::new("b"), &libc), None);
        assert_eq!(check(Path::new("a"), &need, Path::new("b"), &[]), None);
        assert!(newer_than_libc(&need.versions, &libc).is_empty());
    }
}
