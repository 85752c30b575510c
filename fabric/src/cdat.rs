//! CDAT (Coherent Device Attribute Table) structures the devices serve over
//! DOE: DSMAS and DSLBIS for each type-3 device, SSLBIS for each switch.
//! Values come from the same parameters the timing engine charges, split so
//! that the kernel's sum (generic port + links + switches + device) equals
//! the engine's idle latency; see [`crate::hmat`].
//!
//! Layouts follow CDAT r1.03 (Linux `include/acpi/actbl1.h`:
//! `acpi_cdat_header`, `acpi_cdat_dsmas`, `acpi_cdat_dslbis`,
//! `acpi_cdat_sslbis` + `acpi_cdat_sslbe`). Latencies are picoseconds ×
//! entry base unit, bandwidths MB/s × entry base unit.

use crate::hmat::{device_share, switch_perf};
use crate::topology::Topology;

/// HMAT/CDAT data types (HMAT SLLBIS numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DataType {
    AccessLatency = 0,
    ReadLatency = 1,
    WriteLatency = 2,
    AccessBandwidth = 3,
    ReadBandwidth = 4,
    WriteBandwidth = 5,
}

impl DataType {
    pub fn is_latency(self) -> bool {
        (self as u8) <= 2
    }
}

/// DSMAS: one device memory range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dsmas {
    pub handle: u8,
    /// Bit 2: non-volatile.
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

/// One port pair of an SSLBIS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sslbe {
    /// Upstream port is 0x100; downstream ports are their port numbers.
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

/// Port id of a switch upstream port in SSLBIS entries.
pub const SSLBIS_UPSTREAM_PORT: u16 = 0x100;

/// A whole CDAT for one component.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cdat {
    pub dsmas: Vec<Dsmas>,
    pub dslbis: Vec<Dslbis>,
    pub sslbis: Vec<Sslbis>,
}

/// Choose a base unit so that `value` fits a u16 entry; returns (unit, entry).
/// Latency values are in ps, bandwidth in MB/s.
pub fn encode_value(value: u64) -> (u64, u16) {
    let mut unit = 1u64;
    while value / unit > u16::MAX as u64 {
        unit *= 10;
    }
    (unit, (value / unit) as u16)
}

fn dslbis(handle: u8, data_type: DataType, value: u64) -> Dslbis {
    let (entry_base_unit, v) = encode_value(value);
    Dslbis {
        handle,
        data_type,
        entry_base_unit,
        entries: [v, 0, 0],
    }
}

/// CDAT of type-3 device `device`: a DSMAS per partition (volatile, then
/// persistent) and read/write latency and bandwidth DSLBIS for each.
pub fn device_cdat(t: &Topology, device: usize) -> Option<Cdat> {
    let d = t.type3.get(device)?;
    let share = device_share(t, device);
    let mut c = Cdat::default();
    let parts = [(d.volatile, 0u8, 0u64), (d.persistent, 1 << 2, d.volatile)];
    for (len, flags, base) in parts {
        if len == 0 {
            continue;
        }
        let handle = c.dsmas.len() as u8;
        c.dsmas.push(Dsmas {
            handle,
            flags,
            dpa_base: base,
            dpa_length: len,
        });
        c.dslbis
            .push(dslbis(handle, DataType::ReadLatency, share.read_latency_ps));
        c.dslbis.push(dslbis(
            handle,
            DataType::WriteLatency,
            share.write_latency_ps,
        ));
        c.dslbis
            .push(dslbis(handle, DataType::ReadBandwidth, share.read_mbps));
        c.dslbis
            .push(dslbis(handle, DataType::WriteBandwidth, share.write_mbps));
    }
    Some(c)
}

/// CDAT of switch `switch`: access latency and access bandwidth between
/// the upstream port and each downstream port.
pub fn switch_cdat(t: &Topology, switch: usize) -> Option<Cdat> {
    let sw = t.switches.get(switch)?;
    let mut lat = Vec::new();
    let mut bw = Vec::new();
    for p in 0..sw.downstream_ports {
        let perf = switch_perf(t, switch, p);
        lat.push((p as u16, perf.latency_ps));
        bw.push((p as u16, perf.bandwidth_mbps));
    }
    let table = |data_type, vals: Vec<(u16, u64)>| {
        let max = vals.iter().map(|v| v.1).max().unwrap_or(0);
        let (unit, _) = encode_value(max);
        Sslbis {
            data_type,
            entry_base_unit: unit,
            entries: vals
                .into_iter()
                .map(|(p, v)| Sslbe {
                    port_x: SSLBIS_UPSTREAM_PORT,
                    port_y: p,
                    value: (v / unit) as u16,
                })
                .collect(),
        }
    };
    Some(Cdat {
        sslbis: vec![
            table(DataType::AccessLatency, lat),
            table(DataType::AccessBandwidth, bw),
        ],
        ..Cdat::default()
    })
}

impl Cdat {
    /// The table as served by DOE: 16-byte header (length, revision 1,
    /// checksum making all bytes sum to 0, sequence) and the structures.
    pub fn to_bytes(&self, sequence: u32) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        for s in &self.dsmas {
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&24u16.to_le_bytes());
            b.extend_from_slice(&[s.handle, s.flags, 0, 0]);
            b.extend_from_slice(&s.dpa_base.to_le_bytes());
            b.extend_from_slice(&s.dpa_length.to_le_bytes());
        }
        for s in &self.dslbis {
            b.extend_from_slice(&[1, 0]);
            b.extend_from_slice(&24u16.to_le_bytes());
            b.extend_from_slice(&[s.handle, 0, s.data_type as u8, 0]);
            b.extend_from_slice(&s.entry_base_unit.to_le_bytes());
            for e in s.entries {
                b.extend_from_slice(&e.to_le_bytes());
            }
            b.extend_from_slice(&[0, 0]);
        }
        for s in &self.sslbis {
            let len = 16 + 8 * s.entries.len();
            b.extend_from_slice(&[4, 0]);
            b.extend_from_slice(&(len as u16).to_le_bytes());
            b.extend_from_slice(&[s.data_type as u8, 0, 0, 0]);
            b.extend_from_slice(&s.entry_base_unit.to_le_bytes());
            for e in &s.entries {
                b.extend_from_slice(&e.port_x.to_le_bytes());
                b.extend_from_slice(&e.port_y.to_le_bytes());
                b.extend_from_slice(&e.value.to_le_bytes());
                b.extend_from_slice(&[0, 0]);
            }
        }
        let len = b.len() as u32;
        b[0..4].copy_from_slice(&len.to_le_bytes());
        b[4] = 1;
        b[8..12].copy_from_slice(&sequence.to_le_bytes());
        let sum = b.iter().fold(0u8, |a, x| a.wrapping_add(*x));
        b[5] = 0u8.wrapping_sub(sum);
        b
    }
}
