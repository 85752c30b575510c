use super::*;
use crate::exec::Observed;

fn obs(exit: Option<i32>, script_exit: Option<i32>) -> Observed {
    Observed {
        exit,
        script_exit,
        booted_at: script_exit.map(|_| 1.0),
        ..Observed::default()
    }
}

fn judge(o: &Observed, expect: u8, console: &str, ignore: &[&str]) -> (Status, String) {
    let ignore: Vec<regex::Regex> = ignore
        .iter()
        .map(|p| regex::Regex::new(p).unwrap())
        .collect();
    let analysis = analyze(console, &ignore);
    verdict(&Evidence {
        obs: o,
        expect_exit: expect,
        analysis: &analysis,
        check_failure: None,
    })
}

const WARN: &str = "[    5.000000] ------------[ cut here ]------------\n[    5.000001] WARNING: CPU: 0 PID: 1 at fs/x.c:1 foo+0x1/0x2\n[    5.000002] ---[ end trace 0000000000000000 ]---\n";

#[test]
fn exit_status_decides_pass_and_fail() {
    assert_eq!(
        judge(&obs(Some(0), Some(0)), 0, "", &[]),
        (Status::Pass, String::new())
    );
    assert_eq!(judge(&obs(Some(7), Some(7)), 7, "", &[]).0, Status::Pass);
    assert_eq!(
        judge(&obs(Some(1), Some(1)), 0, "", &[]),
        (Status::Fail, "exit 1, expected 0".into())
    );
    // cxlvmm's exit 2 with the case's own exit 2 is the case's.
    assert_eq!(judge(&obs(Some(2), Some(2)), 0, "", &[]).0, Status::Fail);
}

#[test]
fn splats_fail_an_otherwise_passing_run_unless_ignored() {
    let o = obs(Some(0), Some(0));
    assert_eq!(
        judge(&o, 0, WARN, &[]),
        (Status::Splat, "WARNING in foo".into())
    );
    assert_eq!(judge(&o, 0, WARN, &["in foo$"]).0, Status::Pass);
    // A wrong exit status outranks the splat.
    assert_eq!(judge(&obs(Some(1), Some(1)), 0, WARN, &[]).0, Status::Fail);
}

#[test]
fn a_splat_only_in_the_dmesg_dump_counts() {
    let console = format!(
        "CXLVMM-BOOTED 1.0\n{}\n{WARN}{}\nCXLVMM-EXIT 0\n",
        script::DMESG_BEGIN,
        script::DMESG_END
    );
    let (s, why) = judge(&obs(Some(0), Some(0)), 0, &console, &[]);
    assert_eq!((s, why.as_str()), (Status::Splat, "WARNING in foo"));
}

#[test]
fn ktap_failures_fail_the_case() {
    let console = "KTAP version 1\n1..2\n  KTAP version 1\n  1..2\n  ok 1 a\n  not ok 2 b\nnot ok 1 s\nok 2 t # SKIP\n";
    let (s, why) = judge(&obs(Some(0), Some(0)), 0, console, &[]);
    assert_eq!(s, Status::Fail);
    assert_eq!(why, "1 KTAP test(s) failed: s.b");
    // A crash in the middle: the missing results are failures too.
    let cut = "KTAP version 1\n1..3\nok 1 a\n";
    assert_eq!(
        judge(&obs(Some(0), Some(0)), 0, cut, &[]).1,
        "2 KTAP test(s) failed: test 2, test 3"
    );
}

#[test]
fn crashes_timeouts_and_infrastructure() {
    let panic = "[    3.0] Kernel panic - not syncing: sysrq triggered crash\n";
    let mut o = obs(Some(125), None);
    o.panic_seen = true;
    assert_eq!(
        judge(&o, 0, panic, &[]),
        (
            Status::Crash,
            "Kernel panic - not syncing: sysrq triggered crash".into()
        )
    );
    let mut o = obs(None, None);
    o.killed = Some(Kill::AfterPanic);
    o.signal = Some(9);
    assert_eq!(judge(&o, 0, panic, &[]).0, Status::Crash);
    let mut o = obs(Some(125), None);
    o.triple_fault = true;
    assert_eq!(
        judge(&o, 0, "", &[]),
        (Status::Crash, "triple fault".into())
    );
    assert_eq!(
        judge(&obs(Some(125), None), 0, "", &[]),
        (
            Status::Crash,
            "the guest stopped without reporting the case's exit status".into()
        )
    );
    let mut o = obs(Some(124), None);
    o.timeout_expired = true;
    assert_eq!(judge(&o, 0, "", &[]).0, Status::Timeout);
    // A case that expects 124 of its own still times out when cxlvmm stopped it.
    assert_eq!(judge(&o, 124, "", &[]).0, Status::Timeout);
    // The script printed its status but the VM never stopped on it (in the
    // rig: a guest the emulated SVM corrupted after the script was done).
    let mut o = obs(Some(124), Some(0));
    o.timeout_expired = true;
    assert_eq!(
        judge(&o, 0, "", &[]),
        (
            Status::Timeout,
            "the case ended (exit 0) but the guest did not stop (cxlvmm --timeout)".into()
        )
    );
    let mut o = obs(None, None);
    o.killed = Some(Kill::Backstop);
    assert_eq!(judge(&o, 0, "", &[]).0, Status::Timeout);
    let mut o = obs(Some(2), None);
    o.vmm_error = Some("--memory 8T is more than this host has".into());
    assert_eq!(
        judge(&o, 0, "", &[]),
        (
            Status::Infra,
            "cxlvmm: --memory 8T is more than this host has".into()
        )
    );
    let o = Observed {
        spawn_error: Some("cannot start x".into()),
        ..Observed::default()
    };
    assert_eq!(judge(&o, 0, "", &[]).0, Status::Infra);
    let o = Observed {
        signal: Some(11),
        ..Observed::default()
    };
    assert_eq!(
        judge(&o, 0, "", &[]),
        (Status::Infra, "cxlvmm died of signal 11".into())
    );
}

#[test]
fn actions_and_host_checks_can_fail_a_run() {
    let mut o = obs(Some(0), Some(0));
    o.actions
        .push(("poison".into(), Err("`x` exited with 1".into())));
    assert_eq!(
        judge(&o, 0, "", &[]).1,
        "host action poison failed: `x` exited with 1"
    );
    let o = obs(Some(0), Some(0));
    let analysis = analyze("", &[]);
    let v = verdict(&Evidence {
        obs: &o,
        expect_exit: 0,
        analysis: &analysis,
        check_failure: Some("exit status: 1 (mismatch)"),
    });
    assert_eq!(
        v,
        (
            Status::Fail,
            "host check failed: exit status: 1 (mismatch)".into()
        )
    );
}

#[test]
fn analysis_splits_the_dump_off_the_console() {
    let text = format!(
        "a\nCXLVMM-BOOTED 1\n{}\n[    1.000000] dmesg line\n{}\nCXLVMM-EXIT 0\n",
        script::DMESG_BEGIN,
        script::DMESG_END
    );
    let a = analyze(&text, &[]);
    assert_eq!(a.console, "a\nCXLVMM-BOOTED 1\nCXLVMM-EXIT 0\n");
    assert_eq!(a.dmesg.as_deref(), Some("[    1.000000] dmesg line\n"));
    // A dump cut short stays console output; there is no dmesg.
    let cut = format!("a\n{}\n[    1.000000] partial\n", script::DMESG_BEGIN);
    let a = analyze(&cut, &[]);
    assert_eq!(
        (a.console.as_str(), a.dmesg),
        ("a\n[    1.000000] partial\n", None)
    );
}

#[test]
fn a_dump_broken_into_by_live_hung_task_reports_gives_one_splat() {
    // A real run (tests/runner/guest/hung-task.sh) from before the wrapper
    // lowered the console loglevel for the dump.
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/runs/hung-task-interleaved-6.12.log");
    let text: String = std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with(";;"))
        .map(|l| format!("{l}\n"))
        .collect();
    let a = analyze(&text, &[]);
    assert!(a.dmesg.is_some());
    assert!(a.ktap.is_empty());
    let titles: Vec<(&str, &str)> = a
        .splats
        .iter()
        .map(|s| (s.title.as_str(), s.fingerprint.as_str()))
        .collect();
    assert_eq!(
        titles,
        [(
            "INFO: task hung in filename_create",
            "hung_task|filename_create|do_mkdirat|__x64_sys_mkdir"
        )]
    );
    assert!(a.splats[0].count >= 3, "{}", a.splats[0].count);
    let o = obs(Some(0), Some(0));
    assert_eq!(
        verdict(&Evidence {
            obs: &o,
            expect_exit: 0,
            analysis: &a,
            check_failure: None
        }),
        (Status::Splat, "INFO: task hung in filename_create".into())
    );
}
