//! Traces through the sidecar, against a real OTLP/gRPC receiver (`OtlpReceiver`) over real
//! sockets: client `traceparent` → the sidecar's request span → its forward span → the app (which
//! records the `traceparent` it got), the attributes of an allowed and a refused request, no
//! secret in any exported attribute or trace header, the sampler setting, and, with tracing
//! off, the client's headers reaching the app byte for byte.
//!
//! The tests run on a multi-threaded runtime: dropping an in-process sidecar joins its thread,
//! which first flushes its spans to the receiver this runtime serves. After the drop, everything
//! the sidecar would export has arrived.

mod common;

use common::*;

const HOST: (&str, &str) = ("host", "api.mysite.com");
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace_id: &str, flags: &str) -> String {
    format!("00-{trace_id}-{CLIENT_SPAN}-{flags}")
}

/// The `traceparent` the app received for its last request, split: (trace id, parent id, flags).
fn app_traceparent(up: &Upstream) -> (String, String, String) {
    let got = up.last();
    let v = got.headers.get("traceparent").expect("the app receives a traceparent").to_str().unwrap().to_owned();
    let parts: Vec<&str> = v.split('-').collect();
    assert_eq!(parts.len(), 4, "{v}");
    assert_eq!(parts[0], "00", "{v}");
    (parts[1].to_owned(), parts[2].to_owned(), parts[3].to_owned())
}

async fn traced_sidecar(up: &Upstream, rx: &OtlpReceiver, extra: &[&str]) -> Sidecar {
    sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, ""), &up.url())
        .args(&["--otlp-endpoint", &rx.endpoint()])
        .args(extra)
        .start()
        .await
}

fn request_span<'a>(spans: &'a [ReceivedSpan], trace_id: &str) -> &'a ReceivedSpan {
    let mut it = spans.iter().filter(|s| s.trace_id == trace_id && s.kind == 2);
    let span = it.next().unwrap_or_else(|| panic!("a server span in trace {trace_id}: {spans:#?}"));
    assert!(it.next().is_none(), "one server span per request: {spans:#?}");
    span
}

fn children<'a>(spans: &'a [ReceivedSpan], parent: &ReceivedSpan) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.parent_span_id == parent.span_id && s.trace_id == parent.trace_id).collect()
}

// B-TRACE-2, B-TRACE-4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_link_client_sidecar_and_app_with_the_decision_and_no_secret() {
    let rx = OtlpReceiver::start().await;
    let up = Upstream::start().await;
    let sc = traced_sidecar(&up, &rx, &[]).await;

    // Allowed: a staff JWT in the cookie, a query that must not be exported.
    let jwt = mint("rsa.pem", jsonwebtoken::Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 300));
    let cookie = format!("CF_Authorization={jwt}");
    let allowed_tp = traceparent(TRACE_ID, "01");
    let r = get(
        &sc.url("/data?code=query-secret-123"),
        &[HOST, ("cookie", &cookie), ("traceparent", &allowed_tp), ("tracestate", "vendor=abc,other=1")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let (tid, app_parent, flags) = app_traceparent(&up);
    let app_tracestate = up.last().headers.get("tracestate").map(|v| v.to_str().unwrap().to_owned());

    // A service token, whose secret must appear nowhere.
    let svc_trace = "11111111111111111111111111111111";
    let r = get(
        &sc.url("/data"),
        &[
            HOST,
            ("cf-access-client-id", TOKEN_ID),
            ("cf-access-client-secret", TOKEN_SECRET),
            ("traceparent", &traceparent(svc_trace, "01")),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let svc_headers = up.last().headers;

    // Refused: a blocked user.
    let blocked = mint("rsa.pem", jsonwebtoken::Algorithm::RS256, Some("rsa-1"), claims("contractor@mysite.com", 300));
    let refused_trace = "22222222222222222222222222222222";
    let before = up.count();
    let r = get(
        &sc.url("/data"),
        &[HOST, ("cookie", &format!("CF_Authorization={blocked}")), ("traceparent", &traceparent(refused_trace, "01"))],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(up.count(), before, "a refused request never reaches the app");
    drop(sc);

    let spans = rx.wait_for("five spans", |s| s.len() >= 5).await;

    // client → sidecar request span → forward span → app.
    let req = request_span(&spans, TRACE_ID);
    assert_eq!(req.parent_span_id, CLIENT_SPAN, "the request span is the client's child");
    assert_eq!(req.service, "portcullis-sidecar");
    let fwd = children(&spans, req);
    assert_eq!(fwd.len(), 1, "{spans:#?}");
    let fwd = fwd[0];
    assert_eq!(fwd.kind, 3, "the forward is a client span");
    assert_eq!(fwd.attributes.get("http.response.status_code").map(String::as_str), Some("200"));
    assert_eq!((tid.as_str(), app_parent.as_str(), flags.as_str()), (TRACE_ID, fwd.span_id.as_str(), "01"));
    assert_eq!(app_tracestate.as_deref(), Some("vendor=abc,other=1"), "tracestate passes to the app");

    let attr = |s: &ReceivedSpan, k: &str| s.attributes.get(k).cloned().unwrap_or_default();
    for (k, v) in [
        ("portcullis.decision", "allow"),
        ("portcullis.reason", "policy"),
        ("portcullis.application", "shop/api"),
        ("portcullis.policy", "staff"),
        ("http.request.method", "GET"),
        ("http.response.status_code", "200"),
    ] {
        assert_eq!(attr(req, k), v, "allowed request: {k} in {:?}", req.attributes);
    }
    assert!(!req.attributes.contains_key("enduser.id"), "no identity without --trace-identity");

    let svc = request_span(&spans, svc_trace);
    assert_eq!(attr(svc, "portcullis.policy"), "ci");
    let (_, svc_parent, _) = {
        let v = svc_headers.get("traceparent").unwrap().to_str().unwrap().to_owned();
        let p: Vec<String> = v.split('-').map(str::to_owned).collect();
        (p[1].clone(), p[2].clone(), p[3].clone())
    };
    assert_eq!(children(&spans, svc)[0].span_id, svc_parent);

    let refused = request_span(&spans, refused_trace);
    for (k, v) in [
        ("portcullis.decision", "deny"),
        ("portcullis.application", "shop/api"),
        ("portcullis.policy", "contractors-out"),
        ("http.response.status_code", "403"),
    ] {
        assert_eq!(attr(refused, k), v, "refused request: {k} in {:?}", refused.attributes);
    }
    assert!(!attr(refused, "portcullis.reason").is_empty());
    assert!(children(&spans, refused).is_empty(), "no forward span for a refused request");

    // No secret in any exported attribute, nor in the trace headers the app got.
    let exported = format!("{spans:?}");
    let trace_headers = format!("{:?} {:?}", svc_headers.get("traceparent"), svc_headers.get("tracestate"));
    for secret in
        [jwt.as_str(), blocked.as_str(), TOKEN_SECRET, "alice@mysite.com", "contractor@mysite.com", "query-secret-123"]
    {
        assert!(!exported.contains(secret), "{secret} exported: {exported}");
        assert!(!trace_headers.contains(secret), "{secret} in the trace headers");
    }
    // The signature part alone (a JWT cut elsewhere would still leak it).
    let signature = jwt.rsplit('.').next().unwrap();
    assert!(!exported.contains(signature));
}

// B-TRACE-4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_is_exported_only_when_asked_for() {
    let rx = OtlpReceiver::start().await;
    let up = Upstream::start().await;
    let sc = traced_sidecar(&up, &rx, &["--trace-identity"]).await;
    let jwt = mint("rsa.pem", jsonwebtoken::Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 300));
    let r = get(
        &sc.url("/data"),
        &[HOST, ("cookie", &format!("CF_Authorization={jwt}")), ("traceparent", &traceparent(TRACE_ID, "01"))],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    drop(sc);
    let spans = rx.wait_for("the request span", |s| s.iter().any(|s| s.kind == 2)).await;
    let req = request_span(&spans, TRACE_ID);
    assert_eq!(req.attributes.get("enduser.id").map(String::as_str), Some("alice@mysite.com"));
    assert!(!format!("{spans:?}").contains(&jwt), "the token itself is still never exported");
}

// B-TRACE-3
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_traceparent_restarts_the_trace_and_is_never_forwarded() {
    let rx = OtlpReceiver::start().await;
    let up = Upstream::start().await;
    let sc = traced_sidecar(&up, &rx, &[]).await;
    for bad in [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // all-zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",    // no flags
        "garbage",
    ] {
        let r = get(&sc.url("/data"), &[HOST, ("traceparent", bad), ("tracestate", "vendor=stale")]).await.unwrap();
        // The seed's /data needs credentials; a trace header never changes the answer's class.
        assert_eq!(r.status, 401, "{bad}");
    }
    // A public path is forwarded: the app gets our traceparent, not the malformed one.
    let bypass = seed_manifests(&inline_jwks(), SEED_CORS, PUBLIC_BYPASS);
    drop(sc);
    let sc = sidecar(&bypass, &up.url()).arg("--otlp-endpoint").arg(&rx.endpoint()).start().await;
    let bad = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    let r = get(&sc.url("/public/x"), &[HOST, ("traceparent", bad), ("tracestate", "vendor=stale")]).await.unwrap();
    assert_eq!(r.status, 200);
    let (tid, parent, _) = app_traceparent(&up);
    assert_ne!(tid, TRACE_ID.to_owned(), "a new trace");
    assert!(up.last().headers.get("tracestate").is_none(), "the stale tracestate goes with the malformed traceparent");
    drop(sc);
    let spans = rx.wait_for("the restarted trace", |s| s.iter().any(|s| s.trace_id == tid && s.kind == 3)).await;
    let req = request_span(&spans, &tid);
    assert_eq!(req.parent_span_id, "", "a root span");
    assert_eq!(children(&spans, req)[0].span_id, parent);
    // Every refused request with a malformed header was traced as a root, never as the client's child.
    let roots = spans.iter().filter(|s| s.kind == 2 && s.parent_span_id.is_empty()).count();
    assert_eq!(roots, 7, "{spans:#?}");
}

// B-TRACE-1
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracing_off_passes_the_trace_headers_byte_for_byte() {
    let up = Upstream::start().await;
    let sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, PUBLIC_BYPASS), &up.url()).start().await;
    for (tp, ts) in [
        (traceparent(TRACE_ID, "01"), "vendor=abc,other=1"),
        // Malformed ones too: with tracing off the sidecar does not take part.
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01".to_owned(), "  odd = spacing "),
    ] {
        let r = get(&sc.url("/public/x"), &[HOST, ("traceparent", &tp), ("tracestate", ts)]).await.unwrap();
        assert_eq!(r.status, 200);
        let got = up.last().headers;
        assert_eq!(got.get("traceparent").unwrap().as_bytes(), tp.as_bytes());
        assert_eq!(got.get("tracestate").unwrap().as_bytes(), ts.trim().as_bytes(), "hyper trims the value's edges");
    }
    // No trace header is made up either.
    get(&sc.url("/public/y"), &[HOST]).await.unwrap();
    assert!(up.last().headers.get("traceparent").is_none());
}

// B-TRACE-5
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampler_setting_decides_what_is_exported() {
    let rx = OtlpReceiver::start().await;
    let up = Upstream::start().await;
    let manifests = seed_manifests(&inline_jwks(), SEED_CORS, PUBLIC_BYPASS);

    // always_off: nothing exported, but the trace still propagates (unsampled).
    let off = sidecar(&manifests, &up.url())
        .arg("--otlp-endpoint")
        .arg(&rx.endpoint())
        .arg("--traces-sampler")
        .arg("always_off")
        .arg("--service-name")
        .arg("sampled-off")
        .start()
        .await;
    let r = get(&off.url("/public/x"), &[HOST, ("traceparent", &traceparent(TRACE_ID, "01"))]).await.unwrap();
    assert_eq!(r.status, 200);
    let (tid, parent, flags) = app_traceparent(&up);
    assert_eq!((tid.as_str(), flags.as_str()), (TRACE_ID, "00"), "unsampled, same trace");
    assert_ne!(parent, CLIENT_SPAN, "the sidecar still takes its place in the trace");
    drop(off);

    // parentbased (the default): the client's sampled flag decides.
    let pb = sidecar(&manifests, &up.url()).arg("--otlp-endpoint").arg(&rx.endpoint()).start().await;
    let unsampled = "33333333333333333333333333333333";
    let sampled = "44444444444444444444444444444444";
    get(&pb.url("/public/x"), &[HOST, ("traceparent", &traceparent(unsampled, "00"))]).await.unwrap();
    assert_eq!(app_traceparent(&up).2, "00", "the unsampled flag reaches the app");
    get(&pb.url("/public/x"), &[HOST, ("traceparent", &traceparent(sampled, "01"))]).await.unwrap();
    assert_eq!(app_traceparent(&up).2, "01");
    drop(pb);

    let spans = rx.wait_for("the sampled trace", |s| s.iter().any(|s| s.trace_id == sampled && s.kind == 3)).await;
    assert!(spans.iter().all(|s| s.service != "sampled-off"), "always_off exported: {spans:#?}");
    assert!(spans.iter().all(|s| s.trace_id != unsampled), "an unsampled parent was exported: {spans:#?}");
    assert_eq!(spans.iter().filter(|s| s.trace_id == sampled).count(), 2, "{spans:#?}");
}

// B-TRACE-3
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_new_roots_an_untraced_request_passes_as_sent() {
    let rx = OtlpReceiver::start().await;
    let up = Upstream::start().await;
    let manifests = seed_manifests(&inline_jwks(), SEED_CORS, PUBLIC_BYPASS);
    let sc = sidecar(&manifests, &up.url())
        .arg("--otlp-endpoint")
        .arg(&rx.endpoint())
        .arg("--trace-new-roots")
        .arg("false")
        .start()
        .await;
    get(&sc.url("/public/x"), &[HOST]).await.unwrap();
    assert!(up.last().headers.get("traceparent").is_none(), "no trace started");
    get(&sc.url("/public/x"), &[HOST, ("traceparent", &traceparent(TRACE_ID, "01"))]).await.unwrap();
    let (tid, parent, _) = app_traceparent(&up);
    assert_eq!((tid.as_str(), tid == TRACE_ID), (TRACE_ID, true), "a client's trace is still continued");
    assert_ne!(parent, CLIENT_SPAN, "through the sidecar's forward span");
    drop(sc);
    let spans = rx.wait_for("the continued trace", |s| s.iter().any(|s| s.kind == 3)).await;
    assert!(spans.iter().all(|s| s.trace_id == TRACE_ID), "only the client's trace: {spans:#?}");
}

// B-TRACE-7
#[tokio::test]
async fn a_bad_tracing_variable_stops_the_sidecar_at_start_naming_it() {
    let up = Upstream::start().await;
    // The binary, configured by the standard variables as a pod is.
    let mut child = std::process::Command::new(sidecar_bin())
        .args(["--upstream", &up.url(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_TRACES_SAMPLER", "sometimes")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the sidecar");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the sidecar started with a bad sampler");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("read stderr");
    assert!(!status.success());
    assert!(stderr.contains("OTEL_TRACES_SAMPLER") && stderr.contains("sometimes"), "{stderr}");
    // The same check, by its reason, on the flags.
    let flags =
        ["--otlp-endpoint", "http://127.0.0.1:4317", "--traces-sampler-arg", "2", "--traces-sampler", "traceidratio"];
    let args = portcullis_sidecar::cli::Args::from_flags(flags.map(str::to_owned)).expect("flags parse");
    assert_eq!(args.traces.vars().settings("x").unwrap_err().reason(), "traces_sampler_arg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorizer_continues_the_trace_of_the_request_it_checks() {
    let rx = OtlpReceiver::start().await;
    let authz = authorizer(&seed_manifests(&inline_jwks(), SEED_CORS, PUBLIC_BYPASS))
        .arg("--otlp-endpoint")
        .arg(&rx.endpoint())
        .start()
        .await;
    let tp = traceparent(TRACE_ID, "01");
    let described = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.mysite.com"),
        ("x-forwarded-uri", "/public/page"),
        ("traceparent", tp.as_str()),
    ];
    let r = get(&authz.url("/forward-auth"), &described).await.unwrap();
    assert_eq!(r.status, 200);
    drop(authz);
    let spans = rx.wait_for("the check's span", |s| s.iter().any(|s| s.kind == 2)).await;
    let check = request_span(&spans, TRACE_ID);
    assert_eq!(check.parent_span_id, CLIENT_SPAN);
    assert_eq!(check.service, "portcullis-authorizer");
    assert_eq!(check.attributes.get("portcullis.decision").map(String::as_str), Some("bypass"));
    assert_eq!(check.attributes.get("portcullis.policy").map(String::as_str), Some("open"));
}

// B-TRACE-6
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_exports_are_counted_and_requests_never_wait_for_them() {
    // A collector that is not there: nothing listens on this port.
    let up = Upstream::start().await;
    let nowhere = ClosedPort::new();
    let sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, PUBLIC_BYPASS), &up.url())
        .arg("--otlp-endpoint")
        .arg(&nowhere.url())
        .start()
        .await;
    let metric = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("portcullis_trace_export_failures_total "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(metric(&sc.metrics().await), Some(0.0), "the counter exists from the start");
    // 512 spans (a request and its forward each) fill a batch, which is sent at once.
    for _ in 0..256 {
        let r = get(&sc.url("/public/x"), &[HOST]).await.unwrap();
        assert_eq!(r.status, 200, "requests are served while the collector is away");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let failures = metric(&sc.metrics().await).unwrap_or_default();
        if failures >= 1.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no failed export counted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_fetch_a_request_waits_on_is_a_span_of_that_request() {
    let rx = OtlpReceiver::start().await;
    let up = Upstream::start().await;
    // The JWKS lacks the token's key at start; it is published before the request, which then
    // finds an unknown kid and fetches the JWKS again while it waits.
    let jwks = JwksServer::start(jwks_json_without("rsa-1")).await;
    let source = format!("        jwksUri: {}", jwks.uri());
    let sc = sidecar(&seed_manifests(&source, SEED_CORS, ""), &up.url())
        .arg("--otlp-endpoint")
        .arg(&rx.endpoint())
        .start()
        .await;
    wait_for_first_jwks(&sc.url("/")).await;
    *jwks.body.lock().unwrap() = (http::StatusCode::OK, jwks_json());
    let token = mint("rsa.pem", jsonwebtoken::Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 600));
    let r = get(
        &sc.url("/data"),
        &[HOST, ("cf-access-jwt-assertion", &token), ("traceparent", &traceparent(TRACE_ID, "01"))],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "the refresh found the key");
    drop(sc);
    let spans = rx.wait_for("the JWKS fetch", |s| s.iter().any(|s| s.name == "jwks fetch")).await;
    let req = request_span(&spans, TRACE_ID);
    let fetches: Vec<_> = spans.iter().filter(|s| s.name == "jwks fetch").collect();
    assert_eq!(fetches.len(), 1, "the start-up fetch belongs to no request: {spans:#?}");
    let fetch = fetches[0];
    assert_eq!(
        (fetch.trace_id.as_str(), fetch.parent_span_id.as_str(), fetch.kind),
        (TRACE_ID, req.span_id.as_str(), 3)
    );
    assert_eq!(fetch.attributes.get("url.full"), Some(&jwks.uri()));
    assert!(!format!("{spans:?}").contains(&token));
}
