//! Real console excerpts (tests/data/splat/, each file names its source) and
//! real clean guest logs (tests/data/clean/: boots of the guest images under
//! cxlvmm, the e2e suite's scenarios).

use super::*;

fn data(dir: &str) -> Vec<(String, String)> {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir);
    let mut out: Vec<(String, String)> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            let text = String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| !l.starts_with(";;"))
                .map(|l| format!("{l}\n"))
                .collect();
            (p.file_name().unwrap().to_string_lossy().into_owned(), text)
        })
        .collect();
    out.sort();
    out
}

pub fn clean_logs() -> Vec<(String, String)> {
    data("clean")
}

fn sample(name: &str) -> String {
    data("splat")
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no sample {name}"))
        .1
}

fn one(name: &str) -> Splat {
    let s = detect(&sample(name));
    assert_eq!(s.len(), 1, "{name}: {s:#?}");
    s.into_iter().next().unwrap()
}

#[track_caller]
fn check(s: &Splat, kind: SplatKind, title: &str, fingerprint: &str) {
    assert_eq!(s.kind, kind, "{s:#?}");
    assert_eq!(s.title, title, "{s:#?}");
    assert_eq!(s.fingerprint, fingerprint, "{s:#?}");
    assert!(!s.lines.is_empty() && s.lines.len() <= SHOWN_LINES);
    assert_eq!(s.count, 1);
}

#[test]
fn warn_with_and_without_cut_here() {
    let s = one("warning-4.18.log");
    check(
        &s,
        SplatKind::Warning,
        "WARNING in get_signal",
        "warning|get_signal|do_signal",
    );
    assert_eq!(s.line, 1);
    assert!(s.lines[0].starts_with("WARNING: CPU: 1 PID: 4789"));
    let s = one("warning-cut-here-6.0.log");
    check(&s, SplatKind::Warning, "WARNING in kfree", "warning|kfree");
    assert_eq!((s.line, s.time), (1, Some(12.104512)));
    // The report runs from cut here to the end-of-trace line, no further.
    assert_eq!(
        s.lines.first().unwrap(),
        "------------[ cut here ]------------"
    );
    assert!(s.lines.last().unwrap().starts_with("---[ end trace"));
}

#[test]
fn bug_reports_fold_their_oops_line() {
    let s = one("bug-null-4.x.log");
    check(
        &s,
        SplatKind::Bug,
        "BUG: unable to handle kernel NULL pointer dereference in octf_trace_push",
        "bug|octf_trace_push",
    );
    assert!(s.lines.iter().any(|l| l.starts_with("Oops: 0000 [#1]")));
    let s = one("kernel-bug-6.6.log");
    check(
        &s,
        SplatKind::Bug,
        "kernel BUG in CoreFreqK_mmap",
        "bug|CoreFreqK_mmap",
    );
}

#[test]
fn kasan_titles_name_the_bug_access_and_function() {
    let s = one("kasan-6.0.log");
    check(
        &s,
        SplatKind::Kasan,
        "KASAN: use-after-free Read in ntfs_lookup_inode_by_name",
        "kasan|ntfs_lookup_inode_by_name|ntfs_fill_super|mount_bdev",
    );
    assert_eq!(
        s.frames,
        [
            "ntfs_lookup_inode_by_name",
            "ntfs_fill_super",
            "mount_bdev",
            "ntfs_mount",
            "legacy_get_tree"
        ]
    );
    let s = one("kasan-decoded-6.5.log");
    // Only unreliable frames survive the report machinery: no frames, so the
    // fingerprint comes from the title.
    check(
        &s,
        SplatKind::Kasan,
        "KASAN: slab-use-after-free Read in kernfs_test_super",
        "kasan|KASAN: slab-use-after-free Read in kernfs_test_super",
    );
    assert_eq!(s.time, Some(1502.527398));
}

#[test]
fn ubsan_with_frames_and_without() {
    let s = one("ubsan-5.10.log");
    check(
        &s,
        SplatKind::Ubsan,
        "UBSAN: shift-out-of-bounds in bch2_inode_create",
        "ubsan|bch2_inode_create|bch2_create_trans|__bch2_create",
    );
    let s = one("ubsan-arm-6.1.log");
    check(
        &s,
        SplatKind::Ubsan,
        "UBSAN: shift-out-of-bounds in ../drivers/gpio/gpio-omap.c",
        "ubsan|UBSAN: shift-out-of-bounds in ../drivers/gpio/gpio-omap.c",
    );
}

#[test]
fn lockdep_fingerprints_by_lock_sites() {
    let s = one("lockdep-5.15.log");
    check(
        &s,
        SplatKind::Lockdep,
        "lockdep: possible circular locking dependency detected",
        "lockdep|cryptodev_ioctl",
    );
    let s = one("lockdep-fs-reclaim-5.10.log");
    check(
        &s,
        SplatKind::Lockdep,
        "lockdep: possible circular locking dependency detected",
        "lockdep|bch2_clear_page_bits|__fs_reclaim_acquire",
    );
}

#[test]
fn hung_tasks_skip_scheduler_frames() {
    let s = one("hung-task-5.10.log");
    // Every reliable frame is scheduler or kthread code: the title names the
    // task's command instead.
    check(
        &s,
        SplatKind::HungTask,
        "INFO: task hung (cas_cacheN_stop)",
        "hung_task|INFO: task hung (cas_cacheN_stop)",
    );
    let s = one("hung-task-mutex-3.x.log");
    check(
        &s,
        SplatKind::HungTask,
        "INFO: task hung (DDRaceN-Server)",
        "hung_task|INFO: task hung (DDRaceN-Server)",
    );
}

#[test]
fn rcu_stall_repeated_is_one_splat_counted_twice() {
    let all = detect(&sample("rcu-stall-5.x.log"));
    assert_eq!(all.len(), 1, "{all:#?}");
    let s = &all[0];
    assert_eq!(s.kind, SplatKind::RcuStall);
    assert_eq!(s.title, "INFO: rcu detected stall in rcu_gp_kthread");
    assert_eq!(s.fingerprint, "rcu_stall|rcu_gp_kthread");
    assert_eq!((s.count, s.line), (2, 1));
}

#[test]
fn soft_lockup_names_the_spinning_function() {
    let s = one("soft-lockup-4.15.log");
    check(
        &s,
        SplatKind::SoftLockup,
        "BUG: soft lockup in _raw_spin_unlock_irqrestore",
        "soft_lockup|_raw_spin_unlock_irqrestore",
    );
}

#[test]
fn kmemleak_summary_and_object_report() {
    let all = detect(&sample("kmemleak-6.1.log"));
    assert_eq!(all.len(), 1, "{all:#?}");
    let s = &all[0];
    assert_eq!(s.kind, SplatKind::Kmemleak);
    // The allocator frame is skipped: the leak is where the caller allocated.
    assert_eq!(s.title, "memory leak in __register_sysctl_table");
    assert_eq!(
        s.fingerprint,
        "kmemleak|__register_sysctl_table|mptcp_net_init|ops_init"
    );
}

#[test]
fn panic_after_an_oops_with_log_levels() {
    let s = one("panic-arm-oops.log");
    check(
        &s,
        SplatKind::Panic,
        "Kernel panic - not syncing: Oops: Fatal exception",
        "panic|Kernel panic - not syncing: Oops: Fatal exception",
    );
}

#[test]
fn sysrq_panic_in_a_cxlvmm_guest() {
    let s = one("panic-sysrq-6.12-cxlvmm.log");
    check(
        &s,
        SplatKind::Panic,
        "Kernel panic - not syncing: sysrq triggered crash",
        "panic|sysrq_handle_crash|__handle_sysrq|write_sysrq_trigger",
    );
    assert_eq!(s.time, Some(7.568292));
}

#[test]
fn a_report_without_its_trace_folds_into_the_one_with_it() {
    // As on a console under `quiet`: the hung-task header is printed, its
    // stack (KERN_INFO) is not; the dump has both.
    let header = "[   26.465223] INFO: task mkdir:175 blocked for more than 1 seconds.\n[   26.465300]       Not tainted 6.12.118+deb12-amd64 #1\n";
    let full = format!("{header}[   26.465400] Call Trace:\n[   26.465401]  <TASK>\n[   26.465402]  __schedule+0x4e0/0xbf0\n[   26.465403]  filename_create+0xb7/0x1b0\n[   26.465404]  do_mkdirat+0x58/0x190\n[   26.465405]  </TASK>\n");
    let later = "[   27.753303] INFO: task mkdir:175 blocked for more than 2 seconds.\n";
    let all = detect(&format!("{header}{full}{later}"));
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(
        (all[0].title.as_str(), all[0].count),
        ("INFO: task hung in filename_create", 3)
    );
    // Another task's frameless report stays on its own.
    let other = detect(&format!(
        "{full}[   28.0] INFO: task ls:176 blocked for more than 2 seconds.\n"
    ));
    assert_eq!(other.len(), 2, "{other:#?}");
}

#[test]
fn every_kind_has_a_sample() {
    let mut kinds: Vec<SplatKind> = data("splat")
        .iter()
        .flat_map(|(_, t)| detect(t))
        .map(|s| s.kind)
        .collect();
    kinds.sort();
    kinds.dedup();
    use SplatKind::*;
    assert_eq!(
        kinds,
        [Warning, Bug, Kasan, Ubsan, Lockdep, HungTask, RcuStall, SoftLockup, Kmemleak, Panic]
    );
}

#[test]
fn all_samples_in_one_console_keep_their_order() {
    let joined: String = data("splat").into_iter().map(|(_, t)| t).collect();
    let all = detect(&joined);
    // Every file's splat is distinct, and none swallows the next file's.
    assert_eq!(
        all.len(),
        data("splat").len(),
        "{:#?}",
        all.iter().map(|s| &s.title).collect::<Vec<_>>()
    );
    assert!(all.windows(2).all(|w| w[0].line < w[1].line));
}

#[test]
fn clean_guest_logs_have_no_splats() {
    let logs = clean_logs();
    assert!(logs.len() >= 3, "clean logs: {}", logs.len());
    for (name, text) in logs {
        assert!(text.lines().count() > 5, "{name} is not a boot log");
        let found = detect(&text);
        assert!(found.is_empty(), "{name}: {found:#?}");
    }
}

#[test]
fn ignore_patterns_match_title_fingerprint_or_lines() {
    let mut all = detect(&(sample("warning-4.18.log") + &sample("soft-lockup-4.15.log")));
    let pats = |p: &[&str]| {
        p.iter()
            .map(|s| regex::Regex::new(s).unwrap())
            .collect::<Vec<_>>()
    };
    apply_ignores(&mut all, &pats(&["in get_signal$"]));
    assert_eq!(
        all.iter().map(|s| s.ignored).collect::<Vec<_>>(),
        [true, false]
    );
    apply_ignores(&mut all, &pats(&["^soft_lockup\\|"]));
    assert_eq!(
        all.iter().map(|s| s.ignored).collect::<Vec<_>>(),
        [false, true]
    );
    apply_ignores(&mut all, &pats(&["Comm: pacd"]));
    assert_eq!(
        all.iter().map(|s| s.ignored).collect::<Vec<_>>(),
        [false, true]
    );
    apply_ignores(&mut all, &pats(&[]));
    assert!(all.iter().all(|s| !s.ignored));
}

#[test]
fn merge_prefers_the_dmesg_dump_and_keeps_what_it_lost() {
    let console = detect(&(sample("warning-cut-here-6.0.log") + &sample("kasan-decoded-6.5.log")));
    assert_eq!(console.len(), 2);
    // The dump starts at 100 s: the WARN at 12 s is gone from it, the KASAN
    // report at 1502 s is in it.
    let dump = detect(&sample("kasan-decoded-6.5.log"));
    let merged = merge(console.clone(), Some((dump, Some(100.0))));
    let titles: Vec<&str> = merged.iter().map(|s| s.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "KASAN: slab-use-after-free Read in kernfs_test_super",
            "WARNING in kfree"
        ]
    );
    // No dump (the guest died first): the console alone.
    assert_eq!(merge(console.clone(), None), console);
    // A dump without timestamps: console splats of kinds it lacks are kept.
    let merged = merge(console, Some((Vec::new(), None)));
    assert_eq!(merged.len(), 2);
}
