//! The end-to-end test harness, a library the test binaries in `tests/tests/` share: builders
//! for a recording upstream app, a JWKS server, the sidecar (a process, or in-process on
//! pre-bound listeners), test tokens and manifests, a client, the check of an `explain`
//! prediction against the live answer, the sign-in provider, and a real cluster. Every wait is a
//! bounded poll; nothing sleeps and hopes.
//!
//! Each module's items are re-exported here, so a test writes `use portcullis_tests::*;` (or,
//! through the shim `tests/tests/common/mod.rs`, `mod common; use common::*;`).

pub mod client;
pub mod cluster;
pub mod explained;
pub mod jwks;
pub mod manifests;
pub mod sidecar;
pub mod signin;
pub mod support;
pub mod tokens;
pub mod upstream;

pub use client::*;
pub use explained::*;
pub use jwks::*;
pub use manifests::*;
pub use sidecar::*;
pub use support::*;
pub use tokens::*;
pub use upstream::*;
