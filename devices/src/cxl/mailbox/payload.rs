//! Little-endian field access on guest-supplied payloads.
//!
//! Every read is bounds-checked and returns `None` past the end, so a short
//! payload can never make a handler panic; callers map `None` to the return
//! code the command specifies.

pub(crate) fn u8_at(buf: &[u8], off: usize) -> Option<u8> {
    buf.get(off).copied()
}

pub(crate) fn u16_at(buf: &[u8], off: usize) -> Option<u16> {
    array_at(buf, off).map(u16::from_le_bytes)
}

pub(crate) fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    array_at(buf, off).map(u32::from_le_bytes)
}

pub(crate) fn u64_at(buf: &[u8], off: usize) -> Option<u64> {
    array_at(buf, off).map(u64::from_le_bytes)
}

pub(crate) fn array_at<const N: usize>(buf: &[u8], off: usize) -> Option<[u8; N]> {
    buf.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// Builds an output payload field by field.
#[derive(Default)]
pub(crate) struct Out(Vec<u8>);

impl Out {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    /// The low three bytes of `v` (poison list maximum is a 24-bit field).
    pub(crate) fn u24(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes()[..3])
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    pub(crate) fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(u8_at(&b, 8), Some(9));
        assert_eq!(u8_at(&b, 9), None);
        assert_eq!(u16_at(&b, 0), Some(0x0201));
        assert_eq!(u16_at(&b, 8), None);
        assert_eq!(u32_at(&b, 5), Some(0x0908_0706));
        assert_eq!(u32_at(&b, 6), None);
        assert_eq!(u64_at(&b, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(u64_at(&b, 2), None);
        assert_eq!(u64_at(&b, usize::MAX), None);
    }

    #[test]
    fn out_builds_little_endian() {
        let mut o = Out::default();
        o.u8(1)
            .u16(0x0302)
            .u24(0x0006_0504)
            .u32(0x0a09_0807)
            .zeros(2);
        o.u64(0x1211_100f_0e0d_0c0b);
        assert_eq!(o.len(), 20);
        assert_eq!(
            o.into_vec(),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0, 11, 12, 13, 14, 15, 16, 17, 18]
        );
    }
}
