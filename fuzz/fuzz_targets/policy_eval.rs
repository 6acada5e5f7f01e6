#![no_main]
// placeholder until the policy_eval target lands
libfuzzer_sys::fuzz_target!(|_data: &[u8]| {});
