//! Compiled routing: the domains an application answers and its forward routes.

use serde::{Deserialize, Serialize};

use super::SecretString;

/// One entry of `domains`, normalised.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DomainPattern {
    pub host: HostPattern,
    /// Normalised path prefix without a trailing slash (`/v2`); `None` for the whole host.
    pub path_prefix: Option<String>,
}

// === impl DomainPattern ===

impl DomainPattern {
    /// What two applications must not share: the same host pattern and path prefix would make
    /// routing depend on their order (compile refuses it within one set of resources; the
    /// operator's external authorizer gives it to the older application).
    pub fn claim_key(&self) -> String {
        format!("{:?}{}", self.host, self.path_prefix.as_deref().unwrap_or(""))
    }
}

/// The host part of a domain.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Lower-case host without port or trailing dot.
    Exact(String),
    /// `*.suffix`: subdomains of `suffix` at any depth, never `suffix` itself.
    Wildcard(String),
}

/// A path of this application proxied to another upstream with a service token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ForwardRoute {
    /// Normalised prefix, as written (`/api/`); matched on segment boundaries.
    pub path_prefix: String,
    pub upstream: Upstream,
    pub strip_prefix: bool,
    pub credentials: RouteCredentials,
    pub strip_set_cookie: bool,
}

/// A parsed forward-route upstream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`, sent as `Host`.
    pub authority: String,
    /// Path prepended to the forwarded path, without trailing slash (`""` for none).
    pub base_path: String,
}

/// The service token a forward route sends, if any.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum RouteCredentials {
    /// No `serviceTokenRef`: the request is forwarded without token headers.
    None,
    Token(ForwardCredentials),
    /// The referenced token is missing or unusable: the route answers 503 rather than
    /// calling the upstream without the credentials it was configured with.
    Missing {
        token: String,
    },
}

/// The service-token headers a forward route sends.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ForwardCredentials {
    /// Name of the AccessServiceToken.
    pub token: String,
    pub client_id: String,
    pub client_secret: SecretString,
}
