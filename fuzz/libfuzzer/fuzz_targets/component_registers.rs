#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cxlvmm_fuzz::targets::component::fuzz_component_registers(data));
