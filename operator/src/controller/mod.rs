//! The controllers. Each module owns one kind: its reconcile, its error policy and the wiring of
//! its watches: AccessApplication and AccessServiceToken. This module holds what every
//! controller does the same way around a reconcile (metrics, backoff, the status write); it
//! decides nothing about any kind.

pub mod application;
pub mod service_token;

use std::fmt::Debug;
use std::future::Future;
use std::time::Instant;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::EventType;
use portcullis_crds::v1alpha1::{AccessApplicationStatus, AccessServiceTokenStatus};

use crate::metrics::Metrics;
use crate::status::{self, Want};
use crate::watch_health::WatchHealth;
use crate::{events, Context, Error, Result};

/// The one field manager of every write (server-side apply: a field has one owner, so a second
/// manager name would fight the first over the same keys).
pub const FIELD_MANAGER: &str = "portcullis-operator";

/// Reconciles of one controller running at once. Unbounded (kube's default), a burst of changes
/// (1,000 applications applied at once) starts a reconcile for each, every one holding its
/// namespace's lists in memory: the propagation bench saw the operator reach 596 MiB that way.
/// A handful keeps the API server's load and the operator's memory flat, and pushes within a
/// reconcile already run 16 at a time.
pub const CONCURRENCY: u16 = 8;

/// Reads one item of a controller's output stream. Reconcile failures were logged by the error
/// policy; what is left are the queue's errors, which are the watches failing: logged, and
/// counted, and recorded in `health` so that `/healthz` fails when they do not stop.
pub fn observe_run<T, E: std::error::Error>(
    metrics: &Metrics,
    controller: &'static str,
    health: &WatchHealth,
    result: Result<T, controller::Error<E, watcher::Error>>,
) {
    match result {
        Ok(_) => {}
        Err(controller::Error::QueueError(e)) => {
            tracing::warn!(controller, error = %e, "a watch failed; it is retried with backoff");
            metrics.watch_failed(controller);
            health.error(Instant::now(), &e);
        }
        Err(e) => tracing::debug!(error = %e, "controller event"),
    }
}

/// The runtime settings every controller uses.
pub fn runtime_config() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(CONCURRENCY)
}

/// `namespace/name` of an object, for logs and the backoff state.
pub fn key<K: Resource>(object: &K) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

/// Runs one reconcile of `object` in a `reconcile` span (README "Traces"), counts it under
/// `controller`, and forgets the object's failures when it succeeded.
pub async fn instrumented<K: Resource>(
    ctx: &Context,
    controller: &'static str,
    object: &K,
    reconcile: impl Future<Output = Result<Action>>,
) -> Result<Action> {
    let started = Instant::now();
    let outcome = |result: &Result<Action>| match result {
        Ok(_) => "ok",
        Err(e) => e.reason(),
    };
    let result = crate::telemetry::reconcile(controller, &key(object), reconcile, outcome).await;
    let outcome = outcome(&result);
    ctx.metrics.reconciled(controller, outcome, started.elapsed());
    if result.is_ok() {
        ctx.reset_backoff(&key(object));
    }
    result
}

/// Retries a failed reconcile with per-object exponential backoff (5 s doubling to 5 min).
pub fn backoff<K: Resource>(ctx: &Context, controller: &str, object: &K, error: &Error) -> Action {
    let key = key(object);
    let wait = ctx.next_backoff(&key);
    tracing::warn!(controller, object = %key, reason = error.reason(), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// Applies `status` to `object`'s status subresource (server-side apply, forced: this operator
/// is the only writer of status).
pub async fn apply_status<K>(ctx: &Context, object: &K, status: &impl Serialize) -> Result<()>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let dt = K::DynamicType::default();
    let body = json!({ "apiVersion": K::api_version(&dt), "kind": K::kind(&dt), "status": status });
    Api::<K>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(Error::kube(format!("writing status of {} {namespace}/{name}", K::kind(&dt))))?;
    Ok(())
}

/// A status with conditions and an observed generation, so that one [`write_status`] serves
/// every kind.
pub trait Conditioned: Clone + PartialEq + Serialize {
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    fn observed_generation_mut(&mut self) -> &mut Option<i64>;
}

impl Conditioned for AccessApplicationStatus {
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
    fn observed_generation_mut(&mut self) -> &mut Option<i64> {
        &mut self.observed_generation
    }
}

impl Conditioned for AccessServiceTokenStatus {
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
    fn observed_generation_mut(&mut self) -> &mut Option<i64> {
        &mut self.observed_generation
    }
}

/// Sets the generation and each of `wants` on `new`'s conditions, records a Warning event for
/// each that turned False with a new reason (unless `routine` calls it expected), and applies
/// `new` when it differs from `old` in more than timestamps (no write, no watch event, when a
/// reconcile changed nothing).
pub async fn write_status<K, S>(
    ctx: &Context,
    object: &K,
    old: &S,
    mut new: S,
    wants: impl IntoIterator<Item = Want>,
    routine: impl Fn(&Want, &[Condition]) -> bool,
) -> Result<()>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Conditioned,
{
    let (now, generation) = (ctx.clock.now(), object.meta().generation);
    let mut old = old.clone();
    let mut conditions = old.conditions_mut().clone();
    let mut failing = Vec::new();
    for want in wants {
        if !want.status {
            failing.push(want.clone());
        }
        conditions = status::set(&conditions, want, generation, now);
    }
    *new.observed_generation_mut() = generation;
    *new.conditions_mut() = conditions;
    let (before, after) = (old.conditions_mut().clone(), new.conditions_mut().clone());
    for want in failing {
        if !routine(&want, &after) && status::transitioned(&before, &after, want.type_) {
            events::publish(ctx, &object.object_ref(&()), EventType::Warning, want.reason, want.message).await;
        }
    }
    let mut bare = new.clone();
    bare.conditions_mut().clear();
    old.conditions_mut().clear();
    if !status::changed(&before, &after) && old == bare {
        return Ok(());
    }
    apply_status(ctx, object, &new).await
}

/// The namespace of `object`, a namespaced `kind`: an object from the API server always has
/// one, so its absence is an error, not a panic.
pub fn namespace_of<K: Resource>(object: &K, kind: &'static str) -> Result<String> {
    object.namespace().ok_or(Error::MissingObjectKey { kind, field: "namespace" })
}
