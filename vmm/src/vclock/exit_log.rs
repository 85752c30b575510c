//! A per-exit record of the virtual clock's decisions, for analysing how
//! well it hides exits (docs/timed-mode.md, "Exit log"). Off unless
//! `CXLVMM_CLOCK_LOG=DIR` is set: then each vCPU thread keeps one record per
//! exit in memory (bounded) and writes `DIR/vcpuN.csv` when it ends.
//!
//! Everything the log needs is taken when the thread starts, before its
//! seccomp filter: the file, and room for every record. On an exit it only
//! copies a few integers into that room (no allocation, no formatting, so
//! it adds as few instructions as possible to the time the clock hides);
//! the text is made when the thread ends, in a buffer on the stack. Freeing
//! the records then returns one mapping to the kernel; many small frees
//! could make glibc shrink the thread's heap, which first opens
//! `/proc/sys/vm/overcommit_memory`, a call the filter refuses.

use std::fs::File;
use std::io::Write;

use super::exit_timer::ExitTiming;

/// Records kept per vCPU (about 150 bytes each; the room is reserved and
/// written once when the log opens).
const MAX_LINES: usize = 400_000;

/// Bytes of text written to the file at a time.
const CHUNK: usize = 16 << 10;

pub const HEADER: &str = "host_ret,left,in_kernel,in_kernel_exits,last_reason,entry_error,entry_path,run_path,idled,latency,exit_side,entry_side,debt_before_enter,decided,entry_delay,offset,guest_resume,debt_after_enter,hidden";

/// The exit half of a record: when KVM_RUN returned, what the timer
/// measured and the latency charged (cycles).
#[derive(Clone, Copy)]
struct ExitHalf {
    host_ret: u64,
    timing: ExitTiming,
    latency: Option<u64>,
}

#[derive(Clone, Copy)]
struct Record {
    exit: Option<ExitHalf>,
    entry: EntryRecord,
}

impl Record {
    /// What fills the room before the records do.
    const EMPTY: Self = Self {
        exit: None,
        entry: EntryRecord {
            debt_before: 0,
            decided: 0,
            delay: 0,
            offset: 0,
            guest_resume: 0,
            debt_after: 0,
            hidden: 0,
        },
    };
}

pub struct ExitLog {
    /// Host TSC when KVM_RUN last returned.
    pub host_ret: u64,
    file: File,
    /// Reserved when the log opens; never grows past that.
    records: Vec<Record>,
    /// The exit half of the record being built (until the next entry).
    pending: Option<ExitHalf>,
}

impl ExitLog {
    /// The log for vCPU `index`, if `CXLVMM_CLOCK_LOG` names a directory.
    pub fn open(index: usize) -> Option<Self> {
        let dir = std::env::var_os("CXLVMM_CLOCK_LOG")?;
        let path = std::path::Path::new(&dir).join(format!("vcpu{index}.csv"));
        Self::create(&path, MAX_LINES)
            .map_err(|e| log::warn!("clock log {}: {e}", path.display()))
            .ok()
    }

    /// A log of at most `max_lines` records, written to `path` when dropped.
    pub fn create(path: &std::path::Path, max_lines: usize) -> std::io::Result<Self> {
        let file = File::create(path)?;
        let mut records = Vec::with_capacity(max_lines);
        // Every page of the room is touched now, before the guest runs.
        // Touched as records filled it, each new 2 MiB (a transparent huge
        // page, zeroed on its first touch) stalled the vCPU thread for
        // ~550 µs in an instruction-counted rig, every ~13 800 exits, and
        // the guest saw late entries the log itself had made
        // (docs/performance.md, "A host that keeps still").
        records
            .spare_capacity_mut()
            .fill(std::mem::MaybeUninit::new(Record::EMPTY));
        Ok(Self {
            host_ret: 0,
            file,
            records,
            pending: None,
        })
    }

    /// The exit half of a record: what the timer measured and the latency
    /// charged (cycles).
    pub fn exited(&mut self, t: &ExitTiming, latency: Option<u64>) {
        self.pending = Some(ExitHalf {
            host_ret: self.host_ret,
            timing: *t,
            latency,
        });
    }

    /// The entry half: the decision the coordinator made. Records past the
    /// reserved room are dropped.
    pub fn entered(&mut self, entry: EntryRecord) {
        let exit = self.pending.take();
        if self.records.len() < self.records.capacity() {
            self.records.push(Record { exit, entry });
        }
    }

    fn write_all(&mut self) -> std::io::Result<()> {
        let mut out = Chunked {
            file: &mut self.file,
            chunk: [0u8; CHUNK],
            used: 0,
        };
        writeln!(out, "{HEADER}")?;
        for r in &self.records {
            format_record(&mut out, r)?;
        }
        out.flush()
    }
}

/// Text gathered on the stack and written a chunk at a time (what
/// `std::io::BufWriter` does, without its buffer on the heap).
struct Chunked<'a> {
    file: &'a mut File,
    chunk: [u8; CHUNK],
    used: usize,
}

impl Write for Chunked<'_> {
    fn write(&mut self, text: &[u8]) -> std::io::Result<usize> {
        if self.used + text.len() > CHUNK {
            self.flush()?;
        }
        if text.len() > CHUNK {
            return self.file.write(text);
        }
        self.chunk[self.used..self.used + text.len()].copy_from_slice(text);
        self.used += text.len();
        Ok(text.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.write_all(&self.chunk[..self.used])?;
        self.used = 0;
        Ok(())
    }
}

fn format_record(out: &mut impl Write, r: &Record) -> std::io::Result<()> {
    match &r.exit {
        Some(x) => {
            let t = &x.timing;
            write!(
                out,
                "{},{},{},{},{:#x},{},{},{},{},{},{},{},",
                x.host_ret,
                t.left,
                t.in_kernel,
                t.in_kernel_exits,
                t.last_in_kernel_reason,
                t.entry_error,
                t.entry_path,
                t.run_path,
                u8::from(t.idled),
                x.latency.map_or(-1, |l| l as i64),
                t.exit_side,
                t.entry_side,
            )?;
        }
        None => out.write_all(b",,,,,,,,,,,,")?,
    }
    let e = &r.entry;
    writeln!(
        out,
        "{},{},{},{},{},{},{}",
        e.debt_before, e.decided, e.delay, e.offset, e.guest_resume, e.debt_after, e.hidden
    )
}

/// What the coordinator decided for one entry (host TSC cycles; the guest
/// resume time in guest TSC).
#[derive(Clone, Copy)]
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
        if let Err(e) = self.write_all() {
            log::warn!("clock log: {e}");
        }
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
            let mut log = ExitLog::create(&path, 8).unwrap();
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
                exit_side: 6,
                entry_side: 8,
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
        assert_eq!(lines[1], ",,,,,,,,,,,,5,100,20,1,121,2,7");
        assert_eq!(
            lines[2],
            "900,880,3,1,0x7c,-4,30,12,0,250,6,8,5,100,20,2,122,2,7"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn keeps_only_the_reserved_records_across_chunks() {
        let dir = std::env::temp_dir().join(format!("cxlvmm-exit-log-cap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vcpu1.csv");
        {
            let mut log = ExitLog::create(&path, 500).unwrap();
            for i in 0..700u64 {
                log.host_ret = u64::MAX - i;
                log.exited(&ExitTiming::default(), None);
                log.entered(EntryRecord {
                    debt_before: u64::MAX,
                    decided: i,
                    delay: u64::MAX,
                    offset: u64::MAX,
                    guest_resume: u64::MAX,
                    debt_after: u64::MAX,
                    hidden: u64::MAX,
                });
            }
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() > 2 * CHUNK, "{} bytes", text.len());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 501);
        let fields = HEADER.split(',').count();
        for (i, l) in lines[1..].iter().enumerate() {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), fields, "{l}");
            assert_eq!(f[0], (u64::MAX - i as u64).to_string());
            assert_eq!(f[9], "-1");
            assert_eq!(f[13], i.to_string());
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
