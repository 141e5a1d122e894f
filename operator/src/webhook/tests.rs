//! AdmissionReviews in, AdmissionReviews (and patches) out, through [`Webhooks::handle`] as the
//! API server calls it; and the TLS server over real sockets.

use http::StatusCode;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};

use super::*;

const OPERATOR_NS: &str = "portcullis-system";

fn webhooks() -> Webhooks {
    Webhooks {
        injection: Injection {
            image: "registry.example/portcullis-sidecar:test".into(),
            image_pull_policy: "IfNotPresent".into(),
            resources: serde_json::from_value(json!({ "requests": { "cpu": "50m" }, "limits": { "memory": "64Mi" } }))
                .unwrap(),
            push_public_key: "cHVibGljLWtleQ==".into(),
            operator_namespace: OPERATOR_NS.into(),
            traffic_port: 14080,
            admin_port: 14090,
            trace_env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT".into(), "http://otel-collector.observability:4317".into())],
        },
    }
}

/// An AdmissionReview request body.
fn review(operation: &str, namespace: &str, kind: (&str, &str, &str), object: Value) -> Vec<u8> {
    let (group, version, kind) = kind;
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": { "group": group, "version": version, "kind": kind },
            "resource": { "group": group, "version": version, "resource": format!("{}s", kind.to_lowercase()) },
            "namespace": namespace,
            "operation": operation,
            "userInfo": { "username": "alice" },
            "object": object,
            "oldObject": null,
            "dryRun": false,
        }
    }))
    .unwrap()
}

fn pod(annotations: Value, ports: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "web", "annotations": annotations },
        "spec": { "containers": [{ "name": "app", "image": "app:1", "ports": ports }] }
    })
}

/// The response of a 200 answer.
fn call(path: &str, body: &[u8]) -> Value {
    let (status, out) = webhooks().handle(path, body);
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&out));
    let review: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let response = review["response"].clone();
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002", "the uid is echoed");
    response
}

/// The pod after applying the response's patch (the pod itself when there is none).
fn patched(object: &Value, response: &Value) -> Value {
    let mut object = object.clone();
    if let Some(patch) = response.get("patch") {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64_decode(patch.as_str().expect("the patch is base64, as the API documents"));
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
    }
    object
}

fn base64_decode(s: &str) -> Vec<u8> {
    // k8s-openapi's ByteString is the base64 codec the API types use.
    serde_json::from_value::<k8s_openapi::ByteString>(json!(s)).unwrap().0
}

fn sidecar(pod: &Value) -> Option<Container> {
    let pod: Pod = serde_json::from_value(pod.clone()).unwrap();
    pod.spec.unwrap().containers.into_iter().find(|c| c.name == inject::CONTAINER_NAME)
}

fn inject_call(path: &str, namespace: &str, object: &Value) -> (Value, Value) {
    let response = call(path, &review("CREATE", namespace, ("", "v1", "Pod"), object.clone()));
    let pod = patched(object, &response);
    (response, pod)
}

// === injection ===

#[test]
fn a_pod_of_a_labelled_namespace_gets_the_sidecar() {
    let object = pod(json!({}), json!([{ "name": "http", "containerPort": 3000 }]));
    let (response, pod) = inject_call("/inject/namespace", "shop", &object);
    assert_eq!(response["allowed"], true);
    let c = sidecar(&pod).expect("sidecar injected");
    assert_eq!(c.image.as_deref(), Some("registry.example/portcullis-sidecar:test"));
    let ports: Vec<_> = c.ports.iter().flatten().map(|p| (p.name.clone().unwrap(), p.container_port)).collect();
    assert_eq!(ports, [("portcullis".to_owned(), 14080), ("portcullis-adm".to_owned(), 14090)]);
    let env: std::collections::BTreeMap<_, _> = c.env.iter().flatten().map(|e| (e.name.clone(), e.clone())).collect();
    assert_eq!(env["PORTCULLIS_UPSTREAM"].value.as_deref(), Some("http://127.0.0.1:3000"));
    assert_eq!(env["PORTCULLIS_LISTEN"].value.as_deref(), Some("0.0.0.0:14080"));
    assert_eq!(env["PORTCULLIS_ADMIN_LISTEN"].value.as_deref(), Some("0.0.0.0:14090"));
    assert_eq!(env["PORTCULLIS_PUSH_PUBLIC_KEY_VALUE"].value.as_deref(), Some("cHVibGljLWtleQ=="));
    assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"].value.as_deref(), Some("http://otel-collector.observability:4317"));
    let field = |name: &str| env[name].value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path.clone();
    assert_eq!(field("POD_NAME"), "metadata.name");
    assert_eq!(field("POD_NAMESPACE"), "metadata.namespace");
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        let get = p.as_ref().unwrap().http_get.as_ref().unwrap();
        (get.path.clone().unwrap(), get.port.clone())
    };
    let admin = k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("portcullis-adm".into());
    assert_eq!(probe_path(&c.liveness_probe), ("/healthz".to_owned(), admin.clone()));
    assert_eq!(probe_path(&c.readiness_probe), ("/readyz".to_owned(), admin));
    let sc = c.security_context.unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    assert_eq!(serde_json::to_value(c.resources.unwrap()).unwrap()["limits"]["memory"], "64Mi");
    assert_eq!(pod["metadata"]["labels"][inject::SIDECAR_LABEL], "injected");
    // A pod with labels keeps them.
    let mut labelled = object.clone();
    labelled["metadata"]["labels"] = json!({ "app": "web" });
    let (_, labelled) = inject_call("/inject/namespace", "shop", &labelled);
    assert_eq!(labelled["metadata"]["labels"], json!({ "app": "web", inject::SIDECAR_LABEL: "injected" }));
    // The app container is untouched.
    assert_eq!(pod["spec"]["containers"][0], object["spec"]["containers"][0]);
}

#[test]
fn injecting_twice_changes_nothing() {
    let object = pod(json!({}), json!([{ "containerPort": 3000 }]));
    let (_, once) = inject_call("/inject/namespace", "shop", &object);
    let (response, twice) = inject_call("/inject/namespace", "shop", &once);
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");
    assert_eq!(twice, once);
}

#[test]
fn who_is_injected() {
    struct Case {
        desc: &'static str,
        path: &'static str,
        namespace: &'static str,
        inject: Option<&'static str>,
        want: bool,
    }
    let cases = [
        Case { desc: "labelled namespace", path: "/inject/namespace", namespace: "shop", inject: None, want: true },
        Case { desc: "opt-out", path: "/inject/namespace", namespace: "shop", inject: Some("false"), want: false },
        Case { desc: "other namespace", path: "/inject/pod", namespace: "shop", inject: None, want: false },
        Case { desc: "opt-in", path: "/inject/pod", namespace: "shop", inject: Some("true"), want: true },
        Case { desc: "opt-out elsewhere", path: "/inject/pod", namespace: "shop", inject: Some("false"), want: false },
        Case { desc: "kube-system", path: "/inject/pod", namespace: "kube-system", inject: Some("true"), want: false },
        Case {
            desc: "kube-system label",
            path: "/inject/namespace",
            namespace: "kube-system",
            inject: None,
            want: false,
        },
        Case { desc: "operator's ns", path: "/inject/pod", namespace: OPERATOR_NS, inject: Some("true"), want: false },
        Case {
            desc: "operator's ns label",
            path: "/inject/namespace",
            namespace: OPERATOR_NS,
            inject: None,
            want: false,
        },
    ];
    for case in cases {
        let annotations = match case.inject {
            Some(v) => json!({ inject::INJECT_ANNOTATION: v }),
            None => json!({}),
        };
        let (response, pod) =
            inject_call(case.path, case.namespace, &pod(annotations, json!([{ "containerPort": 8000 }])));
        assert_eq!(response["allowed"], true, "{}", case.desc);
        assert_eq!(sidecar(&pod).is_some(), case.want, "{}", case.desc);
    }
}

#[test]
fn the_upstream_port_comes_from_the_annotation_or_the_only_declared_port() {
    struct Case {
        desc: &'static str,
        annotation: Option<&'static str>,
        ports: Value,
        want: Result<&'static str, &'static str>,
    }
    let two = json!([{ "name": "web", "containerPort": 8000 }, { "name": "grpc", "containerPort": 9000 }]);
    let cases = [
        Case { desc: "number", annotation: Some("8000"), ports: two.clone(), want: Ok("http://127.0.0.1:8000") },
        Case { desc: "port name", annotation: Some("grpc"), ports: two.clone(), want: Ok("http://127.0.0.1:9000") },
        Case {
            desc: "undeclared number",
            annotation: Some("7000"),
            ports: json!([]),
            want: Ok("http://127.0.0.1:7000"),
        },
        Case {
            desc: "single port",
            annotation: None,
            ports: json!([{ "containerPort": 8000 }]),
            want: Ok("http://127.0.0.1:8000"),
        },
        Case {
            desc: "no annotation, two ports",
            annotation: None,
            ports: two.clone(),
            want: Err("annotate the pod with access.portcullis.dev/upstream-port"),
        },
        Case { desc: "no annotation, no port", annotation: None, ports: json!([]), want: Err("declare 0 TCP ports") },
        Case {
            desc: "unknown name",
            annotation: Some("http2"),
            ports: two.clone(),
            want: Err("\"http2\" is neither a port number"),
        },
        Case { desc: "zero", annotation: Some("0"), ports: two.clone(), want: Err("neither a port number") },
        Case { desc: "too big", annotation: Some("70000"), ports: two.clone(), want: Err("neither a port number") },
        Case {
            desc: "sidecar's port",
            annotation: Some("14080"),
            ports: json!([]),
            want: Err("port 14080 is the sidecar's traffic port"),
        },
        Case {
            desc: "app declares admin port",
            annotation: Some("8000"),
            ports: json!([{ "containerPort": 8000 }, { "containerPort": 14090 }]),
            want: Err("port 14090 is the sidecar's admin port"),
        },
    ];
    for case in cases {
        let annotations = match case.annotation {
            Some(v) => json!({ inject::UPSTREAM_PORT_ANNOTATION: v }),
            None => json!({}),
        };
        let (response, pod) = inject_call("/inject/namespace", "shop", &pod(annotations, case.ports));
        match case.want {
            Ok(upstream) => {
                assert_eq!(response["allowed"], true, "{}: {response}", case.desc);
                let c = sidecar(&pod).unwrap();
                let env = c.env.unwrap().into_iter().find(|e| e.name == "PORTCULLIS_UPSTREAM").unwrap();
                assert_eq!(env.value.as_deref(), Some(upstream), "{}", case.desc);
            }
            Err(message) => {
                assert_eq!(response["allowed"], false, "{}: {response}", case.desc);
                let got = response["status"]["message"].as_str().unwrap();
                assert!(got.contains(message), "{}: {got}", case.desc);
            }
        }
    }
}

#[test]
fn a_bad_inject_annotation_is_refused_and_updates_pass() {
    let object = pod(json!({ inject::INJECT_ANNOTATION: "yes" }), json!([{ "containerPort": 8000 }]));
    let response = call("/inject/pod", &review("CREATE", "shop", ("", "v1", "Pod"), object.clone()));
    assert_eq!(response["allowed"], false);
    assert!(response["status"]["message"].as_str().unwrap().contains("must be \"true\" or \"false\""));
    let response = call("/inject/namespace", &review("UPDATE", "shop", ("", "v1", "Pod"), object));
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none());
}

#[test]
fn malformed_requests_get_a_clear_error() {
    let cases: [(&str, &[u8], StatusCode, &str); 6] = [
        ("/inject/pod", b"", StatusCode::BAD_REQUEST, "not an admission.k8s.io/v1 AdmissionReview"),
        ("/inject/pod", b"{not json", StatusCode::BAD_REQUEST, "not an admission.k8s.io/v1 AdmissionReview"),
        (
            "/validate",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            StatusCode::BAD_REQUEST,
            "has no request",
        ),
        (
            "/inject/namespace",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":1}}"#,
            StatusCode::BAD_REQUEST,
            "not an admission.k8s.io/v1 AdmissionReview",
        ),
        ("/inject/namespace", br#"[1, 2]"#, StatusCode::BAD_REQUEST, "AdmissionReview"),
        ("/mutate", b"{}", StatusCode::NOT_FOUND, "/inject/namespace"),
    ];
    for (path, body, want_status, want_message) in cases {
        let (status, out) = webhooks().handle(path, body);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(status, want_status, "{path} {text}");
        assert!(text.contains(want_message), "{path}: {text}");
    }
    // A pod body that is not a pod.
    let body = review("CREATE", "shop", ("", "v1", "Pod"), json!({ "spec": { "containers": "many" } }));
    let (status, _) = webhooks().handle("/inject/pod", &body);
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

// === validation ===

const APP: (&str, &str, &str) = ("access.portcullis.dev", "v1alpha1", "AccessApplication");
const TOKEN: (&str, &str, &str) = ("access.portcullis.dev", "v1alpha1", "AccessServiceToken");

fn app(spec: Value) -> Value {
    json!({
        "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessApplication",
        "metadata": { "name": "api", "namespace": "shop" },
        "spec": spec,
    })
}

fn valid_spec() -> Value {
    json!({
        "domains": ["api.mysite.com"],
        "policies": [{ "name": "staff", "action": "Allow", "include": [{ "emailDomain": "mysite.com" }] }],
        "cors": { "allowedOrigins": ["https://example.com"] },
    })
}

#[test]
fn applications_are_judged_by_compile() {
    struct Case {
        desc: &'static str,
        edit: fn(&mut Value),
        /// `None`: allowed; else a part of the denial message.
        denied: Option<&'static str>,
    }
    let cases = [
        Case { desc: "valid", edit: |_| {}, denied: None },
        Case {
            desc: "bad origin",
            edit: |s| s["cors"]["allowedOrigins"] = json!(["example.com/path"]),
            denied: Some("spec.cors.allowedOrigins[0]"),
        },
        Case {
            desc: "bad CIDR",
            edit: |s| s["policies"][0]["include"] = json!([{ "ipRange": "10.0.0.0/33" }]),
            denied: Some("spec.policies[0].include[0]"),
        },
        Case {
            desc: "bad duration",
            edit: |s| s["sessionDuration"] = json!("forever"),
            denied: Some("spec.sessionDuration"),
        },
        Case {
            desc: "names a token that does not exist yet",
            edit: |s| s["policies"] = json!([{ "name": "ci", "action": "ServiceAuth", "include": [{ "serviceToken": { "name": "later" } }] }]),
            denied: None,
        },
        Case {
            desc: "names Secrets that do not exist yet",
            edit: |s| {
                s["login"] = json!({
                    "oidc": { "issuer": "https://accounts.example.com", "clientId": "shop",
                              "clientSecretRef": { "name": "oidc", "key": "client-secret" } },
                    "sessionKeyRef": { "name": "session", "key": "key.pem" },
                })
            },
            denied: None,
        },
        Case {
            desc: "forward route with a token that does not exist yet",
            edit: |s| s["forwardRoutes"] = json!([{ "pathPrefix": "/api/", "upstream": "https://api.example.com", "serviceTokenRef": { "name": "later" } }]),
            denied: None,
        },
        Case {
            desc: "login with an http issuer still refused",
            edit: |s| {
                s["login"] = json!({
                    "oidc": { "issuer": "http://accounts.example.com", "clientId": "shop",
                              "clientSecretRef": { "name": "oidc", "key": "client-secret" } },
                })
            },
            denied: Some("spec.login.oidc.issuer"),
        },
    ];
    for case in cases {
        let mut spec = valid_spec();
        (case.edit)(&mut spec);
        for operation in ["CREATE", "UPDATE"] {
            let response = call("/validate", &review(operation, "shop", APP, app(spec.clone())));
            match case.denied {
                None => assert_eq!(response["allowed"], true, "{}: {response}", case.desc),
                Some(field) => {
                    assert_eq!(response["allowed"], false, "{}: {response}", case.desc);
                    let message = response["status"]["message"].as_str().unwrap();
                    assert!(message.contains(field), "{}: {message}", case.desc);
                    assert!(message.contains("AccessApplication shop/api"), "{}: {message}", case.desc);
                }
            }
        }
    }
}

#[test]
fn service_tokens_are_judged_like_the_token_controller_does() {
    let token = |spec: Value| {
        json!({ "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessServiceToken",
                "metadata": { "name": "ci", "namespace": "shop" }, "spec": spec })
    };
    let cases = [
        (json!({ "secretName": "ci-credentials", "duration": "720h", "rotationGracePeriod": "1h" }), None),
        (json!({ "secretName": "ci-credentials" }), None),
        (json!({ "secretName": "ci-credentials", "duration": "a month" }), Some("spec.duration \"a month\"")),
        (json!({ "secretName": "ci-credentials", "duration": "0s" }), Some("spec.duration")),
        (json!({ "secretName": "ci-credentials", "rotationGracePeriod": "-1h" }), Some("spec.rotationGracePeriod")),
        (json!({ "secretName": "" }), Some("spec.secretName")),
    ];
    for (spec, denied) in cases {
        let response = call("/validate", &review("CREATE", "shop", TOKEN, token(spec.clone())));
        match denied {
            None => assert_eq!(response["allowed"], true, "{spec}: {response}"),
            Some(part) => {
                assert_eq!(response["allowed"], false, "{spec}");
                let message = response["status"]["message"].as_str().unwrap();
                assert!(message.contains(part) && message.contains("AccessServiceToken ci"), "{message}");
            }
        }
    }
}

#[test]
fn deletes_status_writes_and_other_kinds() {
    let mut bad = valid_spec();
    bad["sessionDuration"] = json!("forever");
    let response = call("/validate", &review("DELETE", "shop", APP, app(bad.clone())));
    assert_eq!(response["allowed"], true);
    let mut body: Value = serde_json::from_slice(&review("UPDATE", "shop", APP, app(bad.clone()))).unwrap();
    body["request"]["subResource"] = json!("status");
    let response = call("/validate", &serde_json::to_vec(&body).unwrap());
    assert_eq!(response["allowed"], true, "status writes are the operator's");
    // Metadata-only updates (the operator's finalizer) of an invalid object pass; spec edits don't.
    let mut body: Value = serde_json::from_slice(&review("UPDATE", "shop", APP, app(bad.clone()))).unwrap();
    body["request"]["oldObject"] = app(bad.clone());
    body["request"]["object"]["metadata"]["finalizers"] = json!(["access.portcullis.dev/cleanup"]);
    assert_eq!(call("/validate", &serde_json::to_vec(&body).unwrap())["allowed"], true);
    body["request"]["oldObject"] = app(valid_spec());
    assert_eq!(call("/validate", &serde_json::to_vec(&body).unwrap())["allowed"], false);
    let response =
        call("/validate", &review("CREATE", "shop", ("", "v1", "ConfigMap"), json!({ "metadata": { "name": "x" } })));
    assert_eq!(response["allowed"], false, "fail closed on kinds it does not know");
    let not_an_app = app(json!({ "domains": "api.mysite.com" }));
    let response = call("/validate", &review("CREATE", "shop", APP, not_an_app));
    assert_eq!(response["allowed"], false);
    assert!(response["status"]["message"].as_str().unwrap().contains("cannot be read"));
}

// === the TLS server ===

#[tokio::test]
async fn the_server_answers_over_tls_with_a_generated_certificate() {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let extra = ["127.0.0.1".to_owned()];
    let bundle =
        tls::Bundle::generate("portcullis-webhook", OPERATOR_NS, &extra, jiff::Timestamp::now(), None).unwrap();
    let slot = Arc::new(server::CertSlot::default());
    slot.store(bundle.certified_key("test").unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(server::serve(listener, slot, Arc::new(webhooks())));

    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(bundle.ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    // By the Service's name, or by an extra name (the API server calling a URL).
    let call = |host: &'static str, path: &'static str, body: Vec<u8>| {
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from(host).unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: portcullis-webhook\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            tls.write_all(head.as_bytes()).await.unwrap();
            tls.write_all(&body).await.unwrap();
            let mut out = Vec::new();
            tls.read_to_end(&mut out).await.unwrap();
            String::from_utf8(out).unwrap()
        }
    };
    let object = pod(json!({}), json!([{ "containerPort": 3000 }]));
    let answer = call(
        "portcullis-webhook.portcullis-system.svc",
        "/inject/namespace",
        review("CREATE", "shop", ("", "v1", "Pod"), object),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"patchType\":\"JSONPatch\""), "{answer}");
    let answer = call("127.0.0.1", "/validate", b"garbage".to_vec()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("not an admission.k8s.io/v1 AdmissionReview"), "{answer}");

    // A client that does not trust the CA is refused at the handshake.
    let other = tls::Bundle::generate("portcullis-webhook", OPERATOR_NS, &[], jiff::Timestamp::now(), None).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(other.ca_pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(format!("portcullis-webhook.{OPERATOR_NS}.svc")).unwrap();
    assert!(tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp).await.is_err());
    server.abort();
}

#[test]
fn the_sidecars_trace_settings_are_checked_and_passed_as_otel_variables() {
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        webhook: super::run::WebhookArgs,
    }
    let parse = |flags: &[&str]| {
        <Flags as clap::Parser>::try_parse_from(std::iter::once("operator").chain(flags.iter().copied()))
            .unwrap()
            .webhook
    };
    assert!(parse(&[]).sidecar_trace_env().unwrap().is_empty(), "off by default");
    let env = parse(&[
        "--sidecar-otlp-endpoint",
        "http://c:4317",
        "--sidecar-traces-sampler",
        "parentbased_traceidratio",
        "--sidecar-traces-sampler-arg",
        "0.1",
    ])
    .sidecar_trace_env()
    .unwrap();
    assert_eq!(
        env,
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), "http://c:4317".to_owned()),
            ("OTEL_TRACES_SAMPLER".to_owned(), "parentbased_traceidratio".to_owned()),
            ("OTEL_TRACES_SAMPLER_ARG".to_owned(), "0.1".to_owned()),
        ]
    );
    let bad = parse(&["--sidecar-otlp-endpoint", "http://c:4317", "--sidecar-traces-sampler", "sometimes"]);
    assert_eq!(bad.sidecar_trace_env().unwrap_err().reason(), "traces_sampler");
}
