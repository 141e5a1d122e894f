//! The `access.portcullis.dev/v1alpha1` API: the resources users `kubectl apply`.
//!
//! Field names are the contract in `shared/design/api.md`; they mirror Cloudflare Access settings.
//! These types only describe; `crate::compile` validates and turns them into a `Snapshot`.

mod application;
mod common;
mod service_token;

pub use application::*;
pub use common::*;
pub use service_token::*;

/// API group of both kinds.
pub const GROUP: &str = "access.portcullis.dev";
/// API version of both kinds.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "access.portcullis.dev/v1alpha1";
/// Annotation whose change asks the operator to rotate a service token's secret.
pub const ROTATE_ANNOTATION: &str = "access.portcullis.dev/rotate";
