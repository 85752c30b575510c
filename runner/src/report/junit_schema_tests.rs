//! The JUnit output checked against the JUnit XML schema
//! (tests/data/junit-10.xsd): the schema file is read and interpreted here
//! (global and local elements, named complex types, attribute use and
//! simple-type patterns, mixed content, maxOccurs), then every element and
//! attribute of the report is checked against it. No network, no libxml.

use std::collections::HashMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::render;
use crate::report::sample;

#[derive(Debug, Default, Clone)]
struct Rule {
    /// Text allowed (mixed content or a simple type).
    text: bool,
    /// Child element name -> (rule key, max occurrences or None for unbounded).
    children: HashMap<String, (String, Option<usize>)>,
    /// Attribute -> (required, type name).
    attrs: HashMap<String, (bool, String)>,
}

#[derive(Debug, Default)]
struct Schema {
    /// Global elements and named complex types, by key ("e:NAME" / "t:NAME").
    rules: HashMap<String, Rule>,
    /// Global element name -> rule key.
    globals: HashMap<String, String>,
    /// Simple type -> pattern.
    patterns: HashMap<String, regex::Regex>,
}

fn attr(e: &BytesStart, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name.as_bytes())
        .map(|a| a.unescape_value().unwrap().into_owned())
}

fn local(e: &BytesStart) -> String {
    String::from_utf8(e.name().as_ref().to_vec()).unwrap()
}

fn parse_schema(text: &str) -> Schema {
    let mut s = Schema::default();
    let mut r = Reader::from_str(text);
    r.config_mut().trim_text(true);
    // Open rule keys (global elements, named types, local typed elements).
    let mut stack: Vec<(String, Option<String>)> = Vec::new();
    let mut unbounded_choice = 0usize;
    let mut simple: Option<String> = None;
    loop {
        let ev = r.read_event().unwrap();
        let (e, empty) = match &ev {
            Event::Start(e) => (e.clone(), false),
            Event::Empty(e) => (e.clone(), true),
            Event::End(e) => {
                let n = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                match n.as_str() {
                    "xs:element" | "xs:complexType" => {
                        stack.pop();
                    }
                    "xs:choice" => unbounded_choice = unbounded_choice.saturating_sub(1),
                    "xs:simpleType" => simple = None,
                    _ => {}
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let tag = local(&e);
        let owner = stack.iter().rev().find_map(|(_, k)| k.clone());
        let mut pushed = false;
        match tag.as_str() {
            "xs:element" => {
                if let Some(name) = attr(&e, "name") {
                    let ty = attr(&e, "type");
                    let key = match ty.as_deref() {
                        Some("xs:string") => {
                            let k = format!("s:{name}");
                            s.rules.insert(
                                k.clone(),
                                Rule {
                                    text: true,
                                    ..Rule::default()
                                },
                            );
                            k
                        }
                        Some(t) => format!("t:{t}"),
                        None => {
                            let k = format!("e:{name}");
                            s.rules.entry(k.clone()).or_default();
                            k
                        }
                    };
                    match &owner {
                        None => {
                            s.globals.insert(name.clone(), key.clone());
                        }
                        Some(o) => {
                            let max = max_occurs(&e, unbounded_choice);
                            s.rules
                                .get_mut(o)
                                .unwrap()
                                .children
                                .insert(name.clone(), (key.clone(), max));
                        }
                    }
                    stack.push((tag.clone(), Some(key)));
                    pushed = true;
                } else if let Some(name) = attr(&e, "ref") {
                    let o = owner.expect("ref inside a declaration");
                    let max = max_occurs(&e, unbounded_choice);
                    s.rules
                        .get_mut(&o)
                        .unwrap()
                        .children
                        .insert(name.clone(), (format!("ref:{name}"), max));
                    stack.push((tag.clone(), None));
                    pushed = true;
                }
            }
            "xs:complexType" => {
                let key = attr(&e, "name").map(|n| format!("t:{n}"));
                let target = key
                    .clone()
                    .or(owner.clone())
                    .expect("complexType placement");
                let rule = s.rules.entry(target).or_default();
                rule.text |= attr(&e, "mixed").as_deref() == Some("true");
                stack.push((tag.clone(), key));
                pushed = true;
            }
            "xs:choice" if attr(&e, "maxOccurs").as_deref() == Some("unbounded") && !empty => {
                unbounded_choice += 1;
            }
            "xs:attribute" => {
                let o = owner.expect("attribute inside a declaration");
                let name = attr(&e, "name").unwrap();
                let required = attr(&e, "use").as_deref() == Some("required");
                let ty = attr(&e, "type").unwrap_or_else(|| "xs:string".into());
                s.rules
                    .get_mut(&o)
                    .unwrap()
                    .attrs
                    .insert(name, (required, ty));
            }
            "xs:simpleType" => simple = attr(&e, "name"),
            "xs:pattern" => {
                let p = attr(&e, "value").unwrap();
                let re = regex::Regex::new(&format!("^(?:{p})$")).unwrap();
                s.patterns.insert(simple.clone().unwrap(), re);
            }
            _ => {}
        }
        if empty && pushed {
            stack.pop();
        }
    }
    s
}

fn max_occurs(e: &BytesStart, in_unbounded_choice: usize) -> Option<usize> {
    match attr(e, "maxOccurs").as_deref() {
        Some("unbounded") => None,
        Some(n) => Some(n.parse().unwrap()),
        None if in_unbounded_choice > 0 => None,
        None => Some(1),
    }
}

#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
    text: String,
}

fn parse_doc(text: &str) -> Node {
    let mut r = Reader::from_str(text);
    let mut stack: Vec<Node> = vec![Node::default()];
    loop {
        match r.read_event().unwrap() {
            Event::Start(e) => stack.push(node(&e)),
            Event::Empty(e) => {
                let n = node(&e);
                stack.last_mut().unwrap().children.push(n);
            }
            Event::End(_) => {
                let n = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(n);
            }
            Event::Text(t) => stack
                .last_mut()
                .unwrap()
                .text
                .push_str(&t.unescape().unwrap()),
            Event::Eof => break,
            _ => {}
        }
    }
    let mut root = stack.pop().unwrap();
    assert_eq!(root.children.len(), 1, "one root element");
    root.children.pop().unwrap()
}

fn node(e: &BytesStart) -> Node {
    Node {
        name: local(e),
        attrs: e
            .attributes()
            .map(|a| {
                let a = a.unwrap();
                (
                    String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                    a.unescape_value().unwrap().into_owned(),
                )
            })
            .collect(),
        ..Node::default()
    }
}

fn validate(s: &Schema, n: &Node, key: &str, path: &str, errors: &mut Vec<String>) {
    let key = key
        .strip_prefix("ref:")
        .map(|g| s.globals[g].clone())
        .unwrap_or(key.to_string());
    let rule = &s.rules[&key];
    let here = format!("{path}/{}", n.name);
    for (k, v) in &n.attrs {
        match rule.attrs.get(k) {
            None => errors.push(format!("{here}: attribute {k} not in the schema")),
            Some((_, ty)) => {
                if let Some(p) = s.patterns.get(ty) {
                    if !p.is_match(v) {
                        errors.push(format!("{here}: {k}={v:?} does not match {ty}"));
                    }
                }
            }
        }
    }
    for (k, (required, _)) in &rule.attrs {
        if *required && !n.attrs.iter().any(|(a, _)| a == k) {
            errors.push(format!("{here}: required attribute {k} missing"));
        }
    }
    if !rule.text && !n.text.trim().is_empty() {
        errors.push(format!("{here}: text where the schema allows none"));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for c in &n.children {
        match rule.children.get(&c.name) {
            None => errors.push(format!("{here}: child <{}> not allowed", c.name)),
            Some((child_key, max)) => {
                let count = seen.entry(&c.name).or_default();
                *count += 1;
                if max.is_some_and(|m| *count > m) {
                    errors.push(format!("{here}: more than {} <{}>", max.unwrap(), c.name));
                }
                validate(s, c, child_key, &here, errors);
            }
        }
    }
}

fn schema() -> Schema {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/junit-10.xsd");
    parse_schema(&std::fs::read_to_string(p).unwrap())
}

fn check(xml: &str) -> Vec<String> {
    let s = schema();
    let root = parse_doc(xml);
    let mut errors = Vec::new();
    match s.globals.get(&root.name) {
        Some(k) if root.name == "testsuites" => validate(&s, &root, k, "", &mut errors),
        _ => errors.push(format!("root <{}> is not <testsuites>", root.name)),
    }
    errors
}

#[test]
fn the_schema_reads_as_expected() {
    let s = schema();
    let tc = &s.rules[&s.globals["testcase"]];
    assert!(tc.attrs["name"].0 && !tc.attrs["time"].0);
    assert_eq!(tc.children["failure"].1, None);
    let rerun = &s.rules["t:rerunType"];
    assert!(rerun.text && rerun.attrs["type"].0);
    assert_eq!(rerun.children["system-out"].1, Some(1));
    assert!(s.patterns["SUREFIRE_TIME"].is_match("12.300"));
    assert!(!s.patterns["SUREFIRE_TIME"].is_match("1e3"));
}

#[test]
fn junit_output_is_valid_against_the_schema() {
    let results = sample::results();
    let xml = render("cxlvmm test m.toml", &results);
    let errors = check(&xml);
    assert!(errors.is_empty(), "{errors:#?}\n{xml}");
}

#[test]
fn the_checker_catches_what_the_schema_forbids() {
    let bad = [
        ("<testsuite name=\"x\" tests=\"1\" failures=\"0\" errors=\"0\"/>", "is not <testsuites>"),
        ("<testsuites><testsuite name=\"x\" tests=\"1\" failures=\"0\"/></testsuites>", "required attribute errors"),
        ("<testsuites><testsuite name=\"x\" tests=\"1\" failures=\"0\" errors=\"0\" time=\"-1\"/></testsuites>", "does not match SUREFIRE_TIME"),
        ("<testsuites><testsuite name=\"x\" tests=\"1\" failures=\"0\" errors=\"0\"><testcase/></testsuite></testsuites>", "required attribute name"),
        ("<testsuites><testsuite name=\"x\" tests=\"1\" failures=\"0\" errors=\"0\"><testcase name=\"a\" status=\"x\"/></testsuite></testsuites>", "attribute status not in the schema"),
        ("<testsuites><testsuite name=\"x\" tests=\"1\" failures=\"0\" errors=\"0\"><testcase name=\"a\"><rerunError/></testcase></testsuite></testsuites>", "required attribute type"),
        ("<testsuites><testsuite name=\"x\" tests=\"1\" failures=\"0\" errors=\"0\"><testcase name=\"a\"><rerunError type=\"E\"><system-out/><system-out/></rerunError></testcase></testsuite></testsuites>", "more than 1 <system-out>"),
        ("<testsuites><testsuite name=\"x\" tests=\"1\" failures=\"0\" errors=\"0\"><testcase name=\"a\"><result/></testcase></testsuite></testsuites>", "child <result> not allowed"),
        ("<testsuites>text<testsuite name=\"x\" tests=\"1\" failures=\"0\" errors=\"0\"/></testsuites>", "text where"),
    ];
    for (xml, wanted) in bad {
        let errors = check(xml);
        assert!(
            errors.iter().any(|e| e.contains(wanted)),
            "{xml}: {errors:?}"
        );
    }
}

#[test]
fn counts_agree_with_the_testcases() {
    let results = sample::results();
    let root = parse_doc(&render("t", &results));
    let get = |n: &Node, k: &str| -> usize {
        n.attrs
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.parse().unwrap())
            .unwrap()
    };
    let (mut tests, mut failures, mut errors) = (0, 0, 0);
    for suite in &root.children {
        let cases: Vec<&Node> = suite
            .children
            .iter()
            .filter(|c| c.name == "testcase")
            .collect();
        let count = |what: &str| {
            cases
                .iter()
                .filter(|c| c.children.iter().any(|x| x.name == what))
                .count()
        };
        assert_eq!(get(suite, "tests"), cases.len());
        assert_eq!(get(suite, "failures"), count("failure"));
        assert_eq!(get(suite, "errors"), count("error"));
        assert_eq!(get(suite, "skipped"), count("skipped"));
        tests += cases.len();
        failures += count("failure");
        errors += count("error");
    }
    assert_eq!(
        (
            get(&root, "tests"),
            get(&root, "failures"),
            get(&root, "errors")
        ),
        (tests, failures, errors)
    );
    // 8 jobs + 3 KTAP results; FAIL, FAIL, KTAP b, SPLAT; CRASH, TIMEOUT, INFRA.
    assert_eq!((tests, failures, errors), (11, 4, 3));
    // Control characters from the console were replaced, not written.
    let xml = render("t", &results);
    assert!(!xml.contains('\u{1b}') && !xml.contains('\u{0}'));
    assert!(xml.contains("console of boot &lt;&amp;&gt;"));
}
