//! TEMPORARY stand-in for the proxy's own "decide without forwarding" (`http::decide::decide`,
//! issue 17), so that the authorizer's protocols and tests could be built before it landed. It
//! sequences the same `decide::request` steps as `http/pipeline.rs`; it is deleted at the merge,
//! and everything else in `authz/` only reads the [`Plan`] it returns.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, ORIGIN};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, Response};

use crate::config::live::mode_label;
use crate::config::{Live, LiveApp};
use crate::decide::authn::{Authn, Principal};
use crate::decide::cors::PreflightOutcome;
use crate::decide::policy::Decision;
use crate::decide::request::{self, AppDecisions, Front, Presented};
use crate::http::forward::IdentityHeaders;
use crate::http::headers::{AUTHENTICATED_USER_EMAIL, CLIENT_ID, CLIENT_SECRET, JWT_ASSERTION};
use crate::http::respond::{preflight_answer, Refusal};
use crate::http::Proxy;
use crate::jwks::IssuerKeys;
use crate::outbound::OutBody;

/// What the proxy would do with a request, without doing it.
pub enum Plan {
    /// The sidecar answers itself: refusal, answered preflight (with CORS headers).
    Answer(Response<OutBody>),
    /// The request goes to the app.
    Forward(ForwardPlan),
}

/// How the request reaches the app.
pub struct ForwardPlan {
    /// The application's label (metrics).
    pub app: String,
    /// The authority the app receives as `Host`.
    pub authority: HeaderValue,
    /// The normalised path (query unchanged) the app receives.
    pub path: PathAndQuery,
    /// Identity headers to set.
    pub set: HeaderMap,
    /// Client headers to remove (identity and service-token headers, any spelling).
    pub remove: Vec<HeaderName>,
    /// CORS headers to put on the app's answer.
    pub cors: HeaderMap,
}

pub async fn decide(proxy: &Proxy, live: &Live, parts: &Parts, peer: SocketAddr) -> Plan {
    let rid = "";
    let routed = match request::route(&live.router, &parts.uri, &parts.headers) {
        Ok(r) => r,
        Err(miss) => return Plan::Answer(miss.refusal().to_response(rid)),
    };
    let app = &live.apps[routed.app];
    let authority = HeaderValue::from_str(&routed.target.host).unwrap_or_else(|_| HeaderValue::from_static(""));
    let path_only = routed.target.path.to_string();
    let path: PathAndQuery = match parts.uri.query() {
        Some(q) => format!("{path_only}?{q}"),
        None => path_only.clone(),
    }
    .parse()
    .unwrap_or_else(|_| PathAndQuery::from_static("/"));
    let decisions = app.decisions();
    let refuse = |r: Refusal, origin: Option<&HeaderValue>| {
        let mut resp = r.to_response(rid);
        app.cors.apply_to_response(origin, resp.headers_mut());
        Plan::Answer(resp)
    };
    let forward = |identity: IdentityHeaders, origin: Option<&HeaderValue>| {
        let mut set = HeaderMap::new();
        match identity {
            IdentityHeaders::None => {}
            IdentityHeaders::User(v) => {
                if let Some(j) = v.assertion {
                    set.insert(JWT_ASSERTION, j);
                }
                if let Some(e) = v.email {
                    set.insert(AUTHENTICATED_USER_EMAIL, e);
                }
            }
            IdentityHeaders::Service { client_id } => {
                set.insert(CLIENT_ID, client_id);
            }
        }
        let mut cors = HeaderMap::new();
        app.cors.apply_to_response(origin, &mut cors);
        Plan::Forward(ForwardPlan {
            app: app.label.clone(),
            authority: authority.clone(),
            path: path.clone(),
            set,
            remove: protected(app, &parts.headers),
            cors,
        })
    };
    let origin = match request::front(&app.cors, &parts.method, &parts.headers, &path_only) {
        Front::Reserved => return refuse(Refusal::ReservedPath, parts.headers.get(ORIGIN)),
        Front::Preflight(_, PreflightOutcome::Answer(h)) => {
            app.counters.preflight_answered.inc();
            return Plan::Answer(preflight_answer(h));
        }
        Front::Preflight(_, PreflightOutcome::Forward) => return forward(IdentityHeaders::None, None),
        Front::Preflight(_, PreflightOutcome::Refuse(why)) => {
            proxy.metrics.preflights.with_label_values(&[&app.label, why.reason()]).inc();
            return Plan::Answer(Refusal::PreflightRefused(why.reason()).to_response(rid));
        }
        Front::Request { origin } => origin.cloned(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let authn = authenticate(app, &decisions, &parts.headers, now).await;
    let verdict = request::policies(&app.spec, &parts.headers, &authn, peer.ip(), &proxy.settings.trusted_proxies);
    let identity = match &authn {
        Authn::Authenticated(p) if verdict.forwards_identity() => IdentityHeaders::from_principal(p),
        _ => IdentityHeaders::None,
    };
    match verdict.refusal {
        Some(r) if !verdict.audit => {
            proxy.metrics.requests.with_label_values(&[&app.label, "deny", r.reason(), mode_label(&app.spec)]).inc();
            return refuse(r, origin.as_ref());
        }
        Some(_) => {}
        None => match verdict.decision {
            Decision::Bypass { .. } => app.counters.bypassed.inc(),
            _ => app.counters.allowed.inc(),
        },
    }
    forward(identity, origin.as_ref())
}

fn protected(app: &LiveApp, headers: &HeaderMap) -> Vec<HeaderName> {
    let configured = app.jwt.header_name().as_str().to_owned();
    headers
        .keys()
        .filter(|n| {
            let folded = n.as_str().replace('_', "-");
            [JWT_ASSERTION.as_str(), AUTHENTICATED_USER_EMAIL.as_str(), CLIENT_ID.as_str(), CLIENT_SECRET.as_str()]
                .contains(&folded.as_str())
                || folded == configured
        })
        .cloned()
        .collect()
}

async fn authenticate(
    app: &LiveApp,
    decisions: &AppDecisions<'_, [Arc<IssuerKeys>]>,
    headers: &HeaderMap,
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
    if let Authn::Authenticated(Principal::Service(_)) = &result.authn {}
    result.authn
}
