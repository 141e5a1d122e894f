//! What each sidecar should run: AccessApplications, AccessServiceTokens, Secrets and Pods in,
//! one [`Snapshot`] per sidecar pod, one outcome per application, and what the namespace gives
//! the external authorizer (its `enforcement: External | Both` applications) out.
//!
//! Pure: no API calls, no clock, no pushing. The controller reads the caches, calls [`desired`]
//! and acts on the result. Applications are judged only by `portcullis_crds::compile`; this
//! module decides which pods they apply to, never whether they are valid.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use portcullis_crds::compile::{CompileErrors, SecretIndex, TokenIndex};
use portcullis_crds::snapshot::{Application, ResourceId};
use portcullis_crds::v1alpha1::{AccessApplication, AccessServiceToken};
use portcullis_crds::Snapshot;

use crate::compile_cache::{inputs_version, CompileCache};

/// Name of the container port a Portcullis sidecar serves its admin API on: a pod is a sidecar
/// pod exactly when one of its containers declares it. Not `portcullis-admin`: the API server
/// refuses port names longer than 15 characters (IANA service names).
pub const ADMIN_PORT_NAME: &str = "portcullis-adm";

/// A running pod with a sidecar, and where to reach its admin port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SidecarPod {
    pub namespace: String,
    pub name: String,
    pub ip: String,
    pub admin_port: u16,
    /// Pod uid and restarts of the sidecar container: a restarted sidecar (same pod, same IP)
    /// has lost its pushed config, and this is how the push client tells it apart.
    pub incarnation: String,
}

/// The config one sidecar pod should run.
#[derive(Clone, Debug, PartialEq)]
pub struct PodConfig {
    pub pod: SidecarPod,
    pub snapshot: Snapshot,
}

/// How one application came out.
#[derive(Clone, Debug, PartialEq)]
pub enum AppOutcome {
    /// Compiled: the running sidecar pods it selects (`namespace/name`, sorted), the selected
    /// sidecar pods not running yet (no push possible), and its own config version (the digest
    /// of its compiled form alone, the same on every pod whatever else the pod runs).
    Compiled { pods: Vec<String>, waiting: Vec<String>, version: String },
    /// Not compiled; the errors name the fields. The sidecars it selects are held (see
    /// [`Desired::held`]) so they keep serving its last good version.
    Invalid(CompileErrors),
}

/// An application of the namespace as the external authorizer sees it (`crate::authorizer`
/// assembles every namespace's into the authorizer's snapshot).
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalApp {
    pub id: ResourceId,
    /// `metadata.creationTimestamp`: the older of two applications claiming one domain on the
    /// authorizer keeps it.
    pub created: Option<Timestamp>,
    pub state: ExternalState,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExternalState {
    /// Compiled, with `enforcement` External or Both. Boxed: the compiled form is large and the
    /// other variant a flag.
    Enforced(Box<Application>),
    /// Not compiled: the authorizer keeps its last good version, if it has one. `wanted`: the
    /// spec asks for the authorizer (so without a last good version it cannot be left out).
    Invalid { wanted: bool },
}

/// Everything the controller needs from one pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    /// One entry per running sidecar pod, sorted by namespace and name. A sidecar pod that no
    /// valid application selects gets an empty snapshot: it serves 404 rather than a stale config.
    pub pods: Vec<PodConfig>,
    pub applications: BTreeMap<ResourceId, AppOutcome>,
    /// Running sidecar pods (`namespace/name`, sorted) that an invalid application selects. They
    /// are not pushed at all: what they run includes the application's last good version, and
    /// a push without it would stop enforcing it (an edit with a typo must not open or close
    /// a site). They catch up once the spec compiles or the application is deleted.
    pub held: Vec<String>,
    /// The namespace's applications for the external authorizer: every compiled one with
    /// `enforcement` External or Both, and every invalid one (whose last good version may be).
    pub external: Vec<ExternalApp>,
}

/// Compiles every application (through `cache`: an unchanged application against unchanged
/// tokens and Secrets is not compiled again) and assigns the valid ones to the sidecar pods they
/// select.
pub fn desired<A: Borrow<AccessApplication>>(
    applications: &[A],
    tokens: &[AccessServiceToken],
    secrets: &[Secret],
    pods: &[Pod],
    cache: &mut CompileCache,
) -> Desired {
    // Every object from the API server has a namespace; the default is never used in a cluster.
    let default_namespace = "default";
    let secret_index = SecretIndex::new(secrets, default_namespace);
    // Token errors are the token controller's to report (its status); an application that names
    // an unusable token gets its own error from compile_application.
    let token_index = TokenIndex::build(tokens, &secret_index, default_namespace).index;

    let sidecars: Vec<(SidecarPod, &Pod)> = pods.iter().filter_map(|p| sidecar_pod(p).map(|s| (s, p))).collect();
    let mut per_pod: Vec<Vec<portcullis_crds::snapshot::Application>> = vec![Vec::new(); sidecars.len()];
    let mut held = vec![false; sidecars.len()];
    let mut outcomes = BTreeMap::new();
    let mut external = Vec::new();
    let inputs = inputs_version(tokens, secrets);
    for app in applications.iter().map(Borrow::borrow) {
        let id = ResourceId {
            namespace: app.metadata.namespace.clone().unwrap_or_else(|| default_namespace.to_owned()),
            name: app.metadata.name.clone().unwrap_or_default(),
        };
        let enforcement = app.spec.enforcement.unwrap_or_default();
        let created = app.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let compiled_app = match cache.compile(app, default_namespace, inputs, &token_index, &secret_index) {
            Ok(a) => a,
            Err(errors) => {
                let state = ExternalState::Invalid { wanted: enforcement.by_authorizer() };
                external.push(ExternalApp { id: id.clone(), created, state });
                // Held whatever `enforcement` says now: the typo may be in `enforcement` itself,
                // and the pods it selects run its last good version.
                for (i, (sidecar, pod)) in sidecars.iter().enumerate() {
                    if sidecar.namespace == id.namespace && selects(app.spec.selector.as_ref(), pod) {
                        held[i] = true;
                    }
                }
                outcomes.insert(id, AppOutcome::Invalid(errors));
                continue;
            }
        };
        if enforcement.by_authorizer() {
            let state = ExternalState::Enforced(Box::new(compiled_app.clone()));
            external.push(ExternalApp { id: id.clone(), created, state });
        }
        let mut selected = Vec::new();
        for (i, (sidecar, pod)) in sidecars.iter().enumerate() {
            let by_sidecars = enforcement.by_sidecars();
            if by_sidecars && sidecar.namespace == id.namespace && selects(app.spec.selector.as_ref(), pod) {
                per_pod[i].push(compiled_app.clone());
                selected.push(format!("{}/{}", sidecar.namespace, sidecar.name));
            }
        }
        selected.sort();
        let mut waiting: Vec<String> = pods
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(id.namespace.as_str()))
            .filter(|p| enforcement.by_sidecars() && admin_port(p).is_some() && sidecar_pod(p).is_none())
            .filter(|p| selects(app.spec.selector.as_ref(), p))
            .map(|p| format!("{}/{}", id.namespace, p.metadata.name.as_deref().unwrap_or_default()))
            .collect();
        waiting.sort();
        let version = Snapshot::new(vec![compiled_app]).version;
        outcomes.insert(id, AppOutcome::Compiled { pods: selected, waiting, version });
    }
    let mut pods = Vec::new();
    let mut held_pods = Vec::new();
    for (((pod, _), apps), held) in sidecars.into_iter().zip(per_pod).zip(held) {
        if held {
            held_pods.push(format!("{}/{}", pod.namespace, pod.name));
        } else {
            pods.push(PodConfig { pod, snapshot: Snapshot::new(apps) });
        }
    }
    pods.sort_by(|a, b| a.pod.cmp(&b.pod));
    held_pods.sort();
    Desired { pods, applications: outcomes, held: held_pods, external }
}

/// The pod as a push target: Running, with an IP and a container port named
/// [`ADMIN_PORT_NAME`]. A pending pod is skipped; it is pushed once it runs (its Pod changes).
pub fn sidecar_pod(pod: &Pod) -> Option<SidecarPod> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
    let (container, port) = admin_port(pod)?;
    let restarts =
        status.container_statuses.iter().flatten().find(|s| s.name == container.name).map_or(0, |s| s.restart_count);
    Some(SidecarPod {
        namespace: pod.metadata.namespace.clone()?,
        name: pod.metadata.name.clone()?,
        ip,
        admin_port: u16::try_from(port.container_port).ok()?,
        incarnation: format!("{}/{restarts}", pod.metadata.uid.as_deref().unwrap_or_default()),
    })
}

/// The container declaring the [`ADMIN_PORT_NAME`] port, and that port.
fn admin_port(pod: &Pod) -> Option<(&Container, &ContainerPort)> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find_map(|c| c.ports.iter().flatten().find(|p| p.name.as_deref() == Some(ADMIN_PORT_NAME)).map(|p| (c, p)))
}

/// Whether `selector` selects `pod`, as Kubernetes label selectors do: the requirements are
/// ANDed, an empty selector selects every pod, and an absent one selects none (an application
/// without a selector is for standalone sidecars, not for every pod of its namespace).
pub fn selects(selector: Option<&LabelSelector>, pod: &Pod) -> bool {
    let Some(selector) = selector else { return false };
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let labels_match = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    labels_match && selector.match_expressions.iter().flatten().all(|r| requirement_holds(r, labels))
}

/// One matchExpressions entry. An unknown operator selects nothing: the API server rejects
/// those, and guessing would push a config to pods nobody chose.
fn requirement_holds(r: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&r.key);
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
