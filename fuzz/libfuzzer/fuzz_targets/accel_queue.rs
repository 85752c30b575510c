#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cxlvmm_fuzz::targets::accel_queue::fuzz_accel_queue(data));
