//! The smaller holes of issue 17, end to end against the real sidecar binary: header names with
//! underscores, a body that trickles in, the connection limit, a valid service token that no
//! policy admits, and the refused preflight's `Vary`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const HOST: (&str, &str) = ("host", "api.mysite.com");

async fn seed(up: &Upstream, args: &[&str]) -> Sidecar {
    sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, ""), &up.url()).args(args).start().await
}

fn staff_cookie() -> String {
    let token = mint("rsa.pem", jsonwebtoken::Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 600));
    format!("CF_Authorization={token}")
}

// Behaviour: B-FWD-2, B-FWD-3 (docs/behaviour.md).
#[tokio::test]
async fn underscore_spellings_of_identity_headers_never_reach_the_app() {
    let up = Upstream::start().await;
    let sc = seed(&up, &[]).await;
    let cookie = staff_cookie();
    let forged = [
        ("Cf_Access_Authenticated_User_Email", "admin@mysite.com"),
        ("cf_access_jwt_assertion", "forged"),
        ("CF_ACCESS_CLIENT_ID", "forged"),
        ("X_Forwarded_Host", "admin.mysite.com"),
        ("x-original-url", "/admin"),
        ("forwarded", "host=admin.mysite.com"),
        ("x_app_header", "kept"),
    ];
    let mut headers = vec![HOST, ("cookie", cookie.as_str())];
    headers.extend(forged);
    let r = get(&sc.url("/data"), &headers).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = up.last();
    for (name, _) in &forged[..6] {
        assert!(!rec.headers.contains_key(*name), "{name} reached the app: {:?}", rec.headers);
    }
    // The real identity, set by the sidecar, and other underscore names under the default Allow.
    assert_eq!(rec.headers["cf-access-authenticated-user-email"], "alice@mysite.com");
    assert_eq!(rec.headers["x-forwarded-host"], "api.mysite.com");
    assert_eq!(rec.headers["x_app_header"], "kept");
}

// Behaviour: B-FWD-4 (docs/behaviour.md).
#[tokio::test]
async fn headers_with_underscores_drop_and_reject() {
    let up = Upstream::start().await;
    let cookie = staff_cookie();
    let headers = [HOST, ("cookie", cookie.as_str()), ("x_app_header", "v")];

    let drop = seed(&up, &["--headers-with-underscores", "Drop"]).await;
    assert_eq!(get(&drop.url("/data"), &headers).await.unwrap().status, 200);
    assert!(!up.last().headers.contains_key("x_app_header"));

    let before = up.count();
    let reject = seed(&up, &["--headers-with-underscores", "Reject"]).await;
    let r = get(&reject.url("/data"), &headers).await.unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "underscore_header");
    assert_eq!(up.count(), before, "never forwarded");
}

/// Sends a request head promising `len` body bytes and only `sent` of them, then waits up to
/// `wait` for the answer.
fn trickle(addr: std::net::SocketAddr, len: usize, sent: &[u8], wait: Duration) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    let cookie = staff_cookie();
    let head = format!(
        "POST /read-body HTTP/1.1\r\nHost: api.mysite.com\r\nCookie: {cookie}\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(sent).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    (String::from_utf8_lossy(&buf[..n]).into_owned(), started.elapsed())
}

// Behaviour: B-FWD-5 (docs/behaviour.md).
#[tokio::test]
async fn a_body_that_trickles_in_is_cut_with_408() {
    let up = Upstream::start().await;
    let sc = seed(&up, &["--body-read-timeout", "1s"]).await;
    let addr = sc.addr;
    let (answer, _) =
        tokio::task::spawn_blocking(move || trickle(addr, 100, b"{\"a\":", Duration::from_secs(20))).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    let metrics = sc.metrics().await;
    assert!(metrics.contains("portcullis_client_timeouts_total{kind=\"body\"} 1"), "{metrics}");
    // A complete body is unaffected.
    let (answer, _) =
        tokio::task::spawn_blocking(move || trickle(addr, 2, b"{}", Duration::from_secs(20))).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

// Behaviour: B-FWD-6 (docs/behaviour.md).
#[tokio::test]
async fn max_connections_holds_back_the_next_connection_until_one_closes() {
    let up = Upstream::start().await;
    let sc = seed(&up, &["--max-connections", "2"]).await;
    let request = b"GET /data HTTP/1.1\r\nHost: api.mysite.com\r\n\r\n";
    let open = |addr| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 2048];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 401"), "{}", String::from_utf8_lossy(&buf[..n]));
        s // kept alive, idle
    };
    let addr = sc.addr;
    let (first, _second, mut third) = tokio::task::spawn_blocking(move || {
        let first = open(addr);
        let second = open(addr);
        let mut third = TcpStream::connect(addr).unwrap(); // the kernel's backlog takes it
        third.write_all(request).unwrap();
        (first, second, third)
    })
    .await
    .unwrap();
    eventually(Duration::from_secs(10), "the limit is counted", || async {
        sc.metrics().await.contains("portcullis_connection_limit_reached_total 1").then_some(())
    })
    .await;
    assert!(sc.metrics().await.contains("portcullis_connections_open 2"));
    drop(first);
    let answer = tokio::task::spawn_blocking(move || {
        third.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 2048];
        let n = third.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "the held-back connection is served once a slot frees: {answer}");
}

// Behaviour: B-STATUS-5 (docs/behaviour.md).
#[tokio::test]
async fn a_valid_service_token_no_policy_admits_is_403() {
    let up = Upstream::start().await;
    let other = r#"---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessServiceToken
metadata: { name: other-token, namespace: shop }
spec: { duration: 8760h, secretName: other-token-credentials }
---
apiVersion: v1
kind: Secret
metadata: { name: other-token-credentials, namespace: shop }
stringData: { client-id: other.access, client-secret: other-secret-0123456789abcdef0123456789 }
"#;
    let sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, other), &up.url()).start().await;
    let r = get(
        &sc.url("/data"),
        &[
            HOST,
            ("cf-access-client-id", "other.access"),
            ("cf-access-client-secret", "other-secret-0123456789abcdef0123456789"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"], "service_token_not_included");
    // A wrong secret for the same id is still a bad credential.
    let r = get(&sc.url("/data"), &[HOST, ("cf-access-client-id", "other.access"), ("cf-access-client-secret", "x")])
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(up.count(), 0);
}

// Behaviour: B-CORS-4 (docs/behaviour.md).
#[tokio::test]
async fn a_refused_preflight_carries_the_preflight_vary() {
    let up = Upstream::start().await;
    let sc = seed(&up, &[]).await;
    let r = send(
        "OPTIONS",
        &sc.url("/data"),
        &[HOST, ("origin", "https://evil.test"), ("access-control-request-method", "GET")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    assert!(!r.has_allow_headers());
    assert_eq!(r.header("vary"), Some("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"));
    assert_eq!(up.count(), 0);
}

// Behaviour: B-CONFIG-3, B-LOG-3 (docs/behaviour.md).
/// A refused configuration change is one log line per problem, naming the file, the resource
/// and the field, without colour codes (stderr is a file here).
#[tokio::test]
async fn a_refused_change_is_logged_one_line_per_problem() {
    let up = Upstream::start().await;
    let sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, ""), &up.url()).process().start().await;
    let broken = seed_manifests(&inline_jwks(), SEED_CORS, "")
        .replace("domains: [api.mysite.com, \"*.apps.mysite.com\"]", "domains: []");
    std::fs::write(sc.manifests_path(), broken).unwrap();
    let line = eventually(Duration::from_secs(10), "the rejection is logged", || async {
        sc.logs()
            .lines()
            .find(|l| l.contains("configuration change rejected") && l.contains("spec.domains"))
            .map(str::to_owned)
    })
    .await;
    assert!(line.contains("access.yaml"), "names the file: {line}");
    assert!(line.contains("AccessApplication shop/api"), "names the resource: {line}");
    assert!(!sc.logs().contains('\u{1b}'), "no ANSI escape codes in a log file");
}
