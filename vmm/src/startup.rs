//! Start-up figures that `cxlvmm run --verbose` prints: how long from the
//! process's start to the first `KVM_RUN` of any vCPU, and how much host
//! memory the process held (its peak resident set, `VmHWM`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static PROCESS_START: OnceLock<Instant> = OnceLock::new();
static FIRST_RUN: OnceLock<Duration> = OnceLock::new();

/// Called first thing in `main`: the clock the start-up time is read on.
pub fn mark_process_start() {
    PROCESS_START.get_or_init(Instant::now);
}

/// Called by each vCPU thread just before its first `KVM_RUN`; the first
/// caller's time is kept.
pub fn mark_first_run() {
    if let Some(start) = PROCESS_START.get() {
        FIRST_RUN.get_or_init(|| start.elapsed());
    }
}

/// Process start to the first `KVM_RUN`, if both happened.
pub fn first_run() -> Option<Duration> {
    FIRST_RUN.get().copied()
}

/// `/proc/self/status`, opened while the thread may still open files
/// (the main thread's seccomp filter lets it read, not open).
pub struct MemoryProbe(File);

/// Resident memory, KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resident {
    pub now_kib: u64,
    pub peak_kib: u64,
}

impl MemoryProbe {
    pub fn open() -> Option<MemoryProbe> {
        File::open("/proc/self/status").ok().map(MemoryProbe)
    }

    pub fn read(&self) -> Option<Resident> {
        let mut buf = vec![0u8; 16 << 10];
        let n = self.0.read_at(&mut buf, 0).ok()?;
        parse_status(&String::from_utf8_lossy(&buf[..n]))
    }
}

fn parse_status(text: &str) -> Option<Resident> {
    Some(Resident {
        now_kib: crate::host::proc_field(text, "VmRSS:")?,
        peak_kib: crate::host::proc_field(text, "VmHWM:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_gives_current_and_peak_rss() {
        let s = "Name:\tcxlvmm\nVmHWM:\t  51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(
            parse_status(s),
            Some(Resident {
                now_kib: 40960,
                peak_kib: 51200
            })
        );
        assert_eq!(parse_status("VmRSS: 1 kB\n"), None);
        let own = MemoryProbe::open().and_then(|p| p.read()).unwrap();
        assert!(own.peak_kib >= own.now_kib && own.now_kib > 0);
    }

    #[test]
    fn the_first_run_is_measured_from_the_process_start() {
        mark_first_run();
        mark_process_start();
        mark_first_run();
        let first = first_run().unwrap();
        mark_first_run();
        assert_eq!(first_run(), Some(first));
    }
}
