//! CDAT (Coherent Device Attribute Table) contents the devices serve over
//! DOE: DSMAS and DSLBIS for each type-3 device, SSLBIS for each switch.
//! Values come from the same parameters the timing engine charges, split so
//! that the kernel's sum (generic port + links + switches + device) equals
//! the engine's idle latency; see [`crate::hmat`].
//!
//! This module produces the *data* only (handles, flags, data types, base
//! units, entries). The guest-facing bytes (CDAT header with checksum and
//! sequence, structure types and lengths, and splitting SSLBIS so that no
//! structure outgrows Linux 6.1's DOE read buffer) are the job of one encoder,
//! `devices::cxl::component::cdat`, which converts from [`Cdat`]. Keeping a
//! second encoder here let the two drift apart, so there is none.
//!
//! Entries follow Linux `drivers/cxl/core/cdat.c` (`cdat_normalize`): value =
//! entry × base unit, in ps for latencies and MB/s for bandwidths; an entry of
//! 0 or 0xFFFF means "no data", and a product above `u32::MAX` is treated as
//! overflow and dropped. [`encode_values`] keeps every entry inside that.

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

/// Largest entry Linux reads as a value (0xFFFF means "no data").
pub const ENTRY_MAX: u16 = 0xFFFE;

/// Encode `values` (ps or MB/s) with one shared base unit, as DSLBIS and
/// SSLBIS entries: the smallest power of ten in which the largest value,
/// rounded to nearest like every entry, fits [`ENTRY_MAX`]. A non-zero value never encodes
/// as 0 (Linux would read "no data"), and entry × unit never exceeds
/// `u32::MAX` (Linux would discard it as overflow), so values beyond that
/// saturate.
pub fn encode_values(values: &[u64]) -> (u64, Vec<u16>) {
    let limit = u64::from(ENTRY_MAX);
    let ceiling = u64::from(u32::MAX);
    let max = values.iter().map(|&v| v.min(ceiling)).max().unwrap_or(0);
    let nearest = |v: u64, unit: u64| v / unit + u64::from(v % unit >= unit.div_ceil(2));
    let mut unit = 1u64;
    while nearest(max, unit) > limit {
        unit *= 10;
    }
    let entries = values
        .iter()
        .map(|&v| {
            let v = v.min(ceiling);
            // Rounding up can cross u32::MAX, which Linux would drop.
            let e = nearest(v, unit).min(ceiling / unit);
            e.max(u64::from(v != 0)) as u16
        })
        .collect();
    (unit, entries)
}

/// [`encode_values`] for one value: (base unit, entry).
pub fn encode_value(value: u64) -> (u64, u16) {
    let (unit, e) = encode_values(&[value]);
    (unit, e[0])
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
    // One logical SSLBIS per data type with every port pair; the encoder
    // splits it into structures small enough for the guest's DOE buffer.
    let table = |data_type, vals: Vec<(u16, u64)>| {
        let values: Vec<u64> = vals.iter().map(|v| v.1).collect();
        let (entry_base_unit, encoded) = encode_values(&values);
        Sslbis {
            data_type,
            entry_base_unit,
            entries: vals
                .iter()
                .zip(encoded)
                .map(|(&(p, _), value)| Sslbe {
                    port_x: SSLBIS_UPSTREAM_PORT,
                    port_y: p,
                    value,
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

#[cfg(test)]
mod tests;
