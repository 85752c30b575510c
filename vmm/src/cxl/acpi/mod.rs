//! ACPI for the CXL hierarchy: CEDT (CHBS per host bridge, CFMWS per
//! window), DSDT objects (an ACPI0016 root bridge per host bridge with _OSC,
//! the ACPI0017 root with its QTG _DSM), and in [`numa`] the SRAT that turns
//! on ACPI NUMA so the guest makes a node per CFMWS window and names each
//! host bridge's generic port, and the HMAT with the generic ports'
//! performance.
//!
//! Linux adds a generic port's HMAT figures to the CDAT and link terms of
//! each device below it and asks the QTG _DSM for the result's QoS class,
//! which must be the QTG of a CFMWS window or `cxl list` reports
//! `qos_class_mismatch`. Which class answers is `fabric::qtg`'s decision;
//! this file only renders it as AML.
//!
//! The CEDT is built here rather than with `acpi_tables::cedt`: in its 0.2
//! release `CxlHostBridge` writes the 16-bit record length as one byte and
//! leaves out the reserved dword after the CXL version (27 bytes written
//! for a 32-byte CHBS record), and `CxlFixedMemory::cxl_type_3_memory`
//! sets the type-2 restriction bit (b0) instead of host-only/type-3 (b1).

mod numa;

pub use numa::{hmat, srat};

use acpi_tables::aml::{self, AddressSpace, AddressSpaceCacheable};
use acpi_tables::sdt::Sdt;
use acpi_tables::Aml;
use fabric::qtg::QtgPolicy;
use fabric::topology::Topology;

use super::plan::{CxlPlan, CHBCR_SIZE};
use crate::acpi::{prt, to_bytes, Encoded, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

const CEDT_CHBS: u8 = 0;
const CEDT_CFMWS: u8 = 1;
/// CHBS CXL version: 1 = CXL 2.0+ host bridge (64 KiB CHBCR).
const CHBS_VERSION_VH: u32 = 1;
/// CFMWS interleave arithmetic: modulo.
const ARITH_MODULO: u8 = 0;

/// The CEDT: a CHBS per host bridge, a CFMWS per window.
pub fn cedt(topo: &Topology, plan: &CxlPlan) -> Vec<u8> {
    let mut t = Sdt::new(*b"CEDT", 36, 1, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for hb in &plan.host_bridges {
        let mut s = vec![CEDT_CHBS, 0];
        s.extend(0x20u16.to_le_bytes());
        s.extend(hb.uid.to_le_bytes());
        s.extend(CHBS_VERSION_VH.to_le_bytes());
        s.extend(0u32.to_le_bytes());
        s.extend(hb.chbcr.to_le_bytes());
        s.extend(CHBCR_SIZE.to_le_bytes());
        t.append_slice(&s);
    }
    for (w, wp) in topo.windows.iter().zip(&plan.windows) {
        let len = 0x24 + 4 * w.targets.len();
        let mut s = vec![CEDT_CFMWS, 0];
        s.extend((len as u16).to_le_bytes());
        s.extend(0u32.to_le_bytes());
        s.extend(wp.base.to_le_bytes());
        s.extend(wp.size.to_le_bytes());
        s.push(w.eniw());
        s.push(ARITH_MODULO);
        s.extend(0u16.to_le_bytes());
        s.extend(w.hbig().to_le_bytes());
        s.extend(w.restriction_bits().to_le_bytes());
        s.extend(w.qtg.to_le_bytes());
        for &hb in &w.targets {
            s.extend(topo.host_bridges[hb].uid.to_le_bytes());
        }
        t.append_slice(&s);
    }
    t.as_slice().to_vec()
}

/// Proximity domain of host bridge `index`'s generic port. Linux maps no node
/// to a generic port and numbers the CFMWS windows' own nodes from the
/// highest SRAT-mapped domain (0) up, one per window; a generic port sharing
/// such a number would be taken for that window's node by HMAT code (memory
/// tiering, node online), so the ports come after the windows.
pub fn generic_port_domain(topo: &Topology, index: usize) -> u32 {
    (1 + topo.windows.len() + index) as u32
}

const UUID_QTG_DSM: &str = "F365F9A6-A7DE-4071-A66A-B40C0B4F8E52";

/// `Return (Package { max, Package { ids } })`, the QTG _DSM's answer.
fn qtg_answer(max: u32, ids: &[u32]) -> Encoded {
    let refs: Vec<&dyn Aml> = ids.iter().map(|v| v as &dyn Aml).collect();
    let pkg = aml::Package::new(refs);
    Encoded(to_bytes(&aml::Return::new(&aml::Package::new(vec![
        &max, &pkg,
    ]))))
}

/// AML leaving the _DSM input's read latency, in ps, in Local0.
///
/// Linux 6.12 passes Arg3 as a Package of four Integers (read and write
/// latency, read and write bandwidth); early Linux patches passed a Package
/// holding one 16-byte Buffer of those four DWORDs. ToInteger of the first
/// element, masked to 32 bits, is the read latency either way (a Buffer
/// converts little-endian from its first bytes); a bare Buffer in Arg3 is
/// taken as that element. Values up to `ns_limit` are ns and scaled to ps.
fn read_latency_ps_to_local0(ns_limit: u64) -> Vec<u8> {
    const BUFFER_TYPE: u8 = 3;
    let first = aml::Index::new(&aml::ZERO, &aml::Arg(3), &aml::ZERO);
    let deref = aml::DeRefOf::new(&first);
    let arg3_type = aml::ObjectType::new(&aml::Arg(3));
    let is_buffer = aml::Equal::new(&arg3_type, &BUFFER_TYPE);
    let whole = aml::Store::new(&aml::Local(1), &aml::Arg(3));
    let element = aml::Store::new(&aml::Local(1), &deref);
    let as_int = aml::ToInteger::new(&aml::ZERO, &aml::Local(1));
    let low = aml::And::new(&aml::Local(0), &as_int, &0xffff_ffffu32);
    let is_ns = aml::LessEqual::new(&aml::Local(0), &ns_limit);
    let to_ps = aml::Multiply::new(&aml::Local(0), &aml::Local(0), &1000u32);
    [
        to_bytes(&aml::If::new(&is_buffer, vec![&whole])),
        to_bytes(&aml::Else::new(vec![&element])),
        to_bytes(&low),
        to_bytes(&aml::If::new(&is_ns, vec![&to_ps])),
    ]
    .concat()
}

/// The ACPI0017 QTG _DSM (CXL 3.0 9.17.3). Function 1 gets the latency and
/// bandwidth Linux estimates for a device's path and answers the QTG ids
/// suited to it, best first; Linux takes the first as the device's
/// qos_class and expects a CFMWS window with that QTG. The answers and the
/// read-latency limits between classes are [`QtgPolicy`]'s.
fn qtg_dsm(topo: &Topology) -> Encoded {
    let policy = QtgPolicy::new(topo);
    let max = u32::from(policy.max_qtg());
    let answer_for = |qtg: u16| {
        let ids: Vec<u32> = policy.answer(qtg).into_iter().map(u32::from).collect();
        qtg_answer(max, &ids)
    };
    let f1_body: Encoded = match policy.fixed_qtg() {
        Some(qtg) => answer_for(qtg),
        None => {
            let mut body = read_latency_ps_to_local0(policy.ns_limit());
            for (c, &limit) in policy.classes.iter().zip(&policy.limits()) {
                let answer = answer_for(c.qtg);
                let le = aml::LessEqual::new(&aml::Local(0), &limit);
                body.extend(to_bytes(&aml::If::new(&le, vec![&answer])));
            }
            let last = policy.classes.last().map_or(policy.qtgs[0], |c| c.qtg);
            body.extend(answer_for(last).0);
            Encoded(body)
        }
    };
    let uuid = aml::Uuid::new(UUID_QTG_DSM);
    let funcs = aml::BufferData::new(vec![0x03]);
    let none = aml::BufferData::new(vec![0x00]);
    let f0 = aml::Equal::new(&aml::Arg(2), &aml::ZERO);
    let f1 = aml::Equal::new(&aml::Arg(2), &aml::ONE);
    let ret_funcs = aml::Return::new(&funcs);
    let if_f0 = aml::If::new(&f0, vec![&ret_funcs]);
    let if_f1 = aml::If::new(&f1, vec![&f1_body]);
    let is_qtg = aml::Equal::new(&aml::Arg(0), &uuid);
    let if_uuid = aml::If::new(&is_qtg, vec![&if_f0, &if_f1]);
    let ret_none = aml::Return::new(&none);
    let body = Encoded([to_bytes(&if_uuid), to_bytes(&ret_none)].concat());
    Encoded(to_bytes(&aml::Method::new(
        "_DSM".into(),
        4,
        true,
        vec![&body],
    )))
}

/// DSDT objects for the hierarchy (to append inside the DSDT body).
pub fn dsdt_objects(topo: &Topology, plan: &CxlPlan) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, hb) in plan.host_bridges.iter().enumerate() {
        let path = format!("_SB_.CX{i:02X}");
        let buses = AddressSpace::new_bus_number(u16::from(hb.root_bus), u16::from(hb.last_bus));
        let mmio = AddressSpace::new_memory(
            AddressSpaceCacheable::NotCacheable,
            true,
            hb.mmio.0 as u32,
            hb.mmio.1 as u32,
            None,
        );
        let crs = aml::ResourceTemplate::new(vec![&buses, &mmio]);
        let (pnp0a08, pnp0a03) = (aml::EISAName::new("PNP0A08"), aml::EISAName::new("PNP0A03"));
        let cid = aml::Package::new(vec![&pnp0a08, &pnp0a03]);
        // _OSC: grant whatever the OS asks for, under the PCI and the CXL
        // UUIDs alike (returning the capabilities buffer unchanged).
        let ret_arg3 = aml::Return::new(&aml::Arg(3));
        let osc = aml::Method::new("_OSC".into(), 4, false, vec![&ret_arg3]);
        let prt = Encoded(prt());
        body.extend(to_bytes(&aml::Device::new(
            path.as_str().into(),
            vec![
                &aml::Name::new("_HID".into(), &"ACPI0016"),
                &aml::Name::new("_CID".into(), &cid),
                &aml::Name::new("_ADR".into(), &aml::ZERO),
                &aml::Name::new("_SEG".into(), &aml::ZERO),
                &aml::Name::new("_UID".into(), &hb.uid),
                &aml::Name::new("_BBN".into(), &u32::from(hb.root_bus)),
                &aml::Name::new("_CRS".into(), &crs),
                &prt,
                &osc,
            ],
        )));
    }
    let dsm = qtg_dsm(topo);
    let ret_sta = aml::Return::new(&0x0bu8);
    let sta = aml::Method::new("_STA".into(), 0, false, vec![&ret_sta]);
    body.extend(to_bytes(&aml::Device::new(
        "_SB_.CXLM".into(),
        vec![&aml::Name::new("_HID".into(), &"ACPI0017"), &sta, &dsm],
    )));
    body
}

#[cfg(test)]
mod tests;
