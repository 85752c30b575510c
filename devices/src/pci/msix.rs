//! MSI-X: the vector table and pending-bit array a function exposes in one of
//! its BARs, and delivery of messages through an [`MsiSink`].

use std::sync::{Arc, Mutex};

/// Where MSI messages go (the VMM implements this with KVM).
pub trait MsiSink: Send + Sync {
    fn send(&self, address: u64, data: u32);
}

/// Table entry layout: address low, address high, data, vector control.
const ENTRY_SIZE: u64 = 16;
const VECTOR_MASKED: u32 = 1;

pub struct MsixTable {
    entries: Vec<[u32; 4]>,
    pending: Vec<bool>,
    enabled: bool,
    function_masked: bool,
    sink: Arc<dyn MsiSink>,
}

pub type SharedMsix = Arc<Mutex<MsixTable>>;

impl MsixTable {
    pub fn new(vectors: u16, sink: Arc<dyn MsiSink>) -> Self {
        let n = usize::from(vectors.clamp(1, 2048));
        Self {
            // Vectors come out of reset masked.
            entries: vec![[0, 0, 0, VECTOR_MASKED]; n],
            pending: vec![false; n],
            enabled: false,
            function_masked: false,
            sink,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes the table occupies.
    pub fn table_size(&self) -> u64 {
        self.entries.len() as u64 * ENTRY_SIZE
    }

    /// Bytes the pending-bit array occupies (whole qwords).
    pub fn pba_size(&self) -> u64 {
        (self.entries.len() as u64).div_ceil(64) * 8
    }

    /// Message control bits 15 (enable) and 14 (function mask) changed.
    pub fn set_control(&mut self, enabled: bool, function_masked: bool) {
        self.enabled = enabled;
        self.function_masked = function_masked;
        self.flush_pending();
    }

    /// Raises vector `v`: sent now, or remembered in the PBA while masked.
    pub fn trigger(&mut self, v: u16) {
        let v = usize::from(v);
        if v >= self.entries.len() {
            return;
        }
        if !self.enabled {
            return;
        }
        if self.function_masked || self.entries[v][3] & VECTOR_MASKED != 0 {
            self.pending[v] = true;
            return;
        }
        self.send(v);
    }

    fn send(&self, v: usize) {
        let e = self.entries[v];
        self.sink
            .send(u64::from(e[0]) | (u64::from(e[1]) << 32), e[2]);
    }

    fn flush_pending(&mut self) {
        if !self.enabled || self.function_masked {
            return;
        }
        for v in 0..self.entries.len() {
            if self.pending[v] && self.entries[v][3] & VECTOR_MASKED == 0 {
                self.pending[v] = false;
                self.send(v);
            }
        }
    }

    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !matches!(data.len(), 4 | 8) || !offset.is_multiple_of(4) {
            return;
        }
        for (i, chunk) in data.chunks_mut(4).enumerate() {
            let dw = offset / 4 + i as u64;
            if let Some(e) = self.entries.get((dw / 4) as usize) {
                chunk.copy_from_slice(&e[(dw % 4) as usize].to_le_bytes());
            }
        }
    }

    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        if !matches!(data.len(), 4 | 8) || !offset.is_multiple_of(4) {
            return;
        }
        for (i, chunk) in data.chunks(4).enumerate() {
            let dw = offset / 4 + i as u64;
            let Some(e) = self.entries.get_mut((dw / 4) as usize) else {
                return;
            };
            let mut b = [0u8; 4];
            b.copy_from_slice(chunk);
            let v = u32::from_le_bytes(b);
            match dw % 4 {
                // Vector control: only the mask bit is writable.
                3 => e[3] = v & VECTOR_MASKED,
                // Message address low is dword aligned.
                0 => e[0] = v & !3,
                k => e[k as usize] = v,
            }
        }
        self.flush_pending();
    }

    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        let mut bytes = vec![0u8; self.pba_size() as usize];
        for (v, &p) in self.pending.iter().enumerate() {
            if p {
                bytes[v / 8] |= 1 << (v % 8);
            }
        }
        for (i, d) in data.iter_mut().enumerate() {
            *d = bytes.get(offset as usize + i).copied().unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(u64, u32)>>);
    impl MsiSink for Recorder {
        fn send(&self, address: u64, data: u32) {
            self.0.lock().unwrap().push((address, data));
        }
    }

    #[test]
    fn masked_vectors_pend_and_fire_on_unmask() {
        let rec = Arc::new(Recorder::default());
        let mut t = MsixTable::new(4, rec.clone());
        t.write_table(16, &0xfee0_0000u32.to_le_bytes());
        t.write_table(24, &0x41u32.to_le_bytes());
        t.trigger(1); // MSI-X disabled: dropped
        t.set_control(true, false);
        t.trigger(1); // vector still masked: pends
        assert!(rec.0.lock().unwrap().is_empty());
        let mut pba = [0u8; 8];
        t.read_pba(0, &mut pba);
        assert_eq!(pba[0], 0b10);
        t.write_table(28, &0u32.to_le_bytes()); // unmask vector 1
        assert_eq!(*rec.0.lock().unwrap(), vec![(0xfee0_0000, 0x41)]);
        t.read_pba(0, &mut pba);
        assert_eq!(pba[0], 0);
        t.trigger(1);
        assert_eq!(rec.0.lock().unwrap().len(), 2);
        t.trigger(200); // out of range: ignored
        let mut d = [0u8; 4];
        t.read_table(28, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0);
        t.read_table(3, &mut d); // misaligned: zeros, no panic
        t.write_table(4096, &[1, 2, 3, 4]);
    }
}
