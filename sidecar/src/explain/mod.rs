//! `explain`: runs a synthetic request through the request path's own decisions
//! (`decide::request`) against a loaded configuration and reports each step — the application
//! and domain matched, CORS, the credential and each of its checks, every policy and rule, and
//! the final status with the headers the client would receive.
//!
//! Owns the report (a stable JSON shape, `version` 1, documented in docs/explain.md) and its
//! text form. Must not decide anything itself: it runs the proxy's own phases (`http::phases`)
//! with an observer ([`Watch`]) that records what each decision reports as it decides, and
//! renders the very `Response` those phases build (status, headers, body read from it), so it
//! cannot drift from what the proxy does. A request for an authentication host is routed and,
//! where no provider is needed, answered by the hand-off's own steps (`http::handoff`), which
//! count, log and end sessions only for the proxy. Must never show a token, cookie or secret:
//! only where a credential came from, its issuer, key id and the client id of a service token.
//! No I/O: the caller loads the config.

pub mod command;
mod report;
mod text;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::task::{Context, Poll, Waker};

use http::header::{HeaderName, HeaderValue, HOST};
use http::request::Parts;
use http::{Method, Request, Response, Uri};
use http_body_util::BodyExt;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::live::mode_label;
use crate::config::Live;
use crate::decide::client_headers::UnderscoreHeaders;
use crate::decide::observe::{Observer, PolicyStep, RuleKind};
use crate::decide::outcome::Outcome;
use crate::decide::request::{self, Destination, RouteMiss, Verdict};
use crate::decide::route::{Target, TargetError};
use crate::http::forward::HeaderEdit;
use crate::http::handoff::{self, AuthHostRequest};
use crate::http::headers::{AUTHENTICATED_USER_EMAIL, CLIENT_ID, JWT_ASSERTION};
use crate::http::oidc_steps::Serving;
use crate::http::phases::{self, Decided, Front, Plan, Settings};
use crate::http::pipeline::stamp;
use crate::http::respond::with_cors;
use crate::outbound::OutBody;

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
    /// `matched`, `authentication_host`, `unknown_host` or `bad_request`.
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
    /// `result: authentication_host`: the `login.authenticationHost` the request is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication_host: Option<AuthHostReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AuthHostReport {
    /// As configured (`host[:port]`).
    pub authority: String,
    /// The application whose provider client and session key it uses.
    pub provider_of: String,
    /// The applications that name it: the only ones it hands sign-ins back to.
    pub applications: Vec<String>,
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
    fn new(request: RequestReport) -> Self {
        Explanation {
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
                authentication_host: None,
            },
            cors: None,
            credential: None,
            policies: vec![],
            decision: DecisionReport {
                outcome: Outcome::Deny.as_str(),
                reason: "",
                status: None,
                forwarded_to: None,
                policy: None,
                enforce_would: None,
                identity_headers: vec![],
                response_headers: vec![],
                body: None,
            },
        }
    }

    /// Whether the request would be served (forwarded or a preflight answered): exit status 0.
    pub fn served(&self) -> bool {
        !matches!(self.decision.outcome, "deny" | "preflight_refused")
    }
}

/// A parsed request, owning its parts so the phases can borrow them.
struct Parsed {
    parts: Parts,
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
    let (mut parts, ()) = Request::builder().method(method).uri(uri).body(()).map_err(|_| url_err())?.into_parts();
    for (name, value) in &req.headers {
        let bad = || ExplainError::Header(name.clone());
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        parts.headers.append(name, value);
    }
    if !parts.headers.contains_key(HOST) {
        parts.headers.insert(HOST, HeaderValue::from_str(&authority).map_err(|_| url_err())?);
    }
    let https = url.scheme_str() == Some("https");
    Ok(Parsed { parts, peer: req.peer.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)), https })
}

/// One rule of a policy: its list, its index in the list, and whether it matched.
type RuleResult = (RuleKind, usize, bool);

/// What the phases report as they decide: the credential checks passed, every policy with its
/// rules, and why a preflight was refused. Exhaustive: it also sees the policies after the one
/// that decided (marked not evaluated), to show why they would or would not match.
#[derive(Default)]
pub(crate) struct Watch {
    checks: Vec<&'static str>,
    rules: Vec<RuleResult>,
    policies: Vec<(PolicyStep, Vec<RuleResult>)>,
    preflight_refused: Option<String>,
}

impl Observer for Watch {
    const EXHAUSTIVE: bool = true;

    fn check_passed(&mut self, check: &'static str) {
        self.checks.push(check);
    }

    fn rule(&mut self, kind: RuleKind, index: usize, matched: bool) {
        self.rules.push((kind, index, matched));
    }

    fn policy(&mut self, step: PolicyStep) {
        let rules = std::mem::take(&mut self.rules);
        self.policies.push((step, rules));
    }

    fn preflight_refused(&mut self, why: &dyn fmt::Display) {
        self.preflight_refused = Some(why.to_string());
    }
}

/// Explains `req` against `live`.
pub fn explain(live: &Live, req: &ExplainRequest, opts: &Options) -> Result<Explanation, ExplainError> {
    let p = parse(req)?;
    let mut header_names: Vec<String> = p.parts.headers.keys().map(|k| k.as_str().to_owned()).collect();
    header_names.dedup();
    let request =
        RequestReport { method: p.parts.method.to_string(), url: req.url.clone(), peer: p.peer, header_names };
    let mut out = Explanation::new(request);
    let settings = Settings {
        trusted_proxies: &opts.trusted_proxies,
        underscore_headers: UnderscoreHeaders::Allow,
        https: p.https,
    };
    let mut watch = Watch::default();
    match run(live, &p, opts, settings, &mut out, &mut watch) {
        Ok((decided, verdict)) => render(&mut out, decided, verdict.as_ref(), p.https),
        Err(SignInStep(reason)) => {
            // Its answer depends on the identity provider, which explain does not call, or on a
            // live identity session.
            out.decision.outcome = Outcome::SignIn.as_str();
            out.decision.reason = reason;
        }
    }
    Ok(out)
}

/// A sign-in step whose answer explain cannot show, with the reason label the proxy logs.
struct SignInStep(&'static str);

/// The proxy's phases, watched.
fn run<'a>(
    live: &'a Live,
    p: &'a Parsed,
    opts: &Options,
    settings: Settings<'a>,
    out: &mut Explanation,
    watch: &mut Watch,
) -> Result<(Decided<'a>, Option<Verdict>), SignInStep> {
    let mut cx = match phases::route(live, &p.parts, p.peer, opts.now, REQUEST_ID_PLACEHOLDER, settings) {
        Ok(cx) => cx,
        Err((miss, decided)) => {
            describe_miss(&mut out.route, live, &miss);
            if let Some(routed) = as_target(&miss).and_then(|t| handoff::auth_host_request(live, t)) {
                return auth_host(live, p, opts, &routed, &mut out.route).map(|d| (d, None));
            }
            return Ok((decided, None));
        }
    };
    let app = cx.app;
    report::describe_target(&mut out.route, live, &cx.target);
    out.route.application = Some(app.label.clone());
    out.route.mode = Some(mode_label(&app.spec));
    out.route.domain = out.route.candidates.iter().find(|c| c.path_matches).map(|c| c.domain.clone());
    if let Some(refused) = phases::screen(&mut cx) {
        return Ok((refused, None));
    }
    let (cx, origin) = match phases::front(cx, watch) {
        Front::Decided(decided) => {
            out.cors = preflight_report(app, &p.parts, &decided, watch);
            return Ok((decided, None));
        }
        Front::SignIn(_, endpoint) => return Err(SignInStep(endpoint.name())),
        Front::Authenticate(cx, origin) => (cx, origin),
    };
    out.cors = Some(report::actual_report(app, origin.as_ref()));
    // No JWKS refresh here: `credential.note` says when the proxy would.
    let auth = request::authenticate_with(&app.decisions(), &cx.parts.headers, opts.now, watch);
    out.credential = Some(report::credential_report(&auth.presented, &auth.authn, opts, watch));
    let (verdict, decided) = phases::authorize(cx, origin, &auth.authn, watch);
    out.policies = report::policy_reports(&app.spec, watch, verdict.decision);
    out.decision.policy = verdict.decision.policy().and_then(|i| app.spec.policies.get(i)).map(|p| p.name.clone());
    Ok((decided, Some(verdict)))
}

fn as_target<'m, 'r>(miss: &'m RouteMiss<'r>) -> Option<&'m Target<'r>> {
    match miss {
        RouteMiss::UnknownHost(target) => Some(target),
        RouteMiss::Invalid(_) => None,
    }
}

/// A request for an authentication host, routed and answered as the proxy does
/// (`handoff::serve_auth_host`): the answers that need no provider and change nothing are the
/// proxy's own, read from the response; the others are a [`SignInStep`].
fn auth_host<'a>(
    live: &'a Live,
    p: &Parsed,
    opts: &Options,
    routed: &AuthHostRequest<'_>,
    route: &mut RouteReport,
) -> Result<Decided<'a>, SignInStep> {
    let host = routed.host;
    let label = |i: &usize| live.apps.get(*i).map(|a| a.label.clone()).unwrap_or_default();
    route.result = "authentication_host";
    // Never forwarded, and no application's domain.
    (route.nearest_miss, route.forwarded_host, route.forwarded_path) = (None, None, None);
    route.authentication_host = Some(AuthHostReport {
        authority: host.authority.clone(),
        provider_of: label(&host.leader),
        applications: host.members.iter().map(label).collect(),
    });
    let arrival = (p.peer, opts.now, REQUEST_ID_PLACEHOLDER);
    let serving = Serving { https: p.https, trusted_proxies: &opts.trusted_proxies, logins: None };
    let cx = routed.ctx(live, &p.parts, arrival, serving);
    match routed.answer_at_once(&cx) {
        Some((resp, reason)) => Ok(Decided { app: None, outcome: Outcome::SignIn, reason, plan: Plan::Answer(resp) }),
        None => Err(SignInStep(routed.endpoint.name())),
    }
}

fn describe_miss(route: &mut RouteReport, live: &Live, miss: &RouteMiss<'_>) {
    match miss {
        RouteMiss::Invalid(TargetError::AmbiguousPath) => {
            route.result = "bad_request";
            route.path_note = Some(report::AMBIGUOUS_REFUSED.to_owned());
        }
        RouteMiss::Invalid(_) => route.result = "bad_request",
        RouteMiss::UnknownHost(target) => {
            route.result = "unknown_host";
            report::describe_target(route, live, target);
            route.nearest_miss = report::nearest_miss(live, target, &route.candidates);
        }
    }
}

/// The CORS step of a request decided before authentication, when it was a preflight.
fn preflight_report(
    app: &crate::config::LiveApp,
    parts: &Parts,
    decided: &Decided<'_>,
    watch: &Watch,
) -> Option<CorsReport> {
    let (outcome, detail) = match (decided.outcome, &decided.plan) {
        (Outcome::PreflightAnswered, Plan::Answer(resp)) => {
            let mut s = format!("answered ({}) with", resp.status().as_u16());
            // The CORS headers; the request id's slot is the glue's (shown with the decision).
            for (name, value) in resp.headers().iter().filter(|(name, _)| *name != crate::http::headers::REQUEST_ID) {
                s.push_str(&format!(" {name}: {};", String::from_utf8_lossy(value.as_bytes())));
            }
            ("answered", s)
        }
        (Outcome::PreflightRefused, Plan::Answer(resp)) => {
            let why = watch.preflight_refused.as_deref().unwrap_or_default();
            ("refused", format!("refused ({}, {}): {why}", resp.status().as_u16(), decided.reason))
        }
        (Outcome::PreflightForwarded, _) => {
            ("forwarded", "forwarded to the app unauthenticated: cors.bypassOptionsToOrigin is set".to_owned())
        }
        _ => return None,
    };
    let origin = parts.headers.get(http::header::ORIGIN).map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned());
    Some(CorsReport { classification: "preflight", origin, owner: app.cors.owner(), outcome, detail })
}

/// The decision as the client meets it: the response the phases built (status, headers and
/// body read from it), or, for a forwarded request, the headers the proxy adds to the app's
/// answer and the identity headers the app receives.
fn render(out: &mut Explanation, decided: Decided<'_>, verdict: Option<&Verdict>, https: bool) {
    let d = &mut out.decision;
    d.outcome = decided.outcome.as_str();
    d.reason = decided.reason;
    if let (Outcome::AuditDeny, Some(r)) = (decided.outcome, verdict.and_then(|v| v.refusal.as_ref())) {
        d.enforce_would = Some(WouldBe { status: r.status().as_u16(), reason: r.reason() });
    }
    let placeholder = HeaderValue::from_static(REQUEST_ID_PLACEHOLDER);
    match decided.plan {
        Plan::Answer(mut resp) => {
            stamp(&mut resp, placeholder.clone());
            d.status = Some(resp.status().as_u16());
            d.response_headers = header_pairs(resp.headers());
            d.body = body_json(resp);
        }
        Plan::Forward(fwd) => {
            d.forwarded_to = Some(match fwd.destination {
                Destination::App => "app".to_owned(),
                Destination::Route(route) => format!("{}://{}", route.upstream.scheme, route.upstream.authority),
            });
            let scheme = if https { "https" } else { "http" };
            fwd.header_edits(scheme, |edit| {
                if let HeaderEdit::Set(name, _) = edit {
                    if [JWT_ASSERTION, AUTHENTICATED_USER_EMAIL, CLIENT_ID].contains(&name) {
                        d.identity_headers.push(name.as_str().to_owned());
                    }
                }
            });
            let mut resp = with_cors(fwd.app, fwd.origin.as_ref(), Response::new(empty()));
            stamp(&mut resp, placeholder.clone());
            d.response_headers = header_pairs(resp.headers());
        }
    }
}

fn empty() -> OutBody {
    http_body_util::Empty::new().map_err(|never| match never {}).boxed()
}

/// The JSON body of one of the sidecar's own answers (they are built in memory: the body is
/// ready at the first poll); `None` for an empty body.
fn body_json(resp: Response<OutBody>) -> Option<serde_json::Value> {
    let mut collect = std::pin::pin!(resp.into_body().collect());
    match collect.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(c)) => serde_json::from_slice(&c.to_bytes()).ok(),
        _ => None,
    }
}

fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}
