#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dlockd::fuzzing::lock_body(data));
