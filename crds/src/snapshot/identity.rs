//! Compiled identity settings: where tokens come from and who may sign them; service tokens.

use serde::{Deserialize, Serialize};

use super::SecretString;
use crate::v1alpha1::SameSite;

/// Token sources and trusted issuers of one application.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Identity {
    /// Session cookie name (`CF_Authorization` by default).
    pub cookie_name: String,
    /// JWT header name, lower-case (`cf-access-jwt-assertion` by default).
    pub header_name: String,
    pub issuers: Vec<Issuer>,
}

/// One trusted issuer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Issuer {
    /// The exact `iss` value.
    pub issuer: String,
    pub jwks: JwksSource,
    /// Accepted audiences; a token must carry at least one. Never empty.
    pub audiences: Vec<String>,
    /// Allowed algorithms; never `none` or HMAC. Never empty.
    pub algorithms: Vec<Algorithm>,
    pub clock_skew_secs: u64,
}

/// Where an issuer's keys come from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum JwksSource {
    /// JWKS JSON given inline (validated to parse as a JWKS with at least one usable key).
    Inline(String),
    /// Fetched from this URL (`https`, or `http` on loopback).
    Uri(String),
}

/// Asymmetric JWS algorithms a sidecar verifies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    /// Every algorithm Portcullis verifies, with its JOSE name.
    pub const ALL: [(&'static str, Algorithm); 9] = [
        ("RS256", Algorithm::RS256),
        ("RS384", Algorithm::RS384),
        ("RS512", Algorithm::RS512),
        ("PS256", Algorithm::PS256),
        ("PS384", Algorithm::PS384),
        ("PS512", Algorithm::PS512),
        ("ES256", Algorithm::ES256),
        ("ES384", Algorithm::ES384),
        ("EdDSA", Algorithm::EdDSA),
    ];

    /// The default allow-list (api.md): RS256, ES256, EdDSA.
    pub const DEFAULT: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

    /// Parses a JOSE algorithm name; `none` and HS* are not algorithms here.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, a)| *a == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// Browser sign-in (implemented by the sign-in feature; carried here so pushes are complete).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Login {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub scopes: Vec<String>,
    pub same_site: SameSite,
    pub http_only: bool,
    pub secure: bool,
    /// PEM private key signing session tokens; `None`: the sidecar generates one.
    pub session_key_pem: Option<SecretString>,
    /// `login.oidc.allowUnverifiedEmail`: sign in an ID token whose `email_verified` is false.
    #[serde(default)]
    pub allow_unverified_email: bool,
    /// `login.authenticationHost`, lower-case, `host` or `host:port`: sign-in goes through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_host: Option<String>,
    /// `login.applicationSessionDuration` in seconds (set with `authentication_host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_session_secs: Option<u64>,
}

/// A service token as a sidecar sees it: the secret only as a digest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ServiceToken {
    /// Name of the AccessServiceToken (same namespace as the application).
    pub name: String,
    pub client_id: String,
    /// Hex SHA-256 of the current client secret.
    pub secret_sha256: String,
    /// Unix seconds after which the token is refused; `None`: it does not expire.
    pub expires_at: Option<i64>,
    /// The secret before the last rotation, still accepted during the grace period.
    pub previous: Option<PreviousSecret>,
}

/// A rotated-out secret still inside its grace period.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PreviousSecret {
    pub secret_sha256: String,
    /// Unix seconds after which the previous secret is refused.
    pub valid_until: i64,
}
