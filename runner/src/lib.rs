//! `cxlvmm test`: a kernel regression runner. A manifest names kernels,
//! CXL topologies and guest test cases; every case runs on every kernel and
//! topology it selects, each in a fresh `cxlvmm run`, and comes back with a
//! status, KTAP sub-results and the kernel splats found on its console.

pub mod manifest;
pub mod ktap;
pub mod logline;
pub mod matrix;
pub mod size;
