use serde_json::{json, Value};

use super::*;
use crate::compile_cache::CompileCache;
use crate::desired::desired;
use portcullis_crds::v1alpha1::AccessApplication;

fn app(namespace: &str, name: &str, created: &str, spec: Value) -> AccessApplication {
    let mut full = json!({
        "domains": ["api.example.com"],
        "enforcement": "External",
        "policies": [{"name": "all", "action": "Allow", "include": [{"everyone": {}}]}],
    });
    full.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessApplication",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": full,
    }))
    .unwrap()
}

/// What namespace `ns` gives the authorizer with these applications.
fn external(apps: &[AccessApplication]) -> Vec<ExternalApp> {
    desired(apps, &[], &[], &[], &mut CompileCache::default()).external
}

fn id(namespace: &str, name: &str) -> ResourceId {
    ResourceId { namespace: namespace.into(), name: name.into() }
}

fn names(plan: &Plan) -> Vec<String> {
    plan.snapshot.applications.iter().map(|a| a.id.to_string()).collect()
}

fn expected(namespaces: &[&str]) -> BTreeSet<String> {
    namespaces.iter().map(|n| n.to_string()).collect()
}

// Behaviour: B-AUTHZ-5 (docs/behaviour.md).
#[test]
fn only_external_and_both_applications_reach_the_authorizer() {
    let apps = [
        app("shop", "ext", "2026-01-01T00:00:00Z", json!({"domains": ["a.example.com"]})),
        app("shop", "both", "2026-01-01T00:00:00Z", json!({"domains": ["b.example.com"], "enforcement": "Both"})),
        app("shop", "side", "2026-01-01T00:00:00Z", json!({"domains": ["c.example.com"], "enforcement": "Sidecar"})),
        app("shop", "default", "2026-01-01T00:00:00Z", json!({"domains": ["d.example.com"], "enforcement": null})),
    ];
    let mut a = Authorizers::default();
    a.record("shop", &external(&apps));
    let plan = a.plan(&expected(&["shop"])).unwrap();
    assert_eq!(names(&plan), ["shop/both", "shop/ext"]);
    assert!(plan.conflicts.is_empty());
}

// Behaviour: B-AUTHZ-6 (docs/behaviour.md).
#[test]
fn a_domain_belongs_to_the_oldest_application_claiming_it() {
    let mut a = Authorizers::default();
    let older = app("team-a", "api", "2026-01-01T00:00:00Z", json!({}));
    let newer = app("team-b", "grab", "2026-02-01T00:00:00Z", json!({"domains": ["x.example.com", "api.example.com"]}));
    // Recorded newest first: the order of reconciles does not decide.
    a.record("team-b", &external(&[newer]));
    a.record("team-a", &external(&[older]));
    let plan = a.plan(&expected(&["team-a", "team-b"])).unwrap();
    assert_eq!(names(&plan), ["team-a/api"]);
    assert_eq!(plan.conflicts.get(&id("team-b", "grab")), Some(&(1, id("team-a", "api"))));
}

#[test]
fn the_authorizer_waits_for_every_namespace_with_external_applications() {
    let mut a = Authorizers::default();
    a.record("team-a", &external(&[app("team-a", "api", "2026-01-01T00:00:00Z", json!({}))]));
    let waiting = a.plan(&expected(&["team-a", "team-b"])).unwrap_err();
    assert!(waiting.0.contains("team-b"), "{waiting:?}");
    a.record("team-b", &[]);
    assert_eq!(names(&a.plan(&expected(&["team-a", "team-b"])).unwrap()), ["team-a/api"]);
}

#[test]
fn an_invalid_application_keeps_its_last_good_version_on_the_authorizer() {
    let mut a = Authorizers::default();
    let good = app("shop", "api", "2026-01-01T00:00:00Z", json!({}));
    let broken = app("shop", "api", "2026-01-01T00:00:00Z", json!({"sessionDuration": "forever"}));
    assert!(!a.concerns("shop", &[]), "nothing recorded, nothing given: no push");

    // Never compiled in this process: the authorizer is not pushed (it keeps what it runs).
    a.record("shop", &external(std::slice::from_ref(&broken)));
    assert!(a.plan(&expected(&["shop"])).unwrap_err().0.contains("shop/api"));

    a.record("shop", &external(std::slice::from_ref(&good)));
    let version = a.plan(&expected(&["shop"])).unwrap().snapshot.version;
    a.record("shop", &external(std::slice::from_ref(&broken)));
    assert_eq!(a.plan(&expected(&["shop"])).unwrap().snapshot.version, version, "the last good version stays");

    // Deleted (no longer listed): gone from the authorizer, and the namespace still concerns it
    // once, so that the removal is pushed.
    assert!(a.concerns("shop", &[]));
    a.record("shop", &[]);
    assert!(a.plan(&expected(&[])).unwrap().snapshot.applications.is_empty());
    assert!(!a.concerns("shop", &[]));
}

#[test]
fn only_labelled_pods_of_the_authorizer_namespace_are_authorizers() {
    let pod = |namespace: &str, labels: Value| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": namespace, "labels": labels}})).unwrap()
    };
    assert!(is_authorizer(&pod("portcullis-system", json!({ROLE_LABEL.0: ROLE_LABEL.1})), "portcullis-system"));
    assert!(!is_authorizer(&pod("shop", json!({ROLE_LABEL.0: ROLE_LABEL.1})), "portcullis-system"));
    assert!(!is_authorizer(&pod("portcullis-system", json!({ROLE_LABEL.0: "other"})), "portcullis-system"));
    assert!(!is_authorizer(&pod("portcullis-system", json!({})), "portcullis-system"));
    assert_eq!(selector(), "access.portcullis.dev/role=authorizer");
}
