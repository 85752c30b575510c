//! MSI-X: the vector table and pending-bit array a function exposes in one of
//! its BARs, and delivery of messages through an [`MsiSink`].
//!
//! The sink is told each vector's message (address, data) once, before the
//! first trigger after the guest changed it, and then only triggered: the VMM
//! turns a message into a KVM GSI route and a trigger into an irqfd write.

use std::sync::{Arc, Mutex};

/// Where a function's MSI-X vectors go (the VMM implements this with KVM GSI
/// routes and irqfds).
pub trait MsiSink: Send + Sync {
    /// Vector `vector` now carries this message.
    fn route(&self, vector: u16, address: u64, data: u32);
    /// Signals `vector` with the message last routed for it.
    fn trigger(&self, vector: u16);
}

/// Table entry layout: address low, address high, data, vector control.
const ENTRY_SIZE: u64 = 16;
const VECTOR_MASKED: u32 = 1;

pub struct MsixTable {
    entries: Vec<[u32; 4]>,
    pending: Vec<bool>,
    /// The message the sink last routed for each vector.
    routed: Vec<Option<(u64, u32)>>,
    enabled: bool,
    function_masked: bool,
    sink: Arc<dyn MsiSink>,
}

pub type SharedMsix = Arc<Mutex<MsixTable>>;

/// The BAR that holds a function's MSI-X table (at 0) and PBA (at
/// `pba_offset`), as a device of its own on the MMIO bus.
pub struct MsixBar {
    table: SharedMsix,
    pba_offset: u64,
}

impl MsixBar {
    pub fn new(table: SharedMsix, pba_offset: u64) -> Self {
        Self { table, pba_offset }
    }
}

impl crate::BusDevice for MsixBar {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let t = crate::bus::lock(&self.table);
        match offset.checked_sub(self.pba_offset) {
            Some(pba) => t.read_pba(pba, data),
            None => t.read_table(offset, data),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        // The PBA is read-only.
        if offset < self.pba_offset {
            crate::bus::lock(&self.table).write_table(offset, data);
        }
    }
}

impl MsixTable {
    pub fn new(vectors: u16, sink: Arc<dyn MsiSink>) -> Self {
        let n = usize::from(vectors.clamp(1, 2048));
        Self {
            // Vectors come out of reset masked.
            entries: vec![[0, 0, 0, VECTOR_MASKED]; n],
            pending: vec![false; n],
            routed: vec![None; n],
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

    /// MSI-X Enable (message control bit 15).
    pub fn enabled(&self) -> bool {
        self.enabled
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

    fn send(&mut self, v: usize) {
        let e = self.entries[v];
        let message = (u64::from(e[0]) | (u64::from(e[1]) << 32), e[2]);
        // Routing only changes when the guest reprogrammed the entry, so a
        // steady stream of interrupts costs no routing updates.
        if self.routed[v] != Some(message) {
            self.sink.route(v as u16, message.0, message.1);
            self.routed[v] = Some(message);
        }
        self.sink.trigger(v as u16);
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
        for (i, d) in data.iter_mut().enumerate() {
            // Byte `at` of the PBA holds the pending bits of vectors 8*at..
            let first = offset
                .checked_add(i as u64)
                .and_then(|at| usize::try_from(at).ok())
                .and_then(|at| at.checked_mul(8));
            *d = match first.and_then(|v| self.pending.get(v..)) {
                Some(bits) => bits
                    .iter()
                    .take(8)
                    .enumerate()
                    .fold(0, |b, (k, &p)| b | (u8::from(p) << k)),
                None => 0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delivers like the VMM does (route, then trigger) and records the
    /// message each trigger lands on, plus how many routing updates it took.
    #[derive(Default)]
    struct Recorder {
        routes: Mutex<Vec<Option<(u64, u32)>>>,
        route_updates: Mutex<usize>,
        sent: Mutex<Vec<(u64, u32)>>,
    }
    impl MsiSink for Recorder {
        fn route(&self, vector: u16, address: u64, data: u32) {
            let mut r = self.routes.lock().unwrap();
            let v = usize::from(vector);
            if r.len() <= v {
                r.resize(v + 1, None);
            }
            r[v] = Some((address, data));
            *self.route_updates.lock().unwrap() += 1;
        }
        fn trigger(&self, vector: u16) {
            let r = self.routes.lock().unwrap();
            let msg = r[usize::from(vector)].expect("triggered before routed");
            self.sent.lock().unwrap().push(msg);
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
        assert!(rec.sent.lock().unwrap().is_empty());
        let mut pba = [0u8; 8];
        t.read_pba(0, &mut pba);
        assert_eq!(pba[0], 0b10);
        t.write_table(28, &0u32.to_le_bytes()); // unmask vector 1
        assert_eq!(*rec.sent.lock().unwrap(), vec![(0xfee0_0000, 0x41)]);
        t.read_pba(0, &mut pba);
        assert_eq!(pba[0], 0);
        t.trigger(1);
        assert_eq!(rec.sent.lock().unwrap().len(), 2);
        assert_eq!(
            *rec.route_updates.lock().unwrap(),
            1,
            "unchanged entry re-routed"
        );
        // Reprogramming the entry re-routes before the next trigger.
        t.write_table(24, &0x42u32.to_le_bytes());
        t.trigger(1);
        assert_eq!(rec.sent.lock().unwrap()[2], (0xfee0_0000, 0x42));
        assert_eq!(*rec.route_updates.lock().unwrap(), 2);
        t.trigger(200); // out of range: ignored
        let mut d = [0u8; 4];
        t.read_table(28, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0);
        t.read_table(3, &mut d); // misaligned: zeros, no panic
        t.write_table(4096, &[1, 2, 3, 4]);
    }
}
