use super::*;
use crate::guest_map::guest_map;

const GIB: u64 = 1 << 30;

fn trapped_region() -> RegionInfo {
    RegionInfo {
        base: 5 * GIB,
        size: 512 << 20,
        ways: 2,
        granularity: 256,
        mode: RegionMode::Trapped,
    }
}

fn vm_places() -> Vec<Place> {
    let native = RegionInfo {
        base: 4 * GIB,
        size: GIB,
        ways: 1,
        granularity: 4096,
        mode: RegionMode::Native,
    };
    places(&guest_map(GIB, None).unwrap(), &[native, trapped_region()])
}

#[test]
fn amd_nested_page_faults_give_the_address() {
    // flags 0; SVM exit code 0x400 (NPF), EXITINFO1 (error code 0x6),
    // EXITINFO2 (the GPA), interrupt info, error code.
    let data = [0, 0x400, 0x6, 5 * GIB + 0x40, 0, 0];
    let f = Failure::from_kvm_data(0xffff_ffff_8100_0000, 6, &data);
    assert_eq!(f.exit_reason, Some(0x400));
    assert_eq!(f.fault_gpa, Some(5 * GIB + 0x40));
    assert!(f.insn.is_empty());
    // With the instruction bytes (KVM_CAP_EXIT_ON_EMULATION_FAILURE): the
    // exit information moves two words on.
    let mut bytes = [0u8; 16];
    bytes[0] = 4;
    bytes[1..5].copy_from_slice(&[0xc5, 0xfe, 0x6f, 0x06]); // vmovdqu ymm0, [rsi]
    let w0 = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let w1 = u64::from_le_bytes(bytes[8..].try_into().unwrap());
    let data = [1, w0, w1, 0x400, 0x4, 0xe000_0000, 0, 0];
    let f = Failure::from_kvm_data(0x1000, 8, &data);
    assert_eq!(f.insn, vec![0xc5, 0xfe, 0x6f, 0x06]);
    assert_eq!(f.fault_gpa, Some(0xe000_0000));
}

#[test]
fn intel_and_short_reports_give_no_address() {
    // EPT misconfig (49): the exit qualification is no address.
    let f = Failure::from_kvm_data(0x1000, 6, &[0, 49, 0x1234, 0, 0, 0]);
    assert_eq!((f.exit_reason, f.fault_gpa), (Some(49), None));
    // Older kernels report nothing at all; ndata past the array is clamped.
    assert_eq!(Failure::from_kvm_data(7, 0, &[0; 16]).fault_gpa, None);
    assert_eq!(Failure::from_kvm_data(7, 99, &[0; 2]).exit_reason, None);
}

#[test]
fn an_access_in_a_trapped_region_names_it_even_on_a_paravirtual_host() {
    let f = Failure {
        rip: 0xffff_ffff_8123_4567,
        rip_gpa: Some(0x123_4567),
        fault_gpa: Some(5 * GIB + 0x1000),
        insn: vec![0x0f, 0x10, 0x06],
        exit_reason: Some(0x400),
    };
    let m = message(1, &f, &vm_places(), true);
    assert!(m.starts_with("vcpu1: KVM could not emulate the instruction at RIP 0xffffffff81234567 (guest-physical 0x1234567), bytes 0f 10 06"), "{m}");
    assert!(m.contains("accessed guest-physical 0x140001000 in the trapped CXL region [0x140000000, 0x160000000) (2-way x 256 B"), "{m}");
    assert!(m.contains("code, page tables and vector (SSE/AVX)"), "{m}");
    assert!(!m.contains("paravirtual"), "{m}");
}

#[test]
fn code_in_device_memory_is_named_as_code() {
    let f = Failure {
        rip: 0xf000_0000,
        rip_gpa: Some(0xf000_0000),
        ..Failure::default()
    };
    let m = message(0, &f, &vm_places(), false);
    assert!(
        m.contains("the instruction itself is in device memory (CHBCR area)"),
        "{m}"
    );
    let f = Failure {
        rip: 5 * GIB + 8,
        rip_gpa: Some(5 * GIB + 8),
        ..Failure::default()
    };
    assert!(message(0, &f, &vm_places(), true).contains("itself is in the trapped CXL region"));
}

#[test]
fn the_paravirtual_hint_only_when_nothing_else_explains_it() {
    let f = Failure {
        rip: 0x10_0000,
        rip_gpa: Some(0x10_0000),
        exit_reason: Some(49),
        ..Failure::default()
    };
    let m = message(0, &f, &vm_places(), true);
    assert!(m.contains(crate::vcpu::EMULATION_HINT), "{m}");
    let m = message(0, &f, &vm_places(), false);
    assert!(!m.contains("paravirtual"), "{m}");
    assert!(
        m.contains("if it was in the trapped CXL region [0x140000000"),
        "{m}"
    );
    // Without trapped regions: device memory in general.
    let m = message(0, &f, &places(&guest_map(GIB, None).unwrap(), &[]), false);
    assert!(m.contains("touched device memory"), "{m}");
}

#[test]
fn an_address_nothing_decodes_is_said_so() {
    let f = Failure {
        rip: 0x10_0000,
        rip_gpa: Some(0x10_0000),
        fault_gpa: Some(0xd000_0000_0000),
        ..Failure::default()
    };
    let m = message(0, &f, &vm_places(), true);
    assert!(m.contains("0xd00000000000, which no device decodes"), "{m}");
}
