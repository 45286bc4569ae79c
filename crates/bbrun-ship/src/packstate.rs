//! What `bbrun pack` does with application state (see `state.rs`): logs,
//! runtime files and caches never go into an archive; data only when asked
//! (`--with-data`, the initial state of a fresh install). An archive keeps
//! the state directories, empty, so the application finds them; a system
//! package holds none of them: its maintainer scripts create them, and
//! the package manager never owns (so never replaces or deletes) state.

use bbrun_archive::manifest::EntryKind;
use bbrun_archive::packset::PackSet;
use serde::Serialize;

use bbrun_map::state::{StateClass, StatePolicy};

#[derive(Debug, Default, Serialize)]
pub struct Stripped {
    /// Files left out, with their class.
    pub left_out: Vec<(String, StateClass)>,
    /// Data files packed (`--with-data`).
    pub data_packed: Vec<String>,
    /// Packages: state directories left out for the maintainer scripts to
    /// create, outermost first, with their modes.
    pub dirs: Vec<(String, u32)>,
}

/// What an archive does with one entry of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveChoice {
    Pack,
    /// Data packed as the initial state (`--with-data`).
    PackData,
    LeaveOut(StateClass),
}

/// What an archive (not a package) does with the entry at `path`: state
/// directories stay, empty; data goes in only `with_data`; other state
/// never.
pub fn archive_choice(
    policy: &StatePolicy,
    with_data: bool,
    path: &str,
    kind: EntryKind,
) -> ArchiveChoice {
    choose(policy.class_of(path), kind, with_data)
}

fn choose(class: Option<StateClass>, kind: EntryKind, with_data: bool) -> ArchiveChoice {
    match class {
        None => ArchiveChoice::Pack,
        Some(_) if kind == EntryKind::Dir => ArchiveChoice::Pack,
        Some(StateClass::Data) if with_data => ArchiveChoice::PackData,
        Some(class) => ArchiveChoice::LeaveOut(class),
    }
}

impl Stripped {
    /// Record what was chosen for `path` (files left out, data packed).
    pub fn note(&mut self, path: &str, choice: ArchiveChoice) {
        match choice {
            ArchiveChoice::Pack => {}
            ArchiveChoice::PackData => self.data_packed.push(path.to_string()),
            ArchiveChoice::LeaveOut(class) => self.left_out.push((path.to_string(), class)),
        }
    }
}

/// Take the state out of `set` (the tree's entries).
pub fn strip(set: &mut PackSet, policy: &StatePolicy, with_data: bool, package: bool) -> Stripped {
    let mut out = Stripped::default();
    let mut state_dirs = Vec::new();
    let classes: Vec<(String, EntryKind, u32, Option<StateClass>)> = set
        .entries
        .iter()
        .map(|e| (e.path.clone(), e.kind, e.mode, policy.class_of(&e.path)))
        .collect();
    for (path, kind, mode, class) in classes {
        if package && kind == EntryKind::Dir && class.is_some() {
            state_dirs.push((path.clone(), mode));
        }
        let choice = choose(class, kind, with_data && !package);
        if let ArchiveChoice::LeaveOut(_) = choice {
            set.remove(&path);
        }
        out.note(&path, choice);
    }
    // A package leaves out the state directories too, unless something
    // packed lives below one (a `--not-state` path inside var/).
    for (dir, mode) in state_dirs {
        let below = format!("{dir}/");
        let needed = set
            .entries
            .iter()
            .any(|e| e.path.starts_with(&below) && e.kind != EntryKind::Dir);
        if !needed {
            set.remove(&dir);
        }
        out.dirs.push((dir, mode));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, StatePolicy) {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in ["bin", "var/filestorage", "var/log", "var/keep"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        for f in [
            "bin/app",
            "var/filestorage/Data.fs",
            "var/filestorage/Data.fs.lock",
            "var/log/event.log",
            "var/app.pid",
            "var/keep/code.py",
        ] {
            std::fs::write(r.join(f), f).unwrap();
        }
        let mut p = StatePolicy::default();
        p.add("var", StateClass::Data, "default");
        p.add("var/log", StateClass::Log, "default");
        p.exclude("var/keep");
        (d, p)
    }

    fn paths(set: &PackSet) -> Vec<&str> {
        set.entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn archives_keep_empty_state_dirs_and_data_only_when_asked() {
        let (d, p) = tree();
        let mut set = PackSet::from_tree(d.path()).unwrap();
        let s = strip(&mut set, &p, false, false);
        assert_eq!(
            paths(&set),
            [
                "bin",
                "bin/app",
                "var",
                "var/filestorage",
                "var/keep",
                "var/keep/code.py",
                "var/log"
            ]
        );
        assert_eq!(s.left_out.len(), 4);
        let mut set = PackSet::from_tree(d.path()).unwrap();
        let s = strip(&mut set, &p, true, false);
        assert_eq!(s.data_packed, ["var/filestorage/Data.fs"]);
        assert!(set.get("var/filestorage/Data.fs").is_some());
        assert!(set.get("var/filestorage/Data.fs.lock").is_none());
    }

    #[test]
    fn packages_hold_no_state_dirs() {
        let (d, p) = tree();
        let mut set = PackSet::from_tree(d.path()).unwrap();
        let s = strip(&mut set, &p, false, true);
        // var stays: var/keep (not state) is below it.
        assert_eq!(
            paths(&set),
            ["bin", "bin/app", "var", "var/keep", "var/keep/code.py"]
        );
        let dirs: Vec<&str> = s.dirs.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(dirs, ["var", "var/filestorage", "var/log"]);
    }
}
