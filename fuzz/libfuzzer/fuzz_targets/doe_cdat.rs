#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cxlvmm_fuzz::targets::doe::fuzz_doe_cdat(data));
