//! portcullis-crds: the `access.portcullis.dev/v1alpha1` resource types, the [`Snapshot`] a
//! sidecar runs on, and the pure [`compile`] between them.
//!
//! This crate must not do I/O: it depends on kube's derive macros only (no client, no runtime,
//! no tokio), so the operator, the admission webhook and the sidecar can all share `compile`.

#![forbid(unsafe_code)]

pub mod compile;
pub mod manifests;
pub mod paths;
pub mod push;
pub mod reference;
pub mod snapshot;
pub mod telemetry;
pub mod v1alpha1;

pub use compile::{compile, CompileError, CompileErrors, Compiled, Inputs};
pub use snapshot::Snapshot;
