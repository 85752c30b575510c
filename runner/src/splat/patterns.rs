//! The first lines of the kernel's reports, as printed by Linux 4.x-6.x:
//! lib/bug.c and kernel/panic.c (`cut here`, WARNING, `---[ end trace`),
//! arch/x86/mm/fault.c and arch/x86/kernel/dumpstack.c (BUG, Oops),
//! mm/kasan/report.c, lib/ubsan.c, kernel/locking/lockdep.c,
//! kernel/hung_task.c, kernel/rcu/tree_stall.h, kernel/watchdog.c,
//! mm/kmemleak.c, kernel/panic.c.

use std::sync::LazyLock;

use regex::Regex;

use super::SplatKind;

/// What a console line opens, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// `------------[ cut here ]------------`: the next report line says
    /// what follows (WARNING or kernel BUG).
    CutHere,
    Report(SplatKind),
    /// A line that continues a BUG report already open (the Oops line after
    /// "BUG: kernel NULL pointer dereference", "invalid opcode" after
    /// "kernel BUG at").
    OopsLine,
}

macro_rules! re {
    ($s:expr) => {{
        static R: LazyLock<Regex> = LazyLock::new(|| Regex::new($s).expect("valid regex"));
        &*R
    }};
}

pub fn classify(msg: &str) -> Option<Start> {
    let m = msg.trim_start();
    if m.starts_with("------------[ cut here ]------------") {
        return Some(Start::CutHere);
    }
    let kind = if re!(r"^kmemleak: \d+ new suspected memory leak")
        .is_match(m)
        || re!(r"^unreferenced object 0x[0-9a-f]+ \(size \d+\):").is_match(m)
    {
        SplatKind::Kmemleak
    } else if m.starts_with("BUG: KASAN: ") || m.starts_with("BUG: KFENCE: ") {
        SplatKind::Kasan
    } else if m.starts_with("UBSAN: ") {
        SplatKind::Ubsan
    } else if re!(
        r"^(WARNING|INFO|\[ INFO): (possible (circular|recursive|irq lock|.* lock)|inconsistent lock state|suspicious RCU usage|bad unlock balance|lock held when returning|held lock freed|nested lock was not taken|.*lock order detected|trying to register non-static key)"
    )
    .is_match(m)
    {
        SplatKind::Lockdep
    } else if re!(r"^INFO: task \S.* blocked for more than \d+ seconds").is_match(m) {
        SplatKind::HungTask
    } else if re!(r"INFO: rcu\w* (self-)?detected (expedited )?stalls?\b").is_match(m) {
        SplatKind::RcuStall
    } else if re!(r"BUG: soft lockup - CPU#\d+ stuck|Watchdog detected hard LOCKUP|^BUG: workqueue lockup")
        .is_match(m)
    {
        SplatKind::SoftLockup
    } else if m.starts_with("Kernel panic - not syncing") {
        SplatKind::Panic
    } else if re!(r"^WARNING: CPU: \d+ PID: \d+ at ").is_match(m) {
        SplatKind::Warning
    } else if re!(r"^(BUG: |kernel BUG at |general protection fault|Unable to handle kernel |Internal error: Oops)")
        .is_match(m)
    {
        SplatKind::Bug
    } else if re!(r"^(Oops: |invalid opcode: \d+ \[#\d+\])").is_match(m) {
        return Some(Start::OopsLine);
    } else {
        return None;
    };
    Some(Start::Report(kind))
}

/// Lines that end a report (kept as its last line).
pub fn is_end(msg: &str) -> bool {
    let m = msg.trim_start();
    m.starts_with("---[ end trace") || m.starts_with("---[ end Kernel panic")
}

/// KASAN, UBSAN and KCSAN frame their reports with a line of `=`.
pub fn is_rule(msg: &str) -> bool {
    let m = msg.trim();
    m.len() >= 40 && m.bytes().all(|b| b == b'=')
}

/// The function of `RIP: 0010:func+0x1c/0x90` (kernel mode only), or of
/// the older `IP: [<ffffffffc0841d99>] func+0x19/0x240`.
pub fn rip_function(msg: &str) -> Option<&str> {
    let c =
        re!(r"^\s*(?:RIP: 0010:|IP: \[<[0-9a-f]+>\] )([A-Za-z_][\w.]*)(\+0x| \()").captures(msg)?;
    Some(c.get(1)?.as_str())
}

/// A call trace frame: `func+0x1c/0x90 [mod]`, `? func+0x..`,
/// `[<ffffffff8135067c>] func+0x..`, or decoded `func (file.c:12)`.
/// Returns (function, reliable).
pub fn frame(msg: &str) -> Option<(&str, bool)> {
    let c = re!(
        r"^\s*(?:\[<[0-9a-f]+>\]\s*)?(\? )?([A-Za-z_][\w.]*)(?:\+0x[0-9a-f]+/0x[0-9a-f]+|\s\([^)]*:\d+[^)]*\)\s*$|\s\([^)]*:\d+[^)]*\)\s)"
    )
    .captures(msg)?;
    Some((c.get(2)?.as_str(), c.get(1).is_none()))
}

/// Where lockdep names a lock's site: `... , at: func+0x1b0/0xe1c [mod]`.
pub fn lockdep_site(msg: &str) -> Option<&str> {
    let c = re!(r", at: (?:\[<[0-9a-f]+>\]\s*)?([A-Za-z_][\w.]*)(\+0x| \()").captures(msg)?;
    Some(c.get(1)?.as_str())
}

/// The function a report line names with ` in func` or ` at file:line func+0x`.
pub fn named_function(msg: &str) -> Option<&str> {
    if let Some(c) = re!(r" at \S+ ([A-Za-z_][\w.]*)(\+0x|\s\()").captures(msg) {
        return Some(c.get(1)?.as_str());
    }
    let c = re!(r" in ([A-Za-z_][\w.]*)(\+0x[0-9a-f]+/0x[0-9a-f]+)?(\s|$)").captures(msg)?;
    Some(c.get(1)?.as_str())
}

/// Reporting machinery, scheduler and entry code: frames that say nothing
/// about where the problem is.
pub fn is_boring_frame(f: &str) -> bool {
    const EXACT: &[&str] = &[
        "dump_stack",
        "dump_stack_lvl",
        "show_stack",
        "show_trace_log_lvl",
        "__warn",
        "warn_slowpath_fmt",
        "warn_slowpath_null",
        "report_bug",
        "handle_bug",
        "exc_invalid_op",
        "asm_exc_invalid_op",
        "print_report",
        "print_address_description",
        "kasan_report",
        "kasan_check_range",
        "ubsan_epilogue",
        "panic",
        "vpanic",
        "__schedule",
        "schedule",
        "schedule_timeout",
        "schedule_preempt_disabled",
        "io_schedule",
        "__switch_to",
        "__switch_to_asm",
        "context_switch",
        "schedule_hrtimeout_range_clock",
        "do_nanosleep",
        "__mutex_lock",
        "__mutex_lock_slowpath",
        "__mutex_lock_common",
        "mutex_lock",
        "mutex_lock_nested",
        "mutex_lock_interruptible",
        "mutex_lock_killable",
        "down_read",
        "down_write",
        "down_read_killable",
        "down_write_killable",
        "rwsem_down_read_slowpath",
        "rwsem_down_write_slowpath",
        "rwsem_down_read_failed",
        "rwsem_down_write_failed",
        "wait_for_completion",
        "wait_for_common",
        "__wait_for_common",
        "__flush_work",
        "lock_acquire",
        "__lock_acquire",
        "check_noncircular",
        "print_circular_bug",
        "check_prev_add",
        "validate_chain",
        "ret_from_fork",
        "ret_from_fork_asm",
        "kthread",
        "entry_SYSCALL_64_after_hwframe",
        "do_syscall_64",
        "x64_sys_call",
        "do_syscall_x64",
        "srso_return_thunk",
        "srso_alias_return_thunk",
        "__x86_return_thunk",
        "create_object",
        "kmemleak_alloc",
        "kmalloc",
        "kzalloc",
        "kmalloc_trace",
        "__kmalloc",
        "__kmalloc_node",
        "__kmalloc_track_caller",
        "kmem_cache_alloc",
        "kmem_cache_alloc_trace",
        "kmem_cache_alloc_node",
        "kmem_cache_alloc_lru",
        "__kmem_cache_alloc_node",
        "slab_post_alloc_hook",
        "kvmalloc_node",
        "nmi_cpu_backtrace",
        "nmi_trigger_cpumask_backtrace",
        "rcu_dump_cpu_stacks",
        "sched_show_task",
        "watchdog_timer_fn",
        "unwind_backtrace",
    ];
    const PREFIXES: &[&str] = &[
        "__kasan_",
        "kasan_",
        "__asan_",
        "__ubsan_handle_",
        "__kmalloc_",
        "__pfx_",
        "lockdep_",
        "print_",
        "asm_sysvec_",
        "sysvec_",
    ];
    EXACT.contains(&f) || PREFIXES.iter().any(|p| f.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_in_every_printed_form() {
        assert_eq!(frame(" do_signal+0x37/0x720"), Some(("do_signal", true)));
        assert_eq!(
            frame(" ? __switch_to_asm+0x40/0x70"),
            Some(("__switch_to_asm", false))
        );
        assert_eq!(
            frame(" nf_confirm+0xfd/0x2b0 [nf_conntrack]"),
            Some(("nf_confirm", true))
        );
        assert_eq!(
            frame(" [<ffffffff8135067c>] ? __mutex_lock_common.isra.5+0xff/0x164"),
            Some(("__mutex_lock_common.isra.5", false))
        );
        assert_eq!(
            frame("dump_stack_lvl (lib/dump_stack.c:107) "),
            Some(("dump_stack_lvl", true))
        );
        assert_eq!(
            frame("    __kmalloc (include/linux/kasan.h:211) "),
            Some(("__kmalloc", true))
        );
        assert_eq!(frame("RIP: 0010:kfree+0x1/0x2"), None);
        assert_eq!(frame(" <TASK>"), None);
        assert_eq!(frame("Call Trace:"), None);
        assert_eq!(
            rip_function("RIP: 0010:__list_del_entry_valid+0x81/0x90"),
            Some("__list_del_entry_valid")
        );
        assert_eq!(
            rip_function("RIP: 0010:kfree (mm/slub.c:3567 mm/slub.c:4558) "),
            Some("kfree")
        );
        assert_eq!(rip_function("RIP: 0033:0x7f52e345dece"), None);
        assert_eq!(
            named_function(
                "WARNING: CPU: 1 PID: 4789 at kernel/signal.c:2233 get_signal+0x579/0x5c0"
            ),
            Some("get_signal")
        );
        assert_eq!(
            named_function(
                "BUG: KASAN: slab-use-after-free in kernfs_test_super (fs/kernfs/mount.c:286) "
            ),
            Some("kernfs_test_super")
        );
        assert_eq!(
            named_function("WARNING: CPU: 1 PID: 0 at 0xffffffffa0483659"),
            None
        );
    }
}
