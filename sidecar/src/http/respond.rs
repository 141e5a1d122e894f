//! Every answer the sidecar makes itself: the one table that turns a refusal into a response
//! (linkerd's `ServerRescue`: status, stable reason, JSON body), preflight answers, redirects,
//! and the one place those answers get the CORS headers for an allowed origin ([`with_cors`]),
//! so a calling page can read them. The proxy and `explain` both build their answers here.
//!
//! Must not decide: callers pass what was decided.

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, VARY, WWW_AUTHENTICATE};
use http::{Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use url::Url;

use crate::config::LiveApp;
use crate::decide::cors::PREFLIGHT_VARY;
use crate::decide::sign_in as sign_in_rules;
use crate::outbound::OutBody;

pub use crate::decide::refusal::Refusal;

impl Refusal {
    /// The JSON body `{"error": reason, "status": …, "message": …, "request_id": …}`.
    pub fn body(&self, request_id: &str) -> serde_json::Value {
        let mut body = serde_json::json!({
            "error": self.reason(),
            "status": self.status().as_u16(),
            "message": self.message(),
            "request_id": request_id,
        });
        match self {
            Refusal::Unauthenticated { login: Some(url), .. } => body["login"] = url.clone().into(),
            Refusal::Forbidden { policy: Some(p), .. } => body["policy"] = p.clone().into(),
            _ => {}
        }
        body
    }

    /// The response, with [`Refusal::body`] as its body.
    pub fn to_response(&self, request_id: &str) -> Response<OutBody> {
        let bytes = Bytes::from(self.body(request_id).to_string());
        let mut resp = Response::new(Full::new(bytes).map_err(|never| match never {}).boxed());
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(self, Refusal::Unauthenticated { .. }) {
            // RFC 9110 §15.5.2: a 401 carries a challenge.
            h.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"portcullis\""));
        }
        resp
    }
}

/// The application's CORS headers on a response (the app's, or one of the sidecar's own 401,
/// 403, 502…), for the request's origin: the one place they are added. Never on a refused
/// preflight's 403, which carries no `Access-Control-Allow-*`.
pub fn with_cors(app: &LiveApp, origin: Option<&HeaderValue>, mut resp: Response<OutBody>) -> Response<OutBody> {
    app.cors.apply_to_response(origin, resp.headers_mut());
    resp
}

/// The refusal of a routed request, readable by the calling page.
pub fn refusal(app: &LiveApp, origin: Option<&HeaderValue>, r: &Refusal, request_id: &str) -> Response<OutBody> {
    with_cors(app, origin, r.to_response(request_id))
}

/// A refused preflight: 403 without any `Access-Control-Allow-*` header, and the same `Vary` as
/// an answered one: the refusal depends on the same request headers (api.md "CORS").
pub fn preflight_refused(r: &Refusal, request_id: &str) -> Response<OutBody> {
    let mut resp = r.to_response(request_id);
    resp.headers_mut().insert(VARY, PREFLIGHT_VARY);
    resp
}

/// The answer to an unauthenticated request for an application with sign-in (api.md
/// `unauthenticatedResponse`): a navigation (`redirect`) goes to the sign-in URL, anything else
/// gets a readable 401 naming it. `base` is the origin the browser addressed.
pub fn sign_in_required(
    app: &LiveApp,
    origin: Option<&HeaderValue>,
    base: Option<&Url>,
    uri: &Uri,
    reason: &'static str,
    redirect: bool,
    request_id: &str,
) -> Response<OutBody> {
    let login = base.map(|base| sign_in_rules::login_url_for(base, uri.path_and_query().map_or("/", |p| p.as_str())));
    match login {
        Some(url) if redirect => with_cors(app, origin, no_store(redirect_to(&url))),
        login => refusal(app, origin, &Refusal::Unauthenticated { reason, login }, request_id),
    }
}

/// The origin the browser addressed, for sign-in URLs: the routed authority with the scheme
/// `decide::sign_in::public_scheme` says (`https` behind the TLS listener or a secure cookie).
pub fn sign_in_base(app: &LiveApp, https: bool, authority: &str) -> Option<Url> {
    let secure = app.login.as_ref().is_none_or(|l| l.attrs.secure);
    sign_in_rules::request_base(sign_in_rules::public_scheme(https, secure), authority)
}

/// `Cache-Control: no-store`: sign-in answers and refusals are about one request.
pub fn no_store(mut resp: Response<OutBody>) -> Response<OutBody> {
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `302 Found` to `location`.
pub fn redirect_to(location: &str) -> Response<OutBody> {
    let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

/// A JSON answer with this status.
pub fn json(status: StatusCode, body: serde_json::Value) -> Response<OutBody> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The answer to an allowed preflight: 200, empty body (Cloudflare's own answer).
pub fn preflight_answer(headers: http::HeaderMap) -> Response<OutBody> {
    let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *resp.headers_mut() = headers;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_contract() {
        let cases = [
            (Refusal::NoConfig, 503),
            (Refusal::BadRequest("missing_host"), 400),
            (Refusal::UnknownHost, 404),
            (Refusal::PreflightRefused("cors_origin_not_allowed"), 403),
            (Refusal::Unauthenticated { reason: "no_credentials", login: None }, 401),
            (Refusal::Forbidden { reason: "no_policy_matched", policy: None }, 403),
            (Refusal::UpstreamUnreachable, 502),
            (Refusal::UpstreamTimeout, 504),
        ];
        for (r, status) in cases {
            let resp = r.to_response("rid");
            assert_eq!(resp.status().as_u16(), status, "{r:?}");
            assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        }
    }
}
