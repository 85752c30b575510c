//! Turning fuzz bytes into device operations: a thin layer over
//! `arbitrary::Unstructured` that never fails (an exhausted input reads as
//! zeros), so every byte string is a valid, finite program.

use arbitrary::Unstructured;

pub struct Input<'a> {
    u: Unstructured<'a>,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input {
            u: Unstructured::new(data),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.u.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        self.u.arbitrary().unwrap_or(0)
    }

    pub fn u16(&mut self) -> u16 {
        self.u.arbitrary().unwrap_or(0)
    }

    pub fn u32(&mut self) -> u32 {
        self.u.arbitrary().unwrap_or(0)
    }

    pub fn u64(&mut self) -> u64 {
        self.u.arbitrary().unwrap_or(0)
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A value in `range` (inclusive).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.u.int_in_range(lo..=hi).unwrap_or(lo)
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.range(0, items.len() as u64 - 1) as usize]
    }

    /// Up to `max` bytes (fewer if the input runs out).
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.range(0, max as u64) as usize;
        let n = n.min(self.u.len());
        self.u.bytes(n).map(<[u8]>::to_vec).unwrap_or_default()
    }

    /// An access width: mostly the ones drivers use, sometimes odd ones.
    pub fn width(&mut self) -> usize {
        self.pick(&[1, 2, 4, 8, 4, 8, 4, 3, 0, 16])
    }

    /// `width` bytes of data to write.
    pub fn data(&mut self, width: usize) -> Vec<u8> {
        (0..width).map(|_| self.u8()).collect()
    }
}
