//! The request path, in the order api.md fixes: route → preflight → authenticate → policies →
//! forward → CORS on the answer. Each step calls a pure decision; this file only sequences
//! them, counts, logs, and hands the bytes to `forward`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{HeaderValue, ORIGIN};
use http::{Request, Response};
use hyper::body::Incoming;
use ipnet::IpNet;

use super::forward::{self, Destination, Forward, IdentityHeaders};
use super::headers::REQUEST_ID;
use super::login;
use super::respond::{preflight_answer, Refusal};
use super::upstream::AppConnections;
use crate::config::live::mode_label;
use crate::config::{ConfigStore, LiveApp};
use crate::decide::authn::{Authn, Principal};
use crate::decide::client_headers::{self, UnderscoreHeaders};
use crate::decide::cors::{PreflightOutcome, PREFLIGHT_VARY};
use crate::decide::login as login_rules;
use crate::decide::policy::Decision;
use crate::decide::request::{self, AppDecisions, Front, Presented, RouteMiss};
use crate::jwks::IssuerKeys;
use crate::metrics::Metrics;
use crate::outbound::{HttpClient, OutBody};
use portcullis_crds::snapshot::Upstream;

/// Settings fixed at start-up.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// The app beside us (`--upstream`).
    pub upstream: Upstream,
    /// Peers whose `X-Forwarded-For` is believed (`--trusted-proxies`).
    pub trusted_proxies: Vec<IpNet>,
    /// How long the upstream may take to send response headers before we answer 504.
    pub upstream_timeout: Duration,
    /// Scheme clients reach us with (`X-Forwarded-Proto`).
    pub client_scheme: &'static str,
    /// `--headers-with-underscores`: what header names with `_` get (protected spellings are
    /// always removed).
    pub underscore_headers: UnderscoreHeaders,
    /// `--body-read-timeout`: the longest a request body may take to arrive.
    pub body_read_timeout: Duration,
    /// `--connect-timeout`: the longest a new connection to the app may take.
    pub connect_timeout: Duration,
}

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    pub store: Arc<ConfigStore>,
    pub client: HttpClient,
    pub settings: ProxySettings,
    pub metrics: Arc<Metrics>,
    /// Kept-alive connections to a plain-HTTP `--upstream` (others go through `client`).
    pub app_connections: Option<AppConnections>,
    request_ids: RequestIds,
}

impl Proxy {
    pub fn new(store: Arc<ConfigStore>, client: HttpClient, settings: ProxySettings, metrics: Arc<Metrics>) -> Self {
        let app_connections = (settings.upstream.scheme == "http")
            .then(|| AppConnections::new(&settings.upstream.authority, settings.connect_timeout));
        Self { store, client, settings, metrics, app_connections, request_ids: RequestIds::new() }
    }

    /// A fresh request id (`x-request-id`), for an answer made outside [`handle`] (`authz`).
    pub fn next_request_id(&self) -> HeaderValue {
        self.request_ids.next()
    }
}

/// Request ids: a per-process random prefix and a counter — unique, cheap, and not guessable
/// across restarts.
struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        Self { prefix: (seed as u32) ^ std::process::id().rotate_left(16), next: AtomicU64::new(1) }
    }

    fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 25];
        let s = format_id(&mut buf, self.prefix, n);
        // Only hex digits and '-': always a valid header value.
        HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("0"))
    }
}

fn format_id(buf: &mut [u8; 25], prefix: u32, n: u64) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in 0..8 {
        buf[i] = HEX[((prefix >> (28 - 4 * i)) & 0xf) as usize];
    }
    buf[8] = b'-';
    for i in 0..16 {
        buf[9 + i] = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    std::str::from_utf8(buf).unwrap_or("0")
}

/// What the pipeline did, for the log line and the latency metric.
pub struct Outcome {
    /// The application routed to.
    pub app: Option<usize>,
    pub decision: &'static str,
    pub reason: &'static str,
    /// Time spent waiting on the upstream (excluded from the added-latency histogram).
    pub upstream: Duration,
}

impl Default for Outcome {
    fn default() -> Self {
        Self::new()
    }
}

impl Outcome {
    pub fn new() -> Self {
        Self { app: None, decision: "deny", reason: "", upstream: Duration::ZERO }
    }
}

/// Handles one request end to end. Never fails: every problem becomes a response.
pub async fn handle(proxy: Arc<Proxy>, req: Request<Incoming>, peer: SocketAddr) -> Response<OutBody> {
    let started = Instant::now();
    let request_id = proxy.request_ids.next();
    let method = req.method().clone();
    let mut outcome = Outcome::new();
    let live = proxy.store.load();
    let mut resp = match &live {
        None => {
            outcome.reason = "no_config";
            Refusal::NoConfig.to_response(request_id.to_str().unwrap_or_default())
        }
        Some(live) => run(&proxy, live, req, peer, &request_id, &mut outcome).await,
    };
    resp.headers_mut().insert(REQUEST_ID, request_id.clone());
    let added = started.elapsed().saturating_sub(outcome.upstream);
    proxy.metrics.added_latency.observe(added.as_secs_f64());

    let app = live.as_ref().zip(outcome.app).map(|(l, i)| l.apps[i].label.as_str()).unwrap_or("");
    // Denials are what users come to the logs for; allowed traffic and answered preflights
    // would drown them (and cost CPU on every request), so they log at debug.
    if matches!(outcome.decision, "allow" | "bypass") || outcome.reason == "answered" {
        tracing::debug!(request_id = ?request_id, app, %method, status = resp.status().as_u16(), decision = outcome.decision, reason = outcome.reason, "request");
    } else {
        tracing::info!(request_id = ?request_id, app, %method, status = resp.status().as_u16(), decision = outcome.decision, reason = outcome.reason, "request");
    }
    resp
}

async fn run(
    proxy: &Proxy,
    live: &crate::config::Live,
    req: Request<Incoming>,
    peer: SocketAddr,
    request_id: &HeaderValue,
    outcome: &mut Outcome,
) -> Response<OutBody> {
    let rid = request_id.to_str().unwrap_or_default();
    let (parts, body) = req.into_parts();
    match decide(proxy, live, &parts, peer, rid, outcome).await {
        Plan::Answer(resp) => resp,
        Plan::Forward(fwd) => {
            let req = Request::from_parts(parts, body);
            forward::forward(proxy, fwd, req, peer, &mut outcome.upstream, rid).await
        }
    }
}

/// What the sidecar does with one request.
pub enum Plan<'a> {
    /// The sidecar answers itself: a refusal, an answered or refused preflight, a sign-in step
    /// (CORS headers for an allowed origin included).
    Answer(Response<OutBody>),
    /// The request goes on, as decided: its destination, the canonical authority and path, the
    /// identity headers and the client headers to remove, and the origin whose CORS headers the
    /// answer gets.
    Forward(Forward<'a>),
}

/// Decides one request without reading its body: route → reserved paths and preflights →
/// authenticate → policies → destination, counting and recording the outcome. The proxy runs
/// it before forwarding; the external authorizer answers with its [`Plan`].
pub async fn decide<'a>(
    proxy: &'a Proxy,
    live: &'a crate::config::Live,
    req: &http::request::Parts,
    peer: SocketAddr,
    rid: &str,
    outcome: &mut Outcome,
) -> Plan<'a> {
    let refuse = |outcome: &mut Outcome, r: Refusal| {
        outcome.reason = r.reason();
        r.to_response(rid)
    };

    // 1. The canonical request (authority, path), routed by host and matching path.
    let routed = match request::route(&live.router, req.version, &req.uri, &req.headers) {
        Ok(routed) => routed,
        Err(miss) => {
            if matches!(miss, RouteMiss::UnknownHost(_)) {
                proxy.metrics.requests.with_label_values(&["", "deny", "unknown_host", ""]).inc();
            }
            return Plan::Answer(refuse(outcome, miss.refusal()));
        }
    };
    let app_index = routed.app;
    let canonical = routed.canonical(&req.headers);
    outcome.app = Some(app_index);
    let app = &live.apps[app_index];
    let decisions = app.decisions();
    // What routing matched; the path the app receives is `canonical.forward_path`.
    let path = canonical.matching_path.as_deref().unwrap_or_else(|| req.uri.path());
    let drop_headers = match client_headers::underscore_names(
        &req.headers,
        proxy.settings.underscore_headers,
        app.jwt.header_name(),
    ) {
        Ok(names) => names,
        Err(refused) => return Plan::Answer(refuse(outcome, Refusal::BadRequest(refused.reason()))),
    };
    // The sidecar's own answers to a routed request carry CORS headers, so the page can read them.
    let refuse_readable = |outcome: &mut Outcome, r: Refusal, origin: Option<&HeaderValue>| {
        outcome.reason = r.reason();
        forward::refusal(app, origin, r, rid)
    };

    let now = unix_now();
    let login_cx = |origin| login::Ctx {
        proxy,
        live,
        app_index,
        uri: &req.uri,
        headers: &req.headers,
        authority: &canonical.authority,
        origin,
        peer: peer.ip(),
        now,
        request_id: rid,
    };

    // 2. Reserved paths, then preflights, before any authentication: they never carry credentials.
    let origin = match request::front(&app.cors, &req.method, &req.headers, path) {
        Front::Reserved => {
            // Sign-in endpoints answer for themselves; the rest of the prefix is a 404.
            let cx = login_cx(req.headers.get(ORIGIN));
            let (resp, reason) = login::handle(&cx, login_rules::endpoint(path)).await;
            outcome.decision = "sign_in";
            outcome.reason = reason;
            return Plan::Answer(resp);
        }
        Front::Preflight(_, PreflightOutcome::Answer(headers)) => {
            app.counters.preflight_answered.inc();
            outcome.decision = "preflight";
            outcome.reason = "answered";
            return Plan::Answer(preflight_answer(headers));
        }
        Front::Preflight(_, PreflightOutcome::Forward) => {
            proxy.metrics.preflights.with_label_values(&[&app.label, "forwarded"]).inc();
            outcome.decision = "bypass";
            outcome.reason = "preflight_forwarded";
            let fwd = Forward {
                app,
                destination: Destination::App,
                identity: IdentityHeaders::None,
                origin: None,
                canonical,
                drop_headers,
            };
            return Plan::Forward(fwd);
        }
        Front::Preflight(_, PreflightOutcome::Refuse(why)) => {
            proxy.metrics.preflights.with_label_values(&[&app.label, why.reason()]).inc();
            outcome.decision = "preflight";
            // A refused preflight carries no Access-Control-Allow-* header, and the same `Vary`
            // as an answered one: the refusal depends on the same request headers (api.md).
            let mut resp = refuse(outcome, Refusal::PreflightRefused(why.reason()));
            resp.headers_mut().insert(http::header::VARY, PREFLIGHT_VARY);
            return Plan::Answer(resp);
        }
        Front::Request { origin } => origin.cloned(),
    };

    // 3. Authenticate, 4. evaluate the policies.
    let authn = authenticate(app, &decisions, &req.headers, now).await;
    let verdict = request::policies(&app.spec, &req.headers, &authn, peer.ip(), &proxy.settings.trusted_proxies);
    let identity = match &authn {
        Authn::Authenticated(p) if verdict.forwards_identity() => IdentityHeaders::from_principal(p),
        _ => IdentityHeaders::None,
    };
    match verdict.refusal {
        Some(r) if !verdict.audit => {
            proxy.metrics.requests.with_label_values(&[&app.label, "deny", r.reason(), mode_label(&app.spec)]).inc();
            outcome.decision = "deny";
            if let (Refusal::Unauthenticated { reason, .. }, Some(_)) = (&r, &app.login) {
                // With sign-in configured: a navigation goes to sign-in, an API call gets a
                // readable 401 naming the sign-in URL (api.md `unauthenticatedResponse`).
                outcome.reason = reason;
                let redirect = login_rules::redirects_to_sign_in(
                    app.spec.unauthenticated_response,
                    true,
                    &req.method,
                    &req.headers,
                );
                return Plan::Answer(login::unauthenticated(&login_cx(origin.as_ref()), reason, redirect));
            }
            return Plan::Answer(refuse_readable(outcome, r, origin.as_ref()));
        }
        Some(r) => {
            // Audit: count and log what Enforce would do, then forward without identity.
            proxy.metrics.requests.with_label_values(&[&app.label, "deny", r.reason(), "audit"]).inc();
            tracing::warn!(request_id = rid, app = %app.label, reason = r.reason(), status = r.status().as_u16(), "audit: this request would be denied in Enforce mode");
            outcome.decision = "audit_deny";
            outcome.reason = r.reason();
        }
        None => {
            match verdict.decision {
                Decision::Bypass { .. } => {
                    app.counters.bypassed.inc();
                    outcome.decision = "bypass";
                }
                _ => {
                    app.counters.allowed.inc();
                    outcome.decision = "allow";
                }
            }
            outcome.reason = "policy";
        }
    }

    // 5. Forward: a forward route, or the app.
    let destination = match request::destination(&app.spec, path) {
        request::Destination::Unavailable(_) => {
            return Plan::Answer(refuse_readable(outcome, Refusal::RouteUnavailable, origin.as_ref()));
        }
        request::Destination::Route(route) => Destination::Route(route),
        request::Destination::App => Destination::App,
    };
    Plan::Forward(Forward { app, destination, identity, origin, canonical, drop_headers })
}

/// Step 3 with its one asynchronous part: an unknown `kid` triggers one (rate-limited) JWKS
/// refresh and a second try. Counts a service token's last use.
async fn authenticate(
    app: &LiveApp,
    decisions: &AppDecisions<'_, [Arc<IssuerKeys>]>,
    headers: &http::HeaderMap,
    now: i64,
) -> Authn {
    let mut result = request::authenticate(decisions, headers, now);
    if let Some(issuer) = result.refresh_issuer() {
        if let (Some(keys), Presented::Jwt { token: Ok(token), .. }) = (app.keys.get(issuer), result.presented) {
            if keys.refresh_for_unknown_kid().await {
                result.authn = request::verify_jwt(decisions, token, now);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_and_well_formed() {
        let ids = RequestIds::new();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 25);
        assert!(a.to_str().unwrap().bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'));
    }
}
