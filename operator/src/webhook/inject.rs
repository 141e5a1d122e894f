//! Sidecar injection: whether a pod gets the `portcullis-sidecar` container, and the RFC 6902
//! patch that adds it. Pure: the pod, its namespace and the settings in, a decision out.
//!
//! Rules, in order:
//! 1. never in `kube-system` or the operator's own namespace (the chart's namespaceSelector
//!    excludes them too; this check holds when a configuration is edited by hand);
//! 2. a pod that already has a container named `portcullis-sidecar` is left as it is, so that
//!    injecting twice changes nothing;
//! 3. the annotation `access.portcullis.dev/inject` decides: `"false"` opts out, `"true"` opts in;
//!    without it a pod is injected in a labelled namespace ([`Scope::Namespace`]) and not
//!    elsewhere ([`Scope::Pod`]); any other value is refused;
//! 4. the app port comes from `access.portcullis.dev/upstream-port` (a number or the name of a
//!    container port). Without it, a pod whose containers declare exactly one TCP port is
//!    protected on that port; any other pod is refused with a message saying what to add.
//!    Guessing among several ports could put the sidecar in front of the wrong one.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, Pod, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde_json::{json, Value};

/// Pod annotation: `"true"` injects, `"false"` never injects.
pub const INJECT_ANNOTATION: &str = "access.portcullis.dev/inject";
/// Pod annotation: the app's port (number or container port name) the sidecar forwards to.
pub const UPSTREAM_PORT_ANNOTATION: &str = "access.portcullis.dev/upstream-port";
/// Name of the injected container.
pub const CONTAINER_NAME: &str = "portcullis-sidecar";
/// Name of the sidecar's traffic port; Services send traffic to it (`targetPort: portcullis`).
pub const TRAFFIC_PORT_NAME: &str = "portcullis";
/// Label put on injected pods (value `injected`), for a PodMonitor to scrape the sidecars.
pub const SIDECAR_LABEL: &str = "access.portcullis.dev/sidecar";
/// Namespaces never injected, whatever their labels.
const SYSTEM_NAMESPACES: &[&str] = &["kube-system"];

/// Which webhook path was called: the namespaceSelector already chose the namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The pod's namespace is labelled `access.portcullis.dev/inject=enabled`.
    Namespace,
    /// Any other namespace: injected only when the pod asks.
    Pod,
}

/// What the injected container is made of (operator flags, from the chart's values).
#[derive(Clone, Debug)]
pub struct Injection {
    pub image: String,
    pub image_pull_policy: String,
    pub resources: ResourceRequirements,
    /// The operator's push public key (base64), trusted by the sidecar for config pushes.
    pub push_public_key: String,
    /// The operator's own namespace: never injected.
    pub operator_namespace: String,
    /// Sidecar traffic port (named [`TRAFFIC_PORT_NAME`]).
    pub traffic_port: u16,
    /// Sidecar admin port (named [`crate::desired::ADMIN_PORT_NAME`]).
    pub admin_port: u16,
    /// The OTEL variables of the sidecar's traces (`--sidecar-otlp-*`); empty: tracing off.
    pub trace_env: Vec<(String, String)>,
}

/// Why a pod that should get a sidecar cannot. Refused: creating it without the sidecar would
/// leave it unprotected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error(
        "pod has no {UPSTREAM_PORT_ANNOTATION} annotation and its containers declare {declared} TCP ports, so the \
         port to protect is ambiguous; annotate the pod with {UPSTREAM_PORT_ANNOTATION}: \"<port>\", or opt out with \
         {INJECT_ANNOTATION}: \"false\""
    )]
    NoUpstreamPort { declared: usize },
    #[error(
        "annotation {UPSTREAM_PORT_ANNOTATION}: {value:?} is neither a port number (1-65535) nor the name of a \
         container port of this pod"
    )]
    BadUpstreamPort { value: String },
    #[error(
        "port {port} is the sidecar's {what} port, so the app cannot use it; move the app, or change the chart's \
         sidecar.ports values"
    )]
    PortTaken { port: u16, what: &'static str },
    #[error("annotation {INJECT_ANNOTATION}: {value:?} must be \"true\" or \"false\"")]
    BadInjectAnnotation { value: String },
}

/// The decision for one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Admit unchanged; the reason is for logs.
    Skip(&'static str),
    /// Admit with this container added (and [`SIDECAR_LABEL`] set).
    Inject(Box<Container>),
    Refuse(InjectError),
}

/// Answers one AdmissionReview for a pod.
pub fn review(injection: &Injection, scope: Scope, req: &AdmissionRequest<Pod>) -> AdmissionResponse {
    let allowed = super::allow(req);
    if req.operation != Operation::Create || req.sub_resource.is_some() {
        return allowed;
    }
    let Some(pod) = req.object.as_ref() else {
        return allowed.deny("pod CREATE without an object: nothing to inject into");
    };
    let namespace = req.namespace.as_deref().or(pod.metadata.namespace.as_deref()).unwrap_or_default();
    match decide(injection, scope, namespace, pod) {
        Decision::Skip(why) => {
            tracing::debug!(namespace, why, "not injected");
            allowed
        }
        Decision::Refuse(e) => allowed.deny(e),
        Decision::Inject(container) => {
            let patch = patch(&container, pod.metadata.labels.is_some());
            match serde_json::from_value(patch).map_err(|e| e.to_string()).and_then(|p| {
                // The response carries the patch as JSON bytes; encoding a Value cannot fail.
                allowed.clone().with_patch(p).map_err(|e| e.to_string())
            }) {
                Ok(response) => response,
                Err(e) => allowed.deny(format!("building the injection patch failed: {e}")),
            }
        }
    }
}

/// Whether and what to inject into `pod` of `namespace`.
pub fn decide(injection: &Injection, scope: Scope, namespace: &str, pod: &Pod) -> Decision {
    if SYSTEM_NAMESPACES.contains(&namespace) || namespace == injection.operator_namespace {
        return Decision::Skip("system or operator namespace");
    }
    let Some(spec) = pod.spec.as_ref() else {
        return Decision::Skip("pod without spec");
    };
    if spec.containers.iter().any(|c| c.name == CONTAINER_NAME) {
        return Decision::Skip("already injected");
    }
    let annotations = pod.metadata.annotations.as_ref();
    let wanted = match annotations.and_then(|a| a.get(INJECT_ANNOTATION)).map(String::as_str) {
        Some("true") => true,
        Some("false") => false,
        Some(other) => return Decision::Refuse(InjectError::BadInjectAnnotation { value: other.to_owned() }),
        None => scope == Scope::Namespace,
    };
    if !wanted {
        return Decision::Skip("not asked for");
    }
    let declared: Vec<&ContainerPort> = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .collect();
    let upstream = match annotations.and_then(|a| a.get(UPSTREAM_PORT_ANNOTATION)) {
        Some(value) => match upstream_port(value, &declared) {
            Some(port) => port,
            None => return Decision::Refuse(InjectError::BadUpstreamPort { value: value.clone() }),
        },
        None => match declared.as_slice() {
            [only] => match u16::try_from(only.container_port) {
                Ok(port) if port > 0 => port,
                _ => return Decision::Refuse(InjectError::NoUpstreamPort { declared: 1 }),
            },
            more => return Decision::Refuse(InjectError::NoUpstreamPort { declared: more.len() }),
        },
    };
    for (port, what) in [(injection.traffic_port, "traffic"), (injection.admin_port, "admin")] {
        let declared_elsewhere = declared.iter().any(|p| p.container_port == i32::from(port));
        if upstream == port || declared_elsewhere {
            return Decision::Refuse(InjectError::PortTaken { port, what });
        }
    }
    Decision::Inject(Box::new(container(injection, upstream)))
}

/// `value` as a port: a number in 1..=65535, or the name of a declared port.
fn upstream_port(value: &str, declared: &[&ContainerPort]) -> Option<u16> {
    match value.parse::<u16>() {
        Ok(0) => None,
        Ok(port) => Some(port),
        Err(_) => declared
            .iter()
            .find(|p| p.name.as_deref() == Some(value))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// The sidecar container: forwards `0.0.0.0:<traffic>` to the app on `127.0.0.1:<upstream>`,
/// serves its admin API (config push, health, metrics) on `<admin>` for the operator.
pub fn container(injection: &Injection, upstream: u16) -> Container {
    let env = |name: &str, value: String| EnvVar { name: name.to_owned(), value: Some(value), value_from: None };
    let field = |name: &str, path: &str| EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.to_owned(), api_version: None }),
            ..Default::default()
        }),
    };
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(crate::desired::ADMIN_PORT_NAME.to_owned()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    };
    let port = |name: &str, number: u16| ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(number),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    };
    let mut envs = vec![
        env("PORTCULLIS_LISTEN", format!("0.0.0.0:{}", injection.traffic_port)),
        env("PORTCULLIS_ADMIN_LISTEN", format!("0.0.0.0:{}", injection.admin_port)),
        env("PORTCULLIS_UPSTREAM", format!("http://127.0.0.1:{upstream}")),
        env("PORTCULLIS_PUSH_PUBLIC_KEY_VALUE", injection.push_public_key.clone()),
        env("PORTCULLIS_LOG_FORMAT", "json".to_owned()),
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
    ];
    envs.extend(injection.trace_env.iter().map(|(name, value)| env(name, value.clone())));
    Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(injection.image.clone()),
        image_pull_policy: Some(injection.image_pull_policy.clone()),
        env: Some(envs),
        ports: Some(vec![
            port(TRAFFIC_PORT_NAME, injection.traffic_port),
            port(crate::desired::ADMIN_PORT_NAME, injection.admin_port),
        ]),
        // Alive while the process answers; ready once it holds a config pushed by the operator
        // (before that it denies everything, so it should get no traffic).
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 2)),
        resources: Some(injection.resources.clone()),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), add: None }),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), localhost_profile: None }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The RFC 6902 patch appending `container` to the pod's containers and labelling the pod. Every
/// pod has at least one container (the API server refuses a pod without), so
/// `/spec/containers/-` exists; `/metadata/labels` is created when the pod has none.
pub fn patch(container: &Container, has_labels: bool) -> Value {
    let label = if has_labels {
        // RFC 6901: `/` in a key is written `~1`.
        json!({ "op": "add", "path": format!("/metadata/labels/{}", SIDECAR_LABEL.replace('/', "~1")), "value": "injected" })
    } else {
        json!({ "op": "add", "path": "/metadata/labels", "value": { SIDECAR_LABEL: "injected" } })
    };
    json!([{ "op": "add", "path": "/spec/containers/-", "value": container }, label])
}
