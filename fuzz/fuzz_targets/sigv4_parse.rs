#![no_main]
// placeholder until the sigv4_parse target lands
libfuzzer_sys::fuzz_target!(|_data: &[u8]| {});
