//! cxlvmm: a KVM virtual machine monitor that gives an unmodified Linux guest
//! a CXL fabric. This crate is the only one that touches /dev/kvm.

pub mod accel;
pub mod acpi;
pub mod api;
pub mod boot;
pub mod cli;
pub mod console;
pub mod console_ring;
pub mod cpu;
pub mod cpuid_vector;
pub mod ctl_cmd;
pub mod cxl;
pub mod emulation_failure;
pub mod guest_map;
pub mod guest_stack;
pub mod host;
pub mod images;
pub mod indirect_call;
pub mod initramfs;
pub mod irq;
pub mod layout;
pub mod memory;
pub mod memory_backing;
pub mod modules;
pub mod seccomp;
pub mod startup;
pub mod timed;
pub mod vclock;
pub mod vcpu;
pub mod vcpu_watch;
pub mod vector_mmio;
pub mod vhost_user;
pub mod virtio;
pub mod vm;
