//! What happens when a thread makes a call its filter forbids: the kernel
//! sends it SIGSYS (SECCOMP_RET_TRAP), and this handler writes one line to
//! stderr naming the thread and the call, then ends the process with
//! [`STATUS_SECCOMP`]. Only async-signal-safe calls (write, _exit), no
//! allocation, no locks: the thread may have been anywhere.

use std::cell::Cell;

use super::syscall_names::SYSCALL_NAMES;

/// cxlvmm's exit status after a forbidden system call: 128 + SIGSYS, as a
/// shell reports a process that SIGSYS killed.
pub const STATUS_SECCOMP: i32 = 128 + libc::SIGSYS;

/// Room for a thread's name (Linux keeps 15 bytes; ours may be longer).
const NAME_LEN: usize = 32;

thread_local! {
    /// This thread's name, set by `enter` before its filter. A const
    /// initialiser and a type without destructor: reading it is a plain
    /// thread-local load, safe in a signal handler.
    static THREAD_NAME: Cell<[u8; NAME_LEN]> = const { Cell::new([0; NAME_LEN]) };
}

pub(super) fn set_thread_name(name: &str) {
    let mut buf = [0u8; NAME_LEN];
    let n = name.len().min(NAME_LEN);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    THREAD_NAME.with(|c| c.set(buf));
}

/// Where `siginfo_t` keeps the SIGSYS fields (`_sigsys` of the union, after
/// signo, errno, code and padding): `si_syscall` is the 7th int.
const SI_SYSCALL_INT: usize = 6;

/// Appends `bytes` to `buf` at `*at`, as much as fits.
fn put(buf: &mut [u8], at: &mut usize, bytes: &[u8]) {
    let n = bytes.len().min(buf.len() - *at);
    buf[*at..*at + n].copy_from_slice(&bytes[..n]);
    *at += n;
}

fn put_decimal(buf: &mut [u8], at: &mut usize, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    put(buf, at, &digits[i..]);
}

/// The report line for system call `nr` made by thread `name` (NUL-padded).
pub(super) fn report(buf: &mut [u8], name: &[u8], nr: i64) -> usize {
    let mut at = 0;
    put(buf, &mut at, b"cxlvmm: seccomp: thread '");
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    put(buf, &mut at, &name[..len]);
    put(buf, &mut at, b"' made a forbidden system call: ");
    let known = usize::try_from(nr)
        .ok()
        .and_then(|n| SYSCALL_NAMES.get(n))
        .filter(|s| !s.is_empty());
    put(
        buf,
        &mut at,
        known.map_or(&b"unknown"[..], |s| s.as_bytes()),
    );
    put(buf, &mut at, b" (");
    put_decimal(buf, &mut at, nr as u64);
    put(
        buf,
        &mut at,
        b"); stopping (see docs/security.md; --seccomp log lets it through)\n",
    );
    at
}

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for an SA_SIGINFO handler;
    // for SIGSYS from seccomp it carries `si_syscall` at this offset.
    let nr = unsafe { *(info as *const libc::c_int).add(SI_SYSCALL_INT) };
    let name = THREAD_NAME.with(|c| c.get());
    let mut buf = [0u8; 256];
    let len = report(&mut buf, &name, i64::from(nr));
    // SAFETY: write(2) and _exit(2) are async-signal-safe and every filter
    // allows them; `buf` holds `len` initialised bytes.
    unsafe {
        libc::write(libc::STDERR_FILENO, buf.as_ptr().cast(), len);
        libc::_exit(STATUS_SECCOMP);
    }
}

/// Installs the handler for the whole process.
pub(super) fn install() -> std::io::Result<()> {
    vmm_sys_util::signal::register_signal_handler(libc::SIGSYS, on_sigsys)
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_the_thread_and_the_call() {
        let mut buf = [0u8; 256];
        let mut name = [0u8; NAME_LEN];
        name[..5].copy_from_slice(b"vcpu3");
        let n = report(&mut buf, &name, libc::SYS_socket);
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            line.starts_with(
                "cxlvmm: seccomp: thread 'vcpu3' made a forbidden system call: socket (41);"
            ),
            "{line}"
        );
        assert!(line.ends_with('\n'));
        let n = report(&mut buf, &name, 9999);
        assert!(std::str::from_utf8(&buf[..n])
            .unwrap()
            .contains(": unknown (9999);"));
    }
}
