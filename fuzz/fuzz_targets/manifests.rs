//! libFuzzer entry point of [`portcullis_fuzz::manifests`]: `bash fuzz/run.sh manifests` (stable toolchain).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz::manifests::run(data));
