//! CDAT (Coherent Device Attribute Table) contents the devices serve over
//! DOE: for each type-3 device a DSMAS, four DSLBIS and a DSEMTS per
//! partition; for each switch an SSLBIS per data type. Values come from the
//! same parameters the timing engine charges, split so that the kernel's sum
//! (generic port + links + switches + device) equals the engine's idle
//! latency; see [`crate::hmat`].
//!
//! This module produces the *data*, in table order: handles, flags, data
//! types, base units and entries ([`crate::perf_entry`]). The guest-facing
//! bytes (CDAT header with checksum and sequence, structure types and
//! lengths, and splitting SSLBIS so that no structure outgrows Linux 6.1's
//! DOE read buffer) are the job of one encoder,
//! `devices::cxl::component::cdat`, which converts from [`Cdat`].

use crate::hmat::{device_share, switch_perf, Perf, SwitchPortPerf};
use crate::perf_entry::{encode_value, encode_values, DataType};
use crate::topology::Topology;

pub use crate::perf_entry::ENTRY_MAX;

/// DSMAS flag (CDAT Table 3): the range is non-volatile.
pub const DSMAS_NON_VOLATILE: u8 = 1 << 2;

/// DSEMTS EFI memory types as QEMU uses them: volatile capacity is
/// EfiConventionalMemory with EFI_MEMORY_SP (specific purpose), persistent
/// is "reserved", the DSMAS non-volatile flag being what Linux goes by.
pub const DSEMTS_EFI_SPECIFIC_PURPOSE: u8 = 1;
pub const DSEMTS_EFI_RESERVED: u8 = 2;

/// Port id of a switch upstream port in SSLBIS entries.
pub const SSLBIS_UPSTREAM_PORT: u16 = 0x100;

/// DSMAS: one device memory range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dsmas {
    pub handle: u8,
    /// [`DSMAS_NON_VOLATILE`] or 0.
    pub flags: u8,
    pub dpa_base: u64,
    pub dpa_length: u64,
}

/// DSLBIS: latency or bandwidth of one DSMAS range inside the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dslbis {
    pub handle: u8,
    pub data_type: DataType,
    pub entry_base_unit: u64,
    /// Entry 0 is the value; 1 and 2 are unused (0).
    pub entries: [u16; 3],
}

/// DSEMTS: the EFI memory type of one DSMAS range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dsemts {
    pub handle: u8,
    pub memory_type: u8,
    /// Offset and length inside the DSMAS range.
    pub dpa_offset: u64,
    pub dpa_length: u64,
}

/// One port pair of an SSLBIS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sslbe {
    /// Upstream port is [`SSLBIS_UPSTREAM_PORT`]; downstream ports are their
    /// PCIe Link Capabilities port numbers.
    pub port_x: u16,
    pub port_y: u16,
    pub value: u16,
}

/// SSLBIS: latency or bandwidth between a switch's ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sslbis {
    pub data_type: DataType,
    pub entry_base_unit: u64,
    pub entries: Vec<Sslbe>,
}

/// One CDAT structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Structure {
    Dsmas(Dsmas),
    Dslbis(Dslbis),
    Dsemts(Dsemts),
    Sslbis(Sslbis),
}

/// A whole CDAT for one component, structures in table order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cdat {
    pub structures: Vec<Structure>,
}

impl Cdat {
    pub fn dsmas(&self) -> impl Iterator<Item = &Dsmas> {
        self.structures.iter().filter_map(|s| match s {
            Structure::Dsmas(d) => Some(d),
            _ => None,
        })
    }

    pub fn dslbis(&self) -> impl Iterator<Item = &Dslbis> {
        self.structures.iter().filter_map(|s| match s {
            Structure::Dslbis(d) => Some(d),
            _ => None,
        })
    }

    pub fn sslbis(&self) -> impl Iterator<Item = &Sslbis> {
        self.structures.iter().filter_map(|s| match s {
            Structure::Sslbis(d) => Some(d),
            _ => None,
        })
    }
}

/// `perf`'s figure for a data type, in HMAT units (ps, MB/s).
pub fn perf_value(perf: &Perf, data_type: DataType) -> u64 {
    match data_type {
        DataType::AccessLatency | DataType::ReadLatency => perf.read_latency_ps,
        DataType::WriteLatency => perf.write_latency_ps,
        DataType::AccessBandwidth | DataType::ReadBandwidth => perf.read_mbps,
        DataType::WriteBandwidth => perf.write_mbps,
    }
}

/// CDAT of a type-3 device with these partitions whose own share of a host
/// access is `share`: per non-empty partition (volatile at DPA 0, then
/// persistent) a DSMAS, read/write latency and bandwidth DSLBIS and a
/// DSEMTS, as QEMU lays it out. Handles count from 0.
pub fn type3_cdat(volatile: u64, persistent: u64, share: &Perf) -> Cdat {
    let mut c = Cdat::default();
    let parts = [
        (volatile, 0, 0, DSEMTS_EFI_SPECIFIC_PURPOSE),
        (
            persistent,
            volatile,
            DSMAS_NON_VOLATILE,
            DSEMTS_EFI_RESERVED,
        ),
    ];
    let mut handle = 0u8;
    for (len, dpa_base, flags, memory_type) in parts {
        if len == 0 {
            continue;
        }
        c.structures.push(Structure::Dsmas(Dsmas {
            handle,
            flags,
            dpa_base,
            dpa_length: len,
        }));
        for data_type in DataType::READ_WRITE {
            let (entry_base_unit, e) = encode_value(perf_value(share, data_type));
            c.structures.push(Structure::Dslbis(Dslbis {
                handle,
                data_type,
                entry_base_unit,
                entries: [e, 0, 0],
            }));
        }
        c.structures.push(Structure::Dsemts(Dsemts {
            handle,
            memory_type,
            dpa_offset: 0,
            dpa_length: len,
        }));
        handle += 1;
    }
    c
}

/// CDAT of type-3 device `device` of `t`: [`type3_cdat`] with the device's
/// share of the path from [`device_share`].
pub fn device_cdat(t: &Topology, device: usize) -> Option<Cdat> {
    let d = t.type3.get(device)?;
    Some(type3_cdat(
        d.volatile,
        d.persistent,
        &device_share(t, device),
    ))
}

/// CDAT of a switch upstream port with `ports` (downstream port number and
/// its figures): one logical SSLBIS per data type (read/write latency,
/// read/write bandwidth) with an (upstream, downstream) entry per port, all
/// entries of one SSLBIS sharing its base unit. No ports, no structures.
pub fn switch_ports_cdat(ports: &[(u16, SwitchPortPerf)]) -> Cdat {
    let mut c = Cdat::default();
    if ports.is_empty() {
        return c;
    }
    for data_type in DataType::READ_WRITE {
        let values: Vec<u64> = ports
            .iter()
            .map(|(_, p)| match data_type.is_latency() {
                true => p.latency_ps,
                false => p.bandwidth_mbps,
            })
            .collect();
        let (entry_base_unit, encoded) = encode_values(&values);
        c.structures.push(Structure::Sslbis(Sslbis {
            data_type,
            entry_base_unit,
            entries: ports
                .iter()
                .zip(encoded)
                .map(|(&(port, _), value)| Sslbe {
                    port_x: SSLBIS_UPSTREAM_PORT,
                    port_y: port,
                    value,
                })
                .collect(),
        }));
    }
    c
}

/// CDAT of switch `switch` of `t`: [`switch_ports_cdat`] over every
/// downstream port with the figures of [`switch_perf`].
pub fn switch_cdat(t: &Topology, switch: usize) -> Option<Cdat> {
    let sw = t.switches.get(switch)?;
    let ports: Vec<(u16, SwitchPortPerf)> = (0..sw.downstream_ports)
        .map(|p| (p as u16, switch_perf(t, switch, p)))
        .collect();
    Some(switch_ports_cdat(&ports))
}

#[cfg(test)]
mod tests;
