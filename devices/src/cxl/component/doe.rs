//! PCIe Data Object Exchange mailbox (PCIe 6.0 §6.30, extended capability
//! 0x2E) serving DOE Discovery and CXL Table Access (CXL 3.1 §8.1.11), the
//! latter handing out the CDAT one structure per request.
//!
//! Linux (drivers/pci/doe.c) writes a request dword by dword into the write
//! mailbox, sets Go, polls Data Object Ready, then reads the response from the
//! read mailbox, writing it after each dword to advance. We answer
//! synchronously: the response is ready as soon as Go is written and Busy is
//! never seen.
//!
//! Offsets are from the start of the extended capability; the header at 0x00
//! belongs to the PCI framework and reads 0 here.

use super::cdat::Cdat;

/// Size of the DOE extended capability (header included).
pub const DOE_CAP_SIZE: u16 = 0x18;

const DOE_CAPABILITIES: u16 = 0x04;
const DOE_CONTROL: u16 = 0x08;
const DOE_STATUS: u16 = 0x0C;
const DOE_WRITE_MAILBOX: u16 = 0x10;
const DOE_READ_MAILBOX: u16 = 0x14;

const CONTROL_ABORT: u32 = 1 << 0;
const CONTROL_GO: u32 = 1 << 31;

const STATUS_ERROR: u32 = 1 << 2;
const STATUS_DATA_OBJECT_READY: u32 = 1 << 31;

/// Data object header 1: vendor ID [15:0], type [23:16].
pub const PCI_SIG_VENDOR_ID: u16 = 0x0001;
pub const DOE_TYPE_DISCOVERY: u8 = 0;
pub const CXL_VENDOR_ID: u16 = 0x1E98;
pub const CXL_DOE_TABLE_ACCESS: u8 = 2;
/// Data object header 2: length in dwords [17:0], 0 meaning 2^18.
const LENGTH_MASK: u32 = 0x3_FFFF;
const MAX_OBJECT_DWORDS: usize = 1 << 18;

/// Longest request we buffer. Ours are 3 dwords; a guest pushing more than
/// this is not talking a protocol we serve, and gets the Error bit rather
/// than unbounded memory.
const MAX_REQUEST_DWORDS: usize = 256;

/// Table Access request/response code "read entry", and table type CDAT.
const TABLE_ACCESS_READ_ENTRY: u32 = 0;
const TABLE_TYPE_CDAT: u32 = 0;
/// Entry handle that marks the last entry in a response.
const TABLE_ACCESS_LAST_ENTRY: u32 = 0xFFFF;

/// A protocol a DOE mailbox serves besides Discovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DoeProtocol {
    /// CXL Table Access (vendor 0x1E98, type 2) serving this CDAT.
    CxlTableAccess(Cdat),
}

impl DoeProtocol {
    fn id(&self) -> (u16, u8) {
        match self {
            DoeProtocol::CxlTableAccess(_) => (CXL_VENDOR_ID, CXL_DOE_TABLE_ACCESS),
        }
    }
}

/// A protocol with its responses prepared.
#[derive(Clone, Debug)]
enum Served {
    /// CDAT entries by handle as dwords: 0 is the header, n is structure n-1.
    TableAccess(Vec<Vec<u32>>),
}

impl Served {
    fn new(p: &DoeProtocol) -> Self {
        match p {
            DoeProtocol::CxlTableAccess(cdat) => Served::TableAccess(cdat_entries(cdat)),
        }
    }
}

fn to_dwords(bytes: &[u8]) -> Vec<u32> {
    // CDAT structures are whole dwords; a stray tail would be zero-padded.
    bytes
        .chunks(4)
        .map(|c| {
            let mut d = [0u8; 4];
            d[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(d)
        })
        .collect()
}

fn cdat_entries(cdat: &Cdat) -> Vec<Vec<u32>> {
    let structures = cdat.structures();
    let header = cdat.header_for(&structures);
    std::iter::once(to_dwords(&header))
        .chain(structures.iter().map(|s| to_dwords(s)))
        .collect()
}

fn object_header(vendor: u16, kind: u8) -> u32 {
    u32::from(vendor) | (u32::from(kind) << 16)
}

/// One DOE mailbox instance.
#[derive(Clone, Debug)]
pub struct Doe {
    /// Discovery index i + 1 names `protocols[i]`; index 0 is Discovery.
    ids: Vec<(u16, u8)>,
    served: Vec<Served>,
    request: Vec<u32>,
    response: Vec<u32>,
    /// Next response dword the read mailbox shows.
    read_index: usize,
    ready: bool,
    error: bool,
}

impl Doe {
    pub fn new(protocols: Vec<DoeProtocol>) -> Self {
        Self {
            ids: protocols.iter().map(DoeProtocol::id).collect(),
            served: protocols.iter().map(Served::new).collect(),
            request: Vec::new(),
            response: Vec::new(),
            read_index: 0,
            ready: false,
            error: false,
        }
    }

    /// A mailbox serving just this CDAT, as a type-3 device or switch port has.
    pub fn with_cdat(cdat: Cdat) -> Self {
        Self::new(vec![DoeProtocol::CxlTableAccess(cdat)])
    }

    /// Replaces the CDAT served (e.g. when latency parameters change); bump
    /// `cdat.sequence` so the guest can tell.
    pub fn set_cdat(&mut self, cdat: &Cdat) {
        for s in &mut self.served {
            let Served::TableAccess(entries) = s;
            *entries = cdat_entries(cdat);
        }
    }

    /// Reads the dword register at `offset_in_cap`.
    pub fn read(&mut self, offset_in_cap: u16) -> u32 {
        match offset_in_cap {
            // No interrupt support: Linux polls. Control reads Go/Abort as 0.
            DOE_CAPABILITIES | DOE_CONTROL => 0,
            DOE_STATUS => {
                let mut v = 0;
                if self.error {
                    v |= STATUS_ERROR;
                }
                if self.ready {
                    v |= STATUS_DATA_OBJECT_READY;
                }
                v
            }
            DOE_READ_MAILBOX if self.ready && !self.error => {
                self.response.get(self.read_index).copied().unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// Writes the dword register at `offset_in_cap`.
    pub fn write(&mut self, offset_in_cap: u16, value: u32) {
        match offset_in_cap {
            DOE_CONTROL => {
                if value & CONTROL_ABORT != 0 {
                    self.abort();
                } else if value & CONTROL_GO != 0 && !self.error {
                    self.go();
                }
            }
            DOE_WRITE_MAILBOX => {
                if self.request.len() >= MAX_REQUEST_DWORDS {
                    self.error = true;
                } else {
                    self.request.push(value);
                }
            }
            DOE_READ_MAILBOX => self.advance_read(),
            _ => {}
        }
    }

    /// Abort: drop any request and response and clear Error.
    fn abort(&mut self) {
        self.request.clear();
        self.response.clear();
        self.read_index = 0;
        self.ready = false;
        self.error = false;
    }

    /// Any write to the read mailbox consumes one dword; past the end of the
    /// object (or with none ready) it is an underflow, flagged as Error.
    fn advance_read(&mut self) {
        if !self.ready {
            self.error = true;
            return;
        }
        self.read_index += 1;
        if self.read_index >= self.response.len() {
            self.response.clear();
            self.read_index = 0;
            self.ready = false;
        }
    }

    /// Go: take the request and prepare its response. Requests we cannot
    /// answer (unknown protocol, length not matching what was written, bad
    /// table handle) are silently discarded, as PCIe 6.0 §6.30.1 has it; the
    /// requester times out and aborts.
    fn go(&mut self) {
        let request = std::mem::take(&mut self.request);
        self.response.clear();
        self.read_index = 0;
        self.ready = false;
        if let Some(response) = self.respond(&request) {
            self.response = response;
            self.ready = true;
        }
    }

    fn respond(&self, req: &[u32]) -> Option<Vec<u32>> {
        let (&h1, &h2, &payload) = match req {
            [h1, h2, payload, ..] => (h1, h2, payload),
            _ => return None,
        };
        let length = match (h2 & LENGTH_MASK) as usize {
            0 => MAX_OBJECT_DWORDS,
            n => n,
        };
        if length != req.len() {
            return None;
        }
        if h1 == object_header(PCI_SIG_VENDOR_ID, DOE_TYPE_DISCOVERY) {
            return Some(self.discovery(payload));
        }
        let index = self
            .ids
            .iter()
            .position(|&(v, t)| h1 == object_header(v, t))?;
        match &self.served[index] {
            Served::TableAccess(entries) => table_access(entries, payload),
        }
    }

    /// Discovery: index [7:0] in, (vendor, type, next index) out. Index 0 is
    /// Discovery itself; next index 0 ends the walk. An index past the list
    /// answers vendor 0xFFFF and ends the walk too.
    fn discovery(&self, payload: u32) -> Vec<u32> {
        let index = (payload & 0xFF) as usize;
        let (vendor, kind) = match index {
            0 => (PCI_SIG_VENDOR_ID, DOE_TYPE_DISCOVERY),
            i => self.ids.get(i - 1).copied().unwrap_or((0xFFFF, 0xFF)),
        };
        let next = if index < self.ids.len() { index + 1 } else { 0 };
        vec![
            object_header(PCI_SIG_VENDOR_ID, DOE_TYPE_DISCOVERY),
            3,
            u32::from(vendor) | (u32::from(kind) << 16) | ((next as u32) << 24),
        ]
    }
}

/// Table Access "read entry": request code [7:0], table type [15:8], entry
/// handle [31:16]; the response repeats code and type with the next handle
/// (0xFFFF after the last) and carries the entry.
fn table_access(entries: &[Vec<u32>], payload: u32) -> Option<Vec<u32>> {
    let code = payload & 0xFF;
    let table = (payload >> 8) & 0xFF;
    let handle = (payload >> 16) as usize;
    if code != TABLE_ACCESS_READ_ENTRY || table != TABLE_TYPE_CDAT {
        return None;
    }
    let entry = entries.get(handle)?;
    let next = if handle + 1 < entries.len() {
        (handle + 1) as u32
    } else {
        TABLE_ACCESS_LAST_ENTRY
    };
    let mut rsp = Vec::with_capacity(3 + entry.len());
    rsp.push(object_header(CXL_VENDOR_ID, CXL_DOE_TABLE_ACCESS));
    rsp.push((3 + entry.len()) as u32);
    rsp.push(TABLE_ACCESS_READ_ENTRY | (TABLE_TYPE_CDAT << 8) | (next << 16));
    rsp.extend_from_slice(entry);
    Some(rsp)
}

#[cfg(test)]
mod tests;
