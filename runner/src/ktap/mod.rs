//! KTAP and TAP 13/14 as kselftest and KUnit print them
//! (Documentation/dev-tools/ktap.rst in the Linux tree): version line,
//! plan, `ok`/`not ok` results with SKIP/TODO/XFAIL directives, `#`
//! diagnostics, `# Subtest:` headers and nested subtests, indented (KUnit)
//! or `# `-prefixed (kselftest's runner). Documents are found anywhere in a
//! console transcript; lines that are not KTAP are skipped.

mod lex;
#[cfg(test)]
mod tests;

use lex::{Kind, Tok};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
    /// `not ok ... # TODO`: a known failure, not counted as one.
    Todo,
    /// `ok ... # XFAIL` (kselftest): failed as expected.
    Xfail,
    /// No result line where the plan promised one, or a bail out.
    Error,
}

impl Outcome {
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Fail | Outcome::Error)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestResult {
    pub number: u32,
    pub name: String,
    pub outcome: Outcome,
    /// The directive's reason or the note after `#`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `#` lines printed for this test (before its result line).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subtests: Vec<TestResult>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Document {
    /// e.g. "KTAP version 1", "TAP version 13".
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<u32>,
    pub tests: Vec<TestResult>,
    /// What did not follow the format (missing results, bail out...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// One result, flattened: its path of names from the top-level test down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flat<'a> {
    pub path: Vec<&'a str>,
    pub result: &'a TestResult,
}

impl Document {
    /// Every result, parents before their subtests.
    pub fn flatten(&self) -> Vec<Flat<'_>> {
        fn walk<'a>(t: &'a TestResult, path: &mut Vec<&'a str>, out: &mut Vec<Flat<'a>>) {
            path.push(&t.name);
            out.push(Flat {
                path: path.clone(),
                result: t,
            });
            for s in &t.subtests {
                walk(s, path, out);
            }
            path.pop();
        }
        let mut out = Vec::new();
        for t in &self.tests {
            walk(t, &mut Vec::new(), &mut out);
        }
        out
    }

    /// Counts of (all, failed, skipped) results, subtests included.
    pub fn counts(&self) -> (usize, usize, usize) {
        let flat = self.flatten();
        let failed = flat
            .iter()
            .filter(|f| f.result.outcome.is_failure())
            .count();
        let skipped = flat
            .iter()
            .filter(|f| f.result.outcome == Outcome::Skip)
            .count();
        (flat.len(), failed, skipped)
    }
}

/// Every KTAP/TAP document in `text` (a console transcript or a log).
pub fn parse(text: &str) -> Vec<Document> {
    let toks = lex::lex(text);
    let mut docs = Vec::new();
    let mut pos = 0;
    while pos < toks.len() {
        if let Kind::Version(v) = &toks[pos].kind {
            let depth = toks[pos].depth;
            let version = v.clone();
            pos += 1;
            let block = parse_block(&toks, &mut pos, depth, Mode::Top);
            docs.push(Document {
                version,
                plan: block.plan,
                tests: block.tests,
                problems: block.problems,
            });
        } else {
            pos += 1;
        }
    }
    docs
}

#[derive(Default)]
struct Block {
    name: Option<String>,
    plan: Option<u32>,
    tests: Vec<TestResult>,
    problems: Vec<String>,
    started: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A top-level document: ends at the next version line at its depth
    /// or at a line less indented.
    Top,
    /// A subtest indented deeper than its parent: ends at the first
    /// structural line less indented.
    Nested,
    /// A subtest at its parent's indentation (older KUnit): ends when its
    /// plan is complete or at the result line that names it.
    Flat,
}

fn parse_block(toks: &[Tok], pos: &mut usize, depth: u32, mode: Mode) -> Block {
    let mut b = Block::default();
    let mut child: Option<Block> = None;
    let mut diags: Vec<String> = Vec::new();
    while *pos < toks.len() {
        let t = &toks[*pos];
        if let Kind::Other(text) = &t.kind {
            // Inside an indented subtest, unknown lines as deep as it are
            // its log (KUnit prints expectation details without `#`);
            // at the top they are the rest of the console.
            if depth > 0 && t.depth >= depth {
                diags.push(text.clone());
            }
            *pos += 1;
            continue;
        }
        if t.depth < depth {
            break;
        }
        if t.depth > depth {
            match t.kind {
                Kind::Diagnostic(ref d) => {
                    diags.push(d.clone());
                    *pos += 1;
                }
                Kind::Bail(ref r) => {
                    b.problems.push(format!("bail out: {r}"));
                    *pos += 1;
                }
                _ => {
                    let start = *pos;
                    if let Kind::Version(_) = t.kind {
                        *pos += 1;
                    }
                    let c = parse_block(toks, pos, t.depth, Mode::Nested);
                    if let Some(orphan) = child.replace(c) {
                        b.problems.push(orphan_problem(&orphan, toks[start].line));
                    }
                }
            }
            continue;
        }
        match &t.kind {
            Kind::Version(_) | Kind::Subtest(_) if b.started => {
                if mode != Mode::Flat && b.plan.is_none_or(|n| b.tests.len() >= n as usize) {
                    break; // the next document (or the parent's next subtest)
                }
                if mode == Mode::Flat {
                    break; // a sibling of this flat subtest
                }
                if let Kind::Version(_) = t.kind {
                    *pos += 1;
                }
                let c = parse_block(toks, pos, depth, Mode::Flat);
                if let Some(orphan) = child.replace(c) {
                    b.problems.push(orphan_problem(&orphan, t.line));
                }
            }
            Kind::Version(_) => {
                // A version line repeated before anything else: harmless.
                *pos += 1;
            }
            Kind::Subtest(name) => {
                b.name = Some(name.clone());
                b.started = true;
                *pos += 1;
            }
            Kind::Plan(n) => {
                if b.plan.is_some() {
                    b.problems
                        .push(format!("line {}: a second plan 1..{n}", t.line));
                } else {
                    b.plan = Some(*n);
                }
                b.started = true;
                *pos += 1;
            }
            Kind::Diagnostic(d) => {
                diags.push(d.clone());
                *pos += 1;
            }
            Kind::Bail(r) => {
                b.problems.push(format!("bail out: {r}"));
                *pos += 1;
                break;
            }
            Kind::Result(r) => {
                if mode == Mode::Flat && b.name.as_deref() == Some(r.name.as_str()) {
                    break; // the parent's result line for this subtest
                }
                let mut result = TestResult {
                    number: r.number,
                    name: r.name.clone(),
                    outcome: r.outcome,
                    reason: r.reason.clone(),
                    diagnostics: std::mem::take(&mut diags),
                    subtests: Vec::new(),
                };
                if let Some(c) = child.take() {
                    if let Some(n) = &c.name {
                        if result.name.is_empty() {
                            result.name = n.clone();
                        }
                    }
                    b.problems.extend(c.problems);
                    result.subtests = c.tests;
                }
                let expected = b.tests.len() as u32 + 1;
                if r.number != expected {
                    b.problems.push(format!(
                        "line {}: test number {} where {} was due",
                        t.line, r.number, expected
                    ));
                }
                b.tests.push(result);
                b.started = true;
                *pos += 1;
                if mode == Mode::Flat && b.plan.is_some_and(|n| b.tests.len() >= n as usize) {
                    break;
                }
            }
            Kind::Other(_) => unreachable!("handled above"),
        }
    }
    if let Some(orphan) = child.take() {
        b.problems.push(orphan_problem(&orphan, 0));
        b.tests.push(TestResult {
            number: b.tests.len() as u32 + 1,
            name: orphan.name.unwrap_or_else(|| "subtest".into()),
            outcome: Outcome::Error,
            reason: Some("no result line for this subtest (output ended)".into()),
            diagnostics: Vec::new(),
            subtests: orphan.tests,
        });
    }
    if let Some(n) = b.plan {
        for missing in b.tests.len() as u32 + 1..=n {
            b.tests.push(TestResult {
                number: missing,
                name: format!("test {missing}"),
                outcome: Outcome::Error,
                reason: Some(format!(
                    "planned 1..{n} but no result for test {missing} (crash or timeout?)"
                )),
                diagnostics: Vec::new(),
                subtests: Vec::new(),
            });
        }
        if b.tests.len() > n as usize {
            b.problems
                .push(format!("{} results for a plan of 1..{n}", b.tests.len()));
        }
    }
    b
}

fn orphan_problem(orphan: &Block, line: usize) -> String {
    let name = orphan.name.as_deref().unwrap_or("(unnamed)");
    if line == 0 {
        format!("subtest {name} has no result line")
    } else {
        format!("line {line}: subtest {name} has no result line")
    }
}
