//! `spec.cors` → who owns CORS, with origins parsed and methods/headers normalised.
//! (Skeleton: the full validation lands with the CORS work.)

use super::error::Diagnostics;
use crate::snapshot::Cors;
use crate::v1alpha1::CorsSpec;

/// Compiles the `cors` section; problems are reported on `d` under `spec.cors.*`.
pub fn compile_cors(spec: Option<&CorsSpec>, _d: &mut Diagnostics) -> Cors {
    match spec {
        None => Cors::Disabled,
        Some(s) if s.bypass_options_to_origin => Cors::BypassToOrigin,
        Some(_) => Cors::Disabled,
    }
}
