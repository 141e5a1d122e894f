//! The operator's push client against a real sidecar process in cluster mode: a push makes the
//! sidecar enforce the config, an identical push is `unchanged`, an acknowledged version is not
//! sent again, refusals and unreachable sidecars come back as errors, and every attempt is
//! counted under its result.

mod common;

use std::sync::Arc;

use common::*;
use jiff::Timestamp;
use portcullis_crds::push::SigningKey;
use portcullis_crds::Snapshot;
use portcullis_operator::desired::{PodConfig, SidecarPod};
use portcullis_operator::metrics::Metrics;
use portcullis_operator::push::{PushError, Pushed, Pusher};
use prometheus::{Encoder, Registry, TextEncoder};

fn seed_snapshot() -> Snapshot {
    compile_manifests(&seed_manifests(&inline_jwks(), SEED_CORS, ""))
}

fn target(sc: &Sidecar, pod: &str, incarnation: &str, snapshot: Snapshot) -> PodConfig {
    PodConfig {
        pod: SidecarPod {
            namespace: "shop".into(),
            name: pod.into(),
            ip: sc.admin.ip().to_string(),
            admin_port: sc.admin.port(),
            incarnation: incarnation.into(),
        },
        snapshot,
    }
}

fn metrics_text(registry: &Registry) -> String {
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn the_push_client_configures_a_real_sidecar_once() {
    let up = Upstream::start().await;
    let (key, _) = SigningKey::generate().unwrap();
    let sc = sidecar_without_manifests(&up.url(), &key.verifying_key().to_base64(), "shop", "api-0").await;
    let registry = Registry::new();
    let pusher = Pusher::new(key, Arc::new(Metrics::register(&registry).unwrap()));

    let snapshot = seed_snapshot();
    let pod = target(&sc, "api-0", "uid-1/0", snapshot.clone());
    let out = pusher.push_all(std::slice::from_ref(&pod), Timestamp::now()).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].result, Ok(Pushed::Sent { unchanged: false }));
    assert_eq!(out[0].version, snapshot.version);
    let r = get(&sc.url("/"), &[("host", "api.mysite.com")]).await.unwrap();
    assert_eq!(r.status, 401, "the pushed config is enforced");

    // Acknowledged: a second reconcile sends nothing.
    let out = pusher.push_all(std::slice::from_ref(&pod), Timestamp::now()).await;
    assert_eq!(out[0].result, Ok(Pushed::AlreadySynced));
    assert!(pusher.in_sync(&pod));

    // A new incarnation (the sidecar container restarted) is pushed again although the version was
    // acknowledged. This sidecar still runs it, so it answers unchanged: the same cheap re-push a
    // restarted operator (which remembers no acknowledgement) makes.
    let restarted = target(&sc, "api-0", "uid-1/1", snapshot.clone());
    let out = pusher.push_all(std::slice::from_ref(&restarted), Timestamp::now()).await;
    assert_eq!(out[0].result, Ok(Pushed::Sent { unchanged: true }));

    // Addressed to another pod: refused, not retried, and no longer counted as in sync.
    let wrong = target(&sc, "api-1", "uid-2/0", Snapshot::empty());
    let out = pusher.push_all(std::slice::from_ref(&wrong), Timestamp::now()).await;
    match &out[0].result {
        Err(e @ PushError::Refused { status: 409, .. }) => assert_eq!(e.reason(), "wrong_target"),
        other => panic!("{other:?}"),
    }
    let r = get(&sc.url("/"), &[("host", "api.mysite.com")]).await.unwrap();
    assert_eq!(r.status, 401, "a refused push leaves the running config");

    // Nothing listens: retried, then unreachable.
    let mut gone = target(&sc, "api-2", "uid-3/0", Snapshot::empty());
    gone.pod.admin_port = free_port();
    let out = pusher.push_all(std::slice::from_ref(&gone), Timestamp::now()).await;
    match &out[0].result {
        Err(e) => assert_eq!(e.reason(), "unreachable", "{e}"),
        other => panic!("{other:?}"),
    }

    let m = metrics_text(&registry);
    for line in [
        "portcullis_operator_pushes_total{result=\"ok\"} 1",
        "portcullis_operator_pushes_total{result=\"unchanged\"} 1",
        "portcullis_operator_pushes_total{result=\"wrong_target\"} 1",
        "portcullis_operator_pushes_total{result=\"unreachable\"} 3",
        "portcullis_operator_push_duration_seconds_count 6",
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
    // The pod is gone from the namespace: its acknowledgement is forgotten, other namespaces kept.
    pusher.forget_gone("other", &[]);
    assert!(pusher.in_sync(&restarted));
    pusher.forget_gone("shop", &[]);
    assert!(!pusher.in_sync(&restarted));

    let sidecar_metrics = sc.metrics().await;
    assert!(sidecar_metrics.contains("portcullis_config_pushes_total{result=\"wrong_target\"} 1"), "{sidecar_metrics}");
}
