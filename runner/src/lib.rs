//! `cxlvmm test`: a kernel regression runner. A manifest names kernels,
//! CXL topologies and guest test cases; every case runs on every kernel and
//! topology it selects, each in a fresh `cxlvmm run`, and comes back with a
//! status, KTAP sub-results and the kernel splats found on its console.

pub mod action;
pub mod cli;
pub mod exec;
pub mod ktap;
pub mod logline;
pub mod manifest;
pub mod matrix;
pub mod report;
pub mod run;
pub mod schedule;
pub mod script;
pub mod size;
pub mod splat;
pub mod verdict;
