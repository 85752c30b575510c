//! Seccomp filters, one per kind of thread, so that a guest which took over
//! a thread of cxlvmm (through a device model bug) can make only the system
//! calls that thread makes anyway: no files opened, no sockets, no new
//! processes, no executable memory.
//!
//! Each thread installs its own filter as the first thing it does
//! ([`enter`]); the main thread installs its filter once every other thread
//! is running (a filter is inherited by threads created after it, and
//! stacks with theirs). `--seccomp` picks what a call outside the filter
//! does: `enforce` (default) ends cxlvmm through [`sigsys`] with a message
//! naming the thread and the call and status [`STATUS_SECCOMP`]; `log` lets
//! it through and has the kernel log it (audit records in dmesg); `off`
//! installs nothing.
//!
//! Adding a thread: give it a [`ThreadRole`] (its groups of calls are in
//! [`rules`]) and call `seccomp::enter(ThreadRole::...)` first thing in the
//! thread's closure. docs/security.md tells how to find what a thread needs.

pub mod rules;
mod sigsys;
mod syscall_names;

use std::sync::OnceLock;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

pub use sigsys::STATUS_SECCOMP;

/// What a system call outside a thread's filter does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SeccompMode {
    /// cxlvmm stops, naming the thread and the call.
    #[default]
    Enforce,
    /// The call goes through; the kernel logs it (dmesg, audit type 1326).
    Log,
    /// No filters.
    Off,
}

/// The kinds of thread cxlvmm runs, each with its own filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadRole {
    /// The thread that built the machine and waits for it to stop.
    Main,
    /// A vCPU: KVM_RUN and the devices its exits reach.
    Vcpu,
    /// Host stdin to the serial port.
    ConsoleInput,
    /// The control API: the thread accepting on its socket and the threads
    /// serving connections (docs/control-api.md).
    Api,
    /// A vhost-user device's connection to its backend (virtiofsd): the
    /// protocol, and the backend's interrupts forwarded to MSI-X.
    VhostUser,
}

impl ThreadRole {
    pub const ALL: [ThreadRole; 5] = [
        ThreadRole::Main,
        ThreadRole::Vcpu,
        ThreadRole::ConsoleInput,
        ThreadRole::Api,
        ThreadRole::VhostUser,
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp filter for the {role:?} thread: {msg}")]
    Build { role: ThreadRole, msg: String },
    #[error("installing the seccomp filter of thread '{thread}': {msg}")]
    Apply { thread: String, msg: String },
    #[error("installing the SIGSYS handler: {0}")]
    Handler(std::io::Error),
}

static MODE: OnceLock<SeccompMode> = OnceLock::new();

/// Sets the mode for the whole process (once, before any thread enters its
/// filter) and, when enforcing, the handler that reports a forbidden call.
pub fn configure(mode: SeccompMode) -> Result<(), SeccompError> {
    let mode = *MODE.get_or_init(|| mode);
    if mode == SeccompMode::Enforce {
        sigsys::install().map_err(SeccompError::Handler)?;
    }
    Ok(())
}

/// The mode `configure` set; off if it was never called (library use,
/// unit tests).
pub fn mode() -> SeccompMode {
    MODE.get().copied().unwrap_or(SeccompMode::Off)
}

/// The compiled filter of `role` in `mode` (`None` when off).
pub fn program(role: ThreadRole, mode: SeccompMode) -> Result<Option<BpfProgram>, SeccompError> {
    let mismatch = match mode {
        SeccompMode::Off => return Ok(None),
        SeccompMode::Log => SeccompAction::Log,
        SeccompMode::Enforce => SeccompAction::Trap,
    };
    let build = |msg: String| SeccompError::Build { role, msg };
    let filter = SeccompFilter::new(
        rules::allowed(role).into_iter().collect(),
        mismatch,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| build(e.to_string()))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| build(e.to_string()))?;
    Ok(Some(program))
}

/// Puts the calling thread under `role`'s filter, in the configured mode.
/// The thread's name (as `std::thread` knows it) is what a report of a
/// forbidden call names.
pub fn enter(role: ThreadRole) -> Result<(), SeccompError> {
    let thread = std::thread::current()
        .name()
        .unwrap_or(match role {
            ThreadRole::Main => "main",
            _ => "unnamed",
        })
        .to_string();
    sigsys::set_thread_name(&thread);
    let Some(program) = program(role, mode())? else {
        return Ok(());
    };
    seccompiler::apply_filter(&program).map_err(|e| SeccompError::Apply {
        thread,
        msg: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_compiles_in_every_mode() {
        for role in ThreadRole::ALL {
            assert!(program(role, SeccompMode::Off).unwrap().is_none());
            for mode in [SeccompMode::Log, SeccompMode::Enforce] {
                let p = program(role, mode).unwrap().unwrap();
                assert!(p.len() > 10, "{role:?}: {} instructions", p.len());
            }
        }
    }

    #[test]
    fn no_role_may_open_files_spawn_processes_or_use_sockets() {
        use libc::*;
        for role in ThreadRole::ALL {
            let calls: Vec<i64> = rules::allowed(role).iter().map(|(c, _)| *c).collect();
            for forbidden in [
                SYS_open,
                SYS_openat,
                SYS_execve,
                SYS_execveat,
                SYS_fork,
                SYS_vfork,
                SYS_socket,
                SYS_connect,
                SYS_ptrace,
                SYS_process_vm_writev,
            ] {
                assert!(!calls.contains(&forbidden), "{role:?} allows {forbidden}");
            }
            // mmap is allowed only with conditions (no PROT_EXEC).
            let mmap = rules::allowed(role)
                .into_iter()
                .find(|(c, _)| *c == SYS_mmap)
                .unwrap();
            assert!(!mmap.1.is_empty(), "{role:?}: unconditional mmap");
        }
    }

    #[test]
    fn groups_merge_rules_unless_one_allows_a_call_outright() {
        // Main has ioctl only for the terminal (2 requests) and the KVM
        // device attributes (3); the vCPU for every KVM request; the
        // console thread for the terminal alone; the API threads for the
        // two interrupt requests a device event may make.
        let ioctl = |role| {
            rules::allowed(role)
                .into_iter()
                .find(|(c, _)| *c == libc::SYS_ioctl)
                .map(|(_, r)| r.len())
        };
        assert_eq!(ioctl(ThreadRole::Main), Some(5));
        assert_eq!(ioctl(ThreadRole::Vcpu), Some(1));
        assert_eq!(ioctl(ThreadRole::ConsoleInput), Some(2));
        assert_eq!(ioctl(ThreadRole::Api), Some(2));
        assert_eq!(ioctl(ThreadRole::VhostUser), Some(2));
        // read: outright for Main (Media and Wait both allow it so).
        let read = rules::allowed(ThreadRole::Main)
            .into_iter()
            .find(|(c, _)| *c == libc::SYS_read)
            .unwrap();
        assert!(read.1.is_empty());
    }
}
