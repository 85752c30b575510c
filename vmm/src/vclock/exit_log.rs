//! A per-exit record of the virtual clock's decisions, for analysing how
//! well it hides exits (docs/timed-mode.md, "Exit log"). Off unless
//! `CXLVMM_CLOCK_LOG=DIR` is set: then each vCPU thread keeps one line per
//! exit in memory (bounded) and writes `DIR/vcpuN.csv` when it ends. The
//! file is opened when the thread starts, before its seccomp filter.

use std::fs::File;
use std::io::Write;

use super::exit_timer::ExitTiming;

/// Lines kept per vCPU (about 100 bytes each).
const MAX_LINES: usize = 400_000;

pub const HEADER: &str = "host_ret,left,in_kernel,in_kernel_exits,last_reason,entry_error,entry_path,run_path,idled,latency,debt_before_enter,decided,entry_delay,offset,guest_resume,debt_after_enter,hidden";

pub struct ExitLog {
    /// Host TSC when KVM_RUN last returned.
    pub host_ret: u64,
    file: File,
    lines: Vec<String>,
    /// The exit part of the line being built (until the next entry).
    pending: Option<String>,
}

impl ExitLog {
    /// The log for vCPU `index`, if `CXLVMM_CLOCK_LOG` names a directory.
    pub fn open(index: usize) -> Option<Self> {
        let dir = std::env::var_os("CXLVMM_CLOCK_LOG")?;
        let path = std::path::Path::new(&dir).join(format!("vcpu{index}.csv"));
        Self::create(&path)
            .map_err(|e| log::warn!("clock log {}: {e}", path.display()))
            .ok()
    }

    /// A log written to `path` when dropped.
    pub fn create(path: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self {
            host_ret: 0,
            file: File::create(path)?,
            lines: Vec::with_capacity(1 << 10),
            pending: None,
        })
    }

    /// The exit half of a record: what the timer measured and the latency
    /// charged (cycles).
    pub fn exited(&mut self, t: &ExitTiming, latency: Option<u64>) {
        self.pending = Some(format!(
            "{},{},{},{},{:#x},{},{},{},{},{}",
            self.host_ret,
            t.left,
            t.in_kernel,
            t.in_kernel_exits,
            t.last_in_kernel_reason,
            t.entry_error,
            t.entry_path,
            t.run_path,
            u8::from(t.idled),
            latency.map_or(-1, |l| l as i64),
        ));
    }

    /// The entry half: the decision the coordinator made.
    pub fn entered(&mut self, e: EntryRecord) {
        let exit = self.pending.take().unwrap_or_else(|| ",,,,,,,,,".into());
        if self.lines.len() < MAX_LINES {
            self.lines.push(format!(
                "{exit},{},{},{},{},{},{},{}",
                e.debt_before, e.decided, e.delay, e.offset, e.guest_resume, e.debt_after, e.hidden
            ));
        }
    }
}

/// What the coordinator decided for one entry (host TSC cycles; the guest
/// resume time in guest TSC).
pub struct EntryRecord {
    pub debt_before: u64,
    pub decided: u64,
    pub delay: u64,
    pub offset: u64,
    pub guest_resume: u64,
    pub debt_after: u64,
    pub hidden: u64,
}

impl Drop for ExitLog {
    fn drop(&mut self) {
        let mut out = String::with_capacity(self.lines.len() * 100 + HEADER.len() + 1);
        out.push_str(HEADER);
        out.push('\n');
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        let _ = self.file.write_all(out.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_entry_with_its_exit_half() {
        let dir = std::env::temp_dir().join(format!("cxlvmm-exit-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vcpu0.csv");
        {
            let mut log = ExitLog::create(&path).unwrap();
            let entry = |offset| EntryRecord {
                debt_before: 5,
                decided: 100,
                delay: 20,
                offset,
                guest_resume: 120 + offset,
                debt_after: 2,
                hidden: 7,
            };
            log.entered(entry(1)); // the first entry has no exit before it
            log.host_ret = 900;
            let t = ExitTiming {
                left: 880,
                in_kernel: 3,
                entry_error: -4,
                in_kernel_exits: 1,
                last_in_kernel_reason: 0x7c,
                entry_path: 30,
                run_path: 12,
                idled: false,
                halted: false,
                ran: true,
            };
            log.exited(&t, Some(250));
            log.entered(entry(2));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        let fields = HEADER.split(',').count();
        assert!(
            lines[1..].iter().all(|l| l.split(',').count() == fields),
            "{text}"
        );
        assert_eq!(lines[1], ",,,,,,,,,,5,100,20,1,121,2,7");
        assert_eq!(
            lines[2],
            "900,880,3,1,0x7c,-4,30,12,0,250,5,100,20,2,122,2,7"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
