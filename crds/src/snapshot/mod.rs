//! The `Snapshot`: the compiled, validated configuration a sidecar runs on.
//!
//! It is the wire type of a config push and the output of `compile()`. Everything in it has
//! been validated and normalised, so a sidecar only renders it (header values, lookup tables);
//! it never has to interpret user input again. Service-token secrets appear only as SHA-256
//! digests, except the credentials a forward route must send, which are [`SecretString`]s.

mod cors;
mod identity;
mod policy;
mod routing;

pub use cors::*;
pub use identity::*;
pub use policy::*;
pub use routing::*;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::v1alpha1::{EscapedSlashes, Mode, UnauthenticatedResponse};

/// Everything one sidecar enforces.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Hex SHA-256 of the canonical JSON of `applications`: equal configs have equal versions.
    pub version: String,
    /// Applications, sorted by namespace and name.
    pub applications: Vec<Application>,
}

impl Snapshot {
    /// Builds a snapshot, sorting the applications and stamping the content digest.
    pub fn new(mut applications: Vec<Application>) -> Self {
        applications.sort_by(|a, b| a.id.cmp(&b.id));
        let version = digest_of(&applications);
        Self { version, applications }
    }

    /// A snapshot with no application: every request gets 404.
    pub fn empty() -> Self {
        Self::new(Vec::new())
    }
}

fn digest_of(applications: &[Application]) -> String {
    // Serialising plain data structs cannot fail (no maps with non-string keys, no custom
    // serialisers that error); an empty vector is the safe fallback for the digest input.
    let bytes = serde_json::to_vec(applications).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// `namespace/name` of an AccessApplication or AccessServiceToken.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One compiled AccessApplication.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Application {
    pub id: ResourceId,
    /// Where the application is served; never empty.
    pub domains: Vec<DomainPattern>,
    /// Lifetime of sessions the sidecar mints, in seconds.
    pub session_duration_secs: u64,
    pub identity: Identity,
    pub login: Option<Login>,
    /// Policies in evaluation order: Bypass and ServiceAuth first, then Allow and Block,
    /// each group in the order written.
    pub policies: Vec<Policy>,
    /// Service tokens the policies can admit.
    pub service_tokens: Vec<ServiceToken>,
    pub cors: Cors,
    /// Forward routes, longest prefix first.
    pub forward_routes: Vec<ForwardRoute>,
    pub unauthenticated_response: UnauthenticatedResponse,
    pub mode: Mode,
    /// `spec.paths.escapedSlashes`.
    #[serde(default)]
    pub escaped_slashes: EscapedSlashes,
}

/// A secret value that never shows in `Debug` output, logs or errors.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: only for putting it on the wire where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_string_debug_redacts() {
        let s = SecretString::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn version_is_content_digest_independent_of_order() {
        assert_eq!(Snapshot::empty().version, Snapshot::new(vec![]).version);
        assert_eq!(Snapshot::empty().version.len(), 64);
    }
}
