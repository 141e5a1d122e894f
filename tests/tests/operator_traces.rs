//! The operator's spans against a real OTLP/gRPC receiver: a reconcile (the controller wrapper
//! `controller::instrumented`) holding a push to a real in-process sidecar, exported as a
//! `reconcile` span with its `push` child, with names and outcomes and no config content.
//!
//! Its own test binary: the operator's tracer provider is the process's global one.

mod common;

use std::sync::Arc;

use common::*;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use portcullis_crds::push::SigningKey;
use portcullis_crds::telemetry::OtelVars;
use portcullis_operator::desired::{PodConfig, SidecarPod};
use portcullis_operator::metrics::Metrics;
use portcullis_operator::push::{Pushed, Pusher};
use portcullis_operator::{Context, SystemClock};
use prometheus::Registry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_span_holds_the_push_spans_of_its_pods() {
    let rx = OtlpReceiver::start().await;
    let registry = Registry::new();
    let vars = OtelVars { endpoint: Some(rx.endpoint()), ..Default::default() };
    let traces = portcullis_operator::telemetry::install(&vars, &registry).unwrap().expect("tracing on");

    let up = Upstream::start().await;
    let (key, _) = SigningKey::generate().unwrap();
    let sc = sidecar_without_manifests(&up.url(), &key.verifying_key().to_base64(), "shop", "api-0").await;
    let metrics = Arc::new(Metrics::register(&registry).unwrap());
    let pusher = Pusher::new(key, metrics.clone());
    let snapshot = compile_manifests(&seed_manifests(&inline_jwks(), SEED_CORS, ""));
    let pod = PodConfig {
        pod: SidecarPod {
            namespace: "shop".into(),
            name: "api-0".into(),
            ip: sc.admin.ip().to_string(),
            admin_port: sc.admin.port(),
            incarnation: "uid-1/0".into(),
        },
        snapshot: snapshot.clone(),
    };

    // The reconcile's wrapper needs a context; nothing here calls the API server.
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let reporter = Reporter { controller: "portcullis-operator".into(), instance: None };
    let ctx = Context::new(client, Arc::new(SystemClock), metrics, reporter);
    let object = ConfigMap {
        metadata: ObjectMeta { name: Some("api".into()), namespace: Some("shop".into()), ..Default::default() },
        ..Default::default()
    };
    let work = async {
        let out = pusher.push_all(std::slice::from_ref(&pod), Timestamp::now()).await;
        assert_eq!(out[0].result, Ok(Pushed::Sent { unchanged: false }));
        Ok(Action::await_change())
    };
    portcullis_operator::controller::instrumented(&ctx, "accessapplication", &object, work).await.unwrap();
    tokio::task::spawn_blocking(move || traces.shutdown()).await.unwrap();

    let spans = rx.wait_for("reconcile and push", |s| s.len() >= 2).await;
    let reconcile = spans.iter().find(|s| s.name == "reconcile").unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(reconcile.service, "portcullis-operator");
    assert_eq!(reconcile.parent_span_id, "", "a reconcile starts its trace");
    assert_eq!(reconcile.attributes.get("portcullis.object").map(String::as_str), Some("shop/api"));
    assert_eq!(reconcile.attributes.get("portcullis.controller").map(String::as_str), Some("accessapplication"));
    assert_eq!(reconcile.attributes.get("portcullis.outcome").map(String::as_str), Some("ok"));
    let push = spans.iter().find(|s| s.name == "push").unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(
        (push.trace_id.as_str(), push.parent_span_id.as_str()),
        (reconcile.trace_id.as_str(), reconcile.span_id.as_str())
    );
    assert_eq!(push.kind, 3);
    assert_eq!(push.attributes.get("portcullis.pod").map(String::as_str), Some("shop/api-0"));
    assert_eq!(push.attributes.get("portcullis.config_version"), Some(&snapshot.version));
    assert_eq!(push.attributes.get("portcullis.outcome").map(String::as_str), Some("ok"));
    // Names and outcomes only: no part of the config (the service token's secret) is exported.
    assert!(!format!("{spans:?}").contains(TOKEN_SECRET));
}
