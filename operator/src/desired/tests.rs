use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::*;
use crate::compile_cache::CompileCache;

fn app(namespace: &str, name: &str, selector: Value, domain: &str) -> AccessApplication {
    serde_json::from_value(json!({
        "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessApplication",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {
            "selector": selector,
            "domains": [domain],
            "policies": [{"name": "all", "action": "Allow", "include": [{"everyone": {}}]}],
        },
    }))
    .unwrap()
}

fn invalid_app(namespace: &str, name: &str, selector: Value) -> AccessApplication {
    let mut a = app(namespace, name, selector, "bad.example.com");
    a.spec.session_duration = Some("forever".into());
    a
}

fn pod(namespace: &str, name: &str, labels: Value, phase: &str, admin_port: Option<i32>) -> Pod {
    let ports = match admin_port {
        Some(p) => json!([{"name": "http", "containerPort": 8080}, {"name": ADMIN_PORT_NAME, "containerPort": p}]),
        None => json!([{"name": "http", "containerPort": 8080}]),
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"), "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app"}, {"name": "portcullis", "image": "p", "ports": ports}]},
        "status": {"phase": phase, "podIP": "10.0.0.7", "containerStatuses": [{
            "name": "portcullis", "image": "p", "imageID": "", "ready": true, "restartCount": 2,
        }]},
    }))
    .unwrap()
}

fn sel(v: Value) -> LabelSelector {
    serde_json::from_value(v).unwrap()
}

fn id(namespace: &str, name: &str) -> ResourceId {
    ResourceId { namespace: namespace.into(), name: name.into() }
}

#[test]
fn only_running_pods_with_an_admin_port_and_an_ip_are_sidecars() {
    let running = pod("shop", "a", json!({}), "Running", Some(9901));
    assert_eq!(
        sidecar_pod(&running),
        Some(SidecarPod {
            namespace: "shop".into(),
            name: "a".into(),
            ip: "10.0.0.7".into(),
            admin_port: 9901,
            incarnation: "uid-a/2".into(),
        })
    );
    assert_eq!(sidecar_pod(&pod("shop", "b", json!({}), "Pending", Some(9901))), None);
    assert_eq!(sidecar_pod(&pod("shop", "c", json!({}), "Running", None)), None);
    let mut no_ip = running.clone();
    no_ip.status.as_mut().unwrap().pod_ip = None;
    assert_eq!(sidecar_pod(&no_ip), None);
}

#[test]
fn selectors_follow_kubernetes_semantics() {
    let p = pod("shop", "a", json!({"app": "api", "tier": "web"}), "Running", Some(1));
    assert!(!selects(None, &p), "no selector: no pod");
    assert!(selects(Some(&sel(json!({}))), &p), "empty selector: every pod");
    assert!(selects(Some(&sel(json!({"matchLabels": {"app": "api"}}))), &p));
    assert!(!selects(Some(&sel(json!({"matchLabels": {"app": "api", "tier": "db"}}))), &p));
    let expr = |op: &str, key: &str, values: Value| {
        sel(json!({"matchExpressions": [{"key": key, "operator": op, "values": values}]}))
    };
    assert!(selects(Some(&expr("In", "tier", json!(["web", "db"]))), &p));
    assert!(!selects(Some(&expr("In", "tier", json!(["db"]))), &p));
    assert!(!selects(Some(&expr("In", "zone", json!(["a"]))), &p));
    assert!(selects(Some(&expr("NotIn", "tier", json!(["db"]))), &p));
    assert!(selects(Some(&expr("NotIn", "zone", json!(["a"]))), &p), "NotIn holds for a missing label");
    assert!(!selects(Some(&expr("NotIn", "tier", json!(["web"]))), &p));
    assert!(selects(Some(&expr("Exists", "app", json!(null))), &p));
    assert!(!selects(Some(&expr("Exists", "zone", json!(null))), &p));
    assert!(selects(Some(&expr("DoesNotExist", "zone", json!(null))), &p));
    assert!(!selects(Some(&expr("DoesNotExist", "app", json!(null))), &p));
    assert!(!selects(Some(&expr("Near", "app", json!(null))), &p), "unknown operator selects nothing");
    let both = sel(
        json!({"matchLabels": {"app": "api"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]}),
    );
    assert!(!selects(Some(&both), &p), "labels and expressions are ANDed");
}

#[test]
fn pods_get_the_valid_applications_of_their_namespace_that_select_them() {
    let apps = [
        app("shop", "api", json!({"matchLabels": {"app": "api"}}), "api.example.com"),
        app("shop", "all", json!({}), "all.example.com"),
        app("other", "api", json!({"matchLabels": {"app": "api"}}), "other.example.com"),
        invalid_app("shop", "broken", json!({"matchLabels": {"app": "none"}})),
    ];
    let pods = [
        pod("shop", "api-0", json!({"app": "api"}), "Running", Some(9901)),
        pod("shop", "web-0", json!({"app": "web"}), "Running", Some(9901)),
        pod("shop", "api-1", json!({"app": "api"}), "Pending", Some(9901)),
        pod("idle", "x-0", json!({"app": "api"}), "Running", Some(9901)),
    ];
    let d = desired(&apps, &[], &[], &pods, &mut CompileCache::default());

    let names = |pc: &PodConfig| -> Vec<String> { pc.snapshot.applications.iter().map(|a| a.id.to_string()).collect() };
    let by_pod: Vec<(String, Vec<String>)> =
        d.pods.iter().map(|pc| (format!("{}/{}", pc.pod.namespace, pc.pod.name), names(pc))).collect();
    assert_eq!(
        by_pod,
        vec![
            ("idle/x-0".to_owned(), vec![]),
            ("shop/api-0".to_owned(), vec!["shop/all".to_owned(), "shop/api".to_owned()]),
            ("shop/web-0".to_owned(), vec!["shop/all".to_owned()]),
        ]
    );
    assert_eq!(d.pods[0].snapshot, Snapshot::empty(), "a pod nothing selects runs the empty config");

    match &d.applications[&id("shop", "api")] {
        AppOutcome::Compiled { pods, waiting, version } => {
            assert_eq!(pods, &vec!["shop/api-0".to_owned()]);
            assert_eq!(waiting, &vec!["shop/api-1".to_owned()], "selected but Pending");
            assert_eq!(version.len(), 64);
        }
        other => panic!("{other:?}"),
    }
    match &d.applications[&id("shop", "all")] {
        AppOutcome::Compiled { pods, .. } => assert_eq!(pods, &vec!["shop/api-0".to_owned(), "shop/web-0".to_owned()]),
        other => panic!("{other:?}"),
    }
    match &d.applications[&id("other", "api")] {
        AppOutcome::Compiled { pods, .. } => assert!(pods.is_empty()),
        other => panic!("{other:?}"),
    }
    match &d.applications[&id("shop", "broken")] {
        AppOutcome::Invalid(errors) => {
            assert_eq!(errors.0.len(), 1, "{errors}");
            assert_eq!(errors.0[0].field, "spec.sessionDuration");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_application_version_does_not_depend_on_its_neighbours() {
    let api = app("shop", "api", json!({}), "api.example.com");
    let other = app("shop", "other", json!({}), "other.example.com");
    let p = [pod("shop", "api-0", json!({}), "Running", Some(9901))];
    let alone = desired(std::slice::from_ref(&api), &[], &[], &p, &mut CompileCache::default());
    let together = desired(&[api, other], &[], &[], &p, &mut CompileCache::default());
    assert_eq!(alone.applications[&id("shop", "api")], together.applications[&id("shop", "api")]);
    assert_ne!(alone.pods[0].snapshot.version, together.pods[0].snapshot.version);
}

#[test]
fn the_sidecars_of_an_invalid_application_are_held_on_their_last_config() {
    let apps = [
        invalid_app("shop", "api", json!({"matchLabels": {"app": "api"}})),
        app("shop", "all", json!({}), "all.example.com"),
    ];
    let pods = [
        pod("shop", "api-0", json!({"app": "api"}), "Running", Some(9901)),
        pod("shop", "web-0", json!({"app": "web"}), "Running", Some(9901)),
    ];
    let d = desired(&apps, &[], &[], &pods, &mut CompileCache::default());
    assert_eq!(d.held, vec!["shop/api-0".to_owned()], "not pushed: it keeps the last good version of shop/api");
    let pushed: Vec<&str> = d.pods.iter().map(|p| p.pod.name.as_str()).collect();
    assert_eq!(pushed, vec!["web-0"], "a pod the invalid application does not select is still pushed");
    assert!(matches!(d.applications[&id("shop", "api")], AppOutcome::Invalid(_)));
}
