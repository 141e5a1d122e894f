//! Reconcile tests against a scripted mock API server (`crate::fixtures`).

use std::sync::Arc;

use jiff::Timestamp;
use kube::runtime::controller::Action;
use portcullis_crds::push::SigningKey;
use portcullis_crds::v1alpha1::{AccessApplication, AccessApplicationStatus};
use prometheus::Encoder;
use serde_json::{json, Value};

use super::*;
use crate::compile_cache::CompileCache;
use crate::desired::ADMIN_PORT_NAME;
use crate::fixtures::{Scenario, Seen};

const NS: &str = "shop";

fn now() -> Timestamp {
    "2026-11-24T00:00:00Z".parse().unwrap()
}

fn app(session_duration: &str) -> AccessApplication {
    serde_json::from_value(json!({
        "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessApplication",
        "metadata": {"name": "api", "namespace": NS, "generation": 3, "uid": "uid-api", "finalizers": [FINALIZER]},
        "spec": {
            "selector": {"matchLabels": {"app": "api"}},
            "domains": ["api.example.com"],
            "sessionDuration": session_duration,
            "policies": [{"name": "all", "action": "Allow", "include": [{"everyone": {}}]}],
        },
    }))
    .unwrap()
}

/// A loopback port nothing listens on, held for the whole test binary: bound without `listen`,
/// so a connection to it is refused, and no server another test starts can be given it (a port
/// released after a bind can be, and would then answer the push).
static CLOSED_PORT: std::sync::LazyLock<tokio::net::TcpSocket> = std::sync::LazyLock::new(|| {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(([127, 0, 0, 1], 0).into()).expect("bind");
    socket
});

/// A running sidecar pod whose admin port nothing listens on.
fn unreachable_pod() -> Value {
    let port = CLOSED_PORT.local_addr().expect("addr").port();
    json!({
        "metadata": {"name": "api-0", "namespace": NS, "uid": "uid-pod", "labels": {"app": "api"}},
        "spec": {"containers": [{"name": "portcullis", "ports": [{"name": ADMIN_PORT_NAME, "containerPort": port}]}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1"},
    })
}

/// The four lists a reconcile reads, answering `app` and `pods`.
fn lists(app: &AccessApplication, pods: Value) -> Vec<Scenario> {
    vec![
        Scenario::List("accessapplications", json!([app])),
        Scenario::List("accessservicetokens", json!([])),
        Scenario::List("secrets", json!([])),
        Scenario::List("pods", pods),
    ]
}

async fn reconcile_with(app: &AccessApplication, scenario: Vec<Scenario>) -> (Result<Action>, Vec<Seen>) {
    let (result, seen, _) = reconcile_with_metrics(app, scenario).await;
    (result, seen)
}

/// [`reconcile_with`], and the metrics it left, in the text format.
async fn reconcile_with_metrics(
    app: &AccessApplication,
    scenario: Vec<Scenario>,
) -> (Result<Action>, Vec<Seen>, String) {
    let (ctx, verifier, registry) = Context::test(now());
    let mock = verifier.run(NS, scenario);
    let (key, _) = SigningKey::generate().unwrap();
    let pusher = Pusher::new(key, ctx.metrics.clone());
    let result = reconcile(Arc::new(app.clone()), Arc::new(AppContext::new(ctx, pusher, NS))).await;
    let mut metrics = Vec::new();
    prometheus::TextEncoder::new().encode(&registry.gather(), &mut metrics).unwrap();
    (result, mock.await.expect("mock API server"), String::from_utf8(metrics).unwrap())
}

fn status_of(seen: &Seen) -> AccessApplicationStatus {
    serde_json::from_value(seen.body["status"].clone()).expect("a status body")
}

fn condition(status: &AccessApplicationStatus, type_: &str) -> (String, String, String) {
    let c = status.conditions.iter().find(|c| c.type_ == type_).expect("condition");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

#[tokio::test]
async fn a_valid_application_without_pods_is_ready_and_synced() {
    let a = app("1h");
    let mut scenario = lists(&a, json!([]));
    scenario.push(Scenario::ApplyAppStatus);
    let (result, seen) = reconcile_with(&a, scenario).await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
    let status = status_of(&seen[4]);
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.sidecars, Some(SidecarCounts { matched: 0, synced: 0 }));
    assert_eq!(status.config_version.as_deref().map(str::len), Some(64));
    assert_eq!(condition(&status, READY).0, "True");
    let (synced, reason, message) = condition(&status, SYNCED);
    assert_eq!((synced.as_str(), reason.as_str()), ("True", "Synced"));
    assert!(message.contains("spec.selector"), "{message}");
    assert!(status.conditions.iter().all(|c| c.observed_generation == Some(3)));
}

#[tokio::test]
async fn an_invalid_application_reports_its_fields_once() {
    let a = app("forever");
    let mut scenario = lists(&a, json!([]));
    scenario.extend([Scenario::Event("InvalidSpec"), Scenario::ApplyAppStatus]);
    let (result, seen, metrics) = reconcile_with_metrics(&a, scenario).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(seen[4].body["note"].as_str().unwrap().contains("spec.sessionDuration"), "{}", seen[4].body);
    let status = status_of(&seen[5]);
    let (ready, reason, message) = condition(&status, READY);
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("spec.sessionDuration") && message.contains("forever"), "{message}");
    assert_eq!(condition(&status, SYNCED).0, "False");
    assert_eq!(status.config_version, None);
    assert!(
        metrics.contains("portcullis_operator_compile_errors{application=\"api\",namespace=\"shop\"} 1"),
        "{metrics}"
    );

    // The next reconcile finds the same errors: no event, no write.
    let mut again = a.clone();
    again.status = Some(status);
    let (result, seen) = reconcile_with(&again, lists(&again, json!([]))).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(seen.len(), 4, "{seen:?}");
}

#[tokio::test]
async fn an_unreachable_sidecar_is_push_failed() {
    let a = app("1h");
    let mut scenario = lists(&a, json!([unreachable_pod()]));
    scenario.extend([Scenario::Event("PushFailed"), Scenario::ApplyAppStatus]);
    let (result, seen) = reconcile_with(&a, scenario).await;
    assert_eq!(result.unwrap(), Action::requeue(PUSH_RETRY_FIRST));
    let status = status_of(&seen[5]);
    assert_eq!(status.sidecars, Some(SidecarCounts { matched: 1, synced: 0 }));
    let (synced, reason, message) = condition(&status, SYNCED);
    assert_eq!((synced.as_str(), reason.as_str()), ("False", "PushFailed"));
    assert!(message.starts_with("1 of 1 matched") && message.contains("shop/api-0"), "{message}");
    assert_eq!(condition(&status, READY).0, "True");
}

/// An application for the external authorizer only, without a selector.
fn external_app() -> AccessApplication {
    let mut a = app("1h");
    a.spec.selector = None;
    a.spec.enforcement = Some(portcullis_crds::v1alpha1::Enforcement::External);
    a
}

/// An authorizer pod (the chart's label) whose admin port nothing listens on.
fn unreachable_authorizer() -> Value {
    let mut pod = unreachable_pod();
    pod["metadata"]["name"] = json!("authz-0");
    pod["metadata"]["labels"] = json!({crate::authorizer::ROLE_LABEL.0: crate::authorizer::ROLE_LABEL.1, "app": "api"});
    pod
}

#[tokio::test]
async fn an_external_application_is_pushed_to_the_authorizer_pods_not_the_sidecars() {
    let a = external_app();
    // The namespace's pods: the authorizer (this test's operator namespace is the app's) and a
    // sidecar. Only the authorizer is pushed; the sidecar would have failed too.
    let mut scenario = lists(&a, json!([unreachable_authorizer(), unreachable_pod()]));
    scenario.extend([
        Scenario::List("pods", json!([unreachable_authorizer()])),
        Scenario::Event("PushFailed"),
        Scenario::ApplyAppStatus,
    ]);
    let (result, seen) = reconcile_with(&a, scenario).await;
    assert!(seen[4].uri.contains("labelSelector=access.portcullis.dev%2Frole%3Dauthorizer"), "{}", seen[4].uri);
    assert_eq!(result.unwrap(), Action::requeue(PUSH_RETRY_FIRST));
    let status = status_of(&seen[6]);
    assert_eq!(status.sidecars, None, "no sidecar enforces it");
    assert_eq!(status.authorizers, Some(SidecarCounts { matched: 1, synced: 0 }));
    let (synced, reason, message) = condition(&status, SYNCED);
    assert_eq!((synced.as_str(), reason.as_str()), ("False", "PushFailed"));
    assert!(message.starts_with("1 of 1 external-authorizer pod(s)") && message.contains("shop/authz-0"), "{message}");
    assert!(!message.contains("shop/api-0"), "{message}");
    let (ready, _, message) = condition(&status, READY);
    assert_eq!(ready, "True");
    assert!(message.contains("external authorizer only"), "{message}");
}

#[tokio::test]
async fn an_external_application_without_an_authorizer_running_says_so() {
    let a = external_app();
    let mut scenario = lists(&a, json!([]));
    scenario.extend([Scenario::List("pods", json!([])), Scenario::Event("NoAuthorizer"), Scenario::ApplyAppStatus]);
    let (result, seen) = reconcile_with(&a, scenario).await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
    let status = status_of(&seen[6]);
    assert_eq!(status.authorizers, Some(SidecarCounts { matched: 0, synced: 0 }));
    let (synced, reason, message) = condition(&status, SYNCED);
    assert_eq!((synced.as_str(), reason.as_str()), ("False", "NoAuthorizer"));
    assert!(message.contains("authorizer.enabled"), "{message}");
}

#[tokio::test]
async fn a_selected_pod_not_running_yet_is_pending() {
    let a = app("1h");
    let mut starting = unreachable_pod();
    starting["status"] = json!({"phase": "Pending"});
    let mut scenario = lists(&a, json!([starting]));
    scenario.push(Scenario::ApplyAppStatus);
    let (result, seen) = reconcile_with(&a, scenario).await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
    let status = status_of(&seen[4]);
    assert_eq!(status.sidecars, Some(SidecarCounts { matched: 0, synced: 0 }));
    let (synced, reason, message) = condition(&status, SYNCED);
    assert_eq!((synced.as_str(), reason.as_str()), ("False", "Pending"));
    assert!(
        message.starts_with("1 selected sidecar pod(s) not running yet") && message.contains("shop/api-0"),
        "{message}"
    );
}

#[tokio::test]
async fn a_new_application_gets_the_finalizer_before_anything_is_pushed() {
    let mut a = app("1h");
    a.metadata.finalizers = None;
    let (result, seen) = reconcile_with(&a, vec![Scenario::PatchApp]).await;
    assert_eq!(result.unwrap(), Action::await_change());
    let patch = seen[0].body.to_string();
    assert!(patch.contains(FINALIZER) && patch.contains("/metadata/finalizers"), "{patch}");
}

/// The application as the API server shows it after `kubectl delete`: still there, with a
/// deletion timestamp, held by the finalizer.
fn deleted(a: &AccessApplication) -> AccessApplication {
    let mut a = a.clone();
    a.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    a
}

#[tokio::test]
async fn a_deleted_application_is_released_once_its_sidecars_dropped_it() {
    let a = deleted(&app("1h"));
    let mut scenario = lists(&a, json!([]));
    scenario.push(Scenario::PatchApp);
    let (result, seen) = reconcile_with(&a, scenario).await;
    assert_eq!(result.unwrap(), Action::await_change());
    let patch = seen[4].body.to_string();
    assert!(patch.contains("remove") && patch.contains("/metadata/finalizers"), "{patch}");
}

#[tokio::test]
async fn a_deleted_application_waits_while_a_sidecar_cannot_be_told() {
    let a = deleted(&app("1h"));
    // Only the four lists: no finalizer removal, no status write.
    let (result, seen) = reconcile_with(&a, lists(&a, json!([unreachable_pod()]))).await;
    let error = result.unwrap_err();
    assert_eq!(error.reason(), "CleanupPushFailed");
    let message = error.to_string();
    assert!(message.contains("shop/api") && message.contains("api-0"), "{message}");
    assert_eq!(seen.len(), 4);
}

#[test]
fn a_deleted_application_is_left_out_of_the_snapshots() {
    // What push_namespace hands to desired(): the deleted application is filtered first, so the
    // pod it selected gets an empty snapshot (404 for its domains) rather than its rules.
    let live = app("1h");
    let gone = deleted(&app("1h"));
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(unreachable_pod()).unwrap();
    let kept = live_applications(vec![Arc::new(live.clone())]);
    let plan = desired(&kept, &[], &[], std::slice::from_ref(&pod), &mut CompileCache::default());
    assert_eq!(plan.pods[0].snapshot.applications.len(), 1);
    let kept = live_applications(vec![Arc::new(gone)]);
    let plan = desired(&kept, &[], &[], std::slice::from_ref(&pod), &mut CompileCache::default());
    assert!(plan.pods[0].snapshot.applications.is_empty());
}

#[test]
fn an_application_names_the_secrets_of_its_login() {
    let mut a = app("1h");
    assert!(!names_secret(&a, "oidc"));
    a.spec.login = Some(
        serde_json::from_value(json!({
            "oidc": {"issuer": "https://idp.example", "clientId": "c", "clientSecretRef": {"name": "oidc", "key": "secret"}},
            "sessionKeyRef": {"name": "session", "key": "key.pem"},
        }))
        .unwrap(),
    );
    assert!(names_secret(&a, "oidc"));
    assert!(names_secret(&a, "session"));
    assert!(!names_secret(&a, "ci-token-credentials"));
}

#[test]
fn failed_pushes_are_retried_soon_then_less_often() {
    let waits: Vec<u64> = (0..8).map(|n| push_retry_after(n).as_millis() as u64).collect();
    assert_eq!(waits, [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
    assert_eq!(push_retry_after(u32::MAX), PUSH_RETRY_MAX);
}
