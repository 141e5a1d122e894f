//! Authentication: who is calling. A request carries a service token (`CF-Access-Client-Id`
//! and `-Secret`), a JWT (header, bearer or cookie), or nothing.

pub mod jwt;
pub mod service_token;

use std::sync::Arc;

pub use jwt::JwtFailure;
pub use service_token::ServiceTokenFailure;

/// A verified JWT's identity.
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    /// The `iss` claim.
    pub issuer: String,
    /// The `email` claim, as sent; policies compare it case-insensitively.
    pub email: Option<String>,
    /// All claims, for `group` and `claim` rules and for `/.portcullis/identity`.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The `exp` claim (Unix seconds).
    pub expires_at: i64,
    /// The identity headers the app receives, rendered once when the token is verified (the
    /// verified-token cache then serves them without a copy per request).
    pub headers: IdentityHeaderValues,
}

/// `Cf-Access-Jwt-Assertion` and `Cf-Access-Authenticated-User-Email` values of a user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityHeaderValues {
    /// The verified token itself.
    pub assertion: Option<http::HeaderValue>,
    /// The `email` claim, when it is a valid header value (never a mangled one).
    pub email: Option<http::HeaderValue>,
}

/// A service token that presented a valid secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Name of the AccessServiceToken.
    pub name: String,
    pub client_id: String,
}

/// A caller whose credentials were verified.
#[derive(Clone, Debug, PartialEq)]
pub enum Principal {
    User(Arc<User>),
    Service(Service),
}

/// Why credentials were refused (always a 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthnFailure {
    Jwt(JwtFailure),
    ServiceToken(ServiceTokenFailure),
}

impl AuthnFailure {
    /// Stable label for metrics, logs and the JSON body.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthnFailure::Jwt(f) => f.reason(),
            AuthnFailure::ServiceToken(f) => f.reason(),
        }
    }
}

/// The outcome of authentication, which policy evaluation consumes.
#[derive(Clone, Debug, PartialEq)]
pub enum Authn {
    /// No credentials at all.
    Anonymous,
    Authenticated(Principal),
    /// Credentials were present but refused.
    Failed(AuthnFailure),
}
