//! CORS decisions: classify a request, answer or refuse a preflight, and set the CORS headers of
//! every other response.
//!
//! Owns: the Fetch-exact reading of CORS requests (Fetch §3.2 "CORS protocol") and api.md's
//! decided behaviour — an answered preflight is `200` with these headers, a refused one `403`
//! with no `Access-Control-Allow-*` header. Must not: use hyper, tokio, a clock or the
//! environment; build response bodies or statuses (http/respond.rs does); allocate per request
//! anything that can be prepared when the config is loaded ([`CorsConfig`]).

mod headers;
mod origin;

#[cfg(test)]
mod tests;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use portcullis_crds::snapshot::{AllowedOrigins, Cors, CorsPolicy};

use self::headers::{list_elements, AllowHeaders, AllowMethods};
use self::origin::{AllowOrigin, RequestOrigin};
use super::observe::{Observer, Quiet};

pub use self::headers::PREFLIGHT_VARY;

/// Private Network Access (WICG draft, §3.2): a preflight for a request to a more private
/// address space carries `Access-Control-Request-Private-Network: true`.
pub const ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");

/// …and is allowed only by `Access-Control-Allow-Private-Network: true`.
pub const ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

const TRUE: HeaderValue = HeaderValue::from_static("true");

/// Stands for a request's value in the rendered answer until the request's own replaces it.
const PLACEHOLDER: HeaderValue = HeaderValue::from_static("");

/// Every answer the sidecar gives carries the request's id (README "Logs"); the glue stamps it
/// last (`http::pipeline::stamp`). Defined here because the rendered preflight answer holds its
/// slot: a cloned `HeaderMap` has no spare room, so a new entry would reallocate it on every
/// preflight (~650 instructions), while replacing an existing one does not.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What kind of request this is, for CORS.
#[derive(Debug)]
pub enum Classified<'a> {
    /// No `Origin`, or several `Origin` lines on a non-preflight (no browser sends that; such a
    /// request gets no CORS grant, only `Vary`).
    NotCors,
    /// `OPTIONS` with `Origin` and `Access-Control-Request-Method` (Fetch §3.2.2).
    Preflight(Preflight<'a>),
    /// Any other request with an `Origin`, `OPTIONS` included: authenticated like any request.
    Actual { origin: &'a HeaderValue },
}

/// A CORS preflight request, borrowed from the request head.
#[derive(Clone, Copy, Debug)]
pub struct Preflight<'a> {
    origin: &'a HeaderValue,
    request_method: &'a HeaderValue,
    /// Several `Origin` lines; several `Access-Control-Request-Method` lines (both seen while
    /// classifying, so the check does not look them up again).
    several_origins: bool,
    several_methods: bool,
    /// Whether `Access-Control-Request-Headers` and `-Private-Network` are present at all: the
    /// check reads their values only then (the second is a custom name, costly to hash).
    asks_headers: bool,
    asks_private_network: bool,
    headers: &'a HeaderMap,
}

/// Classifies a request (Fetch §3.2.2: a CORS-preflight request is an `OPTIONS` request with
/// `Origin` and `Access-Control-Request-Method`). An `OPTIONS` without both is not a preflight:
/// treating every `OPTIONS` as one (as tower-http does) would let it skip authentication.
pub fn classify<'a>(method: &Method, headers: &'a HeaderMap) -> Classified<'a> {
    if method != Method::OPTIONS {
        let mut origins = headers.get_all(ORIGIN).iter();
        return match (origins.next(), origins.next()) {
            (Some(origin), None) => Classified::Actual { origin },
            // Several `Origin` lines: no browser sends that; no CORS grant.
            (None, _) | (Some(_), Some(_)) => Classified::NotCors,
        };
    }
    // One pass over the lines for the four names a preflight reads, instead of four hashed
    // lookups (a preflight's head is a handful of lines).
    let (mut origin, mut several_origins, mut request_method, mut several_methods) = (None, false, None, false);
    let (mut asks_headers, mut asks_private_network) = (false, false);
    for (name, value) in headers {
        if name == ORIGIN {
            several_origins |= origin.is_some();
            origin.get_or_insert(value);
        } else if name == ACCESS_CONTROL_REQUEST_METHOD {
            several_methods |= request_method.is_some();
            request_method.get_or_insert(value);
        } else if name == ACCESS_CONTROL_REQUEST_HEADERS {
            asks_headers = true;
        } else if name == ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK {
            asks_private_network = true;
        }
    }
    match (origin, request_method) {
        (None, _) => Classified::NotCors,
        // Several `Origin` lines: still a preflight (so it is never authenticated-and-forwarded
        // by mistake); `CorsConfig::preflight` refuses it as malformed.
        (Some(origin), Some(request_method)) => Classified::Preflight(Preflight {
            origin,
            request_method,
            several_origins,
            several_methods,
            asks_headers,
            asks_private_network,
            headers,
        }),
        (Some(_), None) if several_origins => Classified::NotCors,
        (Some(origin), None) => Classified::Actual { origin },
    }
}

// === impl Preflight ===

impl<'a> Preflight<'a> {
    /// The (first) `Origin` value.
    pub fn origin(&self) -> &'a HeaderValue {
        self.origin
    }

    /// The (first) `Access-Control-Request-Method` value.
    pub fn request_method(&self) -> &'a HeaderValue {
        self.request_method
    }
}

/// What to do with a preflight.
#[derive(Debug, PartialEq, Eq)]
pub enum PreflightOutcome {
    /// Answer `200` with an empty body and these headers; never forwarded.
    Answer(HeaderMap),
    /// `bypassOptionsToOrigin`: forward to the app unauthenticated; it owns CORS.
    Forward,
    /// Answer `403` with no `Access-Control-Allow-*` header; never forwarded.
    Refuse(PreflightRefusal),
}

/// Why a preflight was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PreflightRefusal {
    /// The application has no `cors` section.
    CorsNotConfigured,
    OriginNotAllowed,
    MethodNotAllowed,
    HeaderNotAllowed,
    /// `Access-Control-Request-Private-Network: true` without `allowPrivateNetwork`.
    PrivateNetworkNotAllowed,
    /// Several `Origin` or `Access-Control-Request-Method` lines, or a value no browser sends.
    Malformed,
}

// === impl PreflightRefusal ===

impl PreflightRefusal {
    /// Label for metrics and the JSON error body.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CorsNotConfigured => "cors_not_configured",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::HeaderNotAllowed => "header_not_allowed",
            Self::PrivateNetworkNotAllowed => "private_network_not_allowed",
            Self::Malformed => "malformed_preflight",
        }
    }
}

impl std::fmt::Display for PreflightRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// A compiled CORS section that the sidecar cannot use (a tampered or mismatched snapshot).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CorsConfigError {
    #[error("cors origin {0:?} is not a normalised scheme://host[:port]")]
    Origin(String),
    #[error("cors {field} entry {value:?} is not an HTTP token")]
    Token { field: &'static str, value: String },
    #[error("cors allows every origin together with credentials, which browsers refuse")]
    CredentialsWithAnyOrigin,
}

// === impl CorsConfigError ===

impl CorsConfigError {
    /// Label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Origin(_) => "invalid_cors_origin",
            Self::Token { .. } => "invalid_cors_token",
            Self::CredentialsWithAnyOrigin => "cors_credentials_with_any_origin",
        }
    }
}

/// The live form of an application's CORS settings, built once per config: origin lookups
/// prepared and every constant header value rendered.
#[derive(Debug)]
pub struct CorsConfig {
    owner: Owner,
}

#[derive(Debug)]
enum Owner {
    Disabled,
    BypassToOrigin,
    Owned(Box<Policy>),
}

#[derive(Debug)]
struct Policy {
    origins: AllowOrigin,
    methods: AllowMethods,
    headers: AllowHeaders,
    credentials: bool,
    max_age: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    private_network: bool,
    /// The answer to an allowed preflight, rendered once per config: every header whose value
    /// does not depend on the request, and a placeholder for the ones echoed on every answer
    /// (the origin for a list, the method for `allowAllMethods`), so answering is a clone of
    /// this map and one or two replaced values — no header name hashed for the constant ones.
    answer: HeaderMap,
}

/// Why a preflight failed, borrowing the offending bytes for explanations; never allocates.
#[derive(Clone, Copy, Debug)]
enum Failure<'a> {
    SeveralOrigins,
    BadOrigin(&'a [u8]),
    OriginNotAllowed(&'a [u8]),
    SeveralMethods,
    BadMethod(&'a [u8]),
    MethodNotAllowed(&'a [u8]),
    BadHeaderName(&'a [u8]),
    HeaderNotAllowed(&'a [u8]),
    PrivateNetwork,
}

/// What an allowed preflight needs for its answer.
struct Grant {
    asked_headers: bool,
    private_network: bool,
}

// === impl CorsConfig ===

impl TryFrom<&Cors> for CorsConfig {
    type Error = CorsConfigError;

    /// Re-validates what `compile` produced (fail closed on a snapshot it would not have made)
    /// and renders the header values.
    fn try_from(cors: &Cors) -> Result<Self, Self::Error> {
        let owner = match cors {
            Cors::Disabled => Owner::Disabled,
            Cors::BypassToOrigin => Owner::BypassToOrigin,
            Cors::Owned(p) => Owner::Owned(Box::new(Policy::new(p)?)),
        };
        Ok(Self { owner })
    }
}

impl CorsConfig {
    /// No `cors` section: preflights are refused.
    pub fn disabled() -> Self {
        Self { owner: Owner::Disabled }
    }

    /// Who owns CORS: `disabled` (no `cors` section), `app` (`bypassOptionsToOrigin`) or
    /// `sidecar`; for explanations.
    pub fn owner(&self) -> &'static str {
        match self.owner {
            Owner::Disabled => "disabled",
            Owner::BypassToOrigin => "app",
            Owner::Owned(_) => "sidecar",
        }
    }

    /// Whether the sidecar answers preflights and sets CORS headers itself.
    pub fn owns_cors(&self) -> bool {
        matches!(self.owner, Owner::Owned(_))
    }

    /// Decides a preflight. api.md: no `cors` → refused; `bypassOptionsToOrigin` → forwarded;
    /// otherwise answered by the sidecar, or refused, and never forwarded.
    pub fn preflight(&self, p: &Preflight<'_>) -> PreflightOutcome {
        self.preflight_with(p, &mut Quiet)
    }

    /// [`CorsConfig::preflight`], telling `obs` why a refused preflight is refused: the origin,
    /// method or header that failed and what is allowed.
    pub fn preflight_with<O: Observer>(&self, p: &Preflight<'_>, obs: &mut O) -> PreflightOutcome {
        let policy = match &self.owner {
            Owner::Disabled => {
                obs.preflight_refused(
                    &"the application has no cors section; add one, or set cors.bypassOptionsToOrigin to let the \
                      app answer",
                );
                return PreflightOutcome::Refuse(PreflightRefusal::CorsNotConfigured);
            }
            Owner::BypassToOrigin => return PreflightOutcome::Forward,
            Owner::Owned(policy) => policy,
        };
        match policy.check(p) {
            Ok(grant) => PreflightOutcome::Answer(policy.answer(p, &grant)),
            Err(f) => {
                obs.preflight_refused(&Explained { policy, failure: &f });
                PreflightOutcome::Refuse(f.refusal())
            }
        }
    }

    /// Sets the CORS headers of every response that is not a preflight's: the app's, or one the
    /// sidecar makes itself (401, 403, 502…), so a page can read it.
    ///
    /// When the sidecar owns CORS: removes every `Access-Control-*` header the app set, then, for
    /// an allowed origin, sets `Access-Control-Allow-Origin` (the origin, or `*` for
    /// `allowAllOrigins`), `-Allow-Credentials` and `-Expose-Headers` as configured; and always
    /// merges `Vary: Origin` once, even without `Origin` (api.md: a cache must not serve the
    /// no-CORS answer to a CORS request; Fetch §3.2.3). Idempotent. Disabled and
    /// `bypassOptionsToOrigin`: leaves the headers untouched (the app owns them).
    ///
    /// Do not call it on a refused preflight's 403: that carries no `Access-Control-Allow-*`.
    pub fn apply_to_response(&self, request_origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        let Owner::Owned(policy) = &self.owner else {
            return;
        };
        strip_access_control(response);
        if let Some(origin) = request_origin {
            if origin::parse(origin.as_bytes()).is_some_and(|o| policy.origins.allows(&o)) {
                response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, policy.origins.to_header(origin));
                if policy.credentials {
                    response.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
                }
                if let Some(expose) = &policy.expose {
                    response.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
                }
            }
        }
        headers::merge_vary_origin(response);
    }
}

/// Removes every `access-control-*` response header. One scan of the names present first: an
/// app's answer rarely has any, and the scan is cheaper than looking each known name up.
fn strip_access_control(response: &mut HeaderMap) {
    let is_cors = |n: &HeaderName| n.as_str().starts_with("access-control-");
    if !response.keys().any(is_cors) {
        return;
    }
    let present: Vec<HeaderName> = response.keys().filter(|n| is_cors(n)).cloned().collect();
    for name in present {
        response.remove(name);
    }
}

/// A refused preflight's explanation, formatted only when an observer keeps it.
struct Explained<'p, 'a> {
    policy: &'p Policy,
    failure: &'p Failure<'a>,
}

impl std::fmt::Display for Explained<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.policy.explain(self.failure))
    }
}

// === impl Policy ===

impl Policy {
    fn new(p: &CorsPolicy) -> Result<Self, CorsConfigError> {
        // Fetch §3.2.5: `*` fails the CORS check with credentials; compile refuses this too.
        if p.allow_credentials && matches!(p.origins, AllowedOrigins::Any) {
            return Err(CorsConfigError::CredentialsWithAnyOrigin);
        }
        let mut policy = Self {
            origins: AllowOrigin::new(&p.origins)?,
            methods: AllowMethods::new(&p.methods)?,
            headers: AllowHeaders::new(&p.headers)?,
            credentials: p.allow_credentials,
            max_age: headers::max_age(p.max_age_secs),
            expose: headers::expose_headers(&p.exposed_headers)?,
            private_network: p.allow_private_network,
            answer: HeaderMap::new(),
        };
        policy.answer = policy.render_answer();
        Ok(policy)
    }

    /// The constant part of an answered preflight (api.md; Fetch §3.2.3). `*` is only ever
    /// answered for `allowAllOrigins`, which `Policy::new` guarantees has no credentials. The
    /// echoed values are placeholders here, replaced by [`Policy::answer`].
    fn render_answer(&self) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(8);
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.origins.to_header(&PLACEHOLDER));
        if self.credentials {
            h.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, self.methods.to_header(&PLACEHOLDER));
        if let AllowHeaders::List { rendered: Some(v), .. } = &self.headers {
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        if let Some(v) = &self.max_age {
            h.insert(ACCESS_CONTROL_MAX_AGE, v.clone());
        }
        h.insert(VARY, PREFLIGHT_VARY);
        // The request id's slot (see [`REQUEST_ID`]), filled by the glue for every answer.
        h.insert(REQUEST_ID, PLACEHOLDER);
        h
    }

    /// Fetch §4.8 (CORS-preflight fetch) from the server's side: origin, then method, then each
    /// requested header, then Private Network Access.
    fn check<'a>(&self, p: &Preflight<'a>) -> Result<Grant, Failure<'a>> {
        if p.several_origins {
            return Err(Failure::SeveralOrigins);
        }
        let raw = p.origin.as_bytes();
        let origin: RequestOrigin<'_> = origin::parse(raw).ok_or(Failure::BadOrigin(raw))?;
        if !self.origins.allows(&origin) {
            return Err(Failure::OriginNotAllowed(raw));
        }

        if p.several_methods {
            return Err(Failure::SeveralMethods);
        }
        // RFC 9110 §9.1: `method = token`; browsers send it Fetch-normalised (§2.2.1).
        let method = p.request_method.as_bytes();
        if !headers::is_token(method) {
            return Err(Failure::BadMethod(method));
        }
        if !self.methods.allows(method) {
            return Err(Failure::MethodNotAllowed(method));
        }

        // Fetch §4.8 step 7.7: every requested name must be allowed. The value is a list
        // (RFC 9110 §5.6.1) that may span lines; names compare case-insensitively.
        let mut asked_headers = false;
        let requested = p.asks_headers.then(|| p.headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS));
        for name in requested.into_iter().flat_map(list_elements) {
            if !headers::is_token(name) {
                return Err(Failure::BadHeaderName(name));
            }
            if !self.headers.allows(name) {
                return Err(Failure::HeaderNotAllowed(name));
            }
            asked_headers = true;
        }

        let private_network = p.asks_private_network
            && p.headers.get_all(ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK).iter().any(|v| v == TRUE);
        if private_network && !self.private_network {
            return Err(Failure::PrivateNetwork);
        }
        Ok(Grant { asked_headers, private_network })
    }

    /// The headers of an answered preflight: the rendered answer with the request's own values
    /// where they are echoed (the origin for a list, the method for `allowAllMethods`, the
    /// requested headers for `allowAllHeaders`) and Private Network Access when asked.
    fn answer(&self, p: &Preflight<'_>, grant: &Grant) -> HeaderMap {
        let mut h = self.answer.clone();
        if let AllowOrigin::List(_) = self.origins {
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, p.origin.clone());
        }
        if let AllowMethods::Any = self.methods {
            h.insert(ACCESS_CONTROL_ALLOW_METHODS, p.request_method.clone());
        }
        if let AllowHeaders::Any = self.headers {
            if let Some(v) =
                self.headers.to_header(p.headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS), grant.asked_headers)
            {
                h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v);
            }
        }
        if grant.private_network {
            h.insert(ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK, TRUE);
        }
        h
    }

    fn explain(&self, f: &Failure<'_>) -> String {
        let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match f {
            Failure::SeveralOrigins => "the request has several Origin headers".to_owned(),
            Failure::BadOrigin(o) => format!("Origin {:?} is not a scheme://host[:port] a browser sends", show(o)),
            Failure::OriginNotAllowed(o) => {
                format!("origin {:?} is not allowed; allowed: {}", show(o), self.origins.describe())
            }
            Failure::SeveralMethods => "the request has several Access-Control-Request-Method headers".to_owned(),
            Failure::BadMethod(m) => format!("Access-Control-Request-Method {:?} is not a method name", show(m)),
            Failure::MethodNotAllowed(m) => {
                format!("method {:?} is not allowed; allowed: {}", show(m), self.methods.describe())
            }
            Failure::BadHeaderName(h) => {
                format!("Access-Control-Request-Headers element {:?} is not a header name", show(h))
            }
            Failure::HeaderNotAllowed(h) => {
                format!("header {:?} is not allowed; allowed: {}", show(h), self.headers.describe())
            }
            Failure::PrivateNetwork => {
                "the page asks for private network access (Access-Control-Request-Private-Network: true) \
                 and cors.allowPrivateNetwork is not set"
                    .to_owned()
            }
        }
    }
}

// === impl Failure ===

impl Failure<'_> {
    fn refusal(&self) -> PreflightRefusal {
        match self {
            Self::OriginNotAllowed(_) => PreflightRefusal::OriginNotAllowed,
            Self::MethodNotAllowed(_) => PreflightRefusal::MethodNotAllowed,
            Self::HeaderNotAllowed(_) => PreflightRefusal::HeaderNotAllowed,
            Self::PrivateNetwork => PreflightRefusal::PrivateNetworkNotAllowed,
            Self::SeveralOrigins
            | Self::BadOrigin(_)
            | Self::SeveralMethods
            | Self::BadMethod(_)
            | Self::BadHeaderName(_) => PreflightRefusal::Malformed,
        }
    }
}
