//! Dynamic string tokens in search paths and names: `$ORIGIN`, `$LIB`,
//! `$PLATFORM`, bare or braced, as ld.so expands them.

/// Values the tokens stand for on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// `$LIB`: `lib/x86_64-linux-gnu` on Debian, `lib64` on Fedora.
    pub lib: String,
    /// `$PLATFORM`: the architecture name, e.g. `x86_64`. (glibc may report
    /// a CPU family such as `haswell` instead on some Intel CPUs; such
    /// paths are rare enough in Python trees not to emulate that.)
    pub platform: String,
}

/// Expand the tokens in `s` with `origin` as `$ORIGIN`. `None` when the
/// string uses `$ORIGIN` but no origin is known (the loader drops such an
/// entry) or names an unknown token.
pub fn expand(s: &str, origin: Option<&str>, tokens: &Tokens) -> Option<String> {
    if !s.contains('$') {
        return Some(s.to_string());
    }
    let mut out = String::with_capacity(s.len() + 32);
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}')?;
            (&braced[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        let value = match name {
            "ORIGIN" => origin?,
            "LIB" => &tokens.lib,
            "PLATFORM" => &tokens.platform,
            _ => return None,
        };
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    Some(out)
}

/// Split a colon-separated search path. An empty element means the
/// current directory, for the loader as for the shell.
pub fn split_path(list: &str) -> Vec<String> {
    list.split(':')
        .map(|e| {
            if e.is_empty() {
                ".".to_string()
            } else {
                e.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Tokens {
        Tokens {
            lib: "lib64".into(),
            platform: "x86_64".into(),
        }
    }

    #[test]
    fn expands_bare_and_braced() {
        assert_eq!(
            expand("$ORIGIN/../lib", Some("/a/b"), &t()).unwrap(),
            "/a/b/../lib"
        );
        assert_eq!(
            expand("${ORIGIN}/x/$LIB/${PLATFORM}", Some("/o"), &t()).unwrap(),
            "/o/x/lib64/x86_64"
        );
        assert_eq!(expand("/plain", None, &t()).unwrap(), "/plain");
    }

    #[test]
    fn unknown_or_unavailable_tokens_drop_the_entry() {
        assert_eq!(expand("$ORIGIN/x", None, &t()), None);
        assert_eq!(expand("$FOO/x", Some("/o"), &t()), None);
        assert_eq!(expand("${ORIGIN/x", Some("/o"), &t()), None);
    }

    #[test]
    fn empty_elements_are_cwd() {
        assert_eq!(split_path("/a::/b"), vec!["/a", ".", "/b"]);
    }
}
