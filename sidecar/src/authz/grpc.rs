//! Envoy's ext_authz over gRPC (`envoy.service.auth.v3.Authorization/Check`), with the
//! generated types of `envoy-types`. The proxy's plan in Envoy's words (api.md "External authorizer"):
//! an allow is `OkHttpResponse` (identity headers set, client copies in `headers_to_remove`,
//! CORS headers in `response_headers_to_add`); a refusal and an answered preflight are
//! `DeniedHttpResponse` with the status, headers and JSON body the sidecar would send, so
//! Envoy answers them itself and the app never sees them.
//!
//! Owns the translation only; every status, header and body comes from the plan.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue as PbHeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{Authorization, AuthorizationServer};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use http::header::VARY;
use http::{HeaderMap, Response};
use http_body_util::BodyExt;

use super::{describe, Checked, Enforcer};
use crate::http::respond::Refusal;
use crate::http::Proxy;
use crate::outbound::OutBody;

/// The connection's peer, put in the request's extensions by the accept loop (tonic passes
/// them on): the client's address when Envoy's `source` is missing.
#[derive(Clone, Copy, Debug)]
pub struct ConnPeer(pub std::net::SocketAddr);

/// The generated tonic service around [`Check`].
pub type CheckServer = AuthorizationServer<Check>;

/// google.rpc.Code: `OK` lets the request through; `PERMISSION_DENIED` makes Envoy answer with
/// the `DeniedHttpResponse`.
const RPC_OK: i32 = 0;
const RPC_PERMISSION_DENIED: i32 = 7;

pub fn server(proxy: Arc<Proxy>) -> CheckServer {
    AuthorizationServer::new(Check { proxy })
}

/// The `Check` implementation.
pub struct Check {
    proxy: Arc<Proxy>,
}

#[tonic::async_trait]
impl Authorization for Check {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let conn_peer = request.extensions().get::<ConnPeer>().map_or_else(|| ([0, 0, 0, 0], 0).into(), |p| p.0);
        let described = describe::check_request(request.get_ref());
        let outcome = super::decide(&self.proxy, Enforcer::Grpc, described, conn_peer).await;
        let (result, response) = match outcome {
            Checked::Invalid(e) => {
                ("invalid_description", denied(Refusal::BadRequest(e.reason()).to_response("")).await)
            }
            Checked::NotCanonical => {
                ("not_canonical", denied(Refusal::BadRequest("path_not_normalised").to_response("")).await)
            }
            Checked::Answer(resp, _) => {
                let result = if resp.status().is_success() { "preflight_answered" } else { "deny" };
                (result, denied(resp).await)
            }
            Checked::Allow(allow) => {
                let ok = OkHttpResponse {
                    headers: options(&allow.set),
                    headers_to_remove: allow.remove.iter().map(|n| n.as_str().to_owned()).collect(),
                    response_headers_to_add: options(&allow.cors),
                    ..Default::default()
                };
                let status = RpcStatus { code: RPC_OK, ..Default::default() };
                let resp = CheckResponse {
                    status: Some(status),
                    http_response: Some(HttpResponse::OkResponse(ok)),
                    ..Default::default()
                };
                ("allow", resp)
            }
        };
        self.proxy.metrics.authz_checks.with_label_values(&[Enforcer::Grpc.label(), result]).inc();
        Ok(tonic::Response::new(response))
    }
}

/// The sidecar's own answer, for Envoy to send instead of forwarding.
async fn denied(resp: Response<OutBody>) -> CheckResponse {
    let (parts, body) = resp.into_parts();
    // The sidecar's own answers are in-memory bodies (JSON or empty): collecting cannot wait.
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let denied = DeniedHttpResponse {
        status: Some(HttpStatus { code: i32::from(parts.status.as_u16()) }),
        headers: options(&parts.headers),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    CheckResponse {
        status: Some(RpcStatus { code: RPC_PERMISSION_DENIED, ..Default::default() }),
        http_response: Some(HttpResponse::DeniedResponse(denied)),
        ..Default::default()
    }
}

/// Headers as Envoy header options: each replaces what is there, except `Vary`, which is
/// appended to the app's own (api.md: `Vary` is merged, `Access-Control-*` replaced).
fn options(headers: &HeaderMap) -> Vec<HeaderValueOption> {
    headers
        .iter()
        .map(|(name, value)| {
            let action = if name == VARY {
                HeaderAppendAction::AppendIfExistsOrAdd
            } else {
                HeaderAppendAction::OverwriteIfExistsOrAdd
            };
            HeaderValueOption {
                header: Some(PbHeaderValue {
                    key: name.as_str().to_owned(),
                    value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    ..Default::default()
                }),
                append_action: action as i32,
                ..Default::default()
            }
        })
        .collect()
}
