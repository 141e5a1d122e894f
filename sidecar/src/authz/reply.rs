//! The proxy's plan in the words of each HTTP-speaking proxy (api.md "External authorizer"):
//! - Envoy's HTTP ext_authz forwards on `200` only: an allow is `200` with the identity headers
//!   (which `allowed_upstream_headers` copies), the client copies to drop in
//!   `x-envoy-auth-headers-to-remove`, and the CORS headers for the app's answer (which
//!   `allowed_client_headers_on_success` copies); an answered preflight is `204` with its headers;
//!   every other answer keeps the sidecar's status, headers and JSON body.
//! - Forward-auth proxies forward on any `2xx`: an allow is `200` with the identity and CORS
//!   headers to copy; any other answer is the refusal itself. An answered preflight cannot come
//!   back through their auth step (it would be forwarded), so there it is `403`: the docs route
//!   preflights to `/preflight/` (and sign-in paths to `/.portcullis/`) instead, where the
//!   answer is the sidecar's own. ingress-nginx passes only 401 and 403 on: a sign-in redirect
//!   described by `X-Original-URL` is `401` there, for `auth-signin` to take over.
//!
//! Owns only the translation and the `portcullis_authz_checks_total` count; every status,
//! header and body comes from the plan or the refusal table.

use http::header::{HeaderName, HeaderValue, HOST};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Empty};

use super::describe::Via;
use super::{Allow, Checked, Enforcer};
use crate::http::respond::Refusal;
use crate::http::Proxy;
use crate::outbound::OutBody;

/// Envoy's HTTP ext_authz: names of request headers the authorizer asks it to remove.
pub const ENVOY_HEADERS_TO_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// The answer to an HTTP ext_authz, forward-auth or direct request.
pub fn http(proxy: &Proxy, enforcer: Enforcer, outcome: Checked) -> Response<OutBody> {
    let (result, resp) = match outcome {
        Checked::Invalid(e) => ("invalid_description", Refusal::BadRequest(e.reason()).to_response("")),
        Checked::NotCanonical => ("not_canonical", Refusal::BadRequest("path_not_normalised").to_response("")),
        Checked::Allow(allow) => match enforcer {
            Enforcer::Http | Enforcer::ForwardAuth => ("allow", allowed(enforcer, allow)),
            // A direct route only ever reaches us for an answer the sidecar makes itself (a
            // preflight, a sign-in step); anything to forward must go through the auth step.
            Enforcer::Direct | Enforcer::Grpc => {
                ("misrouted", Refusal::BadRequest("not_answered_by_the_authorizer").to_response(""))
            }
        },
        Checked::Answer(mut resp, via) => {
            let status = resp.status();
            match enforcer {
                Enforcer::Http if status.is_success() => *resp.status_mut() = StatusCode::NO_CONTENT,
                Enforcer::ForwardAuth if status.is_success() => {
                    resp = Refusal::PreflightRefused("preflight_not_routed_to_authorizer").to_response("");
                }
                // ingress-nginx's auth step passes 401 and 403 only (anything else is its own
                // 500): a sign-in redirect is 401 there, and `auth-signin` sends the browser on.
                Enforcer::ForwardAuth if status.is_redirection() && via == Via::OriginalUrl => {
                    *resp.status_mut() = StatusCode::UNAUTHORIZED;
                }
                _ => {}
            }
            (if status.is_success() { "preflight_answered" } else { "deny" }, resp)
        }
    };
    proxy.metrics.authz_checks.with_label_values(&[enforcer.label(), result]).inc();
    resp
}

/// `200` with the identity headers (the routed `Host` left out: it is the proxy's to send), the
/// CORS headers for the app's answer and, for Envoy, the client copies to remove.
fn allowed(enforcer: Enforcer, allow: Allow) -> Response<OutBody> {
    let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    let h = resp.headers_mut();
    *h = allow.cors;
    for (name, value) in &allow.set {
        if name != HOST {
            h.insert(name, value.clone());
        }
    }
    if enforcer == Enforcer::Http && !allow.remove.is_empty() {
        let names: Vec<&str> = allow.remove.iter().map(HeaderName::as_str).collect();
        if let Ok(v) = HeaderValue::from_str(&names.join(",")) {
            h.insert(ENVOY_HEADERS_TO_REMOVE, v);
        }
    }
    resp
}

/// `404` for a path that is none of the endpoints.
pub fn not_an_endpoint() -> Response<OutBody> {
    Refusal::ReservedPath.to_response("")
}
