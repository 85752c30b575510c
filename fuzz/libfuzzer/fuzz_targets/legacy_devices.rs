#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cxlvmm_fuzz::targets::legacy::fuzz_legacy_devices(data));
