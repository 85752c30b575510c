//! The compute kernels, on host slices. Each fixes its order of operations
//! (`docs/accelerator.md` §5.2) so that a CPU running the same loops in
//! binary32 gets the same bits: one rounding per multiply and per add, no
//! fused multiply-add, sums in increasing index.

/// CRC-32C (Castagnoli), as the spec names it.
pub const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// `y[i] = a * x[i] + y[i]`.
pub fn saxpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        // Two roundings: Rust never contracts a multiply and an add into an FMA.
        *yi += a * *xi;
    }
}

/// `acc + x[0] + x[1] + ...`, left to right (pass 0.0 to start a sum, the
/// previous result to continue one over the next piece).
pub fn sum_f32(acc: f32, x: &[f32]) -> f32 {
    x.iter().fold(acc, |s, v| s + *v)
}

/// Rows of A, columns of B and the shared dimension per tile: small enough
/// that a tile of B and a row strip of C stay in the host's cache.
const TILE_I: usize = 16;
const TILE_J: usize = 256;
const TILE_P: usize = 64;

/// `C = A · B`, row-major, A m×k, B k×n, C m×n. Tiled over rows, the shared
/// dimension and columns; every `c[i][j]` still accumulates its products
/// from 0.0 in increasing `p`, so the result equals the plain triple loop.
pub fn gemm(a: &[f32], b: &[f32], c: &mut [f32], m: usize, n: usize, k: usize) {
    if a.len() < m * k || b.len() < k * n || c.len() < m * n {
        return;
    }
    c[..m * n].fill(0.0);
    for i0 in (0..m).step_by(TILE_I) {
        for p0 in (0..k).step_by(TILE_P) {
            for j0 in (0..n).step_by(TILE_J) {
                let j1 = (j0 + TILE_J).min(n);
                for i in i0..(i0 + TILE_I).min(m) {
                    let crow = &mut c[i * n + j0..i * n + j1];
                    for p in p0..(p0 + TILE_P).min(k) {
                        let aip = a[i * k + p];
                        let brow = &b[p * n + j0..p * n + j1];
                        for (cij, bpj) in crow.iter_mut().zip(brow) {
                            *cij += aip * *bpj;
                        }
                    }
                }
            }
        }
    }
}

/// Little-endian binary32 values of `bytes` (a multiple of 4 long).
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The bytes of `values`, little-endian.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: the plain loops a guest's C code runs.
    fn gemm_naive(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f32;
                for p in 0..k {
                    s += a[i * k + p] * b[p * n + j];
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    fn values(seed: u64, len: usize) -> Vec<f32> {
        let mut r = fabric::rng::SplitMix64::new(seed);
        // Mixed magnitudes and signs make the summation order matter.
        (0..len)
            .map(|_| {
                let v = r.next_u64();
                let mant = (v & 0xffff) as f32 / 65536.0 - 0.5;
                mant * f32::powi(2.0, ((v >> 16) % 40) as i32 - 20)
            })
            .collect()
    }

    #[test]
    fn tiled_gemm_is_bit_exact_with_the_plain_loops() {
        for (m, n, k) in [(1, 1, 1), (3, 5, 7), (17, 300, 65), (64, 64, 200)] {
            let a = values(1, m * k);
            let b = values(2, k * n);
            let mut c = vec![f32::NAN; m * n];
            gemm(&a, &b, &mut c, m, n, k);
            let want = gemm_naive(&a, &b, m, n, k);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&c), bits(&want), "{m}x{n}x{k}");
        }
        // The order matters for these inputs: reversed sums differ somewhere.
        let a = values(1, 64 * 200);
        let b = values(2, 200 * 64);
        let differs = (0..64).any(|j| {
            let rev: f32 = (0..200).rev().fold(0.0, |s, p| s + a[p] * b[p * 64 + j]);
            let fwd: f32 = (0..200).fold(0.0, |s, p| s + a[p] * b[p * 64 + j]);
            rev.to_bits() != fwd.to_bits()
        });
        assert!(differs, "inputs too tame to test the order");
    }

    #[test]
    fn saxpy_sum_and_crc_match_their_definitions() {
        let x = values(3, 1000);
        let mut y = values(4, 1000);
        let y0 = y.clone();
        saxpy(1.5, &x, &mut y);
        for i in 0..1000 {
            let p = 1.5f32 * x[i];
            assert_eq!(y[i].to_bits(), (p + y0[i]).to_bits());
        }
        let whole = sum_f32(0.0, &x);
        let split = sum_f32(sum_f32(0.0, &x[..300]), &x[300..]);
        assert_eq!(whole.to_bits(), split.to_bits());
        // The check value of CRC-32C.
        assert_eq!(CRC32C.checksum(b"123456789"), 0xe306_9283);
        assert_eq!(f32s(&f32_bytes(&x)), x);
    }
}
