//! libFuzzer entry point of [`portcullis_fuzz::headers`]: `bash fuzz/run.sh headers` (stable toolchain).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz::headers::run(data));
