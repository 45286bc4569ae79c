//! One line from a failed buildout run's output: which requirement would
//! need the network, which part or develop egg would need a compiler.

/// What went wrong, as the part of the error line after the config file.
pub fn explain(output: &str) -> String {
    let doing = while_doing(output);
    if let Some(req) = missing_requirement(output) {
        return format!(
            "requirement '{req}' is not in this tree and would need the network; add it on the build host, run buildout and bbrun freeze there, and ship the tree again"
        );
    }
    if let Some(tool) = missing_compiler(output) {
        let what = doing.unwrap_or_else(|| "a part".to_string());
        return format!(
            "{what} needs a C compiler ({tool}) to build again; build it on the build host, run bbrun freeze there, and ship the tree again"
        );
    }
    if let Some(url) = failed_download(output) {
        return format!(
            "{} needs to download {url}, and this run is offline; fetch it on the build host, run buildout and bbrun freeze there, and ship the tree again",
            doing.unwrap_or_else(|| "buildout".to_string())
        );
    }
    let last = output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with("Error:") || l.starts_with("Exception:"))
        .or_else(|| output.lines().rev().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("no output");
    match doing {
        Some(d) => format!("buildout failed ({d}: {last}); fix buildout.cfg and run it again"),
        None => format!("buildout failed ({last}); fix buildout.cfg and run it again"),
    }
}

/// `Couldn't find a distribution for 'X'.` and its variants.
fn missing_requirement(output: &str) -> Option<String> {
    const MARKERS: &[&str] = &[
        "Couldn't find a distribution for '",
        "Couldn't find a source distribution for '",
    ];
    for line in output.lines().rev() {
        for m in MARKERS {
            if let Some(i) = line.find(m) {
                let rest = &line[i + m.len()..];
                return rest.split('\'').next().map(str::to_string);
            }
        }
        if let Some(rest) = line
            .trim()
            .strip_prefix("Error: We don't have a distribution for ")
        {
            return Some(rest.trim().to_string());
        }
    }
    None
}

/// The compiler-missing messages of gcc without its back ends (cc1 hidden),
/// of a shell or make without `cc`, and of distutils.
fn missing_compiler(output: &str) -> Option<String> {
    for line in output.lines() {
        let l = line.trim();
        if l.contains("cannot execute") && (l.contains("cc1") || l.contains("collect2")) {
            return Some(l.to_string());
        }
        for tool in ["gcc", "cc", "c++", "g++", "clang"] {
            let not_found = [
                format!("{tool}: not found"),
                format!("{tool}: command not found"),
                format!("command '{tool}' failed"),
                format!("unable to execute '{tool}'"),
                format!("No such file or directory: '{tool}'"),
            ];
            if not_found.iter().any(|p| l.contains(p.as_str())) {
                return Some(l.to_string());
            }
        }
    }
    None
}

fn failed_download(output: &str) -> Option<String> {
    output.lines().rev().find_map(|l| {
        let rest = l.trim().strip_prefix("Error: Couldn't download '")?;
        rest.split('\'').next().map(str::to_string)
    })
}

/// The innermost line of buildout's `While:` block, e.g. `Installing
/// app.` or `Processing develop directory '/t/src/x'.`, without the dot.
fn while_doing(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().collect();
    let start = lines.iter().rposition(|l| l.trim() == "While:")?;
    lines[start + 1..]
        .iter()
        .take_while(|l| l.starts_with("  "))
        .last()
        .map(|l| l.trim().trim_end_matches('.').to_string())
        .map(|l| match l.strip_prefix("Installing ") {
            Some(part) => format!("part '{part}'"),
            None => match l.strip_prefix("Processing develop directory ") {
                Some(dir) => format!("develop egg {dir}"),
                None => l,
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_requirement_names_it() {
        let out = "Installing app.\nGetting distribution for 'transaction'.\nWhile:\n  Installing app.\n  Getting distribution for 'transaction'.\nError: Couldn't find a distribution for 'transaction'.\n";
        let msg = explain(out);
        assert!(
            msg.starts_with(
                "requirement 'transaction' is not in this tree and would need the network"
            ),
            "{msg}"
        );
    }

    #[test]
    fn missing_compiler_names_the_develop_egg() {
        let out = "      gcc: fatal error: cannot execute \u{2018}cc1\u{2019}: execvp: No such file or directory\nWhile:\n  Installing.\n  Processing develop directory '/t/src/fast'.\n\nAn internal error occurred\n";
        let msg = explain(out);
        assert!(
            msg.starts_with("develop egg '/t/src/fast' needs a C compiler (gcc: fatal error"),
            "{msg}"
        );
    }

    #[test]
    fn other_failures_quote_the_error() {
        let out = "While:\n  Installing tiny.\nError: something odd\n";
        assert_eq!(explain(out), "buildout failed (part 'tiny': Error: something odd); fix buildout.cfg and run it again");
    }
}
