//! The validating webhook: refuses an AccessApplication or AccessServiceToken whose own spec does
//! not compile, at `kubectl apply` time, with the field and the fix in the message.
//!
//! Judged by the same code as everywhere else: `portcullis_crds::compile::compile_application`
//! (what the operator compiles and the sidecars re-check) and the token controller's
//! `plan::settings`. What depends on other objects is never refused here, so that apply order
//! does not matter: the application is compiled without tokens or Secrets, and the errors that
//! only say "the Secret it names is missing" are dropped. They are reported in status instead.

use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::DynamicObject;
use portcullis_crds::compile::{compile_application, CompileErrorKind, CompileErrors, SecretIndex, TokenIndex};
use portcullis_crds::v1alpha1::{AccessApplication, AccessServiceToken};
use serde::de::DeserializeOwned;

use crate::controller::service_token::plan;

/// Allows or denies one request.
pub fn review(req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let allowed = super::allow(req);
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return allowed;
    }
    // The status subresource is the operator's own write; only spec edits are judged.
    if req.sub_resource.is_some() {
        return allowed;
    }
    let Some(object) = req.object.as_ref() else {
        return allowed.deny(format!("{} {:?} without an object: nothing to validate", req.kind.kind, req.operation));
    };
    // An update that leaves the spec as it was (a label, the operator's finalizer, its removal
    // during deletion) is not judged: refusing it would block cleanup of an object that was
    // invalid before this webhook existed, and it changes nothing the sidecars run.
    if req.operation == Operation::Update
        && req.old_object.as_ref().is_some_and(|old| old.data.get("spec") == object.data.get("spec"))
    {
        return allowed;
    }
    let namespace = req.namespace.as_deref().or(object.metadata.namespace.as_deref()).unwrap_or("default");
    let problem = match req.kind.kind.as_str() {
        "AccessApplication" => typed::<AccessApplication>(object).and_then(|app| application(&app, namespace)),
        "AccessServiceToken" => typed::<AccessServiceToken>(object).and_then(|token| service_token(&token)),
        // Fail closed: the webhook configuration sends only these two kinds.
        other => Err(format!("this webhook validates AccessApplication and AccessServiceToken, not {other}")),
    };
    match problem {
        Ok(()) => allowed,
        Err(message) => allowed.deny(message),
    }
}

/// The object as its Rust type; a shape the types cannot read is refused (the API server's
/// schema normally refuses it first).
fn typed<K: DeserializeOwned>(object: &DynamicObject) -> Result<K, String> {
    let kind = object.types.as_ref().map_or("object", |t| t.kind.as_str());
    serde_json::to_value(object).and_then(serde_json::from_value).map_err(|e| format!("the {kind} cannot be read: {e}"))
}

/// The errors of `app` on its own, without those about Secrets it references.
fn application(app: &AccessApplication, namespace: &str) -> Result<(), String> {
    let secrets = SecretIndex::new(&[], namespace);
    let compiled = compile_application(app, namespace, &TokenIndex::default(), &secrets);
    let errors: Vec<_> =
        compiled.diagnostics.errors().iter().filter(|e| e.kind != CompileErrorKind::SecretMissing).cloned().collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CompileErrors(errors).to_string())
    }
}

/// What the token controller would refuse (`Ready=False`): the same parse of its spec.
fn service_token(token: &AccessServiceToken) -> Result<(), String> {
    let name = token.metadata.name.as_deref().unwrap_or_default();
    plan::settings(&token.spec).map(|_| ()).map_err(|e| format!("AccessServiceToken {name}: {e}"))
}
