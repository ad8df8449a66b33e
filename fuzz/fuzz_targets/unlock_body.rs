#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dlockd_fuzz::unlock_body(data));
