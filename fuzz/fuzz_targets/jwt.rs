//! libFuzzer entry point of [`portcullis_fuzz::jwt`]: `bash fuzz/run.sh jwt` (stable toolchain).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz::jwt::run(data));
