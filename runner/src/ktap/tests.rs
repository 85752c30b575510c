//! The samples in tests/data/ktap/ are written by hand after the formats the
//! kernel prints (see the header of each file): KUnit (lib/kunit/test.c,
//! lib/kunit/debugfs.c), the kselftest runner
//! (tools/testing/selftests/kselftest/runner.sh) and the examples of
//! Documentation/dev-tools/ktap.rst.

use super::*;

fn sample(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/ktap")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    // Sample files open with `;;` comment lines saying where the format comes from.
    text.lines()
        .filter(|l| !l.starts_with(";;"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// (path, outcome) of every result, parents first.
fn tree(doc: &Document) -> Vec<(String, Outcome)> {
    doc.flatten()
        .iter()
        .map(|f| (f.path.join("."), f.result.outcome))
        .collect()
}

fn only_doc(text: &str) -> Document {
    let docs = parse(text);
    assert_eq!(docs.len(), 1, "{docs:#?}");
    docs.into_iter().next().unwrap()
}

use Outcome::*;

#[test]
fn ktap_rst_example_three_levels() {
    let doc = only_doc(&sample("ktap-rst-example.log"));
    assert_eq!(doc.version, "KTAP version 1");
    assert_eq!(doc.plan, Some(1));
    assert_eq!(
        tree(&doc),
        [
            ("main_test".into(), Fail),
            ("main_test.example_test_1".into(), Pass),
            ("main_test.example_test_1.test_1".into(), Pass),
            ("main_test.example_test_2".into(), Pass),
            ("main_test.example_test_2.test_1".into(), Skip),
            ("main_test.example_test_2.test_2".into(), Pass),
            ("main_test.example_test_3".into(), Fail),
            ("main_test.example_test_3.test_1".into(), Pass),
            ("main_test.example_test_3.test_2".into(), Fail),
            ("main_test.example_test_3.test_3".into(), Skip),
        ]
    );
    let flat = doc.flatten();
    let t1 = flat[2].result;
    assert_eq!(t1.diagnostics, ["test_1: initializing test_1"]);
    assert_eq!(flat[4].result.reason.as_deref(), Some("test_1 skipped"));
    assert_eq!(flat[8].result.diagnostics, ["test_2: FAIL"]);
    assert!(doc.problems.is_empty(), "{:?}", doc.problems);
    assert_eq!(doc.counts(), (10, 3, 2));
}

#[test]
fn kunit_suites_with_subtest_headers_and_skips() {
    let doc = only_doc(&sample("kunit-skip.log"));
    assert_eq!(doc.version, "KTAP version 1");
    assert_eq!(
        tree(&doc),
        [
            ("example".into(), Pass),
            ("example.example_simple_test".into(), Pass),
            ("example.example_skip_test".into(), Skip),
            ("example.example_mark_skipped_test".into(), Skip),
            ("example.example_all_expect_macros_test".into(), Pass),
            ("string-stream-test".into(), Pass),
            (
                "string-stream-test.string_stream_test_empty_on_creation".into(),
                Pass
            ),
            (
                "string-stream-test.string_stream_test_get_string".into(),
                Pass
            ),
        ]
    );
    let skip = doc.flatten()[2].result.clone();
    assert_eq!(skip.reason.as_deref(), Some("this test should be skipped"));
    assert_eq!(
        skip.diagnostics,
        [
            "example_skip_test: initializing",
            "example_skip_test: You should not see a line below."
        ]
    );
    assert!(doc.problems.is_empty(), "{:?}", doc.problems);
}

#[test]
fn kunit_failure_with_expectation_diagnostics_from_dmesg() {
    // As it reaches the console through printk: timestamps, kernel lines
    // interleaved that belong to no test.
    let doc = only_doc(&sample("kunit-failure-dmesg.log"));
    assert_eq!(
        tree(&doc),
        [
            ("cxl_test_suite".into(), Fail),
            ("cxl_test_suite.decode_ok".into(), Pass),
            ("cxl_test_suite.decode_interleave".into(), Fail),
            ("cxl_test_suite.decode_flaky".into(), Todo),
        ]
    );
    let failed = doc.flatten()[2].result.clone();
    assert_eq!(
        failed.diagnostics,
        [
            "decode_interleave: EXPECTATION FAILED at drivers/cxl/core/test.c:87",
            "Expected ways == 4, but",
            "ways == 2 (0x2)",
        ]
    );
    assert_eq!(doc.counts().1, 2);
}

#[test]
fn kselftest_runner_nests_with_hash_prefix() {
    let doc = only_doc(&sample("kselftest.log"));
    assert_eq!(doc.version, "TAP version 13");
    assert_eq!(doc.plan, Some(3));
    assert_eq!(
        tree(&doc),
        [
            ("selftests: membarrier: membarrier_test_single_thread".into(), Pass),
            ("selftests: membarrier: membarrier_test_single_thread.sys_membarrier available".into(), Pass),
            ("selftests: membarrier: membarrier_test_single_thread.sys membarrier invalid command test: command = -1, flags = 0, errno = 22. Failed as expected".into(), Pass),
            ("selftests: cxl: cxl-events.sh".into(), Fail),
            ("selftests: cxl: cxl-events.sh.event_count".into(), Pass),
            ("selftests: cxl: cxl-events.sh.event_clear".into(), Fail),
            ("selftests: cxl: cxl-events.sh.poison_inject".into(), Xfail),
            ("selftests: cxl: no_hardware".into(), Skip),
        ]
    );
    let ev = doc.flatten()[5].result.clone();
    assert_eq!(ev.diagnostics, ["event_clear: 3 events left"]);
    assert!(doc.problems.is_empty(), "{:?}", doc.problems);
}

#[test]
fn missing_plan_and_tab_indentation() {
    let doc = only_doc(&sample("kunit-missing-plan.log"));
    assert_eq!(doc.plan, None);
    let t = tree(&doc);
    assert_eq!(t.len(), 2 + 4 + 2);
    assert_eq!(t[0], ("sysctl_test".into(), Pass));
    assert_eq!(
        t[4],
        (
            "sysctl_test.sysctl_test_dointvec_table_read_but_position_set".into(),
            Pass
        )
    );
    assert_eq!(t[5], ("example".into(), Pass));
    assert!(t.iter().all(|(_, o)| *o == Pass));
}

#[test]
fn output_cut_short_by_a_crash_leaves_errors_for_what_was_planned() {
    let doc = only_doc(&sample("kunit-crash.log"));
    let t = tree(&doc);
    // The suite's own result line never came, nor tests 3 and 4 of it, nor
    // the second suite.
    assert_eq!(
        t,
        [
            ("kunit-resource-test".into(), Error),
            (
                "kunit-resource-test.kunit_resource_test_init_resources".into(),
                Pass
            ),
            (
                "kunit-resource-test.kunit_resource_test_alloc_resource".into(),
                Pass
            ),
            ("kunit-resource-test.test 3".into(), Error),
            ("kunit-resource-test.test 4".into(), Error),
            ("test 2".into(), Error),
        ]
    );
    assert!(
        doc.problems.iter().any(|p| p.contains("no result line")),
        "{:?}",
        doc.problems
    );
    assert_eq!(doc.counts().1, 4);
}

#[test]
fn unindented_subtests_of_older_kunit() {
    let text = "TAP version 14\n1..2\n# Subtest: a\n1..2\nok 1 - x\nnot ok 2 - y\nnot ok 1 - a\n# Subtest: b\n1..1\nok 1 - z\nok 2 - b\n";
    let doc = only_doc(text);
    assert_eq!(
        tree(&doc),
        [
            ("a".into(), Fail),
            ("a.x".into(), Pass),
            ("a.y".into(), Fail),
            ("b".into(), Pass),
            ("b.z".into(), Pass),
        ]
    );
}

#[test]
fn two_documents_bail_out_and_numbering_problems() {
    let text = "boot noise\nTAP version 13\n1..2\nok 1 first\nBail out! no hardware\nok 1 ignored\nmore noise\nKTAP version 1\n1..2\nok 1 a\nok 3 b\nnot ok 3 c # TIMEOUT 30 seconds\n";
    let docs = parse(text);
    assert_eq!(docs.len(), 2);
    assert_eq!(
        tree(&docs[0]),
        [("first".into(), Pass), ("test 2".into(), Error)]
    );
    assert!(docs[0]
        .problems
        .iter()
        .any(|p| p == "bail out: no hardware"));
    let second = tree(&docs[1]);
    assert_eq!(
        second,
        [("a".into(), Pass), ("b".into(), Pass), ("c".into(), Fail)]
    );
    assert_eq!(
        docs[1].tests[2].reason.as_deref(),
        Some("TIMEOUT 30 seconds")
    );
    assert!(docs[1]
        .problems
        .iter()
        .any(|p| p.contains("test number 3 where 2 was due")));
    assert!(docs[1]
        .problems
        .iter()
        .any(|p| p.contains("3 results for a plan of 1..2")));
}

#[test]
fn text_without_ktap_gives_nothing() {
    assert!(parse("").is_empty());
    assert!(parse("[    0.000000] Linux version 6.12\nok 1 not a document\n1..3\n").is_empty());
}

#[test]
fn clean_boot_logs_hold_no_ktap() {
    let logs = crate::splat::tests::clean_logs();
    assert!(logs.len() >= 3, "clean logs: {}", logs.len());
    for (name, text) in logs {
        assert!(parse(&text).is_empty(), "{name}");
    }
}
