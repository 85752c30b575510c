//! What each thread may ask of the kernel: its role's groups of system
//! calls; each group says why its calls are there. What a new thread or
//! feature needs shows up by running the end-to-end scenarios with
//! `--seccomp log` and reading the kernel's audit records
//! (`scripts/seccomp-denials`, docs/security.md).

use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

use super::ThreadRole;

/// (system call, rules): no rules allows every call; otherwise any rule
/// that matches allows it.
pub type Allowed = Vec<(i64, Vec<SeccompRule>)>;

/// A group of system calls that some roles need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Every Rust thread: memory (never executable), locks, signals,
    /// clocks, writing (stdout, stderr, eventfds, files), closing, exiting.
    Basics,
    /// KVM ioctls (type 0xAE) on the VM and vCPU fds.
    Kvm,
    /// Reading, writing and syncing the devices' media and label files;
    /// duplicating a file descriptor to map it.
    Media,
    /// New eventfds (an MSI-X vector routed to KVM gets an irqfd).
    NewEventfds,
    /// Waiting on an epoll set and reading what woke it.
    Wait,
    /// Querying and setting the terminal (raw mode, is-a-terminal).
    Terminal,
    /// Signalling other threads of this process (the vCPU kick; a vCPU
    /// that changes the memory map may kick the others).
    SignalThreads,
    /// Opening hardware counters (`perf_event_open`), allowed ahead of the
    /// virtual guest clock of timed memory: it counts a vCPU thread's host
    /// cycles and VM exits to hide exit costs from the guest.
    PerfCounters,
    /// The KVM device-attribute ioctls on an in-kernel device fd
    /// (KVM_{SET,GET,HAS}_DEVICE_ATTR), allowed ahead of the virtual guest
    /// clock, which sets a vCPU's TSC offset from outside its thread
    /// through them. Only these three requests, not every KVM ioctl.
    KvmDeviceAttr,
    /// Serving the control API socket (docs/control-api.md): accepting
    /// on the listening socket bound at start-up, talking on the accepted
    /// connection (duplicated to read and write it apart). Creating,
    /// binding or connecting sockets stays forbidden.
    ControlSocket,
    /// Removing the control socket's path when the VM is over
    /// (`ApiServer`'s drop, on the main thread).
    SocketCleanup,
    /// The interrupts a device event raises outside a vCPU (an event or
    /// poison injected through the control API): `KVM_IRQ_LINE` for an
    /// INTx level, `KVM_SET_GSI_ROUTING` when an MSI-X vector's message is
    /// first delivered (routing is lazy); the irqfd write is a `write`.
    /// Only these two requests, not every KVM ioctl.
    DeviceInterrupts,
    /// Talking vhost-user on a connection made at start-up (messages carry
    /// file descriptors, so sendmsg/recvmsg). Creating, binding or
    /// connecting sockets stays forbidden.
    VhostUserSocket,
}

impl ThreadRole {
    /// The groups this role's filter allows.
    pub fn groups(self) -> &'static [Group] {
        use Group::*;
        match self {
            ThreadRole::Main => &[
                Basics,
                Media,
                Wait,
                Terminal,
                SignalThreads,
                PerfCounters,
                KvmDeviceAttr,
                SocketCleanup,
            ],
            ThreadRole::Vcpu => &[Basics, Kvm, Media, NewEventfds, SignalThreads, PerfCounters],
            ThreadRole::ConsoleInput => &[Basics, Wait, Terminal],
            ThreadRole::Api => &[Basics, ControlSocket, DeviceInterrupts],
            ThreadRole::VhostUser => &[Basics, Wait, VhostUserSocket, DeviceInterrupts],
        }
    }
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> SeccompCondition {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).expect("argument index below 6")
}

fn rule(conditions: Vec<SeccompCondition>) -> SeccompRule {
    SeccompRule::new(conditions).expect("at least one condition")
}

/// A call whose argument `arg` has every bit of `bits` set.
fn with_bits(arg: u8, bits: u64) -> SeccompRule {
    rule(vec![cond(arg, SeccompCmpOp::MaskedEq(bits), bits)])
}

/// `ioctl(fd, request, ...)` whose request's type byte is `ty`.
fn ioctl_type(ty: u64) -> SeccompRule {
    rule(vec![cond(1, SeccompCmpOp::MaskedEq(0xff00), ty << 8)])
}

/// `_IOW(KVMIO, 0xe1..0xe3, struct kvm_device_attr)` (24 bytes), as
/// linux/kvm.h defines them.
const KVM_SET_DEVICE_ATTR: u64 = 0x4018_aee1;
const KVM_GET_DEVICE_ATTR: u64 = 0x4018_aee2;
const KVM_HAS_DEVICE_ATTR: u64 = 0x4018_aee3;
/// `_IOW(KVMIO, 0x61, struct kvm_irq_level)` (8 bytes).
const KVM_IRQ_LINE: u64 = 0x4008_ae61;
/// `_IOW(KVMIO, 0x6a, struct kvm_irq_routing)` (its 8-byte header).
const KVM_SET_GSI_ROUTING: u64 = 0x4008_ae6a;

/// A call whose argument `arg` has none of the bits of `mask` set.
fn without_bits(arg: u8, mask: u64) -> SeccompRule {
    rule(vec![cond(arg, SeccompCmpOp::MaskedEq(mask), 0)])
}

fn any(calls: &[i64]) -> Allowed {
    calls.iter().map(|&c| (c, Vec::new())).collect()
}

impl Group {
    pub fn allowed(self) -> Allowed {
        use libc::*;
        let prot_exec = PROT_EXEC as u64;
        match self {
            Group::Basics => {
                let mut v = any(&[
                    SYS_brk,
                    SYS_munmap,
                    SYS_mremap,
                    SYS_madvise,
                    SYS_futex,
                    SYS_sched_yield,
                    SYS_nanosleep,
                    SYS_clock_nanosleep,
                    SYS_clock_gettime,
                    SYS_gettimeofday,
                    SYS_getpid,
                    SYS_gettid,
                    SYS_getrandom,
                    SYS_rt_sigreturn,
                    SYS_rt_sigprocmask,
                    SYS_sigaltstack,
                    SYS_restart_syscall,
                    SYS_write,
                    SYS_writev,
                    SYS_close,
                    SYS_exit,
                    SYS_exit_group,
                ]);
                // Memory never becomes executable: no new code at run time.
                v.push((SYS_mmap, vec![without_bits(2, prot_exec)]));
                v.push((SYS_mprotect, vec![without_bits(2, prot_exec)]));
                v
            }
            Group::Kvm => vec![(SYS_ioctl, vec![ioctl_type(0xae)])],
            Group::Media => any(&[
                SYS_read,
                SYS_pread64,
                SYS_pwrite64,
                SYS_lseek,
                SYS_fsync,
                SYS_fdatasync,
                SYS_msync,
                SYS_fcntl,
                SYS_fstat,
                // Unlocking a backing file (it is locked at start-up
                // against a second VMM, docs/persistence.md).
                SYS_flock,
            ])
            .into_iter()
            // The size of an open file, as Rust's File::metadata (statx)
            // and glibc's fstat (newfstatat) ask it: on the fd itself
            // (AT_EMPTY_PATH), e.g. when vm-memory checks a backing file
            // is long enough for a region's mapping.
            .chain([
                (SYS_statx, vec![with_bits(2, AT_EMPTY_PATH as u64)]),
                (SYS_newfstatat, vec![with_bits(3, AT_EMPTY_PATH as u64)]),
            ])
            .collect(),
            Group::NewEventfds => any(&[SYS_eventfd2]),
            Group::Wait => any(&[
                SYS_fcntl,
                SYS_epoll_create1,
                SYS_epoll_wait,
                SYS_epoll_pwait,
                SYS_epoll_ctl,
                SYS_read,
            ]),
            Group::Terminal => vec![(
                SYS_ioctl,
                vec![
                    rule(vec![cond(1, SeccompCmpOp::Eq, TCGETS)]),
                    rule(vec![cond(1, SeccompCmpOp::Eq, TCSETS)]),
                ],
            )],
            // tgkill only into this process: its first argument is the
            // thread group, fixed when the filter is built.
            Group::SignalThreads => vec![(
                SYS_tgkill,
                vec![rule(vec![cond(
                    0,
                    SeccompCmpOp::Eq,
                    u64::from(std::process::id()),
                )])],
            )],
            Group::PerfCounters => any(&[SYS_perf_event_open]),
            Group::KvmDeviceAttr => vec![(
                SYS_ioctl,
                [
                    KVM_SET_DEVICE_ATTR,
                    KVM_GET_DEVICE_ATTR,
                    KVM_HAS_DEVICE_ATTR,
                ]
                .into_iter()
                .map(|req| rule(vec![cond(1, SeccompCmpOp::Eq, req)]))
                .collect(),
            )],
            Group::ControlSocket => any(&[
                SYS_accept4,
                SYS_recvfrom,
                SYS_sendto,
                SYS_recvmsg,
                SYS_sendmsg,
                SYS_shutdown,
                SYS_poll,
                SYS_ppoll,
                SYS_read,
                // UnixStream::try_clone: F_DUPFD_CLOEXEC.
                SYS_fcntl,
            ]),
            Group::SocketCleanup => any(&[SYS_unlink, SYS_unlinkat]),
            Group::VhostUserSocket => any(&[SYS_sendmsg, SYS_recvmsg, SYS_sendto, SYS_recvfrom]),
            Group::DeviceInterrupts => vec![(
                SYS_ioctl,
                [KVM_IRQ_LINE, KVM_SET_GSI_ROUTING]
                    .into_iter()
                    .map(|req| rule(vec![cond(1, SeccompCmpOp::Eq, req)]))
                    .collect(),
            )],
        }
    }
}

/// Every call `role` may make, groups merged (a call two groups allow with
/// rules is allowed when any of their rules matches; without rules in one,
/// it is allowed outright).
pub fn allowed(role: ThreadRole) -> Allowed {
    let mut merged: std::collections::BTreeMap<i64, Option<Vec<SeccompRule>>> = Default::default();
    for g in role.groups() {
        for (call, rules) in g.allowed() {
            let entry = merged.entry(call).or_insert_with(|| Some(Vec::new()));
            if rules.is_empty() {
                *entry = None;
            } else if let Some(have) = entry {
                have.extend(rules);
            }
        }
    }
    merged
        .into_iter()
        .map(|(call, rules)| (call, rules.unwrap_or_default()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_attr_requests_are_the_kernels() {
        // _IOW(KVMIO, nr, struct kvm_device_attr): direction 1 (write) in
        // bits 30-31, the size in bits 16-29, type 0xae, then nr.
        let size = std::mem::size_of::<kvm_bindings::kvm_device_attr>() as u64;
        let iow = |nr: u64| (1 << 30) | (size << 16) | (0xae << 8) | nr;
        assert_eq!(KVM_SET_DEVICE_ATTR, iow(0xe1));
        assert_eq!(KVM_GET_DEVICE_ATTR, iow(0xe2));
        assert_eq!(KVM_HAS_DEVICE_ATTR, iow(0xe3));
    }

    #[test]
    fn interrupt_requests_are_the_kernels() {
        let iow = |nr: u64, size: usize| (1 << 30) | ((size as u64) << 16) | (0xae << 8) | nr;
        let level = std::mem::size_of::<kvm_bindings::kvm_irq_level>();
        let routing = std::mem::size_of::<kvm_bindings::kvm_irq_routing>();
        assert_eq!(KVM_IRQ_LINE, iow(0x61, level));
        assert_eq!(KVM_SET_GSI_ROUTING, iow(0x6a, routing));
    }

    #[test]
    fn api_threads_may_not_run_the_vm_or_touch_files_by_name() {
        let api = allowed(ThreadRole::Api);
        let calls: Vec<i64> = api.iter().map(|(c, _)| *c).collect();
        for forbidden in [
            libc::SYS_unlink,
            libc::SYS_bind,
            libc::SYS_listen,
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_tgkill,
            libc::SYS_perf_event_open,
            libc::SYS_eventfd2,
            libc::SYS_pwrite64,
        ] {
            assert!(!calls.contains(&forbidden), "Api allows {forbidden}");
        }
        let (_, ioctl) = api.iter().find(|(c, _)| *c == libc::SYS_ioctl).unwrap();
        assert_eq!(ioctl.len(), 2, "KVM_IRQ_LINE and KVM_SET_GSI_ROUTING only");
    }

    #[test]
    fn tgkill_is_allowed_only_into_this_process() {
        let (_, rules) = allowed(ThreadRole::Vcpu)
            .into_iter()
            .find(|(c, _)| *c == libc::SYS_tgkill)
            .expect("vCPU may kick");
        assert_eq!(rules.len(), 1, "one rule: thread group == this pid");
        assert!(!allowed(ThreadRole::ConsoleInput)
            .iter()
            .any(|(c, _)| *c == libc::SYS_tgkill));
    }
}
