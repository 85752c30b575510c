//! Home of the `fabric-bench` (engine throughput, JSON) and `fabric-sweep`
//! (bandwidth–latency curves and per-hop latency, SVG and CSV) binaries, so
//! the pure `fabric` crate carries no benchmark or plotting code.

#![forbid(unsafe_code)]
