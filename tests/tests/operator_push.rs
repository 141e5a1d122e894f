//! The operator's push client against a real sidecar process in cluster mode: a push makes the
//! sidecar enforce the config, an identical push is `unchanged`, an acknowledged version is not
//! sent again, refusals and unreachable sidecars come back as errors, and every attempt is
//! counted under its result. After the sidecar restarts, the client reads the new boot and
//! converges; and what it sends over the wire, recorded by a relay in front of the sidecar,
//! holds no secret of the config.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
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
    target_at(sc.admin, pod, incarnation, snapshot)
}

/// `shop/<pod>` with its admin port at `admin`.
fn target_at(admin: SocketAddr, pod: &str, incarnation: &str, snapshot: Snapshot) -> PodConfig {
    PodConfig {
        pod: SidecarPod {
            namespace: "shop".into(),
            name: pod.into(),
            ip: admin.ip().to_string(),
            admin_port: admin.port(),
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

    // The sidecar at the address says it is another pod (an IP reused): nothing is sealed to
    // it, nor retried.
    let wrong = target(&sc, "api-1", "uid-2/0", Snapshot::empty());
    let out = pusher.push_all(std::slice::from_ref(&wrong), Timestamp::now()).await;
    match &out[0].result {
        Err(e @ PushError::BootMismatch { .. }) => assert_eq!(e.reason(), "boot_mismatch"),
        other => panic!("{other:?}"),
    }
    let r = get(&sc.url("/"), &[("host", "api.mysite.com")]).await.unwrap();
    assert_eq!(r.status, 401, "a refused push leaves the running config");

    // Nothing listens: retried, then unreachable.
    let mut gone = target(&sc, "api-2", "uid-3/0", Snapshot::empty());
    let closed = ClosedPort::new();
    gone.pod.admin_port = closed.port();
    let out = pusher.push_all(std::slice::from_ref(&gone), Timestamp::now()).await;
    match &out[0].result {
        Err(e) => assert_eq!(e.reason(), "unreachable", "{e}"),
        other => panic!("{other:?}"),
    }

    let m = metrics_text(&registry);
    for line in [
        "portcullis_operator_pushes_total{result=\"ok\"} 1",
        "portcullis_operator_pushes_total{result=\"unchanged\"} 1",
        "portcullis_operator_pushes_total{result=\"boot_mismatch\"} 1",
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
    assert!(sidecar_metrics.contains("portcullis_config_pushes_total{result=\"ok\"} 2"), "{sidecar_metrics}");
    assert!(!sidecar_metrics.contains("wrong_target"), "the mismatched pod was sent nothing:\n{sidecar_metrics}");
}

// Behaviour: B-PUSH-2 (docs/behaviour.md).
#[tokio::test]
async fn after_the_sidecar_restarts_the_push_client_reads_the_new_boot_and_converges() {
    let up = Upstream::start().await;
    let (key, _) = SigningKey::generate().unwrap();
    let key_b64 = key.verifying_key().to_base64();
    let sc = sidecar_without_manifests(&up.url(), &key_b64, "shop", "api-0").await;
    let (port, admin) = (sc.addr.port(), sc.admin.port());
    let registry = Registry::new();
    let pusher = Pusher::new(key, Arc::new(Metrics::register(&registry).unwrap()));
    let pod = target(&sc, "api-0", "uid-1/0", seed_snapshot());
    let out = pusher.push_all(std::slice::from_ref(&pod), Timestamp::now()).await;
    assert_eq!(out[0].result, Ok(Pushed::Sent { unchanged: false }));

    // The sidecar restarts on the same address before the Pod's status says so: the client
    // still holds the old boot, is answered stale_boot, reads the new boot and pushes again.
    drop(sc);
    let sc = sidecar_without_manifests_on(&up.url(), &key_b64, "shop", "api-0", port, admin).await;
    assert_eq!(get(&sc.url("/"), &[("host", "api.mysite.com")]).await.unwrap().status, 503);
    let sequence = pusher.next_sequence(Timestamp::now());
    assert_eq!(pusher.push(&pod, sequence, Timestamp::now()).await, Ok(Pushed::Sent { unchanged: false }));
    let r = get(&sc.url("/"), &[("host", "api.mysite.com")]).await.unwrap();
    assert_eq!(r.status, 401, "the restarted sidecar enforces the config again");

    // Once the restart shows in the Pod (a new incarnation), the boot is read before the push.
    drop(sc);
    let sc = sidecar_without_manifests_on(&up.url(), &key_b64, "shop", "api-0", port, admin).await;
    let restarted = target(&sc, "api-0", "uid-1/1", seed_snapshot());
    let out = pusher.push_all(std::slice::from_ref(&restarted), Timestamp::now()).await;
    assert_eq!(out[0].result, Ok(Pushed::Sent { unchanged: false }));
    assert_eq!(get(&sc.url("/"), &[("host", "api.mysite.com")]).await.unwrap().status, 401);

    let m = metrics_text(&registry);
    for line in [
        "portcullis_operator_pushes_total{result=\"ok\"} 3",
        "portcullis_operator_pushes_total{result=\"stale_boot\"} 1",
        "portcullis_operator_push_duration_seconds_count 4",
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
    let sidecar_metrics = sc.metrics().await;
    assert!(!sidecar_metrics.contains("stale_boot"), "the new incarnation's boot was read first:\n{sidecar_metrics}");
}

/// What the push client sent through a [`Relay`].
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    body: Bytes,
}

/// A relay on 127.0.0.1 in front of a sidecar's admin port that records every request the push
/// client makes, as a capture of the pod network would see it, and passes it on.
struct Relay {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(admin: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let task = serve_loop(listener, move |req| relay(req, admin, record.clone()));
        Self { addr, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(req: Request<Incoming>, admin: SocketAddr, seen: Arc<Mutex<Vec<Seen>>>) -> Response<Full<Bytes>> {
    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
    let body = req.into_body().collect().await.unwrap().to_bytes();
    seen.lock().unwrap().push(Seen { method: method.clone(), path: path.clone(), body: body.clone() });
    let text = std::str::from_utf8(&body).expect("the push client sends JSON");
    let answer = send_body(&method, &format!("http://{admin}{path}"), text).await.unwrap();
    let mut response = Response::new(Full::new(answer.body));
    *response.status_mut() = answer.status.try_into().unwrap();
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

const OIDC_CLIENT_SECRET: &str = "oidc-client-secret-5b0c1e9a7d3f";

/// The seed, a forward route carrying the `ci-token` service token, and an application with
/// browser sign-in whose OIDC client secret and session key come from Secrets: every kind of
/// secret a snapshot holds.
fn manifests_with_secrets(upstream: &str) -> String {
    let portal = format!(
        r#"---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: portal, namespace: shop }}
spec:
  domains: [portal.mysite.com]
  login:
    oidc:
      issuer: https://idp.mysite.com
      clientId: portal
      clientSecretRef: {{ name: oidc-client, key: client-secret }}
    sessionKeyRef: {{ name: session-key, key: key.pem }}
  policies:
    - name: staff
      action: Allow
      include: [ {{ emailDomain: mysite.com }} ]
{}"#,
        sign_in_secrets(OIDC_CLIENT_SECRET)
    );
    let extra = format!("{}{portal}", site_with_forward_route(upstream, "ci-token"));
    seed_manifests(&inline_jwks(), SEED_CORS, &extra)
}

/// The first spelling of `secret` found in `wire`: as is, JSON-escaped, or inside base64
/// (standard or URL-safe) at any alignment — the base64 of `secret` from each of its first
/// three bytes on, without the last quantum, which depends on what follows it.
fn leak(wire: &str, secret: &str) -> Option<String> {
    let escaped = serde_json::to_string(secret).unwrap();
    let escaped = escaped.trim_matches('"');
    let mut spellings = vec![secret.to_owned(), escaped.to_owned()];
    for plain in [secret, escaped] {
        for shift in 0..3 {
            for encoded in [B64.encode(&plain.as_bytes()[shift..]), B64URL.encode(&plain.as_bytes()[shift..])] {
                spellings.push(encoded[..encoded.len().saturating_sub(4)].to_owned());
            }
        }
    }
    spellings.into_iter().filter(|s| s.len() >= 12).find(|s| wire.contains(s.as_str()))
}

// Behaviour: B-PUSH-3 (docs/behaviour.md).
#[tokio::test]
async fn the_bytes_on_the_wire_hold_no_secret_and_the_boot_is_read_once() {
    let up = Upstream::start().await;
    let (key, _) = SigningKey::generate().unwrap();
    let sc = sidecar_without_manifests(&up.url(), &key.verifying_key().to_base64(), "shop", "api-0").await;
    let relay = Relay::start(sc.admin).await;
    let registry = Registry::new();
    let pusher = Pusher::new(key, Arc::new(Metrics::register(&registry).unwrap()));

    let snapshot = compile_manifests(&manifests_with_secrets(&up.url()));
    let session_pem = std::fs::read_to_string(fixture("keys/ed25519.pem")).unwrap();
    // The key material of the PEM: its base64 lines.
    let session_key_lines: Vec<&str> = session_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut secrets = vec![OIDC_CLIENT_SECRET, TOKEN_SECRET, session_pem.trim()];
    secrets.extend(&session_key_lines);
    // Controls: the config in clear, and the unsealed envelope of earlier operators (base64 of
    // the push's JSON), show every secret — so finding none below means something.
    let clear = serde_json::to_string(&snapshot).unwrap();
    let unsealed = B64.encode(serde_json::to_vec(&serde_json::json!({"sequence": 1, "snapshot": &snapshot})).unwrap());
    for secret in &secrets {
        assert!(leak(&clear, secret).is_some(), "the snapshot carries {secret:?}");
        assert!(leak(&unsealed, secret).is_some(), "an unsealed push shows {secret:?}");
    }

    let pod = target_at(relay.addr, "api-0", "uid-1/0", snapshot.clone());
    let out = pusher.push_all(std::slice::from_ref(&pod), Timestamp::now()).await;
    assert_eq!(out[0].result, Ok(Pushed::Sent { unchanged: false }));
    let r = get(&sc.url("/"), &[("host", "portal.mysite.com")]).await.unwrap();
    assert_ne!(r.status, 404, "the sidecar runs the pushed config (the portal is known)");
    let r = get(&format!("http://{}/readyz", sc.admin), &[]).await.unwrap();
    assert!(r.text().contains(&snapshot.version), "{}", r.text());

    // Steady state: a new config for the same boot costs one request, not two.
    let changed = compile_manifests(&seed_manifests(&inline_jwks(), SEED_CORS, ""));
    let pod = target_at(relay.addr, "api-0", "uid-1/0", changed);
    let out = pusher.push_all(std::slice::from_ref(&pod), Timestamp::now()).await;
    assert_eq!(out[0].result, Ok(Pushed::Sent { unchanged: false }));

    let seen = relay.seen();
    let requests: Vec<(&str, &str)> = seen.iter().map(|s| (s.method.as_str(), s.path.as_str())).collect();
    assert_eq!(requests, [("GET", "/config/boot"), ("PUT", "/config"), ("PUT", "/config")]);
    let wire: Vec<u8> = seen.iter().flat_map(|s| s.body.iter().copied()).collect();
    let wire = String::from_utf8(wire).unwrap();
    assert!(wire.len() > clear.len(), "the first push carried the whole (sealed) config");
    for secret in &secrets {
        assert_eq!(leak(&wire, secret), None, "{secret:?} is on the wire");
    }
}
