//! What a run comes to: its console split into the case's output and the
//! dmesg dump, KTAP results and splats found in them, and one status with
//! the reason for it. The statuses and exit codes are documented in
//! docs/runner.md.

use serde::Serialize;

use crate::exec::{Kill, Observed};
use crate::ktap::{self, Document};
use crate::script;
use crate::splat::{self, Splat};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    /// The exit status and KTAP results were right, but the kernel splatted.
    Splat,
    /// Wrong exit status, a failed KTAP test, or a failed host check.
    Fail,
    /// The guest did not finish in time.
    Timeout,
    /// The guest kernel panicked, triple-faulted or stopped without
    /// reporting the case's status.
    Crash,
    /// The run could not happen: cxlvmm failed to start or set up the VM.
    Infra,
}

/// Exit status of `cxlvmm test` for a manifest or command-line error.
pub const EXIT_CONFIG: u8 = 2;

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Pass,
        Status::Fail,
        Status::Splat,
        Status::Crash,
        Status::Timeout,
        Status::Infra,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Splat => "SPLAT",
            Status::Fail => "FAIL",
            Status::Timeout => "TIMEOUT",
            Status::Crash => "CRASH",
            Status::Infra => "INFRA",
        }
    }

    /// `cxlvmm test`'s exit status when this is the worst status of the run.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Pass => 0,
            Status::Fail => 1,
            Status::Splat => 3,
            Status::Crash => 4,
            Status::Timeout => 5,
            Status::Infra => 6,
        }
    }

    /// Which status decides the exit code when several occur: a broken
    /// setup first, then a dead kernel, a hung one, wrong results, splats.
    pub fn severity(self) -> u8 {
        match self {
            Status::Pass => 0,
            Status::Splat => 1,
            Status::Fail => 2,
            Status::Timeout => 3,
            Status::Crash => 4,
            Status::Infra => 5,
        }
    }
}

/// The console of a run, taken apart.
#[derive(Debug, Default)]
pub struct Analysis {
    /// The console without the dmesg dump.
    pub console: String,
    /// The dmesg dump, when the wrapper printed a complete one.
    pub dmesg: Option<String>,
    pub ktap: Vec<Document>,
    pub splats: Vec<Splat>,
}

pub fn analyze(console: &str, ignore: &[regex::Regex]) -> Analysis {
    let mut own = String::new();
    let mut dump = String::new();
    let (mut in_dump, mut complete) = (false, false);
    for line in console.lines() {
        let bare = line.trim_end_matches('\r');
        if bare == script::DMESG_BEGIN {
            in_dump = true;
            dump.clear();
            continue;
        }
        if bare == script::DMESG_END && in_dump {
            in_dump = false;
            complete = true;
            continue;
        }
        let to = if in_dump { &mut dump } else { &mut own };
        to.push_str(line);
        to.push('\n');
    }
    if in_dump {
        // The dump was cut short: what came of it is console output.
        own.push_str(&dump);
    }
    let dmesg = complete.then_some(dump);
    let mut ktap = ktap::parse(&own);
    if let Some(d) = &dmesg {
        for doc in ktap::parse(d) {
            if !ktap.contains(&doc) {
                ktap.push(doc);
            }
        }
    }
    let from_dump = dmesg.as_deref().map(|d| {
        // Where the ring buffer's record starts: its earliest timestamp
        // (lines the kernel printed while the dump ran may come first).
        let first = d
            .lines()
            .filter_map(crate::logline::timestamp)
            .min_by(f64::total_cmp);
        (splat::detect(d), first)
    });
    let mut splats = splat::merge(splat::detect(&own), from_dump);
    splat::apply_ignores(&mut splats, ignore);
    Analysis {
        console: own,
        dmesg,
        ktap,
        splats,
    }
}

/// Everything the verdict weighs.
pub struct Evidence<'a> {
    pub obs: &'a Observed,
    pub expect_exit: u8,
    pub analysis: &'a Analysis,
    /// The host check's failure, if it ran and failed.
    pub check_failure: Option<&'a str>,
}

/// The status of a run and the reason, in words.
pub fn verdict(e: &Evidence) -> (Status, String) {
    let o = e.obs;
    let expect = i32::from(e.expect_exit);
    if let Some(err) = &o.spawn_error {
        return (Status::Infra, err.clone());
    }
    // cxlvmm refused or failed to build the VM before the case could run.
    if o.script_exit.is_none() && o.booted_at.is_none() {
        if let Some(err) = &o.vmm_error {
            return (Status::Infra, format!("cxlvmm: {err}"));
        }
    }
    let panic = e
        .analysis
        .splats
        .iter()
        .find(|s| s.kind == splat::SplatKind::Panic)
        .map(|s| s.title.clone());
    match o.killed {
        Some(Kill::Backstop) => {
            return (
                Status::Timeout,
                "cxlvmm outlived its --timeout and was killed".to_string(),
            )
        }
        Some(Kill::AfterPanic) => {
            return (
                Status::Crash,
                panic.unwrap_or_else(|| "kernel panic".into()),
            )
        }
        // Killed on purpose: no exit status to judge, only what it printed.
        Some(Kill::PowerCut) => return results_verdict(e),
        None => {}
    }
    let Some(exit) = o.exit else {
        return (
            Status::Infra,
            format!("cxlvmm died of signal {}", o.signal.unwrap_or(0)),
        );
    };
    if o.timeout_expired {
        // Also when the case printed its status: the guest never handed it
        // to cxlvmm (the port write that ends the VM), so the run did not
        // finish, whatever the script said.
        let why = match o.script_exit {
            None => "the guest did not finish (cxlvmm --timeout)".into(),
            Some(s) => {
                format!("the case ended (exit {s}) but the guest did not stop (cxlvmm --timeout)")
            }
        };
        return (Status::Timeout, why);
    }
    if exit == expect && o.script_exit.is_none_or(|s| s == exit) {
        // on to results and splats
    } else if o.panic_seen || o.triple_fault || (exit == 125 && o.script_exit.is_none()) {
        let why = if let Some(p) = panic {
            p
        } else if o.triple_fault {
            "triple fault".into()
        } else {
            "the guest stopped without reporting the case's exit status".into()
        };
        return (Status::Crash, why);
    } else if o.script_exit.is_none() && o.vmm_error.is_some() {
        return (
            Status::Infra,
            format!("cxlvmm: {}", o.vmm_error.as_deref().unwrap_or_default()),
        );
    } else {
        return (Status::Fail, format!("exit {exit}, expected {expect}"));
    }
    results_verdict(e)
}

/// The verdict of a run whose exit was right: KTAP results, host actions,
/// the host check, then splats.
fn results_verdict(e: &Evidence) -> (Status, String) {
    let o = e.obs;
    let failed: Vec<String> = e
        .analysis
        .ktap
        .iter()
        .flat_map(|d| d.flatten())
        // A parent fails because of its subtests: name those, unless none
        // of them failed (then the parent's own result is the news).
        .filter(|f| {
            f.result.outcome.is_failure()
                && !f.result.subtests.iter().any(|s| s.outcome.is_failure())
        })
        .map(|f| f.path.join("."))
        .collect();
    if !failed.is_empty() {
        let shown: Vec<&str> = failed.iter().take(3).map(String::as_str).collect();
        let more = if failed.len() > 3 { ", ..." } else { "" };
        return (
            Status::Fail,
            format!(
                "{} KTAP test(s) failed: {}{more}",
                failed.len(),
                shown.join(", ")
            ),
        );
    }
    if let Some((name, Err(err))) = o.actions.iter().find(|(_, r)| r.is_err()) {
        return (Status::Fail, format!("host action {name} failed: {err}"));
    }
    if let Some(why) = e.check_failure {
        return (Status::Fail, format!("host check failed: {why}"));
    }
    let live: Vec<&Splat> = e.analysis.splats.iter().filter(|s| !s.ignored).collect();
    if let Some(first) = live.first() {
        let more = if live.len() > 1 {
            format!(" (+{} more)", live.len() - 1)
        } else {
            String::new()
        };
        return (Status::Splat, format!("{}{more}", first.title));
    }
    (Status::Pass, String::new())
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
