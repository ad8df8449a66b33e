#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dlockd_fuzz::request_to_response(data));
