//! When a job may start beside the ones already running: in list order,
//! never beside a job that must run alone (`alone = true`: it measures
//! time, or shares files or host settings with other cases), never beside
//! one that uses the same persistent memory file, and only while the
//! guests' memory together fits the host's.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};

/// What a job takes while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Demand<'a> {
    /// Its guest's memory, in bytes.
    pub memory: u64,
    /// Nothing else may run beside it.
    pub alone: bool,
    /// Files only one VM at a time may use (persistent memory).
    pub files: &'a [PathBuf],
}

#[derive(Debug, Default)]
struct State {
    /// The index of the next job to start: jobs start in list order.
    next: usize,
    running: usize,
    memory: u64,
    alone: bool,
    /// The running jobs' files, each once per job using it.
    files: Vec<PathBuf>,
    /// Jobs blocked in [`Schedule::start`].
    waiting: usize,
}

/// Admits jobs one at a time, in order, as [`Schedule::start`] allows.
#[derive(Debug)]
pub struct Schedule {
    /// Bytes of guest memory that may run at once (None: no limit).
    memory_budget: Option<u64>,
    state: Mutex<State>,
    changed: Condvar,
}

/// A started job's share; dropping it lets the next ones start.
#[must_use]
pub struct Running<'s> {
    schedule: &'s Schedule,
    demand: Demand<'s>,
}

impl Schedule {
    pub fn new(memory_budget: Option<u64>) -> Self {
        Self {
            memory_budget,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    /// Blocks until job `index` (0-based, every index below it started
    /// before) may start with `demand`.
    pub fn start<'s>(&'s self, index: usize, demand: Demand<'s>) -> Running<'s> {
        let mut s = self.lock();
        if !self.may_start(&s, index, demand) {
            s.waiting += 1;
            while !self.may_start(&s, index, demand) {
                s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            s.waiting -= 1;
        }
        self.admit(s, demand)
    }

    /// Starts job `index` if it may start now.
    pub fn try_start<'s>(&'s self, index: usize, demand: Demand<'s>) -> Option<Running<'s>> {
        let s = self.lock();
        self.may_start(&s, index, demand)
            .then(|| self.admit(s, demand))
    }

    fn may_start(&self, s: &State, index: usize, demand: Demand) -> bool {
        s.next == index && self.fits(s, demand)
    }

    fn admit<'s>(&'s self, mut s: MutexGuard<'_, State>, demand: Demand<'s>) -> Running<'s> {
        s.next += 1;
        s.running += 1;
        s.memory += demand.memory;
        s.alone = demand.alone;
        s.files.extend_from_slice(demand.files);
        self.changed.notify_all();
        Running {
            schedule: self,
            demand,
        }
    }

    /// Whether a job with `demand` may start now. With nothing running
    /// every job may, so one bigger than the budget still runs (alone).
    fn fits(&self, s: &State, demand: Demand) -> bool {
        if s.running == 0 {
            return true;
        }
        if demand.alone || s.alone {
            return false;
        }
        if demand.files.iter().any(|f| s.files.contains(f)) {
            return false;
        }
        self.memory_budget
            .is_none_or(|budget| s.memory.saturating_add(demand.memory) <= budget)
    }

    /// How many jobs wait in [`Schedule::start`].
    pub fn waiting(&self) -> usize {
        self.lock().waiting
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut s = self.schedule.lock();
        s.running -= 1;
        s.memory -= self.demand.memory;
        if self.demand.alone {
            s.alone = false;
        }
        for f in self.demand.files {
            if let Some(i) = s.files.iter().position(|g| g == f) {
                s.files.swap_remove(i);
            }
        }
        self.schedule.changed.notify_all();
    }
}

/// The memory jobs may take at once on this host: nine tenths of what
/// `/proc/meminfo` calls available now (the rest for cxlvmm itself, its
/// page tables and the host's page cache). None where it cannot be read.
pub fn host_memory_budget() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    memory_budget_from(&info)
}

fn memory_budget_from(meminfo: &str) -> Option<u64> {
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024) / 10 * 9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    const GIB: u64 = 1 << 30;

    fn shared(memory: u64) -> Demand<'static> {
        Demand {
            memory,
            alone: false,
            files: &[],
        }
    }

    fn alone(memory: u64) -> Demand<'static> {
        Demand {
            alone: true,
            ..shared(memory)
        }
    }

    fn using(files: &[PathBuf]) -> Demand<'_> {
        Demand {
            files,
            ..shared(GIB)
        }
    }

    #[test]
    fn jobs_start_side_by_side_in_list_order() {
        let s = Schedule::new(None);
        assert!(s.try_start(1, shared(GIB)).is_none(), "job 1 before job 0");
        let _j0 = s.try_start(0, shared(GIB)).expect("nothing runs");
        let _j1 = s.try_start(1, shared(GIB)).expect("beside job 0");
        assert!(s.try_start(1, shared(GIB)).is_none(), "job 1 twice");
        let _j2 = s.try_start(2, shared(GIB)).expect("beside jobs 0 and 1");
    }

    #[test]
    fn an_alone_job_waits_for_the_others_and_keeps_them_waiting() {
        let s = Schedule::new(None);
        let j0 = s.try_start(0, shared(GIB)).unwrap();
        assert!(s.try_start(1, alone(GIB)).is_none(), "beside job 0");
        drop(j0);
        let j1 = s.try_start(1, alone(GIB)).expect("nothing runs");
        assert!(s.try_start(2, shared(GIB)).is_none(), "beside an alone job");
        drop(j1);
        let _j2 = s.try_start(2, shared(GIB)).expect("the alone job ended");
        let _j3 = s.try_start(3, shared(GIB)).expect("beside job 2");
    }

    #[test]
    fn memory_beyond_the_budget_waits_and_a_job_too_big_for_it_runs_alone() {
        let s = Schedule::new(Some(4 * GIB));
        let j0 = s.try_start(0, shared(2 * GIB)).unwrap();
        let j1 = s.try_start(1, shared(2 * GIB)).expect("2 + 2 GiB fit 4");
        assert!(s.try_start(2, shared(GIB)).is_none(), "5 GiB");
        drop(j0);
        let j2 = s.try_start(2, shared(GIB)).expect("3 GiB");
        assert!(s.try_start(3, shared(6 * GIB)).is_none(), "9 GiB");
        drop((j1, j2));
        let j3 = s.try_start(3, shared(6 * GIB)).expect("alone, though over");
        assert!(s.try_start(4, shared(GIB)).is_none(), "7 GiB");
        drop(j3);
        let _j4 = s.try_start(4, shared(GIB)).expect("nothing runs");
    }

    #[test]
    fn jobs_that_share_a_persistent_file_do_not_overlap() {
        let s = Schedule::new(None);
        let (a, b, c) = (
            PathBuf::from("/b/pmem0.img"),
            PathBuf::from("/b/pmem1.img"),
            PathBuf::from("/b/other.img"),
        );
        let both = [a.clone(), b.clone()];
        let j0 = s.try_start(0, using(&both)).unwrap();
        assert!(
            s.try_start(1, using(std::slice::from_ref(&b))).is_none(),
            "pmem1 in use"
        );
        drop(j0);
        let j1 = s
            .try_start(1, using(std::slice::from_ref(&b)))
            .expect("pmem1 free");
        let j2 = s
            .try_start(2, using(std::slice::from_ref(&a)))
            .expect("pmem0 free");
        let j3 = s
            .try_start(3, using(std::slice::from_ref(&c)))
            .expect("another file");
        assert!(s.try_start(4, using(&both)).is_none(), "both in use");
        drop((j1, j2, j3));
        let _j4 = s.try_start(4, using(&both)).expect("both free again");
    }

    #[test]
    fn a_waiting_job_starts_when_the_one_before_it_ends() {
        let s = Schedule::new(None);
        let started = AtomicBool::new(false);
        let j0 = s.start(0, shared(GIB));
        std::thread::scope(|sc| {
            let waiter = sc.spawn(|| {
                let _j1 = s.start(1, alone(GIB));
                started.store(true, Ordering::SeqCst);
            });
            // Until job 1 blocks in start(), or (wrongly) starts.
            while s.waiting() == 0 && !started.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            assert!(
                !started.load(Ordering::SeqCst),
                "job 1 started beside job 0"
            );
            drop(j0);
            waiter.join().unwrap();
            assert!(started.load(Ordering::SeqCst));
            assert_eq!(s.waiting(), 0);
        });
    }

    #[test]
    fn the_budget_is_nine_tenths_of_available_memory() {
        let info = "MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    7000000 kB\n";
        assert_eq!(memory_budget_from(info), Some(7_000_000 * 1024 / 10 * 9));
        assert_eq!(memory_budget_from("MemTotal: 1 kB\n"), None);
        assert_eq!(memory_budget_from("MemAvailable: lots kB\n"), None);
    }
}
