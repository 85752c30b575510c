//! Exclusive locks on the files that hold a persistent device's media and
//! labels: two VMMs writing one device's media would corrupt it silently.
//!
//! The lock is `flock(LOCK_EX | LOCK_NB)` (`File::try_lock`), tied to the
//! open file: it lasts as long as the VMM keeps the file open, and the
//! kernel drops it when the process ends, however it ends (kill -9
//! included), so there is never a stale lock to clean up. The holder's pid
//! is looked up in /proc/locks for the error message.

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Takes the exclusive lock on `file` (opened from `path`), or explains who
/// has it.
pub fn lock_exclusive(file: &File, path: &Path) -> io::Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => {
            let holder = file
                .metadata()
                .ok()
                .and_then(|m| std::fs::read_to_string("/proc/locks").ok().map(|l| (m, l)))
                .and_then(|(m, locks)| lock_holder(&locks, m.dev(), m.ino()));
            let who = match holder {
                Some(pid) => format!("process {pid}{}", process_name(pid)),
                None => "another process".to_string(),
            };
            Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{} is locked by {who}: another cxlvmm is using this device's \
                     persistent media, and two VMs must not share it",
                    path.display()
                ),
            ))
        }
        Err(TryLockError::Error(e)) => Err(io::Error::new(
            e.kind(),
            format!("locking {}: {e}", path.display()),
        )),
    }
}

/// " (cxlvmm)" from /proc/PID/comm, if readable.
fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| format!(" ({})", c.trim()))
        .unwrap_or_default()
}

/// The pid holding a FLOCK on the file with device `dev` and inode `ino`,
/// from /proc/locks, whose lines read (fs/locks.c, `lock_get_status`):
/// `1: FLOCK  ADVISORY  WRITE 1234 08:02:131090 0 EOF`, the device as hex
/// major:minor. Blocked waiters (`1: -> FLOCK ...`) are skipped.
pub(crate) fn lock_holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let want = format!("{:02x}:{:02x}:{ino}", dev_major(dev), dev_minor(dev));
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, id, ..] if *id == want => pid.parse().ok(),
            _ => None,
        }
    })
}

/// glibc's `gnu_dev_major` / `gnu_dev_minor` encoding of `st_dev`.
fn dev_major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000)
}

fn dev_minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & 0xffff_ff00)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    #[test]
    fn parses_proc_locks_lines() {
        let locks = "1: POSIX  ADVISORY  WRITE 99 08:02:131090 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1234 fd:01:5555 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 77 fd:01:5555 0 EOF\n";
        let dev = (0xfd << 8) | 1;
        assert_eq!(lock_holder(locks, dev, 5555), Some(1234));
        assert_eq!(
            lock_holder(locks, dev, 131090),
            None,
            "POSIX lock, other dev"
        );
        assert_eq!(lock_holder(locks, dev, 1), None);
        // Large majors and minors use the high bits of st_dev.
        let big = (0x123 << 8) | (0x4_5600 << 12) | 0x78 | (0x1000_u64 << 32);
        assert_eq!((dev_major(big), dev_minor(big)), (0x1123, 0x45678));
    }

    #[test]
    fn a_second_open_of_a_locked_file_is_refused_with_the_holder() {
        let dir = std::env::temp_dir().join(format!("cxlvmm-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("media.img");
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap()
        };
        let first = open();
        lock_exclusive(&first, &path).unwrap();
        // A second open file description conflicts even in one process,
        // as a second VMM's would.
        let second = open();
        let e = lock_exclusive(&second, &path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("process {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        lock_exclusive(&second, &path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
