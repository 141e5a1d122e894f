//! The one table that turns a refusal into a response (linkerd's `ServerRescue`): status,
//! stable reason, JSON body. CORS headers for an allowed origin are added by the pipeline to
//! every response, these included, so a calling page can read them.

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};

use crate::outbound::OutBody;

/// Everything the sidecar answers itself instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No configuration loaded yet: fail closed.
    NoConfig,
    /// Malformed target: missing, duplicate or invalid Host, bad path.
    BadRequest(&'static str),
    /// No application serves this host and path.
    UnknownHost,
    /// Reserved `/.portcullis/` path without a handler for it.
    ReservedPath,
    /// A preflight the CORS settings refuse (or no CORS settings).
    PreflightRefused(&'static str),
    /// No or invalid credentials.
    Unauthenticated {
        reason: &'static str,
        login: Option<String>,
    },
    /// A valid identity that the policies refuse.
    Forbidden {
        reason: &'static str,
        policy: Option<String>,
    },
    /// A forward route whose service token is missing.
    RouteUnavailable,
    UpstreamUnreachable,
    UpstreamTimeout,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::NoConfig | Refusal::RouteUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::UnknownHost | Refusal::ReservedPath => StatusCode::NOT_FOUND,
            Refusal::PreflightRefused(_) | Refusal::Forbidden { .. } => StatusCode::FORBIDDEN,
            Refusal::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Refusal::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            Refusal::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Stable, machine-readable reason: the `error` field, the metric and log label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NoConfig => "no_config",
            Refusal::BadRequest(r) => r,
            Refusal::UnknownHost => "unknown_host",
            Refusal::ReservedPath => "not_found",
            Refusal::PreflightRefused(r) => r,
            Refusal::Unauthenticated { reason, .. } => reason,
            Refusal::Forbidden { reason, .. } => reason,
            Refusal::RouteUnavailable => "forward_route_token_missing",
            Refusal::UpstreamUnreachable => "upstream_unreachable",
            Refusal::UpstreamTimeout => "upstream_timeout",
        }
    }

    fn message(&self) -> &'static str {
        match self {
            Refusal::NoConfig => "the sidecar has no configuration loaded yet",
            Refusal::BadRequest(_) => "the request's Host or path is malformed",
            Refusal::UnknownHost => "no application is configured for this host and path",
            Refusal::ReservedPath => "no such path",
            Refusal::PreflightRefused(_) => "the CORS preflight is not allowed by this application's cors settings",
            Refusal::Unauthenticated { .. } => "sign in or present a valid token",
            Refusal::Forbidden { .. } => "your identity is not allowed by this application's policies",
            Refusal::RouteUnavailable => "the service token of this forward route is not available",
            Refusal::UpstreamUnreachable => "the application could not be reached",
            Refusal::UpstreamTimeout => "the application did not answer in time",
        }
    }

    /// The response, with a JSON body `{"error": reason, "message": …, "request_id": …}`.
    pub fn to_response(&self, request_id: &str) -> Response<OutBody> {
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
        let bytes = Bytes::from(body.to_string());
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
