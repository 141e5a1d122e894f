//! kubectl-portcullis: the cluster side of `explain`. Fetches an AccessApplication, the
//! AccessServiceTokens of its namespace and the Secrets they name from the API server,
//! compiles them with `portcullis_crds::compile` (what the operator runs) and explains with the
//! sidecar library's `explain` (what the sidecar runs), so the answer cannot drift from either.
//!
//! Owns the fetching and its error messages. Must not decide anything, and must never print a
//! Secret's contents: they only feed `compile`, which keeps digests.

#![forbid(unsafe_code)]

use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, Client};
use portcullis_crds::v1alpha1::{AccessApplication, AccessServiceToken};
use portcullis_crds::{compile, CompileErrors, Inputs, Snapshot};

/// What the API server gave us for one application.
#[derive(Debug, Default)]
pub struct Fetched {
    pub application: Vec<AccessApplication>,
    pub service_tokens: Vec<AccessServiceToken>,
    pub secrets: Vec<Secret>,
    /// Things the user should know (missing permissions, missing Secrets).
    pub warnings: Vec<String>,
    /// The token Secrets could not be read: token checks are "unknown", not failures.
    pub secrets_unavailable: bool,
}

/// Why the application cannot be explained (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("AccessApplication {namespace}/{name} not found (kubectl get accessapplications -n {namespace})")]
    NotFound { namespace: String, name: String },
    #[error("reading AccessApplication {namespace}/{name}: {source}")]
    Application { namespace: String, name: String, source: kube::Error },
    #[error("the fetched resources do not compile (the operator would refuse them too): {0}")]
    Compile(#[from] CompileErrors),
}

/// Whether the API server refused for lack of permission (RBAC).
fn forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 403)
}

/// Fetches `namespace/name`, its namespace's service tokens and their Secrets. A missing
/// permission on tokens or Secrets is a warning, not an error: the explanation then says which
/// checks it could not make.
pub async fn fetch(client: Client, namespace: &str, name: &str) -> Result<Fetched, FetchError> {
    let apps: Api<AccessApplication> = Api::namespaced(client.clone(), namespace);
    let app_error = |source| FetchError::Application { namespace: namespace.to_owned(), name: name.to_owned(), source };
    let application = apps
        .get_opt(name)
        .await
        .map_err(app_error)?
        .ok_or_else(|| FetchError::NotFound { namespace: namespace.to_owned(), name: name.to_owned() })?;
    let mut out = Fetched { application: vec![application], ..Fetched::default() };

    let tokens: Api<AccessServiceToken> = Api::namespaced(client.clone(), namespace);
    match tokens.list(&ListParams::default()).await {
        Ok(list) => out.service_tokens = list.items,
        Err(e) => {
            out.secrets_unavailable = true;
            out.warnings.push(format!(
                "cannot list AccessServiceTokens in {namespace} ({}): service-token checks are unknown",
                short(&e)
            ));
        }
    }

    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    for token in &out.service_tokens {
        let secret_name = &token.spec.secret_name;
        match secrets.get_opt(secret_name).await {
            Ok(Some(s)) => out.secrets.push(s),
            Ok(None) => out.warnings.push(format!("Secret {namespace}/{secret_name} does not exist (yet)")),
            Err(e) if forbidden(&e) => {
                out.secrets_unavailable = true;
                out.warnings.push(format!(
                    "no permission to read Secret {namespace}/{secret_name}: service-token checks are unknown \
                     (grant `get` on secrets, or run as someone who may)"
                ));
            }
            Err(e) => {
                out.secrets_unavailable = true;
                out.warnings.push(format!("cannot read Secret {namespace}/{secret_name}: {}", short(&e)));
            }
        }
    }
    Ok(out)
}

/// The error without any response body a server may have echoed.
fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} {}", status.code, status.reason),
        other => other.to_string(),
    }
}

// === impl Fetched ===

impl Fetched {
    /// Compiles what was fetched, as the operator does; compile warnings join `warnings`.
    pub fn compile(&mut self, namespace: &str) -> Result<Snapshot, FetchError> {
        let compiled = compile(&Inputs {
            applications: &self.application,
            service_tokens: &self.service_tokens,
            secrets: &self.secrets,
            default_namespace: namespace,
        })?;
        self.warnings.extend(compiled.warnings.iter().map(ToString::to_string));
        Ok(compiled.snapshot)
    }
}

#[cfg(test)]
mod tests;
