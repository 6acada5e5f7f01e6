#![no_main]
// placeholder until the vpc_input target lands
libfuzzer_sys::fuzz_target!(|_data: &[u8]| {});
