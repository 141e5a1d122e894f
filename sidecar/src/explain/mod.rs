//! `explain`: runs a synthetic request through the request path's own decisions
//! (`decide::request`) against a loaded configuration and reports each step — the application
//! and domain matched, CORS, the credential and each of its checks, every policy and rule, and
//! the final status with the headers the client would receive.
//!
//! Owns the report (a stable JSON shape, `version` 1, documented in docs/explain.md) and its
//! text form. Must not decide anything itself: every outcome comes from `decide::request`, and
//! the details from the explain helpers beside each decision (`Router::candidates`,
//! `CorsConfig::explain_preflight`, `policy::trace`), so it cannot drift from what the proxy
//! does. Must never show a token, cookie or secret: only where a credential came from, its
//! issuer, key id and the client id of a service token. No I/O: the caller loads the config.

pub mod command;
mod text;

use std::net::{IpAddr, Ipv4Addr};

use http::header::{HeaderName, HeaderValue, HOST, ORIGIN};
use http::{HeaderMap, Method, Uri, Version};
use ipnet::IpNet;
use portcullis_crds::snapshot::{Application, DomainPattern, HostPattern, Rule};
use portcullis_crds::v1alpha1::PolicyAction;
use serde::{Deserialize, Serialize};

use crate::config::live::mode_label;
use crate::config::{Live, LiveApp};
use crate::decide::authn::jwt::{self, JwtFailure};
use crate::decide::authn::service_token::ServiceTokenFailure;
use crate::decide::authn::{Authn, AuthnFailure, Principal};
use crate::decide::cors::{Preflight, PreflightOutcome};
use crate::decide::login as login_rules;
use crate::decide::policy::{self, Decision};
use crate::decide::refusal::Refusal;
use crate::decide::request::{self, Destination, Front, Presented, RouteMiss};
use crate::decide::route::{Candidate, Target, TargetError};
use crate::http::headers::REQUEST_ID;

pub use text::render_text;

/// The version of the JSON shape; bumped only for changes that break readers.
pub const VERSION: u32 = 1;

/// What `x-request-id` shows in an explanation: the real value is made per request.
const REQUEST_ID_PLACEHOLDER: &str = "<per-request id>";

/// A request to explain: what `--method/--url/--header/--peer` give, and the body of the admin
/// `POST /explain`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    pub method: String,
    /// Absolute URL (`https://api.mysite.com/data`); its authority becomes `Host` unless a
    /// `Host` header is given.
    pub url: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The connection's peer address (default 127.0.0.1).
    #[serde(default)]
    pub peer: Option<IpAddr>,
}

/// Settings of the evaluation that are not part of the request.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--trusted-proxies`: peers whose `X-Forwarded-For` counts.
    pub trusted_proxies: Vec<IpNet>,
    /// Unix seconds the tokens are checked at.
    pub now: i64,
    /// The service tokens' secrets could not be read (kubectl without access to Secrets):
    /// their checks say `unknown` instead of failing.
    pub secrets_unavailable: bool,
}

/// Why a request cannot be explained (a usage error, never a decision).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("method {0:?} is not an HTTP method")]
    Method(String),
    #[error("url {0:?} is not an absolute http(s) URL (e.g. https://api.mysite.com/data)")]
    Url(String),
    #[error("header {0:?} is not a valid `Name: value` pair")]
    Header(String),
}

// === The report (docs/explain.md) ===

#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub version: u32,
    pub request: RequestReport,
    pub route: RouteReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialReport>,
    pub policies: Vec<PolicyReport>,
    pub decision: DecisionReport,
}

#[derive(Clone, Debug, Serialize)]
pub struct RequestReport {
    pub method: String,
    pub url: String,
    pub peer: IpAddr,
    /// Header names only: values may be credentials.
    pub header_names: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RouteReport {
    /// `matched`, `unknown_host` or `bad_request`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The path routing matched (normalised, `;parameters` removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The canonical request the app receives when the request is forwarded: the routed
    /// authority as `Host` and `X-Forwarded-Host`, and the normalised path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_path: Option<String>,
    /// Why the path is risky or refused, when it holds escapes servers read differently.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// Every domain whose host matches, most specific first.
    pub candidates: Vec<CandidateReport>,
    /// With no match: the closest configured domain and why it does not cover the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nearest_miss: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CandidateReport {
    pub application: String,
    pub domain: String,
    pub path_matches: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct CorsReport {
    /// `not_cors`, `preflight` or `actual`.
    pub classification: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// `disabled` (no cors section), `app` (bypassOptionsToOrigin) or `sidecar`.
    pub owner: &'static str,
    /// `answered`, `refused`, `forwarded`, `origin_allowed`, `origin_not_allowed`, `app_owns_cors`,
    /// `no_cors_headers` or `not_applicable`.
    pub outcome: &'static str,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct CredentialReport {
    /// `none`, `jwt` or `service_token`.
    pub kind: &'static str,
    /// `header`, `bearer`, `cookie` or `service_token_headers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_token: Option<String>,
    /// `authenticated`, `refused`, `unknown` or `none`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub check: &'static str,
    /// `passed`, `failed`, `not_checked` or `unknown`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct PolicyReport {
    pub name: String,
    pub action: &'static str,
    pub phase: u8,
    pub evaluated: bool,
    pub matched: bool,
    pub decided: bool,
    pub rules: Vec<RuleReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RuleReport {
    /// `include`, `require` or `exclude`.
    pub kind: &'static str,
    pub selector: String,
    pub matched: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct DecisionReport {
    /// `allow`, `bypass`, `deny`, `audit_deny`, `preflight_answered`, `preflight_refused` or
    /// `preflight_forwarded`.
    pub outcome: &'static str,
    pub reason: &'static str,
    /// The status the sidecar answers with; absent when the request is forwarded (the app's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `app`, or the upstream of a forward route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// In Audit mode, what Enforce would answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforce_would: Option<WouldBe>,
    /// Identity headers the app receives (names only).
    pub identity_headers: Vec<String>,
    /// Headers the sidecar puts on the client's response (for a forwarded request, in addition
    /// to the app's own).
    pub response_headers: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WouldBe {
    pub status: u16,
    pub reason: &'static str,
}

// === impl Explanation ===

impl Explanation {
    /// Whether the request would be served (forwarded or a preflight answered): exit status 0.
    pub fn served(&self) -> bool {
        !matches!(self.decision.outcome, "deny" | "preflight_refused")
    }
}

/// A parsed request, owning its parts so the decisions can borrow them.
struct Parsed {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    peer: IpAddr,
    /// The URL was `https` (the proxy's TLS listener).
    https: bool,
}

fn parse(req: &ExplainRequest) -> Result<Parsed, ExplainError> {
    let method = Method::from_bytes(req.method.as_bytes()).map_err(|_| ExplainError::Method(req.method.clone()))?;
    let url_err = || ExplainError::Url(req.url.clone());
    let url: Uri = req.url.parse().map_err(|_| url_err())?;
    let authority = url.authority().ok_or_else(url_err)?.as_str().to_owned();
    if !matches!(url.scheme_str(), Some("http" | "https")) {
        return Err(url_err());
    }
    // What a client sends: the origin form and a Host header (RFC 9112 §3.2.1).
    let uri: Uri = url.path_and_query().map_or("/", |p| p.as_str()).parse().map_err(|_| url_err())?;
    let mut headers = HeaderMap::new();
    for (name, value) in &req.headers {
        let bad = || ExplainError::Header(name.clone());
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        headers.append(name, value);
    }
    if !headers.contains_key(HOST) {
        headers.insert(HOST, HeaderValue::from_str(&authority).map_err(|_| url_err())?);
    }
    let https = url.scheme_str() == Some("https");
    Ok(Parsed { method, uri, headers, peer: req.peer.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)), https })
}

/// Explains `req` against `live`.
pub fn explain(live: &Live, req: &ExplainRequest, opts: &Options) -> Result<Explanation, ExplainError> {
    let p = parse(req)?;
    let mut header_names: Vec<String> = p.headers.keys().map(|k| k.as_str().to_owned()).collect();
    header_names.dedup();
    let request = RequestReport { method: p.method.to_string(), url: req.url.clone(), peer: p.peer, header_names };
    let mut out = Explanation {
        version: VERSION,
        request,
        route: RouteReport {
            result: "matched",
            host: None,
            path: None,
            forwarded_host: None,
            forwarded_path: None,
            path_note: None,
            application: None,
            domain: None,
            mode: None,
            candidates: vec![],
            nearest_miss: None,
        },
        cors: None,
        credential: None,
        policies: vec![],
        decision: DecisionReport {
            outcome: "deny",
            reason: "",
            status: None,
            forwarded_to: None,
            policy: None,
            enforce_would: None,
            identity_headers: vec![],
            response_headers: vec![],
            body: None,
        },
    };

    // 1. Route.
    let routed = match request::route(&live.router, Version::HTTP_11, &p.uri, &p.headers) {
        Ok(r) => r,
        Err(miss) => {
            match &miss {
                RouteMiss::Invalid(TargetError::AmbiguousPath) => {
                    out.route.result = "bad_request";
                    out.route.path_note = Some(AMBIGUOUS_REFUSED.to_owned());
                }
                RouteMiss::Invalid(_) => out.route.result = "bad_request",
                RouteMiss::UnknownHost(target) => {
                    out.route.result = "unknown_host";
                    describe_target(&mut out.route, live, target);
                    out.route.nearest_miss = nearest_miss(live, target, &out.route.candidates);
                }
            }
            refused(&mut out, None, None, miss.refusal());
            return Ok(out);
        }
    };
    let app = &live.apps[routed.app];
    describe_target(&mut out.route, live, &routed.target);
    out.route.application = Some(app.label.clone());
    out.route.mode = Some(mode_label(&app.spec));
    out.route.domain = out.route.candidates.iter().find(|c| c.path_matches).map(|c| c.domain.clone());
    let path = routed.target.path.matching.as_ref();

    // 2. Reserved paths and preflights.
    let origin = match request::front(&app.cors, &p.method, &p.headers, path) {
        Front::Reserved => {
            refused(&mut out, Some(app), p.headers.get(ORIGIN), Refusal::ReservedPath);
            return Ok(out);
        }
        Front::Preflight(pf, outcome) => {
            out.cors = Some(preflight_report(app, &pf, &outcome));
            match outcome {
                PreflightOutcome::Answer(headers) => {
                    out.decision.outcome = "preflight_answered";
                    out.decision.reason = "answered";
                    out.decision.status = Some(200);
                    out.decision.response_headers = header_pairs(&headers);
                    push_request_id(&mut out.decision.response_headers);
                }
                PreflightOutcome::Forward => {
                    out.decision.outcome = "preflight_forwarded";
                    out.decision.reason = "preflight_forwarded";
                    out.decision.forwarded_to = Some("app".to_owned());
                    push_request_id(&mut out.decision.response_headers);
                }
                PreflightOutcome::Refuse(_) => {
                    if let Some(r) = request::preflight_refusal(&outcome) {
                        refused(&mut out, None, None, r);
                        out.decision.outcome = "preflight_refused";
                    }
                }
            }
            return Ok(out);
        }
        Front::Request { origin } => origin,
    };
    out.cors = Some(actual_report(app, origin));

    // 3. Authenticate (no JWKS refresh here: `credential.note` says when the proxy would).
    let decisions = app.decisions();
    let authentication = request::authenticate(&decisions, &p.headers, opts.now);
    out.credential = Some(credential_report(&authentication.presented, &authentication.authn, opts));

    // 4. Policies.
    let verdict = request::policies(&app.spec, &p.headers, &authentication.authn, p.peer, &opts.trusted_proxies);
    out.policies = policy_reports(&app.spec, &authentication.authn, verdict.client_ip, verdict.decision);
    out.decision.policy = verdict.decision.policy().and_then(|i| app.spec.policies.get(i)).map(|p| p.name.clone());
    if let Some(r) = verdict.enforced_refusal() {
        match (r, sign_in_url(app, &p)) {
            // With sign-in, as `http/login.rs` answers: a navigation is redirected to it, any
            // other request gets the 401 naming it.
            (Refusal::Unauthenticated { reason, .. }, Some(login)) => {
                let redirect =
                    login_rules::redirects_to_sign_in(app.spec.unauthenticated_response, true, &p.method, &p.headers);
                let r = Refusal::Unauthenticated { reason, login: Some(login.clone()) };
                refused(&mut out, Some(app), origin, r);
                if redirect {
                    out.decision.status = Some(302);
                    out.decision.body = None;
                    let mut headers = HeaderMap::new();
                    if let Ok(v) = HeaderValue::from_str(&login) {
                        headers.insert(http::header::LOCATION, v);
                    }
                    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    app.cors.apply_to_response(origin, &mut headers);
                    out.decision.response_headers = header_pairs(&headers);
                    push_request_id(&mut out.decision.response_headers);
                }
            }
            _ => refused(&mut out, Some(app), origin, r.clone()),
        }
        return Ok(out);
    }
    match (&verdict.refusal, verdict.decision) {
        (Some(r), _) => {
            out.decision.outcome = "audit_deny";
            out.decision.reason = r.reason();
            out.decision.enforce_would = Some(WouldBe { status: r.status().as_u16(), reason: r.reason() });
        }
        (None, Decision::Bypass { .. }) => (out.decision.outcome, out.decision.reason) = ("bypass", "policy"),
        (None, _) => (out.decision.outcome, out.decision.reason) = ("allow", "policy"),
    }
    if verdict.forwards_identity() {
        out.decision.identity_headers = identity_header_names(&authentication.authn);
    }

    // 5. Destination.
    match request::destination(&app.spec, path) {
        Destination::Unavailable(_) => {
            refused(&mut out, Some(app), origin, Refusal::RouteUnavailable);
            return Ok(out);
        }
        Destination::Route(route) => {
            out.decision.forwarded_to = Some(format!("{}://{}", route.upstream.scheme, route.upstream.authority));
        }
        Destination::App => out.decision.forwarded_to = Some("app".to_owned()),
    }
    let mut headers = HeaderMap::new();
    app.cors.apply_to_response(origin, &mut headers);
    out.decision.response_headers = header_pairs(&headers);
    push_request_id(&mut out.decision.response_headers);
    Ok(out)
}

/// The sign-in URL the proxy names for this request, when the application has `login`.
fn sign_in_url(app: &LiveApp, p: &Parsed) -> Option<String> {
    let login = app.login.as_ref()?;
    let authority = p.headers.get(HOST)?.to_str().ok()?;
    let scheme = login_rules::public_scheme(p.https, login.attrs.secure);
    let base = login_rules::request_base(scheme, authority)?;
    Some(login_rules::login_url_for(&base, p.uri.path_and_query().map_or("/", |pq| pq.as_str())))
}

/// Fills the decision of a request the sidecar answers itself, with the exact status, body and
/// headers of `Refusal::to_response` (and the CORS headers the request path adds to them).
fn refused(out: &mut Explanation, app: Option<&LiveApp>, origin: Option<&HeaderValue>, r: Refusal) {
    let mut resp = r.to_response(REQUEST_ID_PLACEHOLDER);
    // A refused preflight carries no Access-Control-Allow-*; every other answer of an
    // application does (so a page can read it), as on the request path.
    if let (Some(app), false) = (app, matches!(r, Refusal::PreflightRefused(_))) {
        app.cors.apply_to_response(origin, resp.headers_mut());
    }
    out.decision.outcome = "deny";
    out.decision.reason = r.reason();
    out.decision.status = Some(r.status().as_u16());
    out.decision.response_headers = header_pairs(resp.headers());
    push_request_id(&mut out.decision.response_headers);
    out.decision.body = Some(r.body(REQUEST_ID_PLACEHOLDER));
    out.decision.identity_headers.clear();
    out.decision.forwarded_to = None;
}

fn push_request_id(headers: &mut Vec<(String, String)>) {
    headers.push((REQUEST_ID.as_str().to_owned(), REQUEST_ID_PLACEHOLDER.to_owned()));
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

/// Why a path with ambiguous escapes was refused.
const AMBIGUOUS_REFUSED: &str =
    "the path holds %2F, %5C, %3B, %25, a backslash or an encoded control character, which servers \
     read in different ways: refused (400 ambiguous_path) unless the application sets spec.paths.escapedSlashes: \
     KeepUnchanged and reading the escapes as slashes routes to the same application and forward route";
/// The risk an application that keeps escaped slashes takes.
const AMBIGUOUS_KEPT: &str = "the path holds %2F, %5C, %3B, %25, a backslash or an encoded control character: forwarded \
     unchanged (spec.paths.escapedSlashes: KeepUnchanged); an app that decodes them after routing may serve another \
     path than the one decided";

fn describe_target(route: &mut RouteReport, live: &Live, target: &Target<'_>) {
    route.host = Some(target.host.to_string());
    route.path = Some(target.path.matching.to_string());
    route.forwarded_host = Some(target.authority.to_string());
    route.forwarded_path = Some(target.path.forward.to_string());
    if target.path.ambiguous {
        route.path_note = Some(AMBIGUOUS_KEPT.to_owned());
    }
    route.candidates = live
        .router
        .candidates(&target.host, &target.path.matching)
        .iter()
        .map(|c| CandidateReport {
            application: live.apps[c.app].label.clone(),
            domain: candidate_domain(c, &target.host),
            path_matches: c.path_matches,
        })
        .collect();
}

fn candidate_domain(c: &Candidate, host: &str) -> String {
    let host = match &c.wildcard_suffix {
        Some(suffix) => format!("*.{suffix}"),
        None => host.to_owned(),
    };
    format!("{host}{}", c.path_prefix.as_deref().unwrap_or(""))
}

/// The closest miss: a domain whose host matched but whose path prefix does not cover the path,
/// else the configured domain sharing the most trailing DNS labels with the host.
fn nearest_miss(live: &Live, target: &Target<'_>, candidates: &[CandidateReport]) -> Option<String> {
    if let Some(c) = candidates.first() {
        return Some(format!(
            "{} (application {}) matches the host but its path prefix does not cover {}",
            c.domain, c.application, target.path.matching
        ));
    }
    let labels: Vec<&str> = target.host.rsplit('.').collect();
    let shared = |pattern: &str| pattern.rsplit('.').zip(&labels).take_while(|(a, b)| a == *b).count();
    live.apps
        .iter()
        .flat_map(|app| app.spec.domains.iter().map(move |d| (app, d)))
        .map(|(app, d)| {
            let text = domain_text(d);
            let host = match &d.host {
                HostPattern::Exact(h) | HostPattern::Wildcard(h) => h.as_str(),
            };
            (shared(host), text, app)
        })
        .filter(|(n, _, _)| *n > 0)
        // The first of the closest, in configuration order.
        .fold(None, |best: Option<(usize, String, &LiveApp)>, c| match &best {
            Some(b) if b.0 >= c.0 => best,
            _ => Some(c),
        })
        .map(|(_, text, app)| format!("{text} (application {}) is the closest configured domain", app.label))
}

fn domain_text(d: &DomainPattern) -> String {
    let host = match &d.host {
        HostPattern::Exact(h) => h.clone(),
        HostPattern::Wildcard(s) => format!("*.{s}"),
    };
    format!("{host}{}", d.path_prefix.as_deref().unwrap_or(""))
}

fn preflight_report(app: &LiveApp, pf: &Preflight<'_>, outcome: &PreflightOutcome) -> CorsReport {
    CorsReport {
        classification: "preflight",
        origin: Some(String::from_utf8_lossy(pf.origin().as_bytes()).into_owned()),
        owner: app.cors.owner(),
        outcome: match outcome {
            PreflightOutcome::Answer(_) => "answered",
            PreflightOutcome::Forward => "forwarded",
            PreflightOutcome::Refuse(_) => "refused",
        },
        detail: app.cors.explain_preflight(pf),
    }
}

fn actual_report(app: &LiveApp, origin: Option<&HeaderValue>) -> CorsReport {
    let owner = app.cors.owner();
    let Some(origin) = origin else {
        return CorsReport {
            classification: "not_cors",
            origin: None,
            owner,
            outcome: "not_applicable",
            detail: "no Origin header: not a cross-origin request".to_owned(),
        };
    };
    let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
    let (outcome, detail) = match owner {
        "disabled" => ("no_cors_headers", "the application has no cors section: the response carries no CORS headers, so a page on another origin cannot read it".to_owned()),
        "app" => ("app_owns_cors", "cors.bypassOptionsToOrigin is set: the app sets the CORS headers of its responses".to_owned()),
        _ => {
            let mut probe = HeaderMap::new();
            app.cors.apply_to_response(Some(origin), &mut probe);
            if probe.contains_key(http::header::ACCESS_CONTROL_ALLOW_ORIGIN) {
                ("origin_allowed", format!("origin {shown:?} is allowed: the response carries Access-Control-Allow-Origin"))
            } else {
                ("origin_not_allowed", format!("origin {shown:?} is not in cors.allowedOrigins: the response carries no Access-Control-Allow-Origin and the page cannot read it"))
            }
        }
    };
    CorsReport { classification: "actual", origin: Some(shown), owner, outcome, detail }
}

/// JWT checks in the order `JwtConfig::authenticate` makes them.
const JWT_CHECKS: [&str; 11] =
    ["size", "format", "crit", "algorithm", "issuer", "keys", "key", "signature", "audience", "claims", "expiry"];

fn jwt_failed_check(f: JwtFailure) -> &'static str {
    match f {
        JwtFailure::TooLarge => "size",
        JwtFailure::Malformed => "format",
        JwtFailure::UnknownCrit => "crit",
        JwtFailure::AlgorithmNotAllowed => "algorithm",
        JwtFailure::UnknownIssuer => "issuer",
        JwtFailure::NoKeys { .. } => "keys",
        JwtFailure::UnknownKey { .. } | JwtFailure::KeyMismatch | JwtFailure::AmbiguousKey => "key",
        JwtFailure::BadSignature => "signature",
        JwtFailure::WrongAudience => "audience",
        JwtFailure::MissingExp | JwtFailure::InvalidClaims => "claims",
        JwtFailure::Expired | JwtFailure::NotYetValid => "expiry",
    }
}

/// Service-token checks in the order `service_token::authenticate` makes them.
const TOKEN_CHECKS: [&str; 4] = ["headers", "client_id", "secret", "expiry"];

fn token_failed_check(f: ServiceTokenFailure) -> &'static str {
    match f {
        ServiceTokenFailure::Incomplete | ServiceTokenFailure::Malformed => "headers",
        ServiceTokenFailure::UnknownClientId => "client_id",
        ServiceTokenFailure::WrongSecret | ServiceTokenFailure::RotatedOut => "secret",
        ServiceTokenFailure::Expired => "expiry",
    }
}

/// Every check passed up to the failing one, which failed; the rest were not reached.
fn checks(all: &[&'static str], failed: Option<&'static str>) -> Vec<Check> {
    let mut reached = true;
    all.iter()
        .map(|&check| {
            let result = match (reached, failed == Some(check)) {
                (false, _) => "not_checked",
                (true, true) => {
                    reached = false;
                    "failed"
                }
                (true, false) => "passed",
            };
            Check { check, result }
        })
        .collect()
}

/// The unverified header and payload fields worth showing (never the token itself).
#[derive(Default)]
struct Peek {
    alg: Option<String>,
    kid: Option<String>,
    iss: Option<String>,
}

fn peek(token: &str) -> Peek {
    use base64::Engine;
    let part = |s: Option<&str>| -> Option<serde_json::Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s?).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let mut parts = token.split('.');
    let (header, payload) = (part(parts.next()), part(parts.next()));
    let field = |v: &Option<serde_json::Value>, k: &str| v.as_ref()?.get(k)?.as_str().map(str::to_owned);
    Peek { alg: field(&header, "alg"), kid: field(&header, "kid"), iss: field(&payload, "iss") }
}

fn credential_report(presented: &Presented<'_>, authn: &Authn, opts: &Options) -> CredentialReport {
    let mut r = CredentialReport {
        kind: "none",
        source: None,
        issuer: None,
        algorithm: None,
        key_id: None,
        email: None,
        client_id: None,
        service_token: None,
        result: "none",
        reason: None,
        checks: vec![],
        note: None,
    };
    let failure = match authn {
        Authn::Failed(f) => Some(*f),
        _ => None,
    };
    r.reason = failure.map(|f| f.reason());
    r.result = match authn {
        Authn::Anonymous => "none",
        Authn::Authenticated(_) => "authenticated",
        Authn::Failed(_) => "refused",
    };
    match presented {
        Presented::Nothing => {
            r.note = Some("no service-token headers, no JWT in the assertion header, Authorization or cookie");
        }
        Presented::ServiceToken { client_id } => {
            r.kind = "service_token";
            r.source = Some("service_token_headers");
            r.client_id = client_id.and_then(|v| v.to_str().ok()).map(str::to_owned);
            let failed = match failure {
                Some(AuthnFailure::ServiceToken(f)) => Some(token_failed_check(f)),
                _ => None,
            };
            r.checks = checks(&TOKEN_CHECKS, failed);
            if let Authn::Authenticated(Principal::Service(s)) = authn {
                r.service_token = Some(s.name.clone());
            }
            if opts.secrets_unavailable && failed != Some("headers") {
                // Without the Secrets the tokens' client ids and digests are not known here.
                for c in r.checks.iter_mut().skip(1) {
                    c.result = "unknown";
                }
                r.result = "unknown";
                r.note = Some("the service tokens' Secrets could not be read: the token checks are unknown");
            }
        }
        Presented::Jwt { source, token } => {
            r.kind = "jwt";
            r.source = Some(source.as_str());
            if let Ok(token) = token {
                let p = peek(token);
                (r.algorithm, r.key_id, r.issuer) = (p.alg, p.kid, p.iss);
            }
            let failed = match failure {
                Some(AuthnFailure::Jwt(f)) => Some(jwt_failed_check(f)),
                _ => None,
            };
            r.checks = checks(&JWT_CHECKS, failed);
            if let Authn::Authenticated(Principal::User(u)) = authn {
                r.issuer = Some(u.issuer.clone());
                r.email = u.email.clone();
            }
            r.note = match failure {
                Some(AuthnFailure::Jwt(JwtFailure::UnknownKey { .. })) => Some(
                    "the proxy refreshes this issuer's JWKS once (at most every 30 s) and retries; \
                     explain uses the keys loaded now",
                ),
                Some(AuthnFailure::Jwt(JwtFailure::NoKeys { .. })) => {
                    Some("keys not loaded: the issuer's jwksUri could not be fetched")
                }
                _ => None,
            };
        }
    }
    r
}

fn identity_header_names(authn: &Authn) -> Vec<String> {
    use crate::decide::authn::service_token::CLIENT_ID_HEADER;
    match authn {
        Authn::Authenticated(Principal::User(u)) => {
            let mut names = vec![jwt::ASSERTION_HEADER.as_str().to_owned()];
            if u.headers.email.is_some() {
                names.push(jwt::EMAIL_HEADER.as_str().to_owned());
            }
            names
        }
        Authn::Authenticated(Principal::Service(_)) => vec![CLIENT_ID_HEADER.as_str().to_owned()],
        _ => vec![],
    }
}

fn policy_reports(spec: &Application, authn: &Authn, ip: IpAddr, decision: Decision) -> Vec<PolicyReport> {
    policy::trace(&spec.policies, authn, ip)
        .into_iter()
        .filter_map(|t| {
            let p = spec.policies.get(t.policy)?;
            let mut rules = Vec::new();
            for (kind, list, matched) in [
                ("include", &p.include, &t.include),
                ("require", &p.require, &t.require),
                ("exclude", &p.exclude, &t.exclude),
            ] {
                rules.extend(list.iter().zip(matched).map(|(r, m)| RuleReport {
                    kind,
                    selector: selector(r),
                    matched: *m,
                }));
            }
            Some(PolicyReport {
                name: p.name.clone(),
                action: action(p.action),
                phase: t.phase,
                evaluated: t.evaluated,
                matched: t.matched,
                decided: decision.policy() == Some(t.policy),
                rules,
            })
        })
        .collect()
}

fn action(a: PolicyAction) -> &'static str {
    match a {
        PolicyAction::Allow => "Allow",
        PolicyAction::Block => "Block",
        PolicyAction::Bypass => "Bypass",
        PolicyAction::ServiceAuth => "ServiceAuth",
    }
}

/// A rule as written in the AccessApplication.
fn selector(r: &Rule) -> String {
    match r {
        Rule::Email(e) => format!("email: {e}"),
        Rule::EmailDomain(d) => format!("emailDomain: {d}"),
        Rule::Group(g) => format!("group: {g}"),
        Rule::Everyone => "everyone: {}".to_owned(),
        Rule::IpRange(n) => format!("ipRange: {n}"),
        Rule::ServiceToken(t) => format!("serviceToken: {{name: {t}}}"),
        Rule::AnyValidServiceToken => "anyValidServiceToken: {}".to_owned(),
        Rule::Claim { name, value } => format!("claim: {{name: {name}, value: {value}}}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_pass_up_to_the_failure_and_stop_there() {
        let got: Vec<_> = checks(&TOKEN_CHECKS, Some("secret")).iter().map(|c| c.result).collect();
        assert_eq!(got, ["passed", "passed", "failed", "not_checked"]);
        assert!(checks(&JWT_CHECKS, None).iter().all(|c| c.result == "passed"));
    }

    #[test]
    fn peek_shows_header_and_issuer_only() {
        use base64::Engine;
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!("{}.{}.sig", enc(r#"{"alg":"RS256","kid":"k1"}"#), enc(r#"{"iss":"https://i"}"#));
        let p = peek(&token);
        assert_eq!(
            (p.alg.as_deref(), p.kid.as_deref(), p.iss.as_deref()),
            (Some("RS256"), Some("k1"), Some("https://i"))
        );
        assert!(peek("garbage").iss.is_none());
    }
}
