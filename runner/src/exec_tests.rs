//! The run loop against a stand-in for cxlvmm: a shell script that prints
//! what a guest would and behaves as told by FAKE_MODE.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;
use crate::action::ShellHook;

pub(crate) const FAKE_CXLVMM: &str = r#"#!/bin/sh
# Stands in for `cxlvmm run`: the guest console on stdout, cxlvmm's own
# messages on stderr.
case "$FAKE_MODE" in
pass)
    echo "[    0.500000] Linux version 6.12"
    echo "CXLVMM-BOOTED 1.50"
    echo "hello from the guest"
    echo "CXLVMM-EXIT 0"
    exit 0 ;;
action)
    echo "CXLVMM-BOOTED 2.00"
    echo "CXLVMM-ACTION poke"
    read -r answer
    echo "got: $answer"
    echo "CXLVMM-ACTION nosuch"
    read -r answer
    echo "got: $answer"
    echo "CXLVMM-EXIT 0"
    exit 0 ;;
panic-end)
    echo "[    3.000000] Kernel panic - not syncing: sysrq triggered crash"
    echo "[    3.000100] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---"
    exec sleep 1000 ;;
panic)
    echo "[    3.000000] Kernel panic - not syncing: sysrq triggered crash"
    exec sleep 1000 ;;
hang)
    exec sleep 1000 ;;
flood)
    i=0
    while [ $i -lt 2000 ]; do
        echo "flood line $i: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        i=$((i + 1))
    done
    echo "CXLVMM-EXIT 0"
    exit 0 ;;
vmm-error)
    echo "cxlvmm: error: --memory 8 TiB is more than this host has" >&2
    exit 2 ;;
script)
    # Shows the guest environment of the script it was given; with
    # FAKE_GUEST=cut, says SYNCED and hangs (until a power cut).
    while [ $# -gt 0 ]; do [ "$1" = --script ] && s=$2; shift; done
    echo "CXLVMM-BOOTED 1.00"
    grep '^export' "$s"
    if grep -q "^export FAKE_GUEST='cut'" "$s"; then echo "SYNCED"; exec sleep 1000; fi
    echo "CXLVMM-EXIT 0"
    exit 0 ;;
esac
"#;

pub(crate) fn fake_exe(dir: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let exe = dir.join("fake-cxlvmm");
    std::fs::write(&exe, FAKE_CXLVMM).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cxlvmm-exec-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_fake(name: &str, mode: &str, timeout_s: u64, cap: u64) -> (Observed, PathBuf) {
    let dir = tmp(name);
    let exe = fake_exe(&dir);
    let actions = [Action {
        name: "poke".into(),
        command: "echo poked > poked".into(),
    }];
    let obs = run(&RunSpec {
        exe: &exe,
        args: vec!["--guest".into(), "6.12".into()],
        env: vec![("FAKE_MODE".into(), mode.into())],
        out_dir: &dir,
        manifest_dir: &dir,
        id: "c/k/t",
        timeout: Duration::from_secs(timeout_s),
        backstop: Duration::from_secs(1),
        log_cap: cap,
        actions: &actions,
        hook: &ShellHook,
        action_env: &[],
        power_cut_on: None,
        console_file: "console.log",
        vmm_file: "vmm.log",
    });
    (obs, dir)
}

#[test]
fn a_passing_run_reports_boot_time_and_exit() {
    let (o, dir) = run_fake("pass", "pass", 30, 1 << 20);
    assert_eq!(
        (o.exit, o.script_exit, o.booted_at),
        (Some(0), Some(0), Some(1.5))
    );
    assert!(o.killed.is_none() && !o.panic_seen && !o.console.capped);
    assert!(o.console.text.contains("hello from the guest\n"));
    assert_eq!(
        std::fs::read_to_string(dir.join("console.log")).unwrap(),
        o.console.text
    );
}

#[test]
fn actions_run_on_the_host_and_the_guest_gets_the_answer() {
    let (o, dir) = run_fake("action", "action", 30, 1 << 20);
    assert_eq!(o.exit, Some(0));
    assert!(
        o.console.text.contains("got: CXLVMM-ACK poke ok\n"),
        "{}",
        o.console.text
    );
    assert!(
        o.console
            .text
            .contains("got: CXLVMM-ACK nosuch failed the case has no action \"nosuch\""),
        "{}",
        o.console.text
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("poked")).unwrap(),
        "poked\n"
    );
    assert_eq!(o.actions.len(), 2);
    assert_eq!(o.actions[0], ("poke".to_string(), Ok(())));
    assert!(o.actions[1].1.is_err());
}

#[test]
fn a_panic_ends_the_run_at_its_end_line() {
    let t = Instant::now();
    let (o, _) = run_fake("panic-end", "panic-end", 600, 1 << 20);
    assert!(t.elapsed() < PANIC_GRACE, "{:?}", t.elapsed());
    assert_eq!(o.killed, Some(Kill::AfterPanic));
    assert!(o.panic_seen);
    assert_eq!((o.exit, o.signal), (None, Some(libc::SIGKILL)));
}

#[test]
fn a_panic_without_end_line_ends_the_run_after_the_grace() {
    let t = Instant::now();
    let (o, _) = run_fake("panic", "panic", 600, 1 << 20);
    assert!(
        t.elapsed() >= PANIC_GRACE && t.elapsed() < PANIC_GRACE * 3,
        "{:?}",
        t.elapsed()
    );
    assert_eq!(o.killed, Some(Kill::AfterPanic));
}

#[test]
fn a_cxlvmm_past_its_timeout_is_killed() {
    let t = Instant::now();
    let (o, _) = run_fake("hang", "hang", 1, 1 << 20);
    assert!(
        t.elapsed() >= Duration::from_secs(2) && t.elapsed() < Duration::from_secs(10),
        "{:?}, spawn error {:?}",
        t.elapsed(),
        o.spawn_error
    );
    assert_eq!(o.killed, Some(Kill::Backstop));
}

#[test]
fn a_flooding_guest_is_capped_but_read_to_the_end() {
    let (o, dir) = run_fake("flood", "flood", 30, 10_000);
    assert!(o.console.capped);
    assert!(o.console.bytes > 200_000, "{}", o.console.bytes);
    assert_eq!(o.console.text.len(), 10_000);
    // The exit marker came after the cap and was still seen.
    assert_eq!(o.script_exit, Some(0));
    let file = std::fs::read_to_string(dir.join("console.log")).unwrap();
    assert!(file
        .ends_with("[cxlvmm test: log capped at 10000 bytes; the rest was scanned, not kept]\n"));
}

#[test]
fn cxlvmm_errors_are_picked_up() {
    let (o, _) = run_fake("vmm-error", "vmm-error", 30, 1 << 20);
    assert_eq!(o.exit, Some(2));
    assert_eq!(
        o.vmm_error.as_deref(),
        Some("--memory 8 TiB is more than this host has")
    );
    assert!(o.vmm_log.text.contains("cxlvmm: error:"));
}

#[test]
fn a_missing_binary_is_a_spawn_error() {
    let dir = tmp("missing");
    let o = run(&RunSpec {
        exe: &dir.join("no-such-cxlvmm"),
        args: vec![],
        env: vec![],
        out_dir: &dir,
        manifest_dir: &dir,
        id: "c/k/t",
        timeout: Duration::from_secs(1),
        backstop: Duration::from_secs(1),
        log_cap: 1000,
        actions: &[],
        hook: &ShellHook,
        action_env: &[],
        power_cut_on: None,
        console_file: "console.log",
        vmm_file: "vmm.log",
    });
    assert!(o.spawn_error.as_deref().unwrap().contains("no-such-cxlvmm"));
}
