#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cxlvmm_fuzz::targets::virtio_blk::fuzz_virtio_blk(data));
