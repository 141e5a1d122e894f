//! Compiled CORS settings: origins parsed, methods and headers normalised.
//!
//! Plain serde data on the wire to the sidecar. Must not hold logic beyond formatting: validation
//! lives in `compile::cors`, decisions in the sidecar's `decide::cors`.

use serde::{Deserialize, Serialize};

/// Who owns CORS for an application.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Cors {
    /// No `cors` section: preflights are refused (403); no CORS headers are added.
    Disabled,
    /// `bypassOptionsToOrigin`: preflights go to the app unauthenticated; the app owns CORS.
    BypassToOrigin,
    /// The sidecar answers preflights and sets CORS headers on every response.
    Owned(CorsPolicy),
}

/// The sidecar-owned CORS configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CorsPolicy {
    pub origins: AllowedOrigins,
    /// Method names, Fetch-normalised (`get` → `GET`, `patch` kept as written), or any.
    pub methods: AllowList,
    /// Lower-case header names, or any.
    pub headers: AllowList,
    pub allow_credentials: bool,
    pub max_age_secs: Option<u32>,
    /// Header names as configured (validated tokens).
    pub exposed_headers: Vec<String>,
    pub allow_private_network: bool,
}

/// Allowed origins.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum AllowedOrigins {
    /// `allowAllOrigins`: answered with `*` (never with credentials).
    Any,
    List(Vec<OriginPattern>),
}

/// One allowed origin, normalised: lower-case scheme and host, default port removed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OriginPattern {
    /// `http`, `https`, or another scheme.
    pub scheme: String,
    pub host: OriginHost,
    /// Explicit non-default port.
    pub port: Option<u16>,
}

/// The host part of an allowed origin.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum OriginHost {
    /// Exactly this host: lower-case, no trailing dot; an IPv6 literal in brackets (`[::1]`).
    Exact(String),
    /// `*.suffix`: any subdomain of `suffix` at any depth, never `suffix` itself.
    SubdomainsOf(String),
}

/// A list of tokens, or everything (echo what was asked).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum AllowList {
    Any,
    List(Vec<String>),
}

// === impl OriginPattern ===

impl std::fmt::Display for OriginPattern {
    /// The normalised form, `https://*.example.com:8443`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://", self.scheme)?;
        match &self.host {
            OriginHost::Exact(h) => f.write_str(h)?,
            OriginHost::SubdomainsOf(s) => write!(f, "*.{s}")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}
