//! The one table that turns a refusal into a response (linkerd's `ServerRescue`): status,
//! stable reason, JSON body. CORS headers for an allowed origin are added by the pipeline to
//! every response, these included, so a calling page can read them.

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::Response;
use http_body_util::{BodyExt, Empty, Full};

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
