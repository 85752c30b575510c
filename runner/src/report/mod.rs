//! Results of a `cxlvmm test` run, and the ways they are shown: live lines
//! and a summary table on the terminal, JUnit XML, JSON.

pub mod json;
pub mod junit;
pub mod live;

use serde::Serialize;

use crate::ktap::Document;
use crate::splat::Splat;
use crate::verdict::Status;

/// An earlier try of a job, run again because it failed for reasons of the
/// infrastructure (`--retries`).
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub status: Status,
    pub reason: String,
    /// Where that try's files were kept.
    pub dir: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// `case/kernel/topology`.
    pub id: String,
    pub case: String,
    pub kernel: String,
    pub topology: String,
    pub status: Status,
    pub reason: String,
    /// cxlvmm's exit status (None: killed, or never started).
    pub exit_code: Option<i32>,
    pub expect_exit: u8,
    pub duration_s: f64,
    /// Guest uptime when the case's script started.
    pub boot_s: Option<f64>,
    pub splats: Vec<Splat>,
    pub ktap: Vec<Document>,
    pub console_bytes: u64,
    /// The console was longer than `--log-cap`; only the start was kept.
    pub console_capped: bool,
    pub out_dir: String,
    /// A shell command line that runs this job alone, as the runner did.
    pub rerun: String,
    /// Earlier tries (infrastructure retries), oldest first.
    pub attempts: Vec<Attempt>,
    /// The last lines of the console, for reports.
    #[serde(skip)]
    pub console_tail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub splat: usize,
    pub crash: usize,
    pub timeout: usize,
    pub infra: usize,
    /// Jobs that needed more than one try.
    pub retried: usize,
    pub exit_code: u8,
}

impl Summary {
    pub fn of(results: &[CaseResult]) -> Summary {
        let count = |s: Status| results.iter().filter(|r| r.status == s).count();
        let worst = results
            .iter()
            .map(|r| r.status)
            .max_by_key(|s| s.severity())
            .unwrap_or(Status::Pass);
        Summary {
            total: results.len(),
            passed: count(Status::Pass),
            failed: count(Status::Fail),
            splat: count(Status::Splat),
            crash: count(Status::Crash),
            timeout: count(Status::Timeout),
            infra: count(Status::Infra),
            retried: results.iter().filter(|r| !r.attempts.is_empty()).count(),
            exit_code: worst.exit_code(),
        }
    }

    pub fn count(&self, s: Status) -> usize {
        match s {
            Status::Pass => self.passed,
            Status::Fail => self.failed,
            Status::Splat => self.splat,
            Status::Crash => self.crash,
            Status::Timeout => self.timeout,
            Status::Infra => self.infra,
        }
    }
}

#[cfg(test)]
pub(crate) mod sample {
    //! Results of every kind, for the report tests.
    use super::*;
    use crate::splat;

    pub fn results() -> Vec<CaseResult> {
        let ktap = crate::ktap::parse(
            "KTAP version 1\n1..3\nok 1 a\nnot ok 2 b\nok 3 c # SKIP no device\n",
        );
        let splats = splat::detect(
            "------------[ cut here ]------------\nWARNING: CPU: 0 PID: 1 at drivers/cxl/core/region.c:10 attach+0x1/0x2\n---[ end trace 0000000000000000 ]---\n",
        );
        let base = |case: &str, status: Status, reason: &str| CaseResult {
            id: format!("{case}/6.12/direct"),
            case: case.into(),
            kernel: "6.12".into(),
            topology: "direct".into(),
            status,
            reason: reason.into(),
            exit_code: Some(0),
            expect_exit: 0,
            duration_s: 12.25,
            boot_s: Some(1.5),
            splats: Vec::new(),
            ktap: Vec::new(),
            console_bytes: 100,
            console_capped: false,
            out_dir: format!("out/{case}/6.12/direct"),
            rerun: format!("cd out/{case}/6.12/direct && ./rerun.sh"),
            attempts: Vec::new(),
            console_tail: format!("console of {case} <&> \u{1b}[0m\u{0}end\n"),
        };
        let mut fail = base("fail", Status::Fail, "exit 1, expected 0");
        fail.exit_code = Some(1);
        let mut ktap_fail = base("ktap", Status::Fail, "1 KTAP test(s) failed: b");
        ktap_fail.ktap = ktap;
        let mut splat = base("splat", Status::Splat, "WARNING in attach");
        splat.splats = splats;
        let mut crash = base(
            "panic",
            Status::Crash,
            "Kernel panic - not syncing: sysrq triggered crash",
        );
        crash.exit_code = None;
        crash.boot_s = None;
        let mut timeout = base(
            "hang",
            Status::Timeout,
            "the guest did not finish (cxlvmm --timeout)",
        );
        timeout.exit_code = Some(124);
        let mut retried = base("flaky", Status::Pass, "");
        retried.attempts.push(Attempt {
            status: Status::Crash,
            reason: "triple fault".into(),
            dir: "out/flaky/6.12/direct/try-1".into(),
        });
        let mut infra = base("broken", Status::Infra, "cxlvmm: cannot open /dev/kvm");
        infra.exit_code = Some(1);
        infra.attempts.push(Attempt {
            status: Status::Infra,
            reason: "cxlvmm: cannot open /dev/kvm".into(),
            dir: "out/broken/6.12/direct/try-1".into(),
        });
        infra.console_capped = true;
        vec![
            base("boot", Status::Pass, ""),
            fail,
            ktap_fail,
            splat,
            crash,
            timeout,
            retried,
            infra,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_and_worst_status_decides_exit_code() {
        let all = sample::results();
        let s = Summary::of(&all);
        assert_eq!(
            (s.total, s.passed, s.failed, s.splat, s.crash, s.timeout, s.infra),
            (8, 2, 2, 1, 1, 1, 1)
        );
        assert_eq!(s.retried, 2);
        assert_eq!(s.exit_code, 6);
        // Without the infra failure the crash decides, and so on down.
        let mut rest: Vec<CaseResult> = all
            .into_iter()
            .filter(|r| r.status != Status::Infra)
            .collect();
        for (gone, code) in [
            (Status::Crash, 5),
            (Status::Timeout, 1),
            (Status::Fail, 3),
            (Status::Splat, 0),
        ] {
            assert_eq!(Summary::of(&rest).exit_code, gone.exit_code());
            rest.retain(|r| r.status != gone);
            assert_eq!(Summary::of(&rest).exit_code, code);
        }
        assert_eq!(Summary::of(&[]).exit_code, 0);
    }
}
