//! Coherent Device Attribute Table (CDAT spec 1.03): the per-component table
//! of memory ranges and their latency/bandwidth that Linux reads over DOE
//! (drivers/cxl/core/pci.c) and parses in drivers/cxl/core/cdat.c to compute
//! QoS classes and access coordinates.
//!
//! Layouts are little-endian and packed; every structure is a whole number of
//! dwords, which the DOE table-access protocol needs because it returns one
//! structure per response and Linux checks the response length equals the
//! structure's length field.

/// CDAT header revision, as the brief for this VMM asks (QEMU writes 2).
pub const CDAT_REVISION: u8 = 1;
/// The CDAT header's size in bytes.
pub const CDAT_HEADER_LEN: usize = 16;

/// Structure types (CDAT Table 2).
pub const CDAT_TYPE_DSMAS: u8 = 0;
pub const CDAT_TYPE_DSLBIS: u8 = 1;
pub const CDAT_TYPE_DSEMTS: u8 = 4;
pub const CDAT_TYPE_SSLBIS: u8 = 5;

pub const DSMAS_LEN: usize = 24;
pub const DSLBIS_LEN: usize = 24;
pub const DSEMTS_LEN: usize = 24;
/// SSLBIS header before its 8-byte entries.
pub const SSLBIS_HEADER_LEN: usize = 16;
pub const SSLBE_LEN: usize = 8;

/// DSMAS flags (CDAT Table 3).
pub const DSMAS_FLAG_NON_VOLATILE: u8 = 1 << 2;
pub const DSMAS_FLAG_SHAREABLE: u8 = 1 << 3;
pub const DSMAS_FLAG_HW_COHERENT: u8 = 1 << 4;
pub const DSMAS_FLAG_DYNAMIC_CAPACITY: u8 = 1 << 5;
pub const DSMAS_FLAG_READ_ONLY: u8 = 1 << 6;

/// HMAT data types used by DSLBIS and SSLBIS.
pub const HMAT_ACCESS_LATENCY: u8 = 0;
pub const HMAT_READ_LATENCY: u8 = 1;
pub const HMAT_WRITE_LATENCY: u8 = 2;
pub const HMAT_ACCESS_BANDWIDTH: u8 = 3;
pub const HMAT_READ_BANDWIDTH: u8 = 4;
pub const HMAT_WRITE_BANDWIDTH: u8 = 5;
/// DSLBIS flags: memory hierarchy "memory" (Linux skips anything else).
pub const HMAT_MEMORY: u8 = 0;

/// DSEMTS memory types as QEMU uses them: volatile capacity is
/// EfiConventionalMemory with EFI_MEMORY_SP; persistent is "reserved", the
/// DSMAS non-volatile flag being what matters.
pub const DSEMTS_EFI_SPECIFIC_PURPOSE: u8 = 1;
pub const DSEMTS_EFI_RESERVED: u8 = 2;

/// SSLBIS port IDs: the upstream port, and "any port".
pub const SSLBIS_PORT_USP: u16 = 0x100;
pub const SSLBIS_PORT_ANY: u16 = 0xFFFF;

/// Linux 6.1 reads each entry into a fixed 32-dword buffer, one dword of it
/// the table-access header; larger structures would be silently truncated.
/// So one SSLBIS carries at most (31 * 4 - 16) / 8 = 13 entries.
pub const SSLBIS_MAX_ENTRIES_PER_STRUCT: usize = 13;
/// A structure's length field is 16 bits.
const SSLBIS_MAX_ENTRIES: usize = (u16::MAX as usize - SSLBIS_HEADER_LEN) / SSLBE_LEN;

/// HMAT entry value that means "no data" to Linux.
const HMAT_ENTRY_INVALID: u16 = 0xFFFF;

/// One CDAT structure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CdatEntry {
    /// Device Scoped Memory Affinity Structure: a DPA range and its handle.
    Dsmas {
        handle: u8,
        flags: u8,
        dpa_base: u64,
        dpa_len: u64,
    },
    /// Device Scoped Latency and Bandwidth Information for DSMAS `handle`.
    /// Value = `entries[0] * entry_base_unit`, in ps for latency, MB/s for
    /// bandwidth (HMAT units).
    Dslbis {
        handle: u8,
        flags: u8,
        data_type: u8,
        entry_base_unit: u64,
        entries: [u16; 3],
    },
    /// Switch Scoped Latency and Bandwidth Information: `(port_x, port_y,
    /// value)` per pair of ports, value in `entry_base_unit` steps.
    Sslbis {
        data_type: u8,
        entry_base_unit: u64,
        entries: Vec<(u16, u16, u16)>,
    },
    /// Device Scoped EFI Memory Type Structure for DSMAS `handle`.
    Dsemts {
        handle: u8,
        memory_type: u8,
        dpa_offset: u64,
        dpa_len: u64,
    },
}

impl CdatEntry {
    /// The structure's bytes, common header included.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            CdatEntry::Dsmas {
                handle,
                flags,
                dpa_base,
                dpa_len,
            } => {
                let mut b = structure_header(CDAT_TYPE_DSMAS, DSMAS_LEN);
                b.extend_from_slice(&[*handle, *flags, 0, 0]);
                b.extend_from_slice(&dpa_base.to_le_bytes());
                b.extend_from_slice(&dpa_len.to_le_bytes());
                b
            }
            CdatEntry::Dslbis {
                handle,
                flags,
                data_type,
                entry_base_unit,
                entries,
            } => {
                let mut b = structure_header(CDAT_TYPE_DSLBIS, DSLBIS_LEN);
                b.extend_from_slice(&[*handle, *flags, *data_type, 0]);
                b.extend_from_slice(&entry_base_unit.to_le_bytes());
                for e in entries {
                    b.extend_from_slice(&e.to_le_bytes());
                }
                b.extend_from_slice(&[0, 0]);
                b
            }
            CdatEntry::Sslbis {
                data_type,
                entry_base_unit,
                entries,
            } => {
                // Entries beyond what the 16-bit length can describe are
                // dropped rather than corrupting the table.
                let entries = &entries[..entries.len().min(SSLBIS_MAX_ENTRIES)];
                let len = SSLBIS_HEADER_LEN + SSLBE_LEN * entries.len();
                let mut b = structure_header(CDAT_TYPE_SSLBIS, len);
                b.extend_from_slice(&[*data_type, 0, 0, 0]);
                b.extend_from_slice(&entry_base_unit.to_le_bytes());
                for (x, y, v) in entries {
                    b.extend_from_slice(&x.to_le_bytes());
                    b.extend_from_slice(&y.to_le_bytes());
                    b.extend_from_slice(&v.to_le_bytes());
                    b.extend_from_slice(&[0, 0]);
                }
                b
            }
            CdatEntry::Dsemts {
                handle,
                memory_type,
                dpa_offset,
                dpa_len,
            } => {
                let mut b = structure_header(CDAT_TYPE_DSEMTS, DSEMTS_LEN);
                b.extend_from_slice(&[*handle, *memory_type, 0, 0]);
                b.extend_from_slice(&dpa_offset.to_le_bytes());
                b.extend_from_slice(&dpa_len.to_le_bytes());
                b
            }
        }
    }
}

/// Type [7:0], reserved [15:8], length [31:16].
fn structure_header(kind: u8, len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(len);
    b.push(kind);
    b.push(0);
    b.extend_from_slice(&(len as u16).to_le_bytes());
    b
}

/// Latency and bandwidth of a path, in the units Linux reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessPerf {
    /// Picoseconds, HMAT's latency unit.
    pub read_latency_ps: u64,
    pub write_latency_ps: u64,
    /// MB/s.
    pub read_bandwidth: u64,
    /// MB/s.
    pub write_bandwidth: u64,
}

impl AccessPerf {
    /// The four HMAT data types with their values in HMAT units (ps, MB/s).
    fn hmat_values(self) -> [(u8, u64); 4] {
        [
            (HMAT_READ_LATENCY, self.read_latency_ps),
            (HMAT_WRITE_LATENCY, self.write_latency_ps),
            (HMAT_READ_BANDWIDTH, self.read_bandwidth),
            (HMAT_WRITE_BANDWIDTH, self.write_bandwidth),
        ]
    }
}

/// Latency and bandwidth from a switch's upstream port to one downstream
/// port, the `port` number being the DSP's PCIe Link Capabilities port number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchPortPerf {
    pub port: u16,
    pub perf: AccessPerf,
}

/// Picks a power-of-ten base unit so every value fits a 16-bit entry, and the
/// entries. Linux multiplies them back (`cdat_normalize`), refusing products
/// above u32::MAX and treating 0xFFFF as invalid, so entries stay ≤ 0xFFFE.
/// A non-zero value never rounds down to 0 ("no data").
pub fn hmat_encode(values: &[u64]) -> (u64, Vec<u16>) {
    let max = values.iter().copied().max().unwrap_or(0);
    let limit = u64::from(HMAT_ENTRY_INVALID - 1);
    let mut base = 1u64;
    while max / base > limit {
        base = base.saturating_mul(10);
    }
    let entries = values
        .iter()
        .map(|&v| {
            let rounded = v / base + u64::from(v % base >= base.div_ceil(2));
            let e = rounded.clamp(u64::from(v != 0), limit);
            e as u16
        })
        .collect();
    (base, entries)
}

/// A CDAT: header plus structures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cdat {
    pub entries: Vec<CdatEntry>,
    /// Bumped by whoever changes the table, so the guest can tell.
    pub sequence: u32,
}

impl Cdat {
    pub fn new(entries: Vec<CdatEntry>) -> Self {
        Self {
            entries,
            sequence: 0,
        }
    }

    /// Each structure's bytes, in table order.
    pub fn structures(&self) -> Vec<Vec<u8>> {
        self.entries.iter().map(CdatEntry::to_bytes).collect()
    }

    /// The 16-byte header for a table with these structures: total length,
    /// revision, checksum making all bytes of the table sum to 0, sequence.
    pub fn header_for(&self, structures: &[Vec<u8>]) -> [u8; CDAT_HEADER_LEN] {
        let body_len: usize = structures.iter().map(Vec::len).sum();
        let total = u32::try_from(CDAT_HEADER_LEN + body_len).unwrap_or(u32::MAX);
        let mut h = [0u8; CDAT_HEADER_LEN];
        h[0..4].copy_from_slice(&total.to_le_bytes());
        h[4] = CDAT_REVISION;
        h[12..16].copy_from_slice(&self.sequence.to_le_bytes());
        let sum = h
            .iter()
            .chain(structures.iter().flatten())
            .fold(0u8, |acc, b| acc.wrapping_add(*b));
        h[5] = 0u8.wrapping_sub(sum);
        h
    }

    /// The whole table as Linux reassembles it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let structures = self.structures();
        let mut out = self.header_for(&structures).to_vec();
        for s in &structures {
            out.extend_from_slice(s);
        }
        out
    }

    /// A type-3 device's table, as QEMU builds it: per non-empty partition
    /// (volatile at DPA 0, then persistent) a DSMAS, read/write latency and
    /// bandwidth DSLBIS, and a DSEMTS. Handles count from 0.
    pub fn for_type3(volatile_bytes: u64, persistent_bytes: u64, perf: AccessPerf) -> Self {
        let mut entries = Vec::new();
        let mut handle = 0u8;
        let partitions = [
            (volatile_bytes, 0, 0, DSEMTS_EFI_SPECIFIC_PURPOSE),
            (
                persistent_bytes,
                volatile_bytes,
                DSMAS_FLAG_NON_VOLATILE,
                DSEMTS_EFI_RESERVED,
            ),
        ];
        for (len, dpa_base, flags, memory_type) in partitions {
            if len == 0 {
                continue;
            }
            entries.push(CdatEntry::Dsmas {
                handle,
                flags,
                dpa_base,
                dpa_len: len,
            });
            for (data_type, value) in perf.hmat_values() {
                let (entry_base_unit, e) = hmat_encode(&[value]);
                entries.push(CdatEntry::Dslbis {
                    handle,
                    flags: HMAT_MEMORY,
                    data_type,
                    entry_base_unit,
                    entries: [e[0], 0, 0],
                });
            }
            entries.push(CdatEntry::Dsemts {
                handle,
                memory_type,
                dpa_offset: 0,
                dpa_len: len,
            });
            handle += 1;
        }
        Self::new(entries)
    }

    /// A switch upstream port's table: one SSLBIS per data type (read/write
    /// latency, read/write bandwidth) with an (USP, DSP) entry per downstream
    /// port, split so no structure exceeds what Linux 6.1 reads in one go.
    pub fn for_switch_upstream(ports: &[SwitchPortPerf]) -> Self {
        let mut entries = Vec::new();
        for kind in 0..4 {
            let data_type = ports
                .first()
                .map_or(HMAT_READ_LATENCY, |p| p.perf.hmat_values()[kind].0);
            let values: Vec<u64> = ports.iter().map(|p| p.perf.hmat_values()[kind].1).collect();
            let (entry_base_unit, encoded) = hmat_encode(&values);
            let pairs: Vec<(u16, u16, u16)> = ports
                .iter()
                .zip(encoded)
                .map(|(p, v)| (SSLBIS_PORT_USP, p.port, v))
                .collect();
            for chunk in pairs.chunks(SSLBIS_MAX_ENTRIES_PER_STRUCT) {
                entries.push(CdatEntry::Sslbis {
                    data_type,
                    entry_base_unit,
                    entries: chunk.to_vec(),
                });
            }
        }
        Self::new(entries)
    }
}

/// Serves a table the fabric model computed (`fabric::cdat`), so what the
/// guest reads matches what the timing engine charges. Long SSLBIS are split
/// like [`Cdat::for_switch_upstream`] does, and 0xFFFF entries (which Linux
/// reads as "no data") are clamped to 0xFFFE.
impl From<&fabric::cdat::Cdat> for Cdat {
    fn from(model: &fabric::cdat::Cdat) -> Self {
        let valid = |e: u16| e.min(HMAT_ENTRY_INVALID - 1);
        let mut entries = Vec::new();
        for d in &model.dsmas {
            entries.push(CdatEntry::Dsmas {
                handle: d.handle,
                flags: d.flags,
                dpa_base: d.dpa_base,
                dpa_len: d.dpa_length,
            });
        }
        for d in &model.dslbis {
            entries.push(CdatEntry::Dslbis {
                handle: d.handle,
                flags: HMAT_MEMORY,
                data_type: d.data_type as u8,
                entry_base_unit: d.entry_base_unit,
                entries: d.entries.map(valid),
            });
        }
        for s in &model.sslbis {
            let pairs: Vec<(u16, u16, u16)> = s
                .entries
                .iter()
                .map(|e| (e.port_x, e.port_y, valid(e.value)))
                .collect();
            for chunk in pairs.chunks(SSLBIS_MAX_ENTRIES_PER_STRUCT) {
                entries.push(CdatEntry::Sslbis {
                    data_type: s.data_type as u8,
                    entry_base_unit: s.entry_base_unit,
                    entries: chunk.to_vec(),
                });
            }
        }
        Self::new(entries)
    }
}

#[cfg(test)]
pub(crate) mod tests;
