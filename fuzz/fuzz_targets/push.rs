//! libFuzzer entry point of [`portcullis_fuzz::push`]: `bash fuzz/run.sh push` (stable toolchain).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz::push::run(data));
