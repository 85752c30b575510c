//! When did KVM leave and re-enter the guest? The host kernel's own
//! `kvm:kvm_exit` and `kvm:kvm_entry` tracepoints say so, per exit, in
//! nanoseconds of one host clock. They are read here through a
//! `perf_event_open` ring buffer per vCPU thread (the same data `perf trace`
//! shows), so the virtual clock can tell how long each exit really kept the
//! guest away, including the parts spent in the kernel that the VMM's user
//! space never sees (in-kernel exits: interrupts, MSR writes, halts).

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};

use perf_event_open_sys as perf;

/// Where tracefs may be mounted.
const TRACEFS_DIRS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The clock every timestamp is taken on: also readable from user space
/// (`clock_gettime`), so a prediction made in user space and a tracepoint
/// timestamp can be compared.
pub const TRACE_CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC_RAW;

/// Ring buffer data pages per vCPU (power of two). One record is 32-48
/// bytes; 1024 pages (4 MiB) hold ~40 000 exit/entry pairs between two
/// reads. 64 pages overflowed in the rig: a halted vCPU takes timer and IPI
/// exits inside the kernel for seconds without returning to user space
/// (139 778 events lost in one e2e run).
const RING_PAGES: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceKind {
    /// The guest stopped running; `reason` is the architecture's exit code
    /// (SVM exit code or VMX basic exit reason).
    Exit { reason: u32 },
    /// The guest is about to run again.
    Entry,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    pub kind: TraceKind,
    /// Nanoseconds on [`TRACE_CLOCK`].
    pub time_ns: u64,
}

/// Nanoseconds on [`TRACE_CLOCK`] now.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid local.
    unsafe { libc::clock_gettime(TRACE_CLOCK, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(
        "KVM tracepoints not found (is tracefs mounted? try `mount -t tracefs nodev /sys/kernel/tracing`): {0}"
    )]
    NoTracefs(String),
    #[error("kvm tracepoint format {path}: field {field} not found")]
    Format { path: PathBuf, field: &'static str },
    #[error("perf_event_open on kvm:{event} (needs root or CAP_PERFMON): {source}")]
    Open {
        event: &'static str,
        source: io::Error,
    },
    #[error("perf ring buffer: {0}")]
    Ring(io::Error),
}

/// The tracepoint ids and where the exit reason sits in a raw record.
#[derive(Clone, Copy, Debug)]
struct Tracepoints {
    exit_id: u64,
    entry_id: u64,
    exit_reason_offset: usize,
}

fn tracefs() -> Result<&'static Path, TraceError> {
    TRACEFS_DIRS
        .iter()
        .map(Path::new)
        .find(|d| d.join("events/kvm/kvm_exit/id").exists())
        .ok_or_else(|| TraceError::NoTracefs(TRACEFS_DIRS.join(", ")))
}

fn read_id(path: &Path) -> Result<u64, TraceError> {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| TraceError::NoTracefs(path.display().to_string()))
}

/// The byte offset of `field` in a tracepoint's raw record, from its
/// `format` file (`field:unsigned int exit_reason;\toffset:8;\tsize:4;...`).
fn field_offset(format: &str, field: &str) -> Option<usize> {
    format.lines().find_map(|l| {
        let decl = l.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl.split_whitespace().last()?;
        if name != field {
            return None;
        }
        rest.split(';')
            .find_map(|kv| kv.trim().strip_prefix("offset:"))
            .and_then(|v| v.trim().parse().ok())
    })
}

impl Tracepoints {
    fn find() -> Result<Self, TraceError> {
        let root = tracefs()?;
        let exit_dir = root.join("events/kvm/kvm_exit");
        let format_path = exit_dir.join("format");
        let format = fs::read_to_string(&format_path)
            .map_err(|e| TraceError::NoTracefs(format!("{}: {e}", format_path.display())))?;
        let exit_reason_offset =
            field_offset(&format, "exit_reason").ok_or(TraceError::Format {
                path: format_path,
                field: "exit_reason",
            })?;
        Ok(Self {
            exit_id: read_id(&exit_dir.join("id"))?,
            entry_id: read_id(&root.join("events/kvm/kvm_entry/id"))?,
            exit_reason_offset,
        })
    }
}

/// One vCPU thread's exit/entry trace.
pub struct VcpuTrace {
    tp: Tracepoints,
    _exit_fd: OwnedFd,
    _entry_fd: OwnedFd,
    ring: *mut u8,
    ring_len: usize,
    data_len: usize,
}

// SAFETY: the ring is a private mapping owned by this value; only the thread
// holding the value reads it.
unsafe impl Send for VcpuTrace {}

fn open_event(
    id: u64,
    tid: libc::pid_t,
    group: libc::c_int,
    event: &'static str,
) -> Result<OwnedFd, TraceError> {
    let mut attr = perf::bindings::perf_event_attr {
        type_: perf::bindings::PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<perf::bindings::perf_event_attr>() as u32,
        config: id,
        sample_type: u64::from(perf::bindings::PERF_SAMPLE_TIME | perf::bindings::PERF_SAMPLE_RAW),
        clockid: TRACE_CLOCK,
        ..Default::default()
    };
    attr.__bindgen_anon_1.sample_period = 1;
    attr.__bindgen_anon_2.wakeup_events = 1 << 20;
    attr.set_use_clockid(1);
    // SAFETY: attr is a fully initialised perf_event_attr of the size we
    // declare; the kernel only reads it.
    let fd = unsafe {
        perf::perf_event_open(
            &mut attr,
            tid,
            -1,
            group,
            libc::c_ulong::from(perf::bindings::PERF_FLAG_FD_CLOEXEC),
        )
    };
    if fd < 0 {
        return Err(TraceError::Open {
            event,
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: perf_event_open returned a new descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl VcpuTrace {
    /// Traces the thread `tid` (a vCPU thread; usually the caller's own).
    pub fn open(tid: libc::pid_t) -> Result<Self, TraceError> {
        let tp = Tracepoints::find()?;
        let exit_fd = open_event(tp.exit_id, tid, -1, "kvm_exit")?;
        let entry_fd = open_event(tp.entry_id, tid, -1, "kvm_entry")?;
        let page = 4096usize;
        let ring_len = page * (1 + RING_PAGES);
        // SAFETY: mapping a perf event's ring buffer: a fresh shared mapping
        // of the size perf requires (1 + 2^n pages); nothing else is there.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                exit_fd.as_raw_fd(),
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(TraceError::Ring(io::Error::last_os_error()));
        }
        // Both events write into the exit event's ring, in time order.
        // SAFETY: both are perf fds of this process; SET_OUTPUT only links them.
        let r = unsafe { perf::ioctls::SET_OUTPUT(entry_fd.as_raw_fd(), exit_fd.as_raw_fd()) };
        if r != 0 {
            let e = io::Error::last_os_error();
            // SAFETY: unmapping what we mapped above.
            unsafe { libc::munmap(ring, ring_len) };
            return Err(TraceError::Ring(e));
        }
        Ok(Self {
            tp,
            _exit_fd: exit_fd,
            _entry_fd: entry_fd,
            ring: ring.cast(),
            ring_len,
            data_len: page * RING_PAGES,
        })
    }

    fn header(&self) -> *mut perf::bindings::perf_event_mmap_page {
        self.ring.cast()
    }

    /// Appends every event recorded since the last call to `out`, oldest
    /// first. Returns how many events the kernel had to drop (ring full).
    pub fn drain(&mut self, out: &mut Vec<TraceEvent>) -> u64 {
        let hdr = self.header();
        // SAFETY: the header page is mapped for the life of self; data_head
        // is written by the kernel, read here with a fence after it as the
        // perf ABI requires.
        let head = unsafe { std::ptr::read_volatile(&(*hdr).data_head) };
        fence(Ordering::Acquire);
        // SAFETY: as above; data_tail is ours.
        let mut tail = unsafe { (*hdr).data_tail };
        let data = self.ring.wrapping_add(4096);
        let mut lost = 0;
        let mut rec = [0u8; 256];
        while tail < head {
            let at = (tail % self.data_len as u64) as usize;
            let mut h = [0u8; 8];
            self.copy_out(data, at, &mut h);
            let kind = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            let size = usize::from(u16::from_le_bytes([h[6], h[7]]));
            if size < 8 {
                break;
            }
            let n = size.min(rec.len());
            self.copy_out(data, at, &mut rec[..n]);
            match kind {
                perf::bindings::PERF_RECORD_SAMPLE => {
                    if let Some(ev) = self.parse_sample(&rec[8..n]) {
                        out.push(ev);
                    }
                }
                perf::bindings::PERF_RECORD_LOST if n >= 24 => {
                    lost += u64::from_le_bytes(rec[16..24].try_into().unwrap_or([0; 8]));
                }
                _ => {}
            }
            tail += size as u64;
        }
        fence(Ordering::Release);
        // SAFETY: handing the consumed space back to the kernel.
        unsafe { std::ptr::write_volatile(&mut (*hdr).data_tail, tail) };
        lost
    }

    /// Copies `buf.len()` bytes at ring offset `at`, wrapping around.
    fn copy_out(&self, data: *mut u8, at: usize, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: the index is reduced modulo the data area's length,
            // which lies inside the mapping.
            *b = unsafe { *data.add((at + i) % self.data_len) };
        }
    }

    /// A sample: u64 time, u32 raw size, raw bytes (common_type first).
    fn parse_sample(&self, body: &[u8]) -> Option<TraceEvent> {
        let time_ns = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
        let raw = body.get(12..)?;
        let common_type = u64::from(u16::from_le_bytes(raw.get(0..2)?.try_into().ok()?));
        let kind = if common_type == self.tp.exit_id {
            let o = self.tp.exit_reason_offset;
            TraceKind::Exit {
                reason: u32::from_le_bytes(raw.get(o..o + 4)?.try_into().ok()?),
            }
        } else if common_type == self.tp.entry_id {
            TraceKind::Entry
        } else {
            return None;
        };
        Some(TraceEvent { kind, time_ns })
    }
}

impl Drop for VcpuTrace {
    fn drop(&mut self) {
        // SAFETY: unmapping the ring mapped in open(); nothing refers to it
        // after self is gone.
        unsafe { libc::munmap(self.ring.cast(), self.ring_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_offsets_come_from_the_format_file() {
        let format = "name: kvm_exit\nID: 1234\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
            \tfield:unsigned int exit_reason;\toffset:8;\tsize:4;\tsigned:0;\n\
            \tfield:unsigned long guest_rip;\toffset:16;\tsize:8;\tsigned:0;\n";
        assert_eq!(field_offset(format, "exit_reason"), Some(8));
        assert_eq!(field_offset(format, "guest_rip"), Some(16));
        assert_eq!(field_offset(format, "common_pid"), Some(4));
        assert_eq!(field_offset(format, "isa"), None);
    }
}
