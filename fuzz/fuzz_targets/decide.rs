//! libFuzzer entry point of [`portcullis_fuzz::decide`]: `bash fuzz/run.sh decide` (stable toolchain).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz::decide::run(data));
