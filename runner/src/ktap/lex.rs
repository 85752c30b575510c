//! KTAP lines into tokens with a nesting depth. Depth is the indentation
//! (KUnit indents subtests by 4 spaces or a tab) plus 1000 per level of
//! kselftest's `# ` prefix, which its runner puts before every line of a
//! test's own TAP output once that output has started with a version line.

use super::Outcome;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultLine {
    pub number: u32,
    pub name: String,
    pub outcome: Outcome,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Version(String),
    Plan(u32),
    Result(ResultLine),
    Subtest(String),
    Diagnostic(String),
    Bail(String),
    /// Anything else (kernel lines, KUnit's unprefixed expectation text).
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tok {
    pub depth: u32,
    /// 1-based line in the input.
    pub line: usize,
    pub kind: Kind,
}

const HASH_LEVEL: u32 = 1000;

pub fn lex(text: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    // Levels of `# ` nesting opened by a `# TAP version` line.
    let mut hash_levels = 0u32;
    for (i, raw) in text.lines().enumerate() {
        let msg = crate::logline::message(raw);
        let (indent, mut body) = indentation(msg);
        let mut levels = 0;
        while levels < hash_levels {
            match body
                .strip_prefix("# ")
                .or_else(|| (body == "#").then_some(""))
            {
                Some(rest) => {
                    body = rest;
                    levels += 1;
                }
                None => break,
            }
        }
        hash_levels = levels;
        let (inner_indent, b) = indentation(body);
        body = b;
        let mut kind = classify(body);
        if let Kind::Diagnostic(d) = &kind {
            // `# TAP version 13` opens a `# `-prefixed nested document.
            if let Some(v) = version(d) {
                hash_levels += 1;
                levels += 1;
                kind = Kind::Version(v);
            }
        }
        if matches!(kind, Kind::Other(_)) && body.trim().is_empty() {
            continue;
        }
        toks.push(Tok {
            depth: levels * HASH_LEVEL + indent + inner_indent,
            line: i + 1,
            kind,
        });
    }
    toks
}

/// Width of the leading whitespace (a tab is one KUnit level: 4) and the rest.
fn indentation(s: &str) -> (u32, &str) {
    let rest = s.trim_start_matches([' ', '\t']);
    let lead = &s[..s.len() - rest.len()];
    let width = lead.chars().map(|c| if c == '\t' { 4 } else { 1 }).sum();
    (width, rest)
}

fn version(s: &str) -> Option<String> {
    let s = s.trim_end();
    let rest = s
        .strip_prefix("KTAP version ")
        .or_else(|| s.strip_prefix("TAP version "))?;
    (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())).then(|| s.to_string())
}

fn classify(body: &str) -> Kind {
    let body = body.trim_end();
    if let Some(v) = version(body) {
        return Kind::Version(v);
    }
    if let Some(rest) = body.strip_prefix("1..") {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let tail = rest[digits.len()..].trim_start();
        if !digits.is_empty() && (tail.is_empty() || tail.starts_with('#')) {
            if let Ok(n) = digits.parse() {
                return Kind::Plan(n);
            }
        }
    }
    if let Some(rest) = body.strip_prefix("Bail out!") {
        return Kind::Bail(rest.trim().to_string());
    }
    if let Some(name) = body.strip_prefix("# Subtest:") {
        return Kind::Subtest(name.trim().to_string());
    }
    if let Some(r) = result(body) {
        return Kind::Result(r);
    }
    if body == "#" || body.starts_with("# ") {
        return Kind::Diagnostic(body.trim_start_matches('#').trim_start().to_string());
    }
    Kind::Other(body.to_string())
}

/// `ok 3 - name # SKIP reason`, `not ok 1 name`, `ok 2 # TODO x`.
fn result(body: &str) -> Option<ResultLine> {
    let (ok, rest) = if let Some(r) = body.strip_prefix("not ok ") {
        (false, r)
    } else if let Some(r) = body.strip_prefix("ok ") {
        (true, r)
    } else {
        return None;
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let number: u32 = digits.parse().ok()?;
    let after = &rest[digits.len()..];
    if !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    let after = after.trim_start();
    let (desc, directive) = split_directive(after);
    let name = desc.strip_prefix("- ").unwrap_or(desc).trim().to_string();
    let name = if name == "-" { String::new() } else { name };
    let (outcome, reason) = match directive {
        Some((word, reason)) => {
            let reason = (!reason.is_empty()).then(|| reason.to_string());
            match (ok, word.to_ascii_uppercase().as_str()) {
                (_, "SKIP") => (Outcome::Skip, reason),
                (false, "TODO") => (Outcome::Todo, reason),
                (true, "XFAIL") => (Outcome::Xfail, reason),
                (true, _) => (
                    Outcome::Pass,
                    Some(
                        format!("{word} {}", reason.unwrap_or_default())
                            .trim()
                            .to_string(),
                    ),
                ),
                (false, _) => (
                    Outcome::Fail,
                    Some(
                        format!("{word} {}", reason.unwrap_or_default())
                            .trim()
                            .to_string(),
                    ),
                ),
            }
        }
        None => (if ok { Outcome::Pass } else { Outcome::Fail }, None),
    };
    Some(ResultLine {
        number,
        name,
        outcome,
        reason,
    })
}

/// Splits "desc # DIRECTIVE reason" at the first unescaped `#` that
/// starts a directive or note. `\#` in the description is a literal `#`.
fn split_directive(s: &str) -> (&str, Option<(&str, &str)>) {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == b'#' && (i == 0 || bytes[i - 1] == b' ') {
            let desc = s[..i].trim_end();
            let rest = s[i + 1..].trim();
            let (word, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            return (desc, Some((word, reason.trim())));
        }
        i += 1;
    }
    (s, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(u32, Kind)> {
        lex(text).into_iter().map(|t| (t.depth, t.kind)).collect()
    }

    #[test]
    fn result_lines_with_directives() {
        let r = |s: &str| result(s).unwrap();
        assert_eq!(r("ok 1 - example_simple_test").name, "example_simple_test");
        assert_eq!(r("ok 2 selftests: a: b").name, "selftests: a: b");
        let s = r("ok 2 - example_skip_test # SKIP this test should be skipped");
        assert_eq!(
            (s.outcome, s.reason.as_deref()),
            (Outcome::Skip, Some("this test should be skipped"))
        );
        let t = r("not ok 4 - flaky # TODO not fixed yet");
        assert_eq!((t.outcome, t.name.as_str()), (Outcome::Todo, "flaky"));
        assert_eq!(r("ok 4 - flaky # todo").outcome, Outcome::Pass);
        assert_eq!(r("ok 7 t # XFAIL expected").outcome, Outcome::Xfail);
        assert_eq!(r("not ok 3 - x # SKIP").outcome, Outcome::Skip);
        assert_eq!(r("not ok 3 - a \\# b").name, "a \\# b");
        assert_eq!(r("ok 5 # SKIP all").name, "");
        assert_eq!(r("not ok 9").outcome, Outcome::Fail);
        assert!(result("ok").is_none());
        assert!(result("ok 1x").is_none());
        assert!(result("okay 1").is_none());
    }

    #[test]
    fn kselftest_hash_nesting_opens_with_a_version_line() {
        let text = "TAP version 13\n1..1\n# selftests: a: b\n# TAP version 13\n# 1..1\n# ok 1 inner\n# # note\nok 1 selftests: a: b\n# not nested\n";
        assert_eq!(
            kinds(text),
            [
                (0, Kind::Version("TAP version 13".into())),
                (0, Kind::Plan(1)),
                (0, Kind::Diagnostic("selftests: a: b".into())),
                (1000, Kind::Version("TAP version 13".into())),
                (1000, Kind::Plan(1)),
                (1000, Kind::Result(result("ok 1 inner").unwrap())),
                (1000, Kind::Diagnostic("note".into())),
                (0, Kind::Result(result("ok 1 selftests: a: b").unwrap())),
                (0, Kind::Diagnostic("not nested".into())),
            ]
        );
    }
}
