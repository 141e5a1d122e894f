//! The request path's driver: runs the phases of `phases.rs` in the order api.md fixes (route →
//! screen → preflight → authenticate → policies → forward → CORS on the answer) with the
//! asynchronous steps between them — a JWKS refresh on an unknown `kid`, the sign-in endpoints,
//! forwarding — then counts and logs what was decided ([`Outcome`]).
//!
//! Must not decide anything itself: every decision and every answer comes from the phases, which
//! `explain` runs too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{HeaderValue, ORIGIN};
use http::{Request, Response};
use hyper::body::Incoming;

use super::forward;
use super::headers::REQUEST_ID;
use super::oidc_steps;
use super::phases::{self, Decided, Front, Plan, Routed, Settings};
use super::proxy::Proxy;
use super::respond::Refusal;
use super::sign_in;
use crate::config::live::mode_label;
use crate::config::{Live, LiveApp};
use crate::decide::authn::{Authn, Principal};
use crate::decide::observe::Quiet;
use crate::decide::outcome::Outcome;
use crate::decide::policy::Decision;
use crate::decide::request::{self, Presented, RouteMiss, Verdict};
use crate::outbound::OutBody;

/// Handles one request end to end. Never fails: every problem becomes a response.
pub async fn handle(proxy: Arc<Proxy>, req: Request<Incoming>, peer: SocketAddr) -> Response<OutBody> {
    let started = Instant::now();
    let request_id = proxy.next_request_id();
    let rid = request_id.as_str();
    let method = req.method().clone();
    // Tracing off: one check, nothing built, `traceparent` passes to the app as sent.
    let trace = proxy.tracing.as_ref().and_then(|t| t.request(req.headers(), &method));
    let live = proxy.store.load();
    // Time spent waiting on the upstream, excluded from the added-latency histogram.
    let mut upstream = Duration::ZERO;
    let (mut resp, app, outcome, reason) = match &live {
        None => (Refusal::NoConfig.to_response(rid), None, Outcome::Deny, Refusal::NoConfig.reason()),
        Some(live) => {
            let (parts, body) = req.into_parts();
            let decided = match trace.as_ref().filter(|t| t.recording()) {
                None => decide(&proxy, live, &parts, peer, rid).await,
                Some(t) => t.within(decide(&proxy, live, &parts, peer, rid)).await,
            };
            let resp = match decided.plan {
                Plan::Answer(resp) => resp,
                Plan::Forward(fwd) => {
                    let req = Request::from_parts(parts, body);
                    forward::forward(&proxy, fwd, req, peer, &mut upstream, rid, trace.as_ref()).await
                }
            };
            (resp, decided.app.map(|i| live.apps[i].label.as_str()), decided.outcome, decided.reason)
        }
    };
    stamp(&mut resp, request_id.header());
    let added = started.elapsed().saturating_sub(upstream);
    proxy.metrics.added_latency.observe(added.as_secs_f64());

    let (app, decision, status) = (app.unwrap_or(""), outcome.as_str(), resp.status().as_u16());
    if let Some(t) = trace {
        t.finish(app, decision, reason, status);
    }
    if outcome.routine() {
        tracing::debug!(request_id = ?rid, app, %method, status, decision, reason, "request");
    } else {
        tracing::info!(request_id = ?rid, app, %method, status, decision, reason, "request");
    }
    resp
}

/// Every answer carries the request's id, also in the log line for it.
pub fn stamp(resp: &mut Response<OutBody>, request_id: HeaderValue) {
    resp.headers_mut().insert(REQUEST_ID, request_id);
}

/// The phases' settings from the proxy's.
pub fn settings(proxy: &Proxy) -> Settings<'_> {
    Settings {
        trusted_proxies: &proxy.settings.trusted_proxies,
        underscore_headers: proxy.settings.underscore_headers,
        https: proxy.settings.client_scheme == "https",
    }
}

/// What the proxy brings to a sign-in step: its listener's scheme, trusted proxies and counter.
pub fn serving(proxy: &Proxy) -> oidc_steps::Serving<'_> {
    let settings = settings(proxy);
    oidc_steps::Serving {
        https: settings.https,
        trusted_proxies: settings.trusted_proxies,
        logins: Some(&proxy.metrics.logins),
    }
}

/// Decides one request without reading its body, counting what was decided. The proxy runs it
/// before forwarding; the external authorizer answers with its [`Plan`].
pub async fn decide<'a>(
    proxy: &'a Proxy,
    live: &'a Live,
    req: &http::request::Parts,
    peer: SocketAddr,
    rid: &str,
) -> Decided<'a> {
    let now = unix_now();
    let mut cx = match phases::route(live, req, peer.ip(), now, rid, settings(proxy)) {
        Ok(cx) => cx,
        Err((miss, decided)) => {
            if let RouteMiss::UnknownHost(target) = &miss {
                // An authentication host (`login.authenticationHost`) is routed by no application.
                // Boxed, like every rare step that does outbound I/O: the request future is
                // as large as its largest step, and hyper keeps room for one per connection.
                if let Some((resp, reason)) =
                    Box::pin(super::handoff::serve_auth_host(live, req, target, (peer.ip(), now, rid), serving(proxy)))
                        .await
                {
                    return Decided { app: None, outcome: Outcome::SignIn, reason, plan: Plan::Answer(resp) };
                }
            }
            if matches!(miss, RouteMiss::UnknownHost(_)) {
                proxy.metrics.requests.with_label_values(&["", "deny", "unknown_host", ""]).inc();
            }
            return decided;
        }
    };
    if let Some(refused) = phases::screen(&mut cx) {
        return refused;
    }
    let app = cx.app;
    let (cx, origin) = match phases::front(cx, &mut Quiet) {
        Front::Decided(decided) => {
            count_front(proxy, app, &decided);
            return decided;
        }
        Front::SignIn(cx, endpoint) => return Box::pin(sign_in(proxy, &cx, endpoint)).await,
        Front::Authenticate(cx, origin) => (cx, origin),
    };
    let authn = authenticate(app, &cx.parts.headers, now).await;
    let (verdict, decided) = phases::authorize(cx, origin, &authn, &mut Quiet);
    count_verdict(proxy, app, &verdict, rid);
    if proxy.tracing.is_some() {
        crate::trace::note_verdict(app, &verdict, &authn);
    }
    decided
}

/// A `/.portcullis/` endpoint: it answers for itself (CORS headers included).
async fn sign_in<'a>(proxy: &Proxy, cx: &Routed<'a, '_>, endpoint: crate::decide::sign_in::Endpoint) -> Decided<'a> {
    let login_cx = oidc_steps::Ctx {
        live: cx.live,
        app_index: cx.app_index,
        uri: &cx.parts.uri,
        headers: &cx.parts.headers,
        authority: &cx.canonical.authority,
        origin: cx.parts.headers.get(ORIGIN),
        peer: cx.peer,
        now: cx.now,
        request_id: cx.request_id,
        serving: serving(proxy),
    };
    let (resp, reason) = sign_in::handle(&login_cx, endpoint).await;
    Decided { app: Some(cx.app_index), outcome: Outcome::SignIn, reason, plan: Plan::Answer(resp) }
}

/// Counts a decision made before authentication (preflights).
fn count_front(proxy: &Proxy, app: &LiveApp, decided: &Decided<'_>) {
    match decided.outcome {
        Outcome::PreflightAnswered => app.counters.preflight_answered.inc(),
        Outcome::PreflightForwarded => proxy.metrics.preflights.with_label_values(&[&app.label, "forwarded"]).inc(),
        Outcome::PreflightRefused => proxy.metrics.preflights.with_label_values(&[&app.label, decided.reason]).inc(),
        _ => {}
    }
}

/// Counts the policies' verdict; in Audit mode also logs what Enforce would do.
fn count_verdict(proxy: &Proxy, app: &LiveApp, verdict: &Verdict, rid: &str) {
    let requests = &proxy.metrics.requests;
    match &verdict.refusal {
        Some(r) if !verdict.audit => {
            requests.with_label_values(&[&app.label, "deny", r.reason(), mode_label(&app.spec)]).inc();
        }
        Some(r) => {
            requests.with_label_values(&[&app.label, "deny", r.reason(), "audit"]).inc();
            tracing::warn!(request_id = rid, app = %app.label, reason = r.reason(), status = r.status().as_u16(), "audit: this request would be denied in Enforce mode");
        }
        None if matches!(verdict.decision, Decision::Bypass { .. }) => app.counters.bypassed.inc(),
        None => app.counters.allowed.inc(),
    }
}

/// Authentication with its one asynchronous part: an unknown `kid` triggers one (rate-limited)
/// JWKS refresh and a second try. Counts a service token's last use.
async fn authenticate(app: &LiveApp, headers: &http::HeaderMap, now: i64) -> Authn {
    let decisions = app.decisions();
    let mut result = request::authenticate(&decisions, headers, now);
    if let Some(issuer) = result.refresh_issuer() {
        if let (Some(keys), Presented::Jwt { token: Ok(token), .. }) = (app.keys.get(issuer), result.presented) {
            if Box::pin(keys.refresh_for_unknown_kid()).await {
                result.authn = request::verify_jwt(&decisions, token, now);
            }
        }
    }
    if let Authn::Authenticated(Principal::Service(service)) = &result.authn {
        if let Some(g) = app.counters.token_last_used.get(&service.name) {
            g.set(now as f64);
        }
    }
    result.authn
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}
