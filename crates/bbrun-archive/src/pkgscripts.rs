//! Maintainer scripts for the state directories of a packaged tree.
//!
//! State (databases, logs) is never a package file: dpkg and rpm replace
//! package files on upgrade and delete them on remove. Instead the
//! post-install script creates the state directories when they are
//! missing (an existing one, with its data and the mode an admin gave it,
//! is left alone), and only a deb purge deletes them.

/// What a package needs to know about its tree's state and configuration.
#[derive(Debug, Clone, Default)]
pub struct PackageState {
    /// State directories, relative to the prefix, parents first, with the
    /// mode they had in the tree.
    pub dirs: Vec<(String, u32)>,
    /// Configuration files, relative to the prefix: deb conffiles, rpm
    /// `%config(noreplace)`; a locally changed one survives an upgrade.
    pub config_files: Vec<String>,
}

/// `'text'` for sh, whatever the text holds.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Creates the missing state directories (deb `postinst configure`, rpm
/// `%post`).
pub fn post_install(prefix: &str, state: &PackageState) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# Written by bbrun pack: the application's state directories are\n# created here, not shipped, so upgrades and removal keep their data.\nset -e\n",
    );
    for (dir, mode) in &state.dirs {
        let path = quote(&format!("{prefix}/{dir}"));
        s.push_str(&format!(
            "if [ ! -d {path} ]; then mkdir -p {path}; chmod {:04o} {path}; fi\n",
            mode & 0o7777
        ));
    }
    s
}

/// Deletes the state directories on `purge` only (deb `postrm`).
pub fn deb_postrm(prefix: &str, state: &PackageState) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# Written by bbrun pack: only a purge deletes the application's state.\nset -e\nif [ \"$1\" = purge ]; then\n",
    );
    for (dir, _) in state.dirs.iter().rev() {
        s.push_str(&format!("  rm -rf {}\n", quote(&format!("{prefix}/{dir}"))));
    }
    s.push_str(&format!(
        "  rmdir {} 2>/dev/null || true\nfi\n",
        quote(prefix)
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_quote_paths() {
        let st = PackageState {
            dirs: vec![("var".into(), 0o755), ("var/it's".into(), 0o700)],
            config_files: vec![],
        };
        let s = post_install("/opt/a", &st);
        assert!(
            s.contains("mkdir -p '/opt/a/var'; chmod 0755 '/opt/a/var'"),
            "{s}"
        );
        assert!(s.contains("'/opt/a/var/it'\\''s'"), "{s}");
        let r = deb_postrm("/opt/a", &st);
        assert!(r.find("var/it").unwrap() < r.find("'/opt/a/var'").unwrap());
        assert!(r.contains("\"$1\" = purge"));
    }
}
