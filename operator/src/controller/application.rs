//! The AccessApplication controller: compiles the applications of a namespace, pushes each
//! sidecar pod of that namespace its snapshot, pushes the external-authorizer pods theirs when
//! the namespace has applications for them, and reports `status` (Ready, Synced, sidecar and
//! authorizer counts, config version) on the application being reconciled.
//!
//! What a pod runs is decided by [`crate::desired`] and [`crate::authorizer`] (pure); the push
//! by [`crate::push`]. This module reads the namespace, calls them and writes status and events. It must not put a Secret
//! value anywhere: compile errors name fields, push errors name pods and reasons.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, finalizer, Event as FinalizerEvent};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use portcullis_crds::compile::CompileErrors;
use portcullis_crds::snapshot::ResourceId;
use portcullis_crds::v1alpha1::{AccessApplication, AccessApplicationStatus, AccessServiceToken, SidecarCounts};
use serde::de::DeserializeOwned;

use super::{backoff, instrumented};
use crate::authorizer::{self, Authorizers, Waiting};
use crate::compile_cache::{inputs_version, CompileCache};
use crate::controller::service_token::MANAGED_BY;
use crate::desired::{desired, sidecar_pod, AppOutcome, Desired, ExternalApp, PodConfig, SidecarPod};
use crate::push::{PodOutcome, Pusher};
use crate::status::{Want, READY};
use crate::watch_health::WatchHealth;
use crate::{session_key, Context, Error, Result};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "accessapplication";
/// The condition saying every matched sidecar runs the current config.
pub const SYNCED: &str = "Synced";
/// Synced=False reason while selected sidecar pods are not running yet.
const PENDING: &str = "Pending";
/// Synced=False reason while the authorizer waits for other namespaces (see [`Waiting`]).
const AUTHORIZER_WAITING: &str = "AuthorizerWaiting";
/// The finalizer that keeps a deleted application until its sidecars stopped enforcing it.
pub const FINALIZER: &str = "access.portcullis.dev/sidecar-cleanup";
/// First retry of an application whose sidecars did not all take the push: short, because the
/// usual cause is a sidecar whose pod is Running before its admin port answers, and it should
/// get its config within a second of answering. Doubles per consecutive failure.
const PUSH_RETRY_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between retries of a push that keeps failing (a dead pod still listed).
const PUSH_RETRY_MAX: Duration = Duration::from_secs(30);
/// Periodic re-check, a safety net behind the watches.
const RESYNC: Duration = Duration::from_secs(300);
/// Pods named in a PushFailed or Pending message; the rest are counted.
const NAMED: usize = 3;
/// Retry of an External application while the authorizer waits for other namespaces to be
/// read (the operator just started): they are, within seconds.
const AUTHORIZER_WAIT_RETRY: Duration = Duration::from_secs(2);

/// The controller's state: the shared context, the push client, and how many reconciles in a
/// row each application's push failed (`namespace/name`).
pub struct AppContext {
    pub ctx: Arc<Context>,
    pub pusher: Pusher,
    push_failures: Mutex<HashMap<String, u32>>,
    /// Compiles of the applications of every namespace, by version.
    compiles: Mutex<CompileCache>,
    /// The controller's cache of every application, set when the controller starts. Reading a
    /// namespace's applications from it instead of listing them matters at scale: with 1,000
    /// applications in a namespace, every reconcile listed all 1,000 from the API server.
    applications: OnceLock<Store<AccessApplication>>,
    /// What the external authorizer runs, assembled from every namespace. An async lock: it is
    /// held across the push, so that two namespaces' reconciles push the authorizer one after
    /// the other, never an older snapshot after a newer one.
    authorizers: tokio::sync::Mutex<Authorizers>,
    /// Where the authorizer pods run, outside the lock: a namespace without External
    /// applications never waits for an authorizer push in flight.
    authorizer_namespace: String,
}

impl AppContext {
    /// `authorizer_namespace`: where the external-authorizer pods run (the operator's own
    /// namespace; see [`authorizer::ROLE_LABEL`]).
    pub fn new(ctx: Arc<Context>, pusher: Pusher, authorizer_namespace: &str) -> Self {
        Self {
            ctx,
            pusher,
            push_failures: Mutex::default(),
            compiles: Mutex::default(),
            applications: OnceLock::new(),
            authorizers: tokio::sync::Mutex::default(),
            authorizer_namespace: authorizer_namespace.to_owned(),
        }
    }

    /// The applications of `namespace`: from the controller's cache once it has synced (an
    /// unsynced cache could miss an application and push its sidecars a config without it),
    /// else listed from the API server.
    async fn applications_of(&self, namespace: &str) -> Result<Vec<Arc<AccessApplication>>> {
        if let Some(store) = self.applications.get() {
            if store.wait_until_ready().await.is_ok() {
                let ns = Some(namespace);
                return Ok(store.state_filter(|a| a.metadata.namespace.as_deref() == ns));
            }
        }
        Ok(list::<AccessApplication>(&self.ctx, namespace).await?.into_iter().map(Arc::new).collect())
    }

    /// Counts a failed push of `key` and says when to try again.
    fn push_failed(&self, key: &str) -> Duration {
        let mut failures = self.push_failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_owned()).or_insert(0);
        let wait = push_retry_after(*n);
        *n = n.saturating_add(1);
        wait
    }

    fn push_succeeded(&self, key: &str) {
        self.push_failures.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// The wait before retry `n` (0-based) of a failed push.
fn push_retry_after(n: u32) -> Duration {
    PUSH_RETRY_FIRST.saturating_mul(2u32.saturating_pow(n)).min(PUSH_RETRY_MAX)
}

/// Runs the controller until the process is asked to stop. Tokens, the operator's Secrets and
/// Pods re-reconcile every application of their namespace: any of them can change what the
/// namespace's sidecars should run; an authorizer pod re-reconciles every application the
/// authorizer enforces, in every namespace.
pub async fn run(app_ctx: Arc<AppContext>, health: Arc<WatchHealth>) {
    let authorizer_namespace = app_ctx.authorizer_namespace.clone();
    let client = app_ctx.ctx.client.clone();
    let controller = Controller::new(Api::<AccessApplication>::all(client.clone()), watcher::Config::default())
        .with_config(super::runtime_config());
    let store = controller.store();
    // A second set would mean a second controller on one context; the first store stays.
    let _ = app_ctx.applications.set(store.clone());
    let controller = controller
        .watches(Api::<AccessServiceToken>::all(client.clone()), watcher::Config::default(), in_namespace(&store))
        .watches(Api::<Secret>::all(client.clone()), watcher::Config::default(), secret_users(&store))
        .watches(Api::<Pod>::all(client), watcher::Config::default(), pod_users(&store, authorizer_namespace))
        .shutdown_on_signal();
    let metrics = app_ctx.ctx.metrics.clone();
    controller
        .run(reconcile, error_policy, app_ctx)
        .for_each(|result| {
            super::observe_run(&metrics, CONTROLLER, &health, result);
            std::future::ready(())
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

/// Maps a Pod to the applications it may enforce: an authorizer pod to every application with
/// `enforcement` External or Both, any other pod to every application of its namespace.
fn pod_users(
    store: &Store<AccessApplication>,
    authorizer_namespace: String,
) -> impl Fn(Pod) -> Vec<ObjectRef<AccessApplication>> + Send + Sync + 'static {
    let store = store.clone();
    let all_of_namespace = in_namespace::<Pod>(&store);
    move |pod: Pod| {
        if !authorizer::is_authorizer(&pod, &authorizer_namespace) {
            return all_of_namespace(pod);
        }
        store
            .state()
            .iter()
            .filter(|app| app.spec.enforcement.unwrap_or_default().by_authorizer())
            .map(|app| ObjectRef::from_obj(app.as_ref()))
            .collect()
    }
}

/// Maps a Secret to the applications that use it: every application of its namespace for the
/// credentials this operator manages (any of them may name the token), else the ones whose
/// `login` names it (the OIDC client secret, the session key). Other Secrets trigger nothing.
fn secret_users(
    store: &Store<AccessApplication>,
) -> impl Fn(Secret) -> Vec<ObjectRef<AccessApplication>> + Send + Sync {
    let store = store.clone();
    let all_of_namespace = in_namespace::<Secret>(&store);
    move |secret: Secret| {
        let managed = secret.labels().get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1);
        if managed {
            return all_of_namespace(secret);
        }
        let name = secret.name_any();
        store
            .state()
            .iter()
            .filter(|app| app.metadata.namespace == secret.metadata.namespace && names_secret(app, &name))
            .map(|app| ObjectRef::from_obj(app.as_ref()))
            .collect()
    }
}

/// Whether `app` reads the Secret `name` of its namespace.
fn names_secret(app: &AccessApplication, name: &str) -> bool {
    let Some(login) = &app.spec.login else { return false };
    let client_secret = login.oidc.client_secret_ref.as_ref().map(|r| r.name.as_str());
    let session_key = login.session_key_ref.as_ref().map(|r| r.name.as_str());
    client_secret == Some(name) || session_key == Some(name)
}

/// Compiles, pushes and reports one application. The finalizer holds a deleted application
/// until its sidecars have been pushed a config without it: without it the delete would leave
/// nothing to reconcile, and the last application of a namespace would stay enforced.
pub async fn reconcile(app: Arc<AccessApplication>, app_ctx: Arc<AppContext>) -> Result<Action> {
    let ctx = &app_ctx.ctx;
    let work = async {
        let namespace =
            app.namespace().ok_or(Error::MissingObjectKey { kind: "AccessApplication", field: "namespace" })?;
        let api = Api::<AccessApplication>::namespaced(ctx.client.clone(), &namespace);
        finalizer(&api, FINALIZER, app.clone(), |event| async {
            match event {
                FinalizerEvent::Apply(app) => reconcile_inner(&app, &app_ctx).await,
                FinalizerEvent::Cleanup(app) => cleanup(&app, &app_ctx).await,
            }
        })
        .await
        .map_err(|e| match e {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(other.to_string()),
        })
    };
    instrumented(ctx, CONTROLLER, app.as_ref(), work).await
}

/// Retries a failed reconcile with per-object exponential backoff.
pub fn error_policy(app: Arc<AccessApplication>, error: &Error, app_ctx: Arc<AppContext>) -> Action {
    backoff(&app_ctx.ctx, CONTROLLER, app.as_ref(), error)
}

/// What became of the external authorizer in one pass.
#[derive(Debug)]
enum AuthorizerOutcome {
    /// The namespace has nothing for the authorizer, now or before: it was not pushed.
    Untouched,
    /// Not pushed yet (see [`Waiting`]).
    Waiting(Waiting),
    /// Pushed to every running authorizer pod.
    Pushed { plan: authorizer::Plan, outcomes: Vec<PodOutcome> },
}

/// One pass over a namespace: the plan, the sidecars' push outcomes, the authorizer's.
struct Pass {
    plan: Desired,
    outcomes: Vec<PodOutcome>,
    authorizer: AuthorizerOutcome,
}

/// Reads the namespace, works out what each of its sidecars should run, and pushes it; then the
/// external authorizer, when the namespace has (or had) applications for it. An application
/// being deleted is left out of every snapshot, whichever application's reconcile this is, so
/// that no push puts it back while its finalizer is pending.
async fn push_namespace(namespace: &str, app_ctx: &AppContext) -> Result<Pass> {
    let ctx = &app_ctx.ctx;
    let applications = live_applications(app_ctx.applications_of(namespace).await?);
    let tokens = list::<AccessServiceToken>(ctx, namespace).await?;
    // Every Secret of the namespace: token credentials and the OIDC client secrets applications
    // name. Their values go into the compiled snapshot only.
    let mut secrets = list::<Secret>(ctx, namespace).await?;
    for app in &applications {
        if let Some(made) = session_key::ensure(ctx, app, &secrets).await? {
            secrets.push(made);
        }
    }
    let mut pods = list::<Pod>(ctx, namespace).await?;
    // The authorizer pods (in the operator's namespace) run every namespace's External
    // applications, never this namespace's sidecar snapshot.
    let authorizer_namespace = &app_ctx.authorizer_namespace;
    let (authorizer_pods, sidecar_pods): (Vec<Pod>, Vec<Pod>) =
        pods.drain(..).partition(|p| authorizer::is_authorizer(p, authorizer_namespace));
    let pods = sidecar_pods;
    let applications = session_key::with_provided_keys(applications, &secrets);

    let plan = {
        let mut cache = app_ctx.compiles.lock().unwrap_or_else(|e| e.into_inner());
        let plan = desired(&applications, &tokens, &secrets, &pods, &mut cache);
        cache.retain_namespace(namespace, &applications, inputs_version(&tokens, &secrets));
        plan
    };
    let outcomes = app_ctx.pusher.push_all(&plan.pods, ctx.clock.now()).await;
    let authorizers: Vec<SidecarPod> = authorizer_pods.iter().filter_map(sidecar_pod).collect();
    app_ctx.pusher.forget_gone(namespace, plan.pods.iter().map(|p| &p.pod).chain(&authorizers));
    let authorizer = push_authorizers(namespace, &plan.external, app_ctx).await?;
    Ok(Pass { plan, outcomes, authorizer })
}

/// Records what `namespace` gives the external authorizer and, when every namespace with
/// External applications has been read, pushes the authorizer pods the assembled snapshot.
async fn push_authorizers(
    namespace: &str,
    external: &[ExternalApp],
    app_ctx: &AppContext,
) -> Result<AuthorizerOutcome> {
    let ctx = &app_ctx.ctx;
    let mut state = app_ctx.authorizers.lock().await;
    if !state.concerns(namespace, external) {
        return Ok(AuthorizerOutcome::Untouched);
    }
    state.record(namespace, external);
    let plan = match state.plan(&app_ctx.namespaces_for_authorizer()) {
        Ok(plan) => plan,
        Err(waiting) => return Ok(AuthorizerOutcome::Waiting(waiting)),
    };
    let authorizer_namespace = &app_ctx.authorizer_namespace;
    let params = ListParams::default().labels(&authorizer::selector());
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), authorizer_namespace)
        .list(&params)
        .await
        .map_err(Error::kube(format!("listing the authorizer pods in namespace {authorizer_namespace}")))?
        .items;
    let targets: Vec<PodConfig> =
        pods.iter().filter_map(sidecar_pod).map(|pod| PodConfig { pod, snapshot: plan.snapshot.clone() }).collect();
    let outcomes = app_ctx.pusher.push_all(&targets, ctx.clock.now()).await;
    // Authorizer pods that went (a rollout): their acknowledgements and boots are forgotten.
    let now: std::collections::BTreeSet<String> =
        targets.iter().map(|t| format!("{}/{}", t.pod.namespace, t.pod.name)).collect();
    let gone: Vec<String> = state.pods.difference(&now).cloned().collect();
    app_ctx.pusher.forget(&gone);
    state.pods = now;
    Ok(AuthorizerOutcome::Pushed { plan, outcomes })
}

// === impl AppContext ===

impl AppContext {
    /// The namespaces whose applications the authorizer must have before it is pushed: those
    /// with an application asking for it, from the controller's cache (without the cache, as
    /// in a single reconcile, the ones recorded so far).
    fn namespaces_for_authorizer(&self) -> std::collections::BTreeSet<String> {
        let Some(store) = self.applications.get() else { return Default::default() };
        store
            .state()
            .iter()
            .filter(|a| a.metadata.deletion_timestamp.is_none())
            .filter(|a| a.spec.enforcement.unwrap_or_default().by_authorizer())
            .filter_map(|a| a.metadata.namespace.clone())
            .collect()
    }
}

/// The applications not being deleted.
fn live_applications(mut applications: Vec<Arc<AccessApplication>>) -> Vec<Arc<AccessApplication>> {
    applications.retain(|a| a.metadata.deletion_timestamp.is_none());
    applications
}

/// A deleted application: its sidecars get their config without it (an empty one when it was
/// the last: they then answer 404 for its domains). The finalizer is removed only once every
/// running sidecar of the namespace took that push, so enforcement never outlives the object
/// silently; a sidecar that cannot be reached keeps the deletion pending and is retried.
async fn cleanup(app: &AccessApplication, app_ctx: &AppContext) -> Result<Action> {
    let ctx = &app_ctx.ctx;
    let namespace = super::namespace_of(app, "AccessApplication")?;
    let name = app.name_any();
    let Pass { plan, outcomes, authorizer } = push_namespace(&namespace, app_ctx).await?;
    let mut failures = push_failures(&outcomes);
    // A held pod was not pushed, so it may still enforce this application.
    failures.extend(plan.held.iter().map(|pod| format!("{pod}: held by an invalid application of the namespace")));
    // Nor may an authorizer that was not told.
    match &authorizer {
        AuthorizerOutcome::Untouched => {}
        AuthorizerOutcome::Waiting(Waiting(why)) => failures.push(format!("the external authorizer: {why}")),
        AuthorizerOutcome::Pushed { outcomes, .. } => {
            failures.extend(push_failures(outcomes));
        }
    }
    if !failures.is_empty() {
        return Err(Error::CleanupPush { application: format!("{namespace}/{name}"), failures: named(&failures) });
    }
    ctx.metrics.forget_application(&namespace, &name);
    tracing::info!(application = %format!("{namespace}/{name}"), sidecars = outcomes.len(), "deleted application removed from its sidecars");
    Ok(Action::await_change())
}

/// Reports one application after its namespace's pass: Ready says whether it compiled, Synced
/// whether everything that enforces it runs this configuration.
async fn reconcile_inner(app: &AccessApplication, app_ctx: &AppContext) -> Result<Action> {
    let ctx = &app_ctx.ctx;
    let namespace = super::namespace_of(app, "AccessApplication")?;
    let name = app.name_any();
    let pass = push_namespace(&namespace, app_ctx).await?;
    let id = ResourceId { namespace: namespace.clone(), name: name.clone() };
    let old = app.status.clone().unwrap_or_default();
    let mut new = AccessApplicationStatus { observed_generation: app.metadata.generation, ..Default::default() };
    let (wants, action) = match pass.plan.applications.get(&id) {
        // Not in the namespace's list: deleted since the event. The pushes above already left
        // it out of every snapshot; only its gauges remain.
        None => {
            ctx.metrics.forget_application(&namespace, &name);
            return Ok(Action::await_change());
        }
        Some(AppOutcome::Invalid(errors)) => {
            ctx.metrics.compile_errors(&namespace, &name, errors.0.len());
            (invalid_wants(errors), Action::await_change())
        }
        Some(AppOutcome::Compiled { pods, waiting, version }) => {
            ctx.metrics.compile_errors(&namespace, &name, 0);
            new.config_version = Some(version.clone());
            let mut progress = Progress::default();
            if app.spec.enforcement.unwrap_or_default().by_sidecars() {
                progress.sidecars(&id, pods, waiting, &pass.outcomes, ctx, &mut new);
            }
            if app.spec.enforcement.unwrap_or_default().by_authorizer() {
                progress.authorizer(&id, &pass.authorizer, &mut new);
            }
            let (synced, action) = progress.synced(app_ctx, &format!("{namespace}/{name}"));
            ([compiled_ready(&new), synced], action)
        }
    };
    write_status(app, ctx, &old, new, wants).await?;
    Ok(action)
}

/// Ready and Synced of an application whose spec does not compile: its sidecars keep what they
/// run.
fn invalid_wants(errors: &CompileErrors) -> [Want; 2] {
    let ready = Want { type_: READY, status: false, reason: errors.reason(), message: errors.to_string() };
    let synced = Want {
        type_: SYNCED,
        status: false,
        reason: errors.reason(),
        message: "its sidecars (and the external authorizer) keep the last configuration that compiled, unchanged, until the spec compiles (see Ready)".to_owned(),
    };
    [ready, synced]
}

/// Ready of a compiled application, saying what enforces it.
fn compiled_ready(status: &AccessApplicationStatus) -> Want {
    Want {
        type_: READY,
        status: true,
        reason: "Compiled",
        message: match status.sidecars.as_ref() {
            Some(s) => format!("compiled; spec.selector matches {} running sidecar(s)", s.matched),
            None => "compiled; enforced by the external authorizer only (spec.enforcement External)".to_owned(),
        },
    }
}

/// What keeps a compiled application from Synced, most urgent first (failed pushes, then what
/// waits), and what enforces it.
#[derive(Default)]
struct Progress {
    failed: Vec<String>,
    pending: Vec<(&'static str, String)>,
    enforcers: Vec<String>,
}

impl Progress {
    /// The sidecars' part: `status.sidecars` and its gauges, failed pushes to the application's
    /// `pods`, and the selected pods still `waiting` to run.
    fn sidecars(
        &mut self,
        id: &ResourceId,
        pods: &[String],
        waiting: &[String],
        outcomes: &[PodOutcome],
        ctx: &Context,
        status: &mut AccessApplicationStatus,
    ) {
        let failures = push_failures(outcomes.iter().filter(|o| pods.contains(&o.pod)));
        let matched = u32::try_from(pods.len()).unwrap_or(u32::MAX);
        let synced = matched.saturating_sub(u32::try_from(failures.len()).unwrap_or(u32::MAX));
        status.sidecars = Some(SidecarCounts { matched, synced });
        ctx.metrics.sidecars(&id.namespace, &id.name, matched, synced);
        if !failures.is_empty() {
            let n = failures.len();
            self.failed
                .push(format!("{n} of {matched} matched sidecar(s) did not take the push: {}", named(&failures)));
        } else if !waiting.is_empty() {
            let message = format!(
                "{} selected sidecar pod(s) not running yet, pushed once they run: {}",
                waiting.len(),
                named(waiting),
            );
            self.pending.push((PENDING, message));
        }
        self.enforcers.push(if matched == 0 {
            "no running pod with a portcullis-adm port matches spec.selector".to_owned()
        } else {
            format!("all {matched} matched sidecar(s) run this configuration")
        });
    }

    /// The external authorizer's part: `status.authorizers` and where the application stands.
    fn authorizer(&mut self, id: &ResourceId, outcome: &AuthorizerOutcome, status: &mut AccessApplicationStatus) {
        let (counts, state) = authorizer_status(id, outcome);
        let matched = counts.matched;
        status.authorizers = Some(counts);
        match state {
            AuthorizerState::Synced => {
                self.enforcers.push(format!("all {matched} external-authorizer pod(s) run this configuration"))
            }
            AuthorizerState::Failed(message) => self.failed.push(message),
            AuthorizerState::Pending(reason, message) => self.pending.push((reason, message)),
        }
    }

    /// Synced, and when to look again: soon after a failed push (backing off per application
    /// `key`), a little later while something waits, at the resync otherwise.
    fn synced(self, app_ctx: &AppContext, key: &str) -> (Want, Action) {
        if !self.failed.is_empty() {
            let synced = Want { type_: SYNCED, status: false, reason: "PushFailed", message: self.failed.join("; ") };
            return (synced, Action::requeue(app_ctx.push_failed(key)));
        }
        app_ctx.push_succeeded(key);
        match self.pending.into_iter().next() {
            Some((reason, message)) => {
                let retry = if reason == AUTHORIZER_WAITING { AUTHORIZER_WAIT_RETRY } else { RESYNC };
                (Want { type_: SYNCED, status: false, reason, message }, Action::requeue(retry))
            }
            None => {
                let message = self.enforcers.join("; ");
                (Want { type_: SYNCED, status: true, reason: "Synced", message }, Action::requeue(RESYNC))
            }
        }
    }
}

/// The errors of the pushes among `outcomes` that did not land, one line each.
fn push_failures<'a>(outcomes: impl IntoIterator<Item = &'a PodOutcome>) -> Vec<String> {
    outcomes.into_iter().filter_map(|o| o.result.as_ref().err().map(ToString::to_string)).collect()
}

/// Where an External application stands on the authorizer.
enum AuthorizerState {
    Synced,
    /// A push failed (Synced=False, PushFailed): the message.
    Failed(String),
    /// Not enforced yet, for a reason a push retry does not fix: (reason, message).
    Pending(&'static str, String),
}

/// `status.authorizers` of application `id`, and whether the authorizer runs it.
fn authorizer_status(id: &ResourceId, outcome: &AuthorizerOutcome) -> (SidecarCounts, AuthorizerState) {
    let none = SidecarCounts { matched: 0, synced: 0 };
    match outcome {
        // An application asking for the authorizer always concerns it; kept total for safety.
        AuthorizerOutcome::Untouched => {
            (none, AuthorizerState::Pending(PENDING, "not pushed to the authorizer yet".into()))
        }
        AuthorizerOutcome::Waiting(Waiting(why)) => (none, AuthorizerState::Pending(AUTHORIZER_WAITING, why.clone())),
        AuthorizerOutcome::Pushed { plan, outcomes } => {
            let matched = u32::try_from(outcomes.len()).unwrap_or(u32::MAX);
            if let Some((i, other)) = plan.conflicts.get(id) {
                let message = format!(
                    "spec.domains[{i}] is already enforced by AccessApplication {other} on the external authorizer (the older application keeps a domain there); this application is left out of the authorizer until the domain is its alone"
                );
                return (SidecarCounts { matched, synced: 0 }, AuthorizerState::Pending("DomainConflict", message));
            }
            let failures = push_failures(outcomes);
            let synced = matched.saturating_sub(u32::try_from(failures.len()).unwrap_or(u32::MAX));
            let counts = SidecarCounts { matched, synced };
            if matched == 0 {
                let message =
                    "no running external-authorizer pod (the chart's authorizer.enabled) in the operator's namespace"
                        .to_owned();
                (counts, AuthorizerState::Pending("NoAuthorizer", message))
            } else if failures.is_empty() {
                (counts, AuthorizerState::Synced)
            } else {
                let message = format!(
                    "{} of {matched} external-authorizer pod(s) did not take the push: {}",
                    failures.len(),
                    named(&failures)
                );
                (counts, AuthorizerState::Failed(message))
            }
        }
    }
}

/// The first [`NAMED`] items, then how many more.
fn named(items: &[String]) -> String {
    let mut out = items.iter().take(NAMED).cloned().collect::<Vec<_>>().join("; ");
    if items.len() > NAMED {
        out.push_str(&format!("; and {} more", items.len() - NAMED));
    }
    out
}

/// Every `K` of `namespace`.
async fn list<K>(ctx: &Context, namespace: &str) -> Result<Vec<K>>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    Api::<K>::namespaced(ctx.client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map(|list| list.items)
        .map_err(Error::kube(format!("listing {kind}s in namespace {namespace}")))
}

/// Writes the status with the shared [`super::write_status`]. `Synced=False` because the spec is
/// invalid repeats the Ready event: one is enough. A pod still starting (Pending), or an
/// authorizer waiting for the operator's first pass over every namespace, is routine, not a
/// warning.
async fn write_status(
    app: &AccessApplication,
    ctx: &Context,
    old: &AccessApplicationStatus,
    new: AccessApplicationStatus,
    wants: [Want; 2],
) -> Result<()> {
    super::write_status(ctx, app, old, new, wants, |want, now| {
        let duplicate = want.type_ == SYNCED && now.iter().any(|c| c.type_ == READY && c.status == "False");
        duplicate || want.reason == PENDING || want.reason == AUTHORIZER_WAITING
    })
    .await
}

#[cfg(test)]
mod tests;
