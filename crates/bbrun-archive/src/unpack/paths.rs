//! Entry names and symlink targets of an untrusted archive: what stays
//! inside the destination.

use std::collections::{HashMap, VecDeque};

use anyhow::{anyhow, bail, Result};

/// Symlinks followed while resolving one target, like the kernel's limit.
const MAX_LINK_DEPTH: usize = 40;

/// An entry name as a plain relative path: `./` and empty parts dropped;
/// absolute names, `..` parts, NUL and non-UTF-8 refused.
pub fn clean_path(raw: &[u8]) -> Result<String> {
    let s = std::str::from_utf8(raw).map_err(|_| anyhow!("name is not UTF-8; refused"))?;
    if s.starts_with('/') {
        bail!("absolute path refused");
    }
    if s.contains('\0') {
        bail!("name contains a NUL byte; refused");
    }
    let mut parts = Vec::new();
    for p in s.split('/') {
        match p {
            "" | "." => {}
            ".." => bail!("path with `..` refused"),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Why a symlink does not stay inside the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Escape {
    /// Absolute, or `..` past the root: allowed on request (a virtualenv's
    /// `bin/python3 -> /usr/bin/python3.11`).
    Outside(&'static str),
    /// Never allowed.
    Loop,
}

/// Follow `target` from the directory of `link` through the archive's
/// symlinks; `Err` when it leads outside the root or loops.
pub(super) fn resolve_inside(
    link: &str,
    target: &str,
    links: &HashMap<&str, &str>,
) -> std::result::Result<(), Escape> {
    let mut stack: Vec<String> = link.split('/').map(str::to_string).collect();
    stack.pop();
    let mut queue: VecDeque<String> = split_target(target).ok_or(Escape::Outside("is absolute"))?;
    let mut followed = 0;
    while let Some(part) = queue.pop_front() {
        match part.as_str() {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Err(Escape::Outside("leads outside the destination"));
                }
            }
            name => {
                stack.push(name.to_string());
                let here = stack.join("/");
                if let Some(next) = links.get(here.as_str()) {
                    followed += 1;
                    if followed > MAX_LINK_DEPTH {
                        return Err(Escape::Loop);
                    }
                    stack.pop();
                    let mut more = split_target(next)
                        .ok_or(Escape::Outside("leads through an absolute symlink"))?;
                    more.extend(queue.drain(..));
                    queue = more;
                }
            }
        }
    }
    Ok(())
}

fn split_target(t: &str) -> Option<VecDeque<String>> {
    if t.starts_with('/') {
        return None;
    }
    Some(t.split('/').map(str::to_string).collect())
}
