//! Kubernetes Events about our resources, through kube's `Recorder` (events.k8s.io/v1).
//! Controllers call this only on transitions (a rotation, a condition that changed reason), never
//! per reconcile. Events are best effort: a failure is logged and never fails the reconcile, since
//! the status already carries the same information. Notes must never contain a secret.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};

use crate::Context;

/// Records one event about `regarding`.
pub async fn publish(ctx: &Context, regarding: &ObjectReference, type_: EventType, reason: &str, note: String) {
    let event =
        Event { type_, reason: reason.to_owned(), note: Some(note), action: "Reconcile".to_owned(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&event, regarding).await {
        tracing::warn!(
            error = %e,
            reason,
            object = regarding.name.as_deref().unwrap_or_default(),
            "could not record event"
        );
    }
}
