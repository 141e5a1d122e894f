//! `spec.identity` and `spec.login` → trusted issuers and token sources.
//! (Skeleton: the full validation lands with the JWT work.)

use super::error::Diagnostics;
use super::secrets::SecretIndex;
use crate::snapshot::{Identity, Login};
use crate::v1alpha1::{IdentitySpec, LoginSpec};

/// Default session cookie (what Cloudflare Access sets).
pub const DEFAULT_COOKIE_NAME: &str = "CF_Authorization";
/// Default JWT header, lower-case.
pub const DEFAULT_HEADER_NAME: &str = "cf-access-jwt-assertion";

/// Compiles `identity`; problems are reported on `d` under `spec.identity.*`.
pub fn compile_identity(spec: Option<&IdentitySpec>, _d: &mut Diagnostics) -> Identity {
    Identity {
        cookie_name: spec.and_then(|s| s.cookie_name.clone()).unwrap_or_else(|| DEFAULT_COOKIE_NAME.into()),
        header_name: spec
            .and_then(|s| s.header_name.as_deref())
            .map(str::to_ascii_lowercase)
            .unwrap_or_else(|| DEFAULT_HEADER_NAME.into()),
        issuers: Vec::new(),
    }
}

/// Compiles `login`, reading its Secrets from `namespace`.
pub fn compile_login(
    _spec: Option<&LoginSpec>,
    _namespace: &str,
    _secrets: &SecretIndex<'_>,
    _d: &mut Diagnostics,
) -> Option<Login> {
    None
}
