//! Configuration lifecycle and operations, end to end: fail closed without config, reloads
//! within 2 s, a bad edit keeps the last good config, metrics a real Prometheus accepts,
//! JWKS fetched over HTTP, h2c, and a graceful drain on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::Algorithm;

const HOST: (&str, &str) = ("host", "api.mysite.com");

// Behaviour: B-STATUS-6, B-CONFIG-4 (docs/behaviour.md).
#[tokio::test]
async fn no_config_fails_closed_with_503_and_not_ready() {
    let up = Upstream::start().await;
    let sc = sidecar("this: is: not: yaml: [", &up.url()).no_wait().process().start().await;
    let r = get(&format!("http://{}/readyz", sc.admin), &[]).await.unwrap();
    assert_eq!(r.status, 503);
    let r = get(&sc.url("/"), &[HOST]).await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "no_config");
    assert_eq!(up.count(), 0);
    assert!(sc.logs().contains("invalid YAML"), "{}", sc.logs());
}

// Behaviour: B-CONFIG-2, B-CONFIG-3 (docs/behaviour.md).
#[tokio::test]
async fn edits_apply_within_two_seconds_and_a_bad_edit_keeps_the_last_good_config() {
    let up = Upstream::start().await;
    let good = seed_manifests(&inline_jwks(), SEED_CORS, "");
    let sc = sidecar(&good, &up.url()).process().start().await;
    let r = get(&sc.url("/"), &[("host", "new.mysite.com")]).await.unwrap();
    assert_eq!(r.status, 404);

    // A good edit: a new domain.
    let edited = good.replace("domains: [api.mysite.com,", "domains: [api.mysite.com, new.mysite.com,");
    assert_ne!(edited, good);
    std::fs::write(sc.manifests_path(), &edited).unwrap();
    let started = Instant::now();
    let url = sc.url("/");
    eventually(Duration::from_secs(2), "the edit to apply", || {
        let url = url.clone();
        async move { (get(&url, &[("host", "new.mysite.com")]).await.ok()?.status == 401).then_some(()) }
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));

    // A bad edit (allowCredentials with allowAllOrigins): refused, the last good config stays.
    let bad = edited.replace("allowCredentials: true", "allowCredentials: true\n    allowAllOrigins: true");
    std::fs::write(sc.manifests_path(), &bad).unwrap();
    let admin = sc.admin;
    eventually(Duration::from_secs(3), "the reload error to be counted", || async move {
        let m = get(&format!("http://{admin}/metrics"), &[]).await.ok()?.text();
        m.contains("portcullis_config_reloads_total{result=\"error\"} 1").then_some(())
    })
    .await;
    let r = get(&sc.url("/"), &[("host", "new.mysite.com")]).await.unwrap();
    assert_eq!(r.status, 401, "last good config still enforced");
    let logs = sc.logs();
    assert!(logs.contains("AccessApplication shop/api"), "log names the resource: {logs}");
    assert!(logs.contains("spec.cors"), "log names the field: {logs}");
}

// Behaviour: B-METRIC-1, B-METRIC-2, B-METRIC-3, B-METRIC-4 (docs/behaviour.md).
#[tokio::test]
async fn metrics_are_valid_prometheus_text_with_the_contract_names() {
    let up = Upstream::start().await;
    let sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, ""), &up.url()).start().await;
    let _ = get(&sc.url("/"), &[HOST]).await.unwrap();
    let _ = send(
        "OPTIONS",
        &sc.url("/"),
        &[HOST, ("origin", "https://example.com"), ("access-control-request-method", "GET")],
    )
    .await;
    let m = sc.metrics().await;
    for name in [
        "portcullis_requests_total",
        "portcullis_preflights_total",
        "portcullis_added_latency_seconds_bucket",
        "portcullis_config_reloads_total",
        "portcullis_config_info",
    ] {
        assert!(m.contains(name), "{name} missing:\n{m}");
    }
    assert!(m.contains("reason=\"no_credentials\""), "{m}");
    assert!(m.contains("result=\"answered\""), "{m}");
    // A real Prometheus tool checks the exposition (CI installs it; locally it may be absent).
    let promtool = std::process::Command::new("promtool").arg("--version").output();
    if promtool.is_err() {
        assert!(std::env::var_os("PORTCULLIS_REQUIRE_PROMTOOL").is_none(), "promtool is required but not installed");
        eprintln!("promtool not installed: skipping `promtool check metrics`");
        return;
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// Behaviour: B-JWT-6, B-METRIC-5 (docs/behaviour.md).
#[tokio::test]
async fn jwks_uri_is_fetched_and_an_unknown_kid_triggers_one_refresh() {
    let up = Upstream::start().await;
    // Start with a JWKS that lacks the RSA key, add it later.
    let jwks = JwksServer::start(jwks_json_without("rsa-1")).await;
    let source = format!("        jwksUri: {}", jwks.uri());
    let sc = sidecar(&seed_manifests(&source, SEED_CORS, ""), &up.url()).start().await;
    let token = mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 600));
    let url = sc.url("/");
    let hits_before = eventually(Duration::from_secs(5), "first JWKS fetch", || {
        let h = jwks.hits();
        async move { (h >= 1).then_some(h) }
    })
    .await;
    wait_for_first_jwks(&url).await;
    let r = get(&url, &[HOST, ("cf-access-jwt-assertion", &token)]).await.unwrap();
    assert_eq!(r.status, 401, "kid not published yet");
    assert_eq!(r.json()["error"], "jwt_unknown_key");
    // Publish the key: the next unknown kid may refresh only after the 30 s rate limit, so
    // the refresh above must have happened (one extra hit) and no more than one.
    assert!(jwks.hits() <= hits_before + 1, "refresh on unknown kid is rate-limited");
    *jwks.body.lock().unwrap() = (http::StatusCode::OK, jwks_json());
    let r = get(&url, &[HOST, ("cf-access-jwt-assertion", &token)]).await.unwrap();
    assert_eq!(r.status, 401, "within the 30 s window no second refresh happens");
    assert!(jwks.hits() <= hits_before + 1);
    let m = sc.metrics().await;
    assert!(m.contains("portcullis_jwks_refreshes_total"), "{m}");
}

#[tokio::test]
async fn jwks_uri_key_is_used_once_fetched() {
    let up = Upstream::start().await;
    let jwks = JwksServer::start(jwks_json()).await;
    let source = format!("        jwksUri: {}", jwks.uri());
    let sc = sidecar(&seed_manifests(&source, SEED_CORS, ""), &up.url()).start().await;
    for (key, alg, kid) in [
        ("rsa.pem", Algorithm::RS256, "rsa-1"),
        ("ec.pem", Algorithm::ES256, "ec-1"),
        ("ed25519.pem", Algorithm::EdDSA, "ed-1"),
    ] {
        let token = mint(key, alg, Some(kid), claims("alice@mysite.com", 600));
        let url = sc.url("/");
        let status = eventually(Duration::from_secs(5), "JWKS-verified request", || {
            let (url, token) = (url.clone(), token.clone());
            async move {
                let s = get(&url, &[HOST, ("cf-access-jwt-assertion", &token)]).await.ok()?.status;
                (s == 200).then_some(s)
            }
        })
        .await;
        assert_eq!(status, 200, "{alg:?}");
    }
}

// Behaviour: B-ROUTE-1 (docs/behaviour.md).
#[tokio::test]
async fn h2c_prior_knowledge_is_served_and_routes_by_authority() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    let up = Upstream::start().await;
    let sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, ""), &up.url()).start().await;
    let token = mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 600));
    let stream = tokio::net::TcpStream::connect(sc.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for (authority, want) in [("api.mysite.com", 200), ("unknown.test", 404)] {
        let req = http::Request::builder()
            .uri(format!("http://{authority}/h2"))
            .header("cf-access-jwt-assertion", &token)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status().as_u16(), want, "{authority}");
        let _ = resp.into_body().collect().await;
    }
    let seen = up.last();
    assert_eq!(seen.headers["host"], "api.mysite.com");
    assert_eq!(seen.headers["cf-access-authenticated-user-email"], "alice@mysite.com");
}

// Behaviour: B-FWD-7 (docs/behaviour.md).
#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_closes_the_listener() {
    let up = Upstream::start().await;
    let mut sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, ""), &up.url()).process().start().await;
    let token = mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 600));
    let url = sc.url("/slow");
    let in_flight = tokio::spawn(async move { get(&url, &[HOST, ("cf-access-jwt-assertion", &token)]).await });
    let upc = up.requests.clone();
    eventually(Duration::from_secs(5), "the slow request to reach the app", || {
        let n = upc.lock().unwrap().len();
        async move { (n == 1).then_some(()) }
    })
    .await;
    sc.terminate();
    let addr = sc.addr;
    eventually(Duration::from_secs(3), "the listener to close", || async move {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err().then_some(())
    })
    .await;
    let r = in_flight.await.unwrap().expect("the in-flight request completes");
    assert_eq!(r.status, 200);
}

// Behaviour: B-FWD-7 (docs/behaviour.md).
#[tokio::test]
async fn slow_headers_and_idle_keep_alive_connections_are_cut_off() {
    use std::io::{Read, Write};
    let up = Upstream::start().await;
    let sc = with_one_second_header_timeout(&up).await;
    let addr = sc.addr;
    let closed_within = tokio::task::spawn_blocking(move || {
        let mut results = Vec::new();
        for first_bytes in [&b"GET / HTTP/1.1\r\nHost: api.mysite.com\r\n"[..], &b""[..]] {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(first_bytes).unwrap();
            let started = Instant::now();
            let mut buf = [0u8; 256];
            // A slowloris client never finishes its headers; an idle keep-alive client sends
            // nothing. Both must be disconnected (read returns 0 or an error), not kept forever.
            let n = s.read(&mut buf).unwrap_or(0);
            results.push((n, started.elapsed()));
        }
        results
    })
    .await
    .unwrap();
    for (n, elapsed) in closed_within {
        assert_eq!(n, 0, "the server answered instead of closing");
        assert!(elapsed < Duration::from_secs(5), "connection not closed: {elapsed:?}");
    }
}

// Behaviour: B-FWD-7 (docs/behaviour.md). The header-read deadline is re-armed for every head
// of a keep-alive connection (http/conn_timer.rs keeps one timer per connection): a request that
// outlasts it does not cut the connection, and the next head is bounded again.
#[tokio::test]
async fn every_head_of_a_keep_alive_connection_gets_the_header_read_timeout() {
    use std::io::{Read, Write};
    let up = Upstream::start().await;
    let sc = with_one_second_header_timeout(&up).await;
    let addr = sc.addr;
    let token = mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 600));
    let (answers, cut) = tokio::task::spawn_blocking(move || {
        let mut r = Http1Reader::new(std::net::TcpStream::connect(addr).unwrap());
        let mut answers = Vec::new();
        // /slow answers after 3 s: the deadline armed for its head passes while it is in flight.
        for path in ["/slow", "/data", "/data"] {
            let head =
                format!("GET {path} HTTP/1.1\r\nHost: api.mysite.com\r\nCf-Access-Jwt-Assertion: {token}\r\n\r\n");
            r.s.write_all(head.as_bytes()).unwrap();
            answers.push(r.answer().status);
        }
        // Half a head, then nothing: cut off after the timeout, without an answer.
        r.s.write_all(b"GET /data HTTP/1.1\r\nHost: api.mysite.com\r\n").unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 256];
        let n = r.buf.len() + r.s.read(&mut buf).unwrap_or(0);
        (answers, (n, started.elapsed()))
    })
    .await
    .unwrap();
    assert_eq!(answers, [200, 200, 200], "one connection served all three");
    assert_eq!(cut.0, 0, "the server answered a half head instead of closing");
    assert!(cut.1 < Duration::from_secs(5), "connection not closed: {:?}", cut.1);
}

/// The seed sidecar in front of `up`, with `--header-read-timeout 1s`.
async fn with_one_second_header_timeout(up: &Upstream) -> Sidecar {
    sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, ""), &up.url())
        .arg("--header-read-timeout")
        .arg("1s")
        .start()
        .await
}
