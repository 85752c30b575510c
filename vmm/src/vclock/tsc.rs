//! The guest's TSC as KVM computes it: `guest = host * ratio + offset`. The
//! offset is per vCPU and can be read and written while the vCPU is out of
//! KVM_RUN (`KVM_VCPU_TSC_CTRL`/`KVM_VCPU_TSC_OFFSET` device attributes,
//! Documentation/virt/kvm/devices/vcpu.rst, Linux 5.16+). Lowering it makes
//! the guest see less time pass: that is how the virtual clock hides the
//! cost of an exit.

use std::io;

use kvm_bindings::{kvm_device_attr, kvm_msr_entry, Msrs, KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET};
use kvm_ioctls::VcpuFd;
use vmm_sys_util::ioctl::ioctl_with_ref;
use vmm_sys_util::ioctl_iow_nr;

const KVMIO: u32 = 0xAE;
ioctl_iow_nr!(KVM_SET_DEVICE_ATTR, KVMIO, 0xe1, kvm_device_attr);
ioctl_iow_nr!(KVM_GET_DEVICE_ATTR, KVMIO, 0xe2, kvm_device_attr);
ioctl_iow_nr!(KVM_HAS_DEVICE_ATTR, KVMIO, 0xe3, kvm_device_attr);

/// IA32_TSC_DEADLINE: the local APIC timer's deadline in guest TSC cycles.
const MSR_IA32_TSC_DEADLINE: u32 = 0x6e0;

fn offset_attr(value: &mut u64) -> kvm_device_attr {
    kvm_device_attr {
        flags: 0,
        group: KVM_VCPU_TSC_CTRL,
        attr: u64::from(KVM_VCPU_TSC_OFFSET),
        addr: value as *mut u64 as u64,
    }
}

fn check(ret: i32) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether this KVM lets user space set the TSC offset.
pub fn offset_supported(vcpu: &VcpuFd) -> bool {
    let mut v = 0u64;
    let attr = offset_attr(&mut v);
    // SAFETY: KVM_HAS_DEVICE_ATTR only reads the attribute descriptor.
    check(unsafe { ioctl_with_ref(vcpu, KVM_HAS_DEVICE_ATTR(), &attr) }).is_ok()
}

/// The vCPU's current TSC offset (two's complement: it is usually
/// "negative", i.e. a large u64).
pub fn offset(vcpu: &VcpuFd) -> io::Result<u64> {
    let mut v = 0u64;
    let attr = offset_attr(&mut v);
    // SAFETY: KVM writes one u64 to attr.addr, which points at `v`, alive
    // for the call.
    check(unsafe { ioctl_with_ref(vcpu, KVM_GET_DEVICE_ATTR(), &attr) })?;
    Ok(v)
}

/// What vCPU `index` adds to the clock's offset: its index, in cycles.
/// KVM compares every offset written with the last one written for any
/// vCPU (arch/x86/kvm/x86.c, `kvm_arch_tsc_set_attr`); when all vCPUs
/// match it turns on its master clock, and while that is on each later
/// write makes every vCPU leave the guest and wait (`kvm_update_masterclock`,
/// KVM_REQ_MCLOCK_INPROGRESS). One global clock written vCPU after vCPU
/// would flip it on and off all the time; offsets a cycle apart never
/// match, and no program can see a one-cycle skew between CPUs (passing a
/// value between two CPUs takes far longer).
pub fn skew(index: usize) -> u64 {
    index as u64
}

pub fn set_offset(vcpu: &VcpuFd, value: u64) -> io::Result<()> {
    let mut v = value;
    let attr = offset_attr(&mut v);
    // SAFETY: KVM reads one u64 from attr.addr, which points at `v`.
    check(unsafe { ioctl_with_ref(vcpu, KVM_SET_DEVICE_ATTR(), &attr) })
}

/// Re-arms the guest's TSC-deadline timer after the offset moved. KVM turns
/// the deadline into a host timer when the guest writes it, using the
/// offset of that moment; once time has been hidden the host timer would
/// fire early and the guest would take an interrupt only to re-arm. Writing
/// the same deadline back makes KVM recompute it with the new offset.
pub fn rearm_deadline(vcpu: &VcpuFd) -> io::Result<()> {
    let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
        index: MSR_IA32_TSC_DEADLINE,
        ..Default::default()
    }])
    .map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    if vcpu.get_msrs(&mut msrs).map_err(io::Error::from)? != 1 {
        return Ok(());
    }
    let deadline = msrs.as_slice()[0].data;
    if deadline == 0 {
        return Ok(());
    }
    vcpu.set_msrs(&msrs).map_err(io::Error::from)?;
    Ok(())
}

/// Reads the host TSC.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects; every x86_64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The TSC frequency KVM gives this vCPU, in kHz.
pub fn khz(vcpu: &VcpuFd) -> io::Result<u32> {
    vcpu.get_tsc_khz().map_err(io::Error::from)
}
