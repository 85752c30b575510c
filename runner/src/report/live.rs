//! What `cxlvmm test` prints while it runs: one line per finished job, a
//! progress line on a terminal (redrawn in place), and a summary table.
//! Without a terminal the output is plain lines only, fit for CI logs.

use std::io::Write;
use std::sync::Mutex;

use super::{CaseResult, Summary};
use crate::verdict::Status;

pub struct Live {
    tty: bool,
    total: usize,
    state: Mutex<State>,
}

struct State {
    done: usize,
    running: Vec<String>,
}

/// "12.3s"
fn secs(s: f64) -> String {
    format!("{s:.1}s")
}

/// The line printed when a job finishes.
pub fn result_line(r: &CaseResult, done: usize, total: usize) -> String {
    let width = total.to_string().len();
    let boot = r
        .boot_s
        .map(|b| format!(", boot {}", secs(b)))
        .unwrap_or_default();
    let retried = if r.attempts.is_empty() {
        String::new()
    } else {
        format!(", try {}", r.attempts.len() + 1)
    };
    let reason = if r.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", r.reason)
    };
    format!(
        "[{done:>width$}/{total}] {:<7} {} ({}{boot}{retried}){reason}",
        r.status.name(),
        r.id,
        secs(r.duration_s),
    )
}

impl Live {
    pub fn new(total: usize, tty: bool) -> Live {
        Live {
            tty,
            total,
            state: Mutex::new(State {
                done: 0,
                running: Vec::new(),
            }),
        }
    }

    fn progress(&self, st: &State) -> String {
        let mut names = st.running.join(", ");
        if names.len() > 60 {
            names.truncate(57);
            names.push_str("...");
        }
        format!("[{}/{}] running: {names}", st.done, self.total)
    }

    pub fn started(&self, id: &str) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.running.push(id.to_string());
        if self.tty {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[K{}", self.progress(&st));
            let _ = out.flush();
        }
    }

    pub fn note(&self, line: &str) {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::io::stdout().lock();
        if self.tty {
            let _ = write!(out, "\r\x1b[K{line}\n{}", self.progress(&st));
        } else {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }

    pub fn finished(&self, r: &CaseResult) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.done += 1;
        st.running.retain(|id| *id != r.id);
        let line = result_line(r, st.done, self.total);
        let mut out = std::io::stdout().lock();
        if self.tty {
            let _ = write!(out, "\r\x1b[K{line}\n");
            if st.done < self.total {
                let _ = write!(out, "{}", self.progress(&st));
            }
        } else {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

/// The table at the end: every job, then the counts and the closing line.
pub fn summary_table(results: &[CaseResult]) -> String {
    let s = Summary::of(results);
    let id_w = results.iter().map(|r| r.id.len()).max().unwrap_or(2).max(3);
    let mut out = format!(
        "\n{:<7}  {:>8}  {:>7}  {:<id_w$}  DETAIL\n",
        "STATUS", "TIME", "BOOT", "JOB"
    );
    for r in results {
        let boot = r.boot_s.map(secs).unwrap_or_else(|| "-".into());
        let mut detail = r.reason.clone();
        if r.console_capped {
            detail.push_str(&format!(
                " [console capped, {} bytes seen]",
                r.console_bytes
            ));
        }
        if r.attempts.is_empty() {
        } else if r
            .attempts
            .iter()
            .all(|a| a.status == r.status && a.reason == r.reason)
        {
            detail.push_str(&format!(
                " [the same on all {} tries]",
                r.attempts.len() + 1
            ));
        } else {
            let why: Vec<String> = r
                .attempts
                .iter()
                .map(|a| format!("{}: {}", a.status.name(), a.reason))
                .collect();
            detail.push_str(&format!(" [retried after {}]", why.join("; ")));
        }
        if r.status != Status::Pass {
            detail.push_str(&format!(" -> {}", r.out_dir));
        }
        out.push_str(&format!(
            "{:<7}  {:>8}  {:>7}  {:<id_w$}  {}\n",
            r.status.name(),
            secs(r.duration_s),
            boot,
            r.id,
            detail.trim()
        ));
    }
    let counts: Vec<String> = Status::ALL
        .iter()
        .filter(|st| s.count(**st) > 0)
        .map(|st| format!("{} {}", s.count(*st), st.name()))
        .collect();
    out.push_str(&format!(
        "\n{} jobs: {} (exit {})\n",
        s.total,
        if counts.is_empty() {
            "none".into()
        } else {
            counts.join(", ")
        },
        s.exit_code
    ));
    // The closing line CI log readers look for.
    out.push_str(&format!(
        "cxlvmm test: {} passed, {} failed\n",
        s.passed,
        s.total - s.passed
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_table() {
        let all = super::super::sample::results();
        assert_eq!(
            result_line(&all[0], 3, 12),
            "[ 3/12] PASS    boot/6.12/direct (12.2s, boot 1.5s)"
        );
        assert_eq!(
            result_line(&all[1], 4, 12),
            "[ 4/12] FAIL    fail/6.12/direct (12.2s, boot 1.5s): exit 1, expected 0"
        );
        assert_eq!(
            result_line(&all[6], 7, 8),
            "[7/8] PASS    flaky/6.12/direct (12.2s, boot 1.5s, try 2)"
        );
        let t = summary_table(&all);
        let crash = t.lines().find(|l| l.starts_with("CRASH")).unwrap();
        let cols: Vec<&str> = crash.split_whitespace().take(4).collect();
        assert_eq!(cols, ["CRASH", "12.2s", "-", "panic/6.12/direct"]);
        assert!(
            crash.ends_with(
                "Kernel panic - not syncing: sysrq triggered crash -> out/panic/6.12/direct"
            ),
            "{t}"
        );
        assert!(t.contains("[retried after CRASH: triple fault]"), "{t}");
        assert!(
            t.contains("[console capped, 100 bytes seen] [the same on all 2 tries]"),
            "{t}"
        );
        assert!(
            t.contains("8 jobs: 2 PASS, 2 FAIL, 1 SPLAT, 1 CRASH, 1 TIMEOUT, 1 INFRA (exit 6)"),
            "{t}"
        );
        assert!(t.ends_with("cxlvmm test: 2 passed, 6 failed\n"), "{t}");
    }
}
