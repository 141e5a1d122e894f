//! Arbitrary bytes as a request (method, target, header lines) through every pure decision of
//! the request path: `cargo +nightly fuzz run decide` from `sidecar/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    portcullis_sidecar::decide::fuzzing::run(data);
});
