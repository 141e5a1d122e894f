//! Test-only helpers: a mock API server (tower-test) that expects a scripted sequence of requests
//! and answers them, in the manner of kube-rs/controller-rs `fixtures.rs`, plus a fixed clock.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::runtime::events::Reporter;
use kube::Client;
use prometheus::Registry;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle};

use crate::metrics::Metrics;
use crate::{Clock, Context};

/// A clock stuck at one instant.
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// One request the reconciler is expected to make, and how the mock answers it.
#[derive(Debug)]
pub enum Scenario {
    /// `GET` the credentials Secret: answers it, or 404 for `None`.
    GetSecret(Option<Box<Secret>>),
    /// `GET` the credentials Secret: fails with this HTTP status.
    GetSecretFails(u16),
    /// Server-side apply of the Secret: echoes the body as the stored object.
    ApplySecret,
    /// Server-side apply of the Secret: refused with 422 and a message quoting the request body,
    /// as an API server's validation message might.
    ApplySecretRejected,
    /// `POST` of a new Secret: echoes the body.
    CreateSecret,
    /// An event with this reason is created (events.k8s.io/v1).
    Event(&'static str),
    /// Server-side apply of the token's status: echoes the body.
    ApplyStatus,
    /// Server-side apply of an AccessApplication's status: echoes the body.
    ApplyAppStatus,
    /// A JSON patch of an AccessApplication's metadata (the finalizer): answers a minimal object.
    PatchApp,
    /// `GET` a list of this resource (plural) in the namespace: answers these items.
    List(&'static str, Value),
}

/// A request the mock saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: String,
    pub body: Value,
}

pub struct ApiServerVerifier(Handle<Request<Body>, Response<Body>>);

// === impl ApiServerVerifier ===

impl ApiServerVerifier {
    /// Answers `scenario` in order, then checks that no further request comes once every
    /// client is dropped. The task yields every request seen, for assertions on their bodies.
    pub fn run(self, namespace: &'static str, scenario: Vec<Scenario>) -> JoinHandle<Vec<Seen>> {
        let mut handle = self.0;
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for expected in scenario {
                let next = tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await;
                let (request, send) = next
                    .unwrap_or_else(|_| panic!("timed out waiting for {expected:?}"))
                    .unwrap_or_else(|| panic!("the reconciler stopped before {expected:?}"));
                let method = request.method().clone();
                let uri = request.uri().to_string();
                let bytes = request.into_body().collect_bytes().await.expect("request body");
                let body: Value =
                    if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
                let (status, answer) = answer(namespace, &expected, &method, &uri, &body);
                seen.push(Seen { method, uri, body });
                let response =
                    Response::builder().status(status).body(Body::from(serde_json::to_vec(&answer).unwrap()));
                send.send_response(response.unwrap());
            }
            if let Ok(Some((request, _))) = tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await {
                panic!("unexpected request {} {}", request.method(), request.uri());
            }
            seen
        })
    }
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message})
}

/// Checks one request against its expectation and returns the answer.
fn answer(ns: &str, expected: &Scenario, method: &http::Method, uri: &str, body: &Value) -> (StatusCode, Value) {
    let secret_path = format!("/api/v1/namespaces/{ns}/secrets/");
    let token_path = format!("/apis/access.portcullis.dev/v1alpha1/namespaces/{ns}/accessservicetokens/");
    let ssa = "fieldManager=portcullis-operator";
    match expected {
        Scenario::GetSecret(secret) => {
            assert_eq!((method.as_str(), uri.starts_with(&secret_path)), ("GET", true), "{uri}");
            match secret {
                Some(s) => (StatusCode::OK, serde_json::to_value(s).unwrap()),
                None => (StatusCode::NOT_FOUND, status_body(404, "NotFound", "secrets not found")),
            }
        }
        Scenario::GetSecretFails(code) => {
            assert_eq!((method.as_str(), uri.starts_with(&secret_path)), ("GET", true), "{uri}");
            let code = *code;
            (StatusCode::from_u16(code).unwrap(), status_body(code, "InternalError", "etcd is having a bad day"))
        }
        Scenario::ApplySecret | Scenario::ApplySecretRejected => {
            assert_eq!(method.as_str(), "PATCH", "{uri}");
            assert!(uri.starts_with(&secret_path) && uri.contains(ssa) && uri.contains("force=true"), "{uri}");
            match expected {
                Scenario::ApplySecret => (StatusCode::OK, body.clone()),
                _ => {
                    (StatusCode::UNPROCESSABLE_ENTITY, status_body(422, "Invalid", &format!("invalid object: {body}")))
                }
            }
        }
        Scenario::CreateSecret => {
            assert_eq!(method.as_str(), "POST", "{uri}");
            assert!(uri.starts_with(&format!("/api/v1/namespaces/{ns}/secrets")), "{uri}");
            (StatusCode::CREATED, body.clone())
        }
        Scenario::Event(reason) => {
            assert_eq!(method.as_str(), "POST", "{uri}");
            assert!(uri.starts_with(&format!("/apis/events.k8s.io/v1/namespaces/{ns}/events")), "{uri}");
            assert_eq!(body["reason"], *reason, "event {body}");
            (StatusCode::CREATED, body.clone())
        }
        Scenario::ApplyStatus | Scenario::ApplyAppStatus => {
            // The stored object: the mock keeps no spec, so a minimal valid one carries the status.
            let (path, spec) = match expected {
                Scenario::ApplyStatus => (token_path, json!({"secretName": "unused-by-the-mock"})),
                _ => (
                    format!("/apis/access.portcullis.dev/v1alpha1/namespaces/{ns}/accessapplications/"),
                    json!({"domains": ["unused-by-the-mock.example"]}),
                ),
            };
            assert_eq!(method.as_str(), "PATCH", "{uri}");
            assert!(uri.starts_with(&path) && uri.contains("/status?") && uri.contains(ssa), "{uri}");
            let name = uri.trim_start_matches(&path).split('/').next().unwrap_or_default();
            let stored = json!({
                "apiVersion": body["apiVersion"], "kind": body["kind"],
                "metadata": {"name": name, "namespace": ns},
                "spec": spec,
                "status": body["status"],
            });
            (StatusCode::OK, stored)
        }
        Scenario::PatchApp => {
            let path = format!("/apis/access.portcullis.dev/v1alpha1/namespaces/{ns}/accessapplications/");
            assert_eq!(method.as_str(), "PATCH", "{uri}");
            assert!(uri.starts_with(&path) && !uri.contains("/status"), "{uri}");
            let name = uri.trim_start_matches(&path).split(['/', '?']).next().unwrap_or_default();
            let stored = json!({
                "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessApplication",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"domains": ["unused-by-the-mock.example"]},
            });
            (StatusCode::OK, stored)
        }
        Scenario::List(plural, items) => {
            assert_eq!(method.as_str(), "GET", "{uri}");
            assert!(uri.contains(&format!("/namespaces/{ns}/{plural}?")), "{uri}");
            (StatusCode::OK, json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}))
        }
    }
}

// === impl Context ===

impl Context {
    /// A context on a mock API server, with the clock at `now` and metrics on a fresh registry.
    pub fn test(now: Timestamp) -> (Arc<Self>, ApiServerVerifier, Registry) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let registry = Registry::new();
        let metrics = Arc::new(Metrics::register(&registry).expect("metrics register"));
        let reporter = Reporter { controller: "portcullis-operator".into(), instance: None };
        let ctx = Context::new(client, Arc::new(FixedClock(now)), metrics, reporter);
        (Arc::new(ctx), ApiServerVerifier(handle), registry)
    }
}
