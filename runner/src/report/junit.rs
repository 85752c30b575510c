//! `--junit FILE`: JUnit XML as CI systems read it (the Jenkins/Surefire
//! schema, tests/data/junit-10.xsd). One `<testsuite>` per job; in it one
//! `<testcase>` for the guest run itself and one per KTAP result.
//! FAIL and SPLAT are `<failure>`s, CRASH, TIMEOUT and INFRA `<error>`s;
//! earlier tries of a retried job are `<rerunError>` (or `<flakyError>`
//! when a later try passed).

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use super::CaseResult;
use crate::ktap::Outcome;
use crate::verdict::Status;

/// Console kept in `<system-out>` per job.
const SYSTEM_OUT_BYTES: usize = 64 << 10;

/// XML 1.0 allows no control characters but tab, newline and return.
pub fn xml_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

fn time(seconds: f64) -> String {
    format!("{:.3}", seconds.max(0.0))
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

struct Xml {
    w: Writer<Vec<u8>>,
}

impl Xml {
    fn start(&mut self, name: &str, attrs: &[(&str, String)]) {
        let mut e = BytesStart::new(name);
        for (k, v) in attrs {
            e.push_attribute((*k, xml_safe(v).as_str()));
        }
        self.w
            .write_event(Event::Start(e))
            .expect("write to memory");
    }
    fn empty(&mut self, name: &str, attrs: &[(&str, String)]) {
        let mut e = BytesStart::new(name);
        for (k, v) in attrs {
            e.push_attribute((*k, xml_safe(v).as_str()));
        }
        self.w
            .write_event(Event::Empty(e))
            .expect("write to memory");
    }
    fn end(&mut self, name: &str) {
        self.w
            .write_event(Event::End(BytesEnd::new(name)))
            .expect("write to memory");
    }
    fn text(&mut self, t: &str) {
        self.w
            .write_event(Event::Text(BytesText::new(&xml_safe(t))))
            .expect("write to memory");
    }
    fn element(&mut self, name: &str, attrs: &[(&str, String)], body: &str) {
        if body.is_empty() {
            self.empty(name, attrs);
        } else {
            self.start(name, attrs);
            self.text(body);
            self.end(name);
        }
    }
}

fn is_error(s: Status) -> bool {
    matches!(s, Status::Crash | Status::Timeout | Status::Infra)
}

pub fn render(title: &str, results: &[CaseResult]) -> String {
    let mut x = Xml {
        w: Writer::new_with_indent(Vec::new(), b' ', 2),
    };
    x.w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .expect("write to memory");
    let (mut tests, mut failures, mut errors) = (0usize, 0usize, 0usize);
    for r in results {
        let (t, f, e, _) = counts(r);
        tests += t;
        failures += f;
        errors += e;
    }
    let total_time: f64 = results.iter().map(|r| r.duration_s).sum();
    x.start(
        "testsuites",
        &[
            ("name", title.to_string()),
            ("tests", tests.to_string()),
            ("failures", failures.to_string()),
            ("errors", errors.to_string()),
            ("time", time(total_time)),
        ],
    );
    for r in results {
        suite(&mut x, r);
    }
    x.end("testsuites");
    let mut out = String::from_utf8(x.w.into_inner()).expect("UTF-8 in, UTF-8 out");
    out.push('\n');
    out
}

/// (tests, failures, errors, skipped) of one job's suite.
fn counts(r: &CaseResult) -> (usize, usize, usize, usize) {
    let mut c = (1, 0, 0, 0);
    match r.status {
        Status::Pass => {}
        s if is_error(s) => c.2 += 1,
        _ => c.1 += 1,
    }
    for doc in &r.ktap {
        for f in doc.flatten() {
            c.0 += 1;
            match f.result.outcome {
                Outcome::Fail | Outcome::Error => c.1 += 1,
                Outcome::Skip => c.3 += 1,
                _ => {}
            }
        }
    }
    c
}

fn suite(x: &mut Xml, r: &CaseResult) {
    let (tests, failures, errors, skipped) = counts(r);
    x.start(
        "testsuite",
        &[
            ("name", r.id.clone()),
            ("tests", tests.to_string()),
            ("failures", failures.to_string()),
            ("errors", errors.to_string()),
            ("skipped", skipped.to_string()),
            ("time", time(r.duration_s)),
        ],
    );
    x.start("properties", &[]);
    let mut props = vec![
        ("case", r.case.clone()),
        ("kernel", r.kernel.clone()),
        ("topology", r.topology.clone()),
        ("status", r.status.name().to_string()),
        ("expect_exit", r.expect_exit.to_string()),
        (
            "exit_code",
            r.exit_code.map_or("none".into(), |c| c.to_string()),
        ),
        ("out_dir", r.out_dir.clone()),
        ("rerun", r.rerun.clone()),
    ];
    if let Some(b) = r.boot_s {
        props.push(("boot_s", format!("{b:.3}")));
    }
    if r.console_capped {
        props.push(("console_capped", format!("{} bytes seen", r.console_bytes)));
    }
    for (k, v) in props {
        x.empty("property", &[("name", k.to_string()), ("value", v)]);
    }
    x.end("properties");

    let classname = r.id.replace('/', ".");
    x.start(
        "testcase",
        &[
            ("name", r.case.clone()),
            ("classname", classname.clone()),
            ("time", time(r.duration_s)),
        ],
    );
    if r.status != Status::Pass {
        let mut body = String::new();
        for s in r.splats.iter().filter(|s| !s.ignored) {
            body.push_str(&format!("{} [{}]\n", s.title, s.fingerprint));
            for l in &s.lines {
                body.push_str(&format!("    {l}\n"));
            }
        }
        let name = if is_error(r.status) {
            "error"
        } else {
            "failure"
        };
        x.element(
            name,
            &[
                ("type", r.status.name().to_string()),
                ("message", r.reason.clone()),
            ],
            &body,
        );
    }
    for a in &r.attempts {
        let name = if r.status == Status::Pass {
            "flakyError"
        } else {
            "rerunError"
        };
        x.start(
            name,
            &[
                ("type", a.status.name().to_string()),
                ("message", a.reason.clone()),
            ],
        );
        x.element("system-out", &[], &format!("files: {}", a.dir));
        x.end(name);
    }
    x.element("system-out", &[], tail(&r.console_tail, SYSTEM_OUT_BYTES));
    x.end("testcase");

    for doc in &r.ktap {
        for f in doc.flatten() {
            let res = f.result;
            x.start(
                "testcase",
                &[
                    ("name", f.path.join(".")),
                    ("classname", format!("{classname}.ktap")),
                    ("time", time(0.0)),
                ],
            );
            let why = res.reason.clone().unwrap_or_default();
            match res.outcome {
                Outcome::Fail | Outcome::Error => x.element(
                    "failure",
                    &[
                        ("type", format!("{:?}", res.outcome).to_uppercase()),
                        ("message", why),
                    ],
                    &res.diagnostics.join("\n"),
                ),
                Outcome::Skip => x.empty("skipped", &[("message", why)]),
                Outcome::Pass | Outcome::Todo | Outcome::Xfail => {
                    if !res.diagnostics.is_empty() {
                        x.element("system-out", &[], &res.diagnostics.join("\n"));
                    }
                }
            }
            x.end("testcase");
        }
    }
    x.end("testsuite");
}

#[cfg(test)]
#[path = "junit_schema_tests.rs"]
mod schema_tests;
