//! The AccessApplication controller: compiles the applications of a namespace, pushes each
//! sidecar pod of that namespace its snapshot, and reports `status` (Ready, Synced, sidecar
//! counts, config version) on the application being reconciled.
//!
//! What a pod runs is decided by [`crate::desired`] (pure); the push by [`crate::push`]. This
//! module reads the namespace, calls them and writes status and events. It must not put a Secret
//! value anywhere: compile errors name fields, push errors name pods and reasons.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use portcullis_crds::snapshot::ResourceId;
use portcullis_crds::v1alpha1::{AccessApplication, AccessApplicationStatus, AccessServiceToken, SidecarCounts};
use serde_json::json;

use crate::controller::service_token::{FIELD_MANAGER, MANAGED_BY};
use crate::desired::{desired, AppOutcome};
use crate::push::Pusher;
use crate::status::{self, Want, READY};
use crate::{events, Context, Error, Result};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "accessapplication";
/// The condition saying every matched sidecar runs the current config.
pub const SYNCED: &str = "Synced";
/// Retry of an application whose sidecars did not all take the push.
const PUSH_RETRY: Duration = Duration::from_secs(30);
/// Periodic re-check: Secrets an application names (an OIDC client secret) are not watched
/// (only the operator's labelled ones are), so a change to one is picked up by this requeue.
const RESYNC: Duration = Duration::from_secs(300);
/// Pods named in a PushFailed message; the rest are counted.
const NAMED_FAILURES: usize = 3;

/// The controller's state: the shared context and the push client.
pub struct AppContext {
    pub ctx: Arc<Context>,
    pub pusher: Pusher,
}

/// Runs the controller until the process is asked to stop. Tokens, the operator's Secrets and
/// Pods re-reconcile every application of their namespace: any of them can change what the
/// namespace's sidecars should run.
pub async fn run(app_ctx: Arc<AppContext>) {
    let client = app_ctx.ctx.client.clone();
    let managed = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let controller = Controller::new(Api::<AccessApplication>::all(client.clone()), watcher::Config::default());
    let store = controller.store();
    let controller = controller
        .watches(Api::<AccessServiceToken>::all(client.clone()), watcher::Config::default(), in_namespace(&store))
        .watches(Api::<Secret>::all(client.clone()), watcher::Config::default().labels(&managed), in_namespace(&store))
        .watches(Api::<Pod>::all(client), watcher::Config::default(), in_namespace(&store))
        .shutdown_on_signal();
    controller
        .run(reconcile, error_policy, app_ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                // Reconcile errors were logged by error_policy; these are queue/watch errors.
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}

/// Maps an object to every application of its namespace.
fn in_namespace<K: Resource>(
    store: &Store<AccessApplication>,
) -> impl Fn(K) -> Vec<ObjectRef<AccessApplication>> + Send + Sync + 'static {
    let store = store.clone();
    move |object: K| {
        let namespace = object.meta().namespace.clone();
        store
            .state()
            .iter()
            .filter(|app| app.metadata.namespace == namespace)
            .map(|app| ObjectRef::from_obj(app.as_ref()))
            .collect()
    }
}

/// Compiles, pushes and reports one application.
pub async fn reconcile(app: Arc<AccessApplication>, app_ctx: Arc<AppContext>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&app, &app_ctx).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.reason(),
    };
    app_ctx.ctx.metrics.reconciled(CONTROLLER, outcome, started.elapsed());
    if result.is_ok() {
        app_ctx.ctx.reset_backoff(&key(&app));
    }
    result
}

/// Retries a failed reconcile with per-object exponential backoff (5 s doubling to 5 min).
pub fn error_policy(app: Arc<AccessApplication>, error: &Error, app_ctx: Arc<AppContext>) -> Action {
    let wait = app_ctx.ctx.next_backoff(&key(&app));
    tracing::warn!(application = %key(&app), reason = error.reason(), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

fn key(app: &AccessApplication) -> String {
    format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any())
}

async fn reconcile_inner(app: &AccessApplication, app_ctx: &AppContext) -> Result<Action> {
    let ctx = &app_ctx.ctx;
    let namespace = app.namespace().ok_or(Error::MissingObjectKey { kind: "AccessApplication", field: "namespace" })?;
    let name = app.name_any();
    let all = ListParams::default();
    let in_ns = |what: &str| format!("listing {what} in namespace {namespace}");
    let applications = Api::<AccessApplication>::namespaced(ctx.client.clone(), &namespace)
        .list(&all)
        .await
        .map_err(Error::kube(in_ns("AccessApplications")))?
        .items;
    let tokens = Api::<AccessServiceToken>::namespaced(ctx.client.clone(), &namespace)
        .list(&all)
        .await
        .map_err(Error::kube(in_ns("AccessServiceTokens")))?
        .items;
    // Every Secret of the namespace: token credentials and the OIDC client secrets applications
    // name. Their values go into the compiled snapshot only.
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .list(&all)
        .await
        .map_err(Error::kube(in_ns("Secrets")))?
        .items;
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .list(&all)
        .await
        .map_err(Error::kube(in_ns("Pods")))?
        .items;

    let plan = desired(&applications, &tokens, &secrets, &pods);
    let outcomes = app_ctx.pusher.push_all(&plan.pods, ctx.clock.now()).await;
    let id = ResourceId { namespace: namespace.clone(), name: name.clone() };

    let old = app.status.clone().unwrap_or_default();
    let mut new = AccessApplicationStatus { observed_generation: app.metadata.generation, ..Default::default() };
    let (ready, synced, action) = match plan.applications.get(&id) {
        // Not in the namespace's list: deleted since the event; the next event settles it.
        None => return Ok(Action::await_change()),
        Some(AppOutcome::Invalid(errors)) => {
            let ready = Want { type_: READY, status: false, reason: errors.reason(), message: errors.to_string() };
            let synced = Want {
                type_: SYNCED,
                status: false,
                reason: errors.reason(),
                message: "no sidecar runs this application until its spec compiles (see Ready)".to_owned(),
            };
            new.config_version = None;
            (ready, synced, Action::await_change())
        }
        Some(AppOutcome::Compiled { pods, version }) => {
            let failures: Vec<String> = outcomes
                .iter()
                .filter(|o| pods.contains(&o.pod))
                .filter_map(|o| o.result.as_ref().err().map(ToString::to_string))
                .collect();
            let matched = u32::try_from(pods.len()).unwrap_or(u32::MAX);
            let synced_count = matched.saturating_sub(u32::try_from(failures.len()).unwrap_or(u32::MAX));
            new.sidecars = Some(SidecarCounts { matched, synced: synced_count });
            new.config_version = Some(version.clone());
            ctx.metrics.sidecars(&namespace, &name, matched, synced_count);
            let ready = Want {
                type_: READY,
                status: true,
                reason: "Compiled",
                message: format!("compiled; spec.selector matches {matched} running sidecar(s)"),
            };
            if failures.is_empty() {
                let message = if matched == 0 {
                    "no running pod with a portcullis-admin port matches spec.selector".to_owned()
                } else {
                    format!("all {matched} matched sidecar(s) run this configuration")
                };
                (ready, Want { type_: SYNCED, status: true, reason: "Synced", message }, Action::requeue(RESYNC))
            } else {
                let mut message = format!("{} of {matched} matched sidecar(s) did not take the push: ", failures.len());
                message.push_str(&failures.iter().take(NAMED_FAILURES).cloned().collect::<Vec<_>>().join("; "));
                if failures.len() > NAMED_FAILURES {
                    message.push_str(&format!("; and {} more", failures.len() - NAMED_FAILURES));
                }
                let synced = Want { type_: SYNCED, status: false, reason: "PushFailed", message };
                (ready, synced, Action::requeue(PUSH_RETRY))
            }
        }
    };
    write_status(app, ctx, &old, new, [ready, synced]).await?;
    Ok(action)
}

/// Sets the conditions on `new`, records a Warning event for each condition that turned False
/// with a new reason, and applies `new` when it differs from `old` in more than timestamps.
async fn write_status(
    app: &AccessApplication,
    ctx: &Context,
    old: &AccessApplicationStatus,
    mut new: AccessApplicationStatus,
    wants: [Want; 2],
) -> Result<()> {
    let now = ctx.clock.now();
    let generation = app.metadata.generation;
    let mut conditions = old.conditions.clone();
    let mut failing = Vec::new();
    for want in wants {
        if !want.status {
            failing.push((want.type_, want.reason, want.message.clone()));
        }
        conditions = status::set(&conditions, want, generation, now);
    }
    new.conditions = conditions;
    for (type_, reason, message) in failing {
        // Synced=False because the spec is invalid repeats the Ready event: one is enough.
        let duplicate = type_ == SYNCED && new.conditions.iter().any(|c| c.type_ == READY && c.status == "False");
        if !duplicate && status::transitioned(&old.conditions, &new.conditions, type_) {
            events::publish(ctx, &app.object_ref(&()), EventType::Warning, reason, message).await;
        }
    }
    let unchanged = !status::changed(&old.conditions, &new.conditions)
        && AccessApplicationStatus { conditions: vec![], ..old.clone() }
            == AccessApplicationStatus { conditions: vec![], ..new.clone() };
    if unchanged {
        return Ok(());
    }
    let namespace = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let body = json!({
        "apiVersion": AccessApplication::api_version(&()),
        "kind": AccessApplication::kind(&()),
        "status": new,
    });
    Api::<AccessApplication>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(Error::kube(format!("writing status of AccessApplication {namespace}/{name}")))?;
    Ok(())
}

#[cfg(test)]
mod tests;
