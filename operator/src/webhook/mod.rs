//! The operator's admission webhooks, served over HTTPS on `--webhook-listen`:
//! - `POST /validate`: the validating webhook for AccessApplications and AccessServiceTokens
//!   ([`validate`]), which refuses what `portcullis_crds::compile` finds invalid in the object
//!   itself;
//! - `POST /inject/namespace` and `POST /inject/pod`: the mutating webhook that adds the
//!   `portcullis-sidecar` container to pods ([`inject`]). `/inject/namespace` is called for pods
//!   of namespaces labelled `access.portcullis.dev/inject=enabled` (the webhook's
//!   namespaceSelector decides that, since an AdmissionReview carries no namespace labels);
//!   `/inject/pod` for pods elsewhere, injected only when annotated.
//!
//! This module turns request bodies into response bodies ([`Webhooks::handle`], pure); [`tls`]
//! makes certificates, [`certs`] keeps them in the cluster or reads them from files, and
//! [`server`] moves bytes over TLS. None of them decides requests of the data plane.

pub mod certs;
pub mod inject;
mod run;
pub mod server;
pub mod tls;
pub mod validate;

use http::StatusCode;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use kube::Resource;
use serde::de::DeserializeOwned;

pub use inject::{Injection, Scope};
pub use run::{start, WebhookArgs};

/// Largest AdmissionReview body accepted. An object is at most ~1.5 MiB in etcd and an UPDATE
/// review carries it twice (object and oldObject).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Why a request could not be read as an AdmissionReview. Answered with 400 and this message;
/// the API server then applies the webhook's failurePolicy.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the body is not an admission.k8s.io/v1 AdmissionReview: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("no webhook at {0}; the webhook configurations call /validate, /inject/namespace and /inject/pod")]
    UnknownPath(String),
}

/// What the webhooks need from the operator's settings.
#[derive(Clone, Debug)]
pub struct Webhooks {
    pub injection: Injection,
}

// === impl Webhooks ===

impl Webhooks {
    /// Answers one webhook call: the status and the JSON (or, on a 4xx, plain text) body.
    pub fn handle(&self, path: &str, body: &[u8]) -> (StatusCode, Vec<u8>) {
        let answer = match path {
            "/validate" => request::<DynamicObject>(body).map(|req| validate::review(&req)),
            "/inject/namespace" => {
                request::<Pod>(body).map(|req| inject::review(&self.injection, Scope::Namespace, &req))
            }
            "/inject/pod" => request::<Pod>(body).map(|req| inject::review(&self.injection, Scope::Pod, &req)),
            other => Err(ReviewError::UnknownPath(other.to_owned())),
        };
        match answer {
            Ok(response) => match encode(response) {
                Ok(json) => (StatusCode::OK, json),
                Err(e) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the AdmissionReview: {e}\n").into_bytes())
                }
            },
            Err(e @ ReviewError::UnknownPath(_)) => (StatusCode::NOT_FOUND, format!("{e}\n").into_bytes()),
            Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n").into_bytes()),
        }
    }
}

/// The response as an AdmissionReview body. kube writes `patch` as an array of numbers; the
/// API documents it as base64 (Go's `[]byte`), which is what is sent.
fn encode(response: AdmissionResponse) -> Result<Vec<u8>, serde_json::Error> {
    let mut review = serde_json::to_value(response.into_review())?;
    if let Some(patch) = review.pointer_mut("/response/patch") {
        let bytes: Vec<u8> = serde_json::from_value(patch.take())?;
        *patch = serde_json::to_value(k8s_openapi::ByteString(bytes))?;
    }
    serde_json::to_vec(&review)
}

/// The request of an AdmissionReview body.
fn request<K: Resource + DeserializeOwned>(body: &[u8]) -> Result<AdmissionRequest<K>, ReviewError> {
    let review: AdmissionReview<K> = serde_json::from_slice(body).map_err(ReviewError::Malformed)?;
    review.try_into().map_err(|_| ReviewError::NoRequest)
}

/// Allows `req` unchanged.
fn allow<K: Resource>(req: &AdmissionRequest<K>) -> AdmissionResponse {
    AdmissionResponse::from(req)
}

#[cfg(test)]
mod tests;
