#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| alchemix_edge::fuzzing::body(data));
