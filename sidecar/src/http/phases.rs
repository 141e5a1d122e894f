//! The request's phases, in the order api.md fixes (pingora's named phases over one
//! per-request context): [`route`] → [`screen`] → [`front`] (reserved paths, preflights) →
//! authentication → [`authorize`] (policies, destination). Each is a short synchronous function
//! that calls the pure decisions (`decide::request`) and builds the sidecar's own answers
//! (`respond`), so the [`Response`] it returns is the one the client gets.
//!
//! The proxy's driver (`pipeline.rs`) runs them with the asynchronous steps between (a JWKS
//! refresh, the sign-in endpoints, forwarding) and counts; `explain` runs the very same phases
//! with an observer and reads the responses they build. Must not: await, count, log, or read a
//! clock (`now` is in the context).

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue, ORIGIN};
use http::request::Parts;
use http::Response;
use ipnet::IpNet;

use super::forward::{Forward, IdentityHeaders};
use super::respond::{self, preflight_answer, sign_in_base, sign_in_required, Refusal};
use super::sign_in;
use crate::config::{Live, LiveApp};
use crate::decide::authn::Authn;
use crate::decide::client_headers::{self, UnderscoreHeaders};
use crate::decide::cors::PreflightOutcome;
use crate::decide::observe::Observer;
use crate::decide::outcome::Outcome;
use crate::decide::policy::Decision;
use crate::decide::request::{self, Canonical, Destination, RouteMiss, Verdict};
use crate::decide::route::Target;
use crate::decide::sign_in::{self as sign_in_rules, Endpoint};
use crate::outbound::OutBody;

/// What the phases read that is not the request: the sidecar's start-up settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings<'a> {
    /// `--trusted-proxies`: peers whose `X-Forwarded-For` counts for `ipRange` rules.
    pub trusted_proxies: &'a [IpNet],
    /// `--headers-with-underscores`.
    pub underscore_headers: UnderscoreHeaders,
    /// Clients reach the listener over TLS (the scheme of sign-in URLs).
    pub https: bool,
}

/// What was decided about a request, and what the sidecar does next.
pub struct Decided<'a> {
    /// The application routed to.
    pub app: Option<usize>,
    pub outcome: Outcome,
    /// The stable reason of the log line and `explain` (a refusal's reason, `policy`…).
    pub reason: &'static str,
    pub plan: Plan<'a>,
}

/// What the sidecar does with one request.
pub enum Plan<'a> {
    /// The sidecar answers itself: a refusal, an answered or refused preflight (the CORS headers
    /// for an allowed origin included, where they belong).
    Answer(Response<OutBody>),
    /// The request goes on, as decided (see [`Forward`]).
    Forward(Forward<'a>),
}

/// One routed request: what every later phase reads. `'a` is the configuration's lifetime,
/// `'r` the request's.
pub struct Routed<'a, 'r> {
    pub live: &'a Live,
    pub app_index: usize,
    pub app: &'a LiveApp,
    pub parts: &'r Parts,
    /// The canonical target (routed host, normalised path).
    pub target: Target<'r>,
    /// The canonical parts the app receives.
    pub canonical: Canonical,
    /// Client headers to remove besides the protected names ([`screen`]).
    pub drop_headers: Vec<HeaderName>,
    pub peer: IpAddr,
    /// Unix seconds tokens are checked at.
    pub now: i64,
    pub request_id: &'r str,
    pub settings: Settings<'a>,
}

/// What happens after [`front`].
pub enum Front<'a, 'r> {
    /// Answered (or forwarded) before authentication.
    Decided(Decided<'a>),
    /// A sign-in endpoint the application serves: the driver runs it (it does I/O).
    SignIn(Routed<'a, 'r>, Endpoint),
    /// Authenticate, then [`authorize`]; `origin` for an actual CORS request.
    Authenticate(Routed<'a, 'r>, Option<HeaderValue>),
}

// === impl Decided ===

impl Decided<'_> {
    fn answer(app: Option<usize>, outcome: Outcome, reason: &'static str, resp: Response<OutBody>) -> Self {
        Decided { app, outcome, reason, plan: Plan::Answer(resp) }
    }
}

// === impl Routed ===

impl Routed<'_, '_> {
    /// The path routing matched (normalised, `;parameters` removed).
    pub fn path(&self) -> &str {
        &self.target.path.matching
    }

    /// A refusal of this request, readable by the calling page.
    fn refuse<'a>(&self, origin: Option<&HeaderValue>, r: &Refusal) -> Decided<'a> {
        let resp = respond::refusal(self.app, origin, r, self.request_id);
        Decided::answer(Some(self.app_index), Outcome::Deny, r.reason(), resp)
    }
}

/// Phase 1: the canonical request, routed by host and matching path (api.md "Domains"). A miss
/// is answered (400 or 404, never forwarded) and returned with the decision for `explain`.
#[allow(clippy::result_large_err)] // built once per request and matched at once
pub fn route<'a, 'r>(
    live: &'a Live,
    parts: &'r Parts,
    peer: IpAddr,
    now: i64,
    request_id: &'r str,
    settings: Settings<'a>,
) -> Result<Routed<'a, 'r>, (RouteMiss<'r>, Decided<'a>)> {
    let routed = match request::route(&live.router, parts.version, &parts.uri, &parts.headers) {
        Ok(routed) => routed,
        Err(miss) => {
            let r = miss.refusal();
            return Err((miss, Decided::answer(None, Outcome::Deny, r.reason(), r.to_response(request_id))));
        }
    };
    let canonical = routed.canonical(&parts.headers);
    Ok(Routed {
        live,
        app_index: routed.app,
        app: &live.apps[routed.app],
        parts,
        target: routed.target,
        canonical,
        drop_headers: Vec::new(),
        peer,
        now,
        request_id,
        settings,
    })
}

/// Phase 2: header names with underscores (`--headers-with-underscores`): the names to drop, or
/// a 400 for `Reject`.
pub fn screen<'a>(cx: &mut Routed<'a, '_>) -> Option<Decided<'a>> {
    let headers = &cx.parts.headers;
    match client_headers::underscore_names(headers, cx.settings.underscore_headers, cx.app.jwt.header_name()) {
        Ok(names) => {
            cx.drop_headers = names;
            None
        }
        Err(refused) => {
            let r = Refusal::BadRequest(refused.reason());
            Some(Decided::answer(Some(cx.app_index), Outcome::Deny, r.reason(), r.to_response(cx.request_id)))
        }
    }
}

/// Phase 3: reserved paths and preflights, before any authentication: they never carry
/// credentials (api.md "CORS", "Browser sign-in paths").
pub fn front<'a, 'r, O: Observer>(cx: Routed<'a, 'r>, obs: &mut O) -> Front<'a, 'r> {
    let (app, parts, rid) = (cx.app, cx.parts, cx.request_id);
    let answer = |outcome, reason, resp| Front::Decided(Decided::answer(Some(cx.app_index), outcome, reason, resp));
    match request::front_with(&app.cors, &parts.method, &parts.headers, cx.path(), obs) {
        request::Front::Reserved => match sign_in_rules::endpoint(cx.path()) {
            Some(e) if sign_in::serves(app.login.as_ref(), e) => Front::SignIn(cx, e),
            // The rest of the prefix is a 404, never forwarded.
            _ => Front::Decided(cx.refuse(parts.headers.get(ORIGIN), &Refusal::ReservedPath)),
        },
        request::Front::Preflight(_, PreflightOutcome::Answer(headers)) => {
            answer(Outcome::PreflightAnswered, "answered", preflight_answer(headers))
        }
        request::Front::Preflight(_, PreflightOutcome::Refuse(why)) => {
            let r = Refusal::PreflightRefused(why.reason());
            answer(Outcome::PreflightRefused, r.reason(), respond::preflight_refused(&r, rid))
        }
        request::Front::Preflight(_, PreflightOutcome::Forward) => Front::Decided(Decided {
            app: Some(cx.app_index),
            outcome: Outcome::PreflightForwarded,
            reason: "preflight_forwarded",
            plan: Plan::Forward(Forward {
                app,
                destination: Destination::App,
                identity: IdentityHeaders::None,
                origin: None,
                canonical: cx.canonical,
                drop_headers: cx.drop_headers,
            }),
        }),
        request::Front::Request { origin } => {
            let origin = origin.cloned();
            Front::Authenticate(cx, origin)
        }
    }
}

/// Phase 5 (after authentication): the policies, then the destination. Returns the verdict
/// (the driver counts it) with what was decided.
pub fn authorize<'a, O: Observer>(
    cx: Routed<'a, '_>,
    origin: Option<HeaderValue>,
    authn: &Authn,
    obs: &mut O,
) -> (Verdict, Decided<'a>) {
    let headers = &cx.parts.headers;
    let verdict = request::policies_with(&cx.app.spec, headers, authn, cx.peer, cx.settings.trusted_proxies, obs);
    let decided = match verdict.enforced_refusal() {
        Some(r) => refuse(&cx, origin.as_ref(), r),
        None => forward(cx, origin, authn, &verdict),
    };
    (verdict, decided)
}

/// An enforced refusal. With sign-in configured, an unauthenticated navigation goes to sign-in
/// and an API call gets a readable 401 naming the sign-in URL (api.md `unauthenticatedResponse`).
fn refuse<'a>(cx: &Routed<'a, '_>, origin: Option<&HeaderValue>, r: &Refusal) -> Decided<'a> {
    let (Refusal::Unauthenticated { reason, .. }, Some(_)) = (r, &cx.app.login) else {
        return cx.refuse(origin, r);
    };
    let (spec, parts) = (&cx.app.spec, cx.parts);
    let redirect =
        sign_in_rules::redirects_to_sign_in(spec.unauthenticated_response, true, &parts.method, &parts.headers);
    let authority = cx.canonical.authority.to_str().ok();
    let base = authority.and_then(|a| sign_in_base(cx.app, cx.settings.https, a));
    let resp = sign_in_required(cx.app, origin, base.as_ref(), &parts.uri, reason, redirect, cx.request_id);
    Decided::answer(Some(cx.app_index), Outcome::Deny, reason, resp)
}

/// A request the policies let through (or that Audit only records): to the app or a forward
/// route, with the identity headers an Allow earns.
fn forward<'a>(cx: Routed<'a, '_>, origin: Option<HeaderValue>, authn: &Authn, verdict: &Verdict) -> Decided<'a> {
    let (outcome, reason) = match (&verdict.refusal, verdict.decision) {
        (Some(r), _) => (Outcome::AuditDeny, r.reason()),
        (None, Decision::Bypass { .. }) => (Outcome::Bypass, "policy"),
        (None, _) => (Outcome::Allow, "policy"),
    };
    let destination = match request::destination(&cx.app.spec, cx.path()) {
        Ok(d) => d,
        Err(r) => return cx.refuse(origin.as_ref(), &r),
    };
    let identity = match authn {
        Authn::Authenticated(p) if verdict.forwards_identity() => IdentityHeaders::from_principal(p),
        _ => IdentityHeaders::None,
    };
    let canonical = cx.canonical;
    let plan =
        Plan::Forward(Forward { app: cx.app, destination, identity, origin, canonical, drop_headers: cx.drop_headers });
    Decided { app: Some(cx.app_index), outcome, reason, plan }
}
