//! `portcullis-sidecar authz`: the external authorizer of a proxy you already run. One port
//! serves Envoy's ext_authz over gRPC (`envoy.service.auth.v3.Authorization/Check`, h2c or TLS)
//! and over HTTP (under `/ext-authz/`), forward-auth for Traefik, Caddy and nginx
//! (`/forward-auth`), and requests a proxy routes here directly: preflights (under
//! `/preflight/`) and the sign-in paths (`/.portcullis/…`).
//!
//! Each request is rebuilt from the proxy's description (`describe`), decided by the proxy's
//! own decision without forwarding (`http::pipeline::decide`, a `Plan`), and the plan is
//! translated to what that proxy understands (`reply`, `grpc`). Owns the endpoints and the translations. Must not route,
//! answer CORS, authenticate or evaluate policies itself: that is the plan's job, shared with
//! the sidecar, so the two enforcers cannot disagree (api.md "External authorizer").

pub mod describe;
pub mod grpc;
pub mod reply;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tower_service::Service;

use crate::decide::request::Destination;
use crate::http::forward::HeaderEdit;
use crate::http::phases::Plan;
use crate::http::pipeline;
use crate::http::respond::Refusal;
use crate::http::server::{serve_with, ServerLimits};
use crate::http::tls::TlsReloader;
use crate::http::Proxy;
use crate::outbound::OutBody;
use describe::{DescribeError, Described, Via, EXT_AUTHZ_PREFIX, PREFLIGHT_PREFIX};

/// The gRPC method Envoy calls.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";
/// The forward-auth endpoint (Traefik `ForwardAuth.address`, Caddy `forward_auth … uri`,
/// ingress-nginx `auth-url`).
pub const FORWARD_AUTH_PATH: &str = "/forward-auth";

/// The sign-in paths reserved on every application domain (api.md "Browser sign-in paths"): a
/// forward-auth proxy routes them here directly, since their answers are redirects and cookies.
pub const SIGN_IN_PREFIX: &str = "/.portcullis";

/// Which protocol asked: the `protocol` label of `portcullis_authz_checks_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcer {
    /// Envoy ext_authz over gRPC (Envoy, Istio `CUSTOM`, Envoy Gateway `extAuth`).
    Grpc,
    /// Envoy ext_authz over HTTP.
    Http,
    /// Traefik `ForwardAuth`, Caddy `forward_auth`, nginx `auth_request`.
    ForwardAuth,
    /// A request a forward-auth proxy routes here directly: a preflight (under `/preflight/`)
    /// or a sign-in path (`/.portcullis/…`).
    Direct,
}

// === impl Enforcer ===

impl Enforcer {
    pub fn label(self) -> &'static str {
        match self {
            Enforcer::Grpc => "authz-grpc",
            Enforcer::Http => "authz-http",
            Enforcer::ForwardAuth => "forward-auth",
            Enforcer::Direct => "forward-auth-direct",
        }
    }
}

/// Serves the authorizer on `listener` until `shutdown`, on the sidecar's accept loop.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    limits: ServerLimits,
    tls: Option<Arc<TlsReloader>>,
    shutdown: impl Future<Output = ()>,
) {
    let check = grpc::server(proxy.clone());
    let metrics = proxy.metrics.clone();
    let handler = move |req, peer| handle(proxy.clone(), check.clone(), req, peer);
    serve_with(listener, handler, metrics, limits, tls, shutdown).await
}

/// One request to the authorizer, by endpoint.
async fn handle(
    proxy: Arc<Proxy>,
    mut check: grpc::CheckServer,
    mut req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<OutBody> {
    if req.uri().path() == CHECK_PATH {
        req.extensions_mut().insert(grpc::ConnPeer(peer));
        // tonic's generated server is always ready; its errors are gRPC statuses in the body.
        let resp = match check.call(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        };
        // A unary answer: collected (trailers and all) into a body the accept loop can share
        // across threads, which tonic's streaming body cannot be.
        let (parts, body) = resp.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.map_err(|never| match never {}).boxed(),
            Err(status) => return Response::from_parts(parts, status_body(status)),
        };
        return Response::from_parts(parts, body);
    }
    let (parts, _body) = req.into_parts();
    let (enforcer, described) = if parts.uri.path() == FORWARD_AUTH_PATH {
        (Enforcer::ForwardAuth, describe::forward_auth(&parts.headers))
    } else if under(parts.uri.path(), EXT_AUTHZ_PREFIX) {
        (Enforcer::Http, describe::ext_authz_http(&parts))
    } else if under(parts.uri.path(), PREFLIGHT_PREFIX) {
        (Enforcer::Direct, describe::direct(&parts, PREFLIGHT_PREFIX))
    } else if under(parts.uri.path(), SIGN_IN_PREFIX) {
        (Enforcer::Direct, describe::direct(&parts, ""))
    } else {
        return reply::not_an_endpoint();
    };
    let outcome = decide(&proxy, enforcer, described, peer).await;
    reply::http(&proxy, enforcer, outcome)
}

/// A gRPC status that failed the answer's body: its own trailers-only body.
fn status_body(status: tonic::Status) -> OutBody {
    let mut trailers = http::HeaderMap::new();
    let _ = status.add_header(&mut trailers);
    http_body_util::Empty::new()
        .with_trailers(async move { Some(Ok(trailers)) })
        .map_err(|never| match never {})
        .boxed()
}

fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What the proxy's decision made of a described request, owned (the plan borrows the live
/// configuration, which is released before the answer is written).
pub enum Checked {
    /// The description cannot be read: `400`, never an allow.
    Invalid(DescribeError),
    /// The request as the proxy would forward it is not the request that was decided (a path
    /// the proxy does not normalise as we do): `400`, since the proxy cannot be told to send
    /// the decided one.
    NotCanonical,
    /// The sidecar's own answer (refusal, answered preflight, sign-in step, CORS headers
    /// included), and how the request was described.
    Answer(Response<OutBody>, Via),
    /// Forward, with these edits.
    Allow(Allow),
}

/// An allowed request: what the proxy must change on its way to the app and on the answer.
pub struct Allow {
    /// Headers to set (replacing every client value): the routed `Host` and `X-Forwarded-Host`,
    /// `X-Forwarded-Proto`, and the identity headers.
    pub set: HeaderMap,
    /// Client headers to remove (every protected name in every spelling) that are not set.
    pub remove: Vec<HeaderName>,
    /// CORS headers for the app's answer (replacing its own `Access-Control-*`).
    pub cors: HeaderMap,
}

/// Describes, then decides with the proxy's own decision (`pipeline::decide`). Traced, the
/// check is a server span continuing the described request's `traceparent` (the one the proxy
/// will forward): the authorizer shows up in the request's trace beside the proxy's own spans.
pub async fn decide(
    proxy: &Proxy,
    enforcer: Enforcer,
    described: Result<Described, DescribeError>,
    conn_peer: SocketAddr,
) -> Checked {
    let described = match described {
        Ok(d) => d,
        Err(e) => {
            tracing::info!(protocol = enforcer.label(), reason = e.reason(), error = %e, "refused an unreadable description");
            return Checked::Invalid(e);
        }
    };
    let parts = &described.parts;
    let trace = proxy.tracing.as_ref().and_then(|t| t.request(&parts.headers, &parts.method));
    let outcome = match trace.as_ref().filter(|t| t.recording()) {
        None => decide_described(proxy, enforcer, described, conn_peer).await,
        Some(t) => t.within(decide_described(proxy, enforcer, described, conn_peer)).await,
    };
    if let Some(t) = trace {
        t.end();
    }
    outcome
}

async fn decide_described(proxy: &Proxy, enforcer: Enforcer, described: Described, conn_peer: SocketAddr) -> Checked {
    let Some(live) = proxy.store.load() else {
        return Checked::Answer(Refusal::NoConfig.to_response(""), described.via);
    };
    let peer = described.peer.unwrap_or(conn_peer);
    let request_id = proxy.next_request_id();
    let rid = request_id.as_str();
    let decided = pipeline::decide(proxy, &live, &described.parts, peer, rid).await;
    let app = decided.app.map_or("", |i| live.apps[i].label.as_str());
    let fwd = match decided.plan {
        Plan::Answer(mut resp) => {
            pipeline::stamp(&mut resp, request_id.header());
            if proxy.tracing.is_some() {
                crate::trace::note_answer(app, decided.outcome.as_str(), decided.reason, resp.status().as_u16());
            }
            tracing::info!(
                request_id = rid,
                protocol = enforcer.label(),
                app,
                status = resp.status().as_u16(),
                decision = decided.outcome.as_str(),
                reason = decided.reason,
                "answered"
            );
            return Checked::Answer(resp, described.via);
        }
        Plan::Forward(fwd) => fwd,
    };
    if !matches!(fwd.destination, Destination::App) {
        // A forward route calls another upstream with a service token: only the sidecar can.
        tracing::warn!(
            request_id = rid,
            protocol = enforcer.label(),
            app,
            "a forward route cannot be enforced by an external authorizer"
        );
        return Checked::Answer(
            crate::http::respond::refusal(fwd.app, fwd.origin.as_ref(), &Refusal::RouteUnavailable, rid),
            described.via,
        );
    }
    if let Some(path) = &fwd.canonical.forward_path {
        let decided = match described.parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        if decided != described.path_and_query() {
            tracing::info!(
                request_id = rid,
                protocol = enforcer.label(),
                app,
                "refused: the proxy would forward a path other than the normalised one"
            );
            return Checked::NotCanonical;
        }
    }
    let scheme = if described.parts.uri.scheme_str() == Some("https") { "https" } else { "http" };
    tracing::debug!(request_id = rid, protocol = enforcer.label(), app, decision = decided.outcome.as_str(), "allowed");
    if proxy.tracing.is_some() {
        crate::trace::note_answer(app, decided.outcome.as_str(), decided.reason, 200);
    }
    Checked::Allow(allowed(&fwd, scheme))
}

/// What the proxy must do to a request the sidecar would forward: the same header edits, as
/// names to set and to remove, and the CORS headers for the app's answer.
fn allowed(fwd: &crate::http::forward::Forward<'_>, scheme: &'static str) -> Allow {
    let mut set = HeaderMap::new();
    let mut remove = Vec::new();
    fwd.header_edits(scheme, |edit| match edit {
        HeaderEdit::Remove(name) => remove.push(name),
        HeaderEdit::Set(name, value) => {
            set.insert(name, value);
        }
    });
    // A proxy applies removals after it sets (Envoy does): a name that is set is replaced.
    remove.retain(|name| !set.contains_key(name));
    remove.dedup();
    let mut cors = HeaderMap::new();
    fwd.app.cors.apply_to_response(fwd.origin.as_ref(), &mut cors);
    Allow { set, remove, cors }
}
