//! One request's decisions, in the order api.md fixes: route → preflight → authenticate →
//! policies → destination. The request path (`http/pipeline.rs`), `explain` and the fuzz harness
//! all call these functions, so what `explain` reports is what the proxy does.
//!
//! Owns the sequencing and the mapping of each outcome to a [`Refusal`] (status and reason).
//! Must not: do I/O, await, count, log, read a clock (`now` is an argument) or build responses.
//! The one asynchronous step — a JWKS refresh on an unknown `kid` — stays in the caller:
//! [`Authentication::refresh_issuer`] says when it applies and [`verify_jwt`] retries. Each step
//! has a `_with` form taking an [`Observer`]: `explain` watches the same steps decide (the
//! request path passes [`Quiet`], which costs nothing).

use std::borrow::Cow;
use std::net::IpAddr;

use http::header::HeaderValue;
use http::{HeaderMap, Method, Uri, Version};
use ipnet::IpNet;
use portcullis_crds::snapshot::{Application, ForwardRoute, RouteCredentials};
use portcullis_crds::v1alpha1::Mode;

use super::authn::jwt::{self, JwtConfig, JwtFailure, KeySource, TokenSource};
use super::authn::service_token::{self, ServiceTokens, CLIENT_ID_HEADER};
use super::authn::{Authn, AuthnFailure, Principal};
use super::client_ip::client_ip;
use super::cors::{classify, Classified, CorsConfig, Preflight, PreflightOutcome};
use super::observe::{Observer, Quiet};
use super::policy::{evaluate_with, Decision};
use super::refusal::Refusal;
use super::route::{forward_route, request_target, Router, Target, TargetError};

/// The compiled pieces of one application the decisions read; `K` holds its issuers' keys (the
/// live JWKS stores on the request path, fixed key sets in tests).
pub struct AppDecisions<'a, K: KeySource + ?Sized> {
    pub spec: &'a Application,
    pub cors: &'a CorsConfig,
    pub jwt: &'a JwtConfig,
    pub tokens: &'a ServiceTokens,
    pub keys: &'a K,
}

/// A routed request: the application and the normalised target.
#[derive(Debug)]
pub struct Routed<'r> {
    pub app: usize,
    pub target: Target<'r>,
}

/// Why a request has no application.
#[derive(Debug)]
pub enum RouteMiss<'r> {
    /// Malformed `Host` or path: 400.
    Invalid(TargetError),
    /// No domain covers this host and path: 404, never forwarded.
    UnknownHost(Target<'r>),
}

// === impl RouteMiss ===

impl RouteMiss<'_> {
    pub fn refusal(&self) -> Refusal {
        match self {
            RouteMiss::Invalid(e) => Refusal::BadRequest(e.reason()),
            RouteMiss::UnknownHost(_) => Refusal::UnknownHost,
        }
    }
}

/// Step 1: the canonical request, and which application it is for (api.md "Domains", "What the
/// app receives is what was decided").
pub fn route<'r>(
    router: &Router,
    version: Version,
    uri: &'r Uri,
    headers: &'r HeaderMap,
) -> Result<Routed<'r>, RouteMiss<'r>> {
    let target = request_target(version, uri, headers).map_err(RouteMiss::Invalid)?;
    match router.route_target(&target).map_err(RouteMiss::Invalid)? {
        Some(app) => Ok(Routed { app, target }),
        None => Err(RouteMiss::UnknownHost(target)),
    }
}

/// What happens before authentication.
#[derive(Debug)]
pub enum Front<'r> {
    /// `/.portcullis/…` without a handler: 404 (with CORS headers), never forwarded.
    Reserved,
    /// A CORS preflight, decided without credentials (it never carries any).
    Preflight(Preflight<'r>, PreflightOutcome),
    /// Any other request; `origin` for an actual CORS request.
    Request { origin: Option<&'r HeaderValue> },
}

/// Step 2: reserved paths and preflights (api.md "CORS").
pub fn front<'r>(cors: &CorsConfig, method: &Method, headers: &'r HeaderMap, path: &str) -> Front<'r> {
    front_with(cors, method, headers, path, &mut Quiet)
}

/// [`front`], telling `obs` why a refused preflight is refused.
pub fn front_with<'r, O: Observer>(
    cors: &CorsConfig,
    method: &Method,
    headers: &'r HeaderMap,
    path: &str,
    obs: &mut O,
) -> Front<'r> {
    if path == "/.portcullis" || path.starts_with("/.portcullis/") {
        // Reserved for sign-in; never forwarded to the app.
        return Front::Reserved;
    }
    match classify(method, headers) {
        Classified::Preflight(p) => {
            let outcome = cors.preflight_with(&p, obs);
            Front::Preflight(p, outcome)
        }
        Classified::Actual { origin } => Front::Request { origin: Some(origin) },
        Classified::NotCors => Front::Request { origin: None },
    }
}

/// The refusal of a preflight the CORS settings refuse (403, no `Access-Control-Allow-*`).
pub fn preflight_refusal(outcome: &PreflightOutcome) -> Option<Refusal> {
    match outcome {
        PreflightOutcome::Refuse(why) => Some(Refusal::PreflightRefused(why.reason())),
        PreflightOutcome::Answer(_) | PreflightOutcome::Forward => None,
    }
}

/// Which credential a request presented (never its value).
#[derive(Clone, Copy, Debug)]
pub enum Presented<'r> {
    Nothing,
    /// `CF-Access-Client-Id` and/or `-Secret`; they win over any JWT.
    ServiceToken {
        client_id: Option<&'r HeaderValue>,
    },
    /// The first JWT source present; `token` is `Err` when that source holds no usable token.
    /// The bytes are not yet known to be text: verification judges that (`Malformed`).
    Jwt {
        source: TokenSource,
        token: Result<&'r [u8], JwtFailure>,
    },
}

/// Step 3's result.
#[derive(Debug)]
pub struct Authentication<'r> {
    pub presented: Presented<'r>,
    pub authn: Authn,
}

// === impl Authentication ===

impl Authentication<'_> {
    /// The issuer whose JWKS the caller may refresh (rate-limited) before one [`verify_jwt`]
    /// retry: a JWT signed with a `kid` the loaded keys do not have.
    pub fn refresh_issuer(&self) -> Option<usize> {
        match (&self.presented, &self.authn) {
            (Presented::Jwt { token: Ok(_), .. }, Authn::Failed(AuthnFailure::Jwt(f))) => f.refresh_issuer(),
            _ => None,
        }
    }
}

/// Step 3: service token when its headers are present, else the first JWT source present
/// (api.md "JWT", "Service tokens").
pub fn authenticate<'r, K: KeySource + ?Sized>(
    app: &AppDecisions<'_, K>,
    headers: &'r HeaderMap,
    now: i64,
) -> Authentication<'r> {
    authenticate_with(app, headers, now, &mut Quiet)
}

/// [`authenticate`], reporting each credential check passed to `obs`.
pub fn authenticate_with<'r, K: KeySource + ?Sized, O: Observer>(
    app: &AppDecisions<'_, K>,
    headers: &'r HeaderMap,
    now: i64,
    obs: &mut O,
) -> Authentication<'r> {
    // The common request without credentials (a page's assets, a Bypass application's traffic)
    // is settled by one look at the names present instead of five hashed lookups; a request
    // with any of them takes the full path below, which also judges it when malformed, and
    // looks up only the names present.
    let (service_names, jwt_sources) = credential_names(app.jwt, headers);
    if !service_names && !jwt_sources.any() {
        return Authentication { presented: Presented::Nothing, authn: Authn::Anonymous };
    }
    if service_names {
        if let Some(result) = service_token::authenticate_with(app.tokens, headers, now, obs) {
            let presented = Presented::ServiceToken { client_id: headers.get(CLIENT_ID_HEADER) };
            let authn = match result {
                Ok(service) => Authn::Authenticated(Principal::Service(service)),
                Err(f) => Authn::Failed(AuthnFailure::ServiceToken(f)),
            };
            return Authentication { presented, authn };
        }
    }
    let Some((source, token)) = jwt::find_present_token(app.jwt, headers, jwt_sources) else {
        return Authentication { presented: Presented::Nothing, authn: Authn::Anonymous };
    };
    let authn = match token {
        // No issuer can verify anything: refuse without parsing the token at all.
        _ if app.jwt.issuer_count() == 0 => Authn::Failed(AuthnFailure::Jwt(JwtFailure::UnknownIssuer)),
        Err(f) => Authn::Failed(AuthnFailure::Jwt(f)),
        Ok(t) => verify_jwt_with(app, t, now, obs),
    };
    Authentication { presented: Presented::Jwt { source, token }, authn }
}

/// Which credential headers are present, as each source says what it reads: whether a
/// service-token header is, and which JWT sources' headers are. Without any, no source has
/// anything to judge (both `service_token` and `find_token` answer `None`).
fn credential_names(jwt: &JwtConfig, headers: &HeaderMap) -> (bool, jwt::Present) {
    let (mut service, mut sources) = (false, jwt::Present::default());
    for name in headers.keys() {
        service |= service_token::reads(name);
        sources.note(jwt, name);
    }
    (service, sources)
}

/// Verifies a JWT against the application's issuers and current keys.
pub fn verify_jwt<K: KeySource + ?Sized>(app: &AppDecisions<'_, K>, token: &[u8], now: i64) -> Authn {
    verify_jwt_with(app, token, now, &mut Quiet)
}

fn verify_jwt_with<K: KeySource + ?Sized, O: Observer>(
    app: &AppDecisions<'_, K>,
    token: &[u8],
    now: i64,
    obs: &mut O,
) -> Authn {
    match app.jwt.authenticate_with(token, app.keys, now, obs) {
        Ok(user) => Authn::Authenticated(Principal::User(user)),
        Err(f) => Authn::Failed(AuthnFailure::Jwt(f)),
    }
}

/// Step 4's result: the policies' decision and what Enforce answers.
#[derive(Debug)]
pub struct Verdict {
    /// The address `ipRange` rules saw.
    pub client_ip: IpAddr,
    pub decision: Decision,
    /// What Enforce answers instead of forwarding; `None` when the request is forwarded.
    pub refusal: Option<Refusal>,
    /// `spec.mode: Audit`: a refusal is only counted and logged, and the request forwarded
    /// without identity headers (api.md "Audit mode").
    pub audit: bool,
}

// === impl Verdict ===

impl Verdict {
    /// Whether the refusal is answered (Enforce) rather than only recorded (Audit).
    pub fn enforced_refusal(&self) -> Option<&Refusal> {
        self.refusal.as_ref().filter(|_| !self.audit)
    }

    /// Whether the app receives identity headers: only for an Allow (never for Bypass, and
    /// never for a request Audit forwards although Enforce would refuse it).
    pub fn forwards_identity(&self) -> bool {
        self.refusal.is_none() && matches!(self.decision, Decision::Allow { .. })
    }
}

/// Step 4: the policies (api.md "Selectors", "Identities", "Audit mode").
pub fn policies(
    spec: &Application,
    headers: &HeaderMap,
    authn: &Authn,
    peer: IpAddr,
    trusted_proxies: &[IpNet],
) -> Verdict {
    policies_with(spec, headers, authn, peer, trusted_proxies, &mut Quiet)
}

/// [`policies`], reporting each policy and rule to `obs`.
pub fn policies_with<O: Observer>(
    spec: &Application,
    headers: &HeaderMap,
    authn: &Authn,
    peer: IpAddr,
    trusted_proxies: &[IpNet],
    obs: &mut O,
) -> Verdict {
    let ip = client_ip(peer, headers, trusted_proxies);
    let decision = evaluate_with(&spec.policies, authn, ip, obs);
    let refusal = match decision {
        Decision::Bypass { .. } | Decision::Allow { .. } => None,
        Decision::Unauthenticated => Some(Refusal::Unauthenticated {
            reason: match authn {
                Authn::Failed(f) => f.reason(),
                _ => "no_credentials",
            },
            login: None,
        }),
        Decision::Block { policy } => Some(Refusal::Forbidden {
            reason: "blocked_by_policy",
            policy: spec.policies.get(policy).map(|p| p.name.clone()),
        }),
        // A valid service token is an identity: one that no policy admits is refused by policy
        // (403), not as a bad credential (api.md, "Statuses").
        Decision::NoMatch if matches!(authn, Authn::Authenticated(Principal::Service(_))) => {
            Some(Refusal::Forbidden { reason: "service_token_not_included", policy: None })
        }
        Decision::NoMatch => Some(Refusal::Forbidden { reason: "no_policy_matched", policy: None }),
    };
    Verdict { client_ip: ip, decision, refusal, audit: spec.mode == Mode::Audit }
}

/// Where a forwarded request goes.
#[derive(Clone, Copy, Debug)]
pub enum Destination<'a> {
    /// The app beside the sidecar (`--upstream`).
    App,
    /// A forward route of the application.
    Route(&'a ForwardRoute),
}

/// Step 5: the app or a forward route (api.md "Forward routes"). A forward route whose service
/// token is missing is refused (503) rather than calling the upstream without the credentials
/// it was configured with.
pub fn destination<'a>(spec: &'a Application, path: &str) -> Result<Destination<'a>, Refusal> {
    match forward_route(&spec.forward_routes, path) {
        Some(route) if matches!(route.credentials, RouteCredentials::Missing { .. }) => Err(Refusal::RouteUnavailable),
        Some(route) => Ok(Destination::Route(route)),
        None => Ok(Destination::App),
    }
}

/// The canonical request as the glue keeps it once the client's request is taken apart: owned
/// only where it differs from what the client sent (the common case copies nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canonical {
    /// What the app receives as `Host` and `X-Forwarded-Host`: the routed authority.
    pub authority: HeaderValue,
    /// The path the app receives, when it is not the client's own.
    pub forward_path: Option<String>,
    /// The path that was matched, when it is not the client's own.
    pub matching_path: Option<String>,
}

// === impl Routed ===

impl Routed<'_> {
    /// The canonical parts to keep; `headers` are the request's, whose `Host` value is reused
    /// when it already is the canonical authority.
    pub fn canonical(&self, headers: &HeaderMap) -> Canonical {
        let authority = self.target.authority.as_ref();
        let authority = match headers.get(http::header::HOST) {
            Some(h) if h.as_bytes() == authority.as_bytes() => h.clone(),
            // `request_target` admits only letters, digits, `-_.:[]` in an authority: always a
            // valid header value; an empty one would route nowhere should that ever change.
            _ => HeaderValue::from_str(authority).unwrap_or_else(|_| HeaderValue::from_static("")),
        };
        let owned = |p: &Cow<'_, str>| match p {
            Cow::Owned(p) => Some(p.clone()),
            Cow::Borrowed(_) => None,
        };
        Canonical {
            authority,
            forward_path: owned(&self.target.path.forward),
            matching_path: owned(&self.target.path.matching),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderName;
    use portcullis_crds::snapshot::Identity;
    use proptest::prelude::*;

    use super::*;

    const NAMES: [&str; 10] = [
        "authorization",
        "cookie",
        "cf-access-client-id",
        "cf-access-client-secret",
        "cf-access-jwt-assertion",
        "x-token",
        "cf_access_client_id",
        "cookie2",
        "accept",
        "host",
    ];
    const VALUES: [&str; 7] = ["", "Bearer a.b.c", "Basic dXNlcjpwYXNz", "CF_Authorization=a.b.c", "a=1", "id", "x y"];

    proptest! {
        /// The fast path for requests without credentials never hides one: whenever it answers
        /// "nothing presented", the service-token and JWT sources find nothing either.
        #[test]
        fn no_credential_name_means_no_source_finds_anything(
            lines in prop::collection::vec((0..NAMES.len(), 0..VALUES.len()), 0..6),
            custom_header: bool,
        ) {
            let header_name = if custom_header { "x-token" } else { "cf-access-jwt-assertion" };
            let identity =
                Identity { cookie_name: "CF_Authorization".into(), header_name: header_name.into(), issuers: vec![] };
            let jwt = JwtConfig::new(&identity).expect("a valid identity");
            let tokens = ServiceTokens::new(&[]).expect("no tokens");
            let mut headers = HeaderMap::new();
            for (n, v) in lines {
                headers.append(HeaderName::from_static(NAMES[n]), HeaderValue::from_static(VALUES[v]));
            }
            let (service_names, sources) = credential_names(&jwt, &headers);
            if !service_names {
                prop_assert!(service_token::authenticate_with(&tokens, &headers, 0, &mut Quiet).is_none());
            }
            if !sources.any() {
                prop_assert!(jwt::find_token(&jwt, &headers).is_none());
            }
        }
    }
}
