//! portcullis-operator: the controllers that turn Portcullis resources into cluster state.
//! It reconciles `AccessServiceToken`s into the Secrets holding their credentials, and
//! `AccessApplication`s into signed config pushes to the sidecars they select.
//!
//! The library owns reconciliation and its plumbing (context, status, events, metrics, the admin
//! HTTP server); `main.rs` owns flags, logging and the process. It must not decide requests (that
//! is the sidecar) nor validate resources beyond what `portcullis_crds::compile` already does.

#![forbid(unsafe_code)]

pub mod admin;
pub mod authorizer;
pub mod compile_cache;
pub mod context;
pub mod controller;
pub mod credentials;
pub mod desired;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod push;
pub mod push_key;
pub mod session_key;
pub mod status;
pub mod watch_health;
pub mod webhook;

#[cfg(test)]
mod fixtures;

pub use context::{Clock, Context, SystemClock};

/// What can make a reconcile fail. Invalid specs are not errors: they are reported in status and
/// wait for an edit, while these are retried with backoff. Messages carry names, never values:
/// no variant holds a secret or a request/response body.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached; `what` says which call.
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Writing the credentials Secret failed. Only the HTTP status and reason are kept: an API
    /// server message about a Secret body could quote it.
    #[error("writing Secret {secret} failed: {detail}; check the API server and the operator's RBAC (secrets patch)")]
    WriteSecret { secret: String, detail: String },
    /// An object from the watch lacks a field the API server always sets (name, namespace, uid).
    #[error("{kind} is missing metadata.{field}; the API server always sets it")]
    MissingObjectKey { kind: &'static str, field: &'static str },
    /// The push signing key Secret exists but holds no usable key. Not replaced automatically:
    /// the sidecars trust its public key. `detail` never quotes the key.
    #[error("the push signing key in {secret} is unusable: {detail}; delete that Secret to have a new key generated, then give the sidecars its new public-key")]
    PushKey { secret: String, detail: String },
    /// Adding or removing the application finalizer failed (kube's finalizer helper).
    #[error("managing the finalizer: {0}; check the operator's RBAC (accessapplications patch)")]
    Finalizer(String),
    /// A deleted application could not be removed from every sidecar; its deletion waits.
    #[error("deleting AccessApplication {application} waits until its sidecars drop it; not pushed: {failures}")]
    CleanupPush { application: String, failures: String },
    /// Generating an application's session key failed.
    #[error("generating the session key for {secret}: {detail}")]
    SessionKey { secret: String, detail: String },
    /// The operating system's CSPRNG failed; no credentials are generated without it.
    #[error("no randomness from the operating system: {0}")]
    Entropy(getrandom::Error),
}

impl Error {
    /// Short CamelCase reason for metric labels, event reasons and condition reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "KubeApiError",
            Error::WriteSecret { .. } => "SecretWriteFailed",
            Error::MissingObjectKey { .. } => "MissingObjectKey",
            Error::PushKey { .. } => "PushKeyUnusable",
            Error::Finalizer(_) => "FinalizerFailed",
            Error::CleanupPush { .. } => "CleanupPushFailed",
            Error::SessionKey { .. } => "SessionKeyFailed",
            Error::Entropy(_) => "EntropyUnavailable",
        }
    }

    /// A failed write of the Secret `secret` (`namespace/name`), keeping only the HTTP status
    /// and reason: the API server's message about a Secret body could quote it.
    pub fn write_secret(secret: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let secret = secret.into();
        move |e| Error::WriteSecret { secret, detail: redacted_detail(&e) }
    }

    /// Wraps an API error with the call it came from.
    pub fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Kube { what, source }
    }
}

/// What can be said of an API error on a Secret without its message (which may quote the body):
/// the HTTP status and reason; transport and client errors carry no body and are kept whole.
pub fn redacted_detail(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("HTTP {} {}", status.code, status.reason),
        other => other.to_string(),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
