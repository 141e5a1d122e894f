//! The harness lives in the `portcullis-tests` library (`tests/src/`); this shim keeps the test
//! files that say `mod common; use common::*;` compiling.

#![allow(unused_imports)]

pub use portcullis_tests::*;
pub use portcullis_tests::{cluster, signin};
