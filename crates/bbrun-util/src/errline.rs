//! Error lines bounded in size: a message may quote a path or a field from
//! an untrusted archive (a 50 MiB name, a newline in a root), and an error
//! must stay one readable line. Long parts are shortened in the middle, so
//! both the start (where) and the end (the file name) stay visible.

/// Longest single word (usually a path) kept whole.
pub const MAX_WORD: usize = 300;
/// Longest error line.
pub const MAX_LINE: usize = 1000;

/// `s` with at most `max` characters: its head and tail around `…`.
pub fn shorten(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(1);
    let head = keep / 2;
    let tail = keep - head;
    let mut out: String = s.chars().take(head).collect();
    out.push('…');
    out.extend(s.chars().skip(n - tail));
    out
}

/// A value for an error message: control characters escaped, shortened.
pub fn quote(s: &str) -> String {
    shorten(&escape_controls(s), MAX_WORD)
}

fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// The message as one bounded line: control characters escaped, each
/// overlong word shortened, then the whole line.
pub fn bound(msg: &str) -> String {
    let escaped = escape_controls(msg);
    let words: Vec<String> = escaped.split(' ').map(|w| shorten(w, MAX_WORD)).collect();
    shorten(&words.join(" "), MAX_LINE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_path_is_shortened_in_the_middle() {
        let p = format!("/a/{}/end.py", "x".repeat(10_000));
        let q = quote(&p);
        assert_eq!(q.chars().count(), MAX_WORD);
        assert!(q.starts_with("/a/x") && q.ends_with("/end.py"), "{q}");
    }

    #[test]
    fn bound_is_one_line_and_bounded() {
        let msg = format!("{}: bad\nthing {}", "p".repeat(50 << 20), "w ".repeat(5000));
        let b = bound(&msg);
        assert!(!b.contains('\n'));
        assert!(b.chars().count() <= MAX_LINE);
        assert!(b.contains("\\nthing"));
    }

    #[test]
    fn short_text_unchanged() {
        assert_eq!(bound("x: y; do z"), "x: y; do z");
        assert_eq!(shorten("é".repeat(10).as_str(), 5).chars().count(), 5);
    }
}
