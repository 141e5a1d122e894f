//! The seed document's cases and api.md's decided details, end to end: the real sidecar
//! binary between a real client and a real upstream app over loopback sockets.

mod common;

use std::time::Duration;

use common::*;
use jsonwebtoken::Algorithm;

async fn seed_sidecar(upstream: &Upstream) -> Sidecar {
    sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, ""), &upstream.url()).start().await
}

fn staff_token() -> String {
    mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 600))
}

const HOST: (&str, &str) = ("host", "api.mysite.com");
const ORIGIN: (&str, &str) = ("origin", "https://example.com");

// Behaviour: B-STATUS-4, B-CORS-7 (docs/behaviour.md).
#[tokio::test]
async fn simple_cross_origin_request_without_token_is_401_with_readable_cors() {
    let up = Upstream::start().await;
    let sc = seed_sidecar(&up).await;
    let r = get(&sc.url("/data"), &[HOST, ORIGIN]).await.unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "no_credentials");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://example.com"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert!(r.all("vary").iter().any(|v| v.to_ascii_lowercase().contains("origin")), "{:?}", r.headers);
    assert!(r.header("x-request-id").is_some());
    assert_eq!(up.count(), 0, "a denied request must not reach the app");
}

// Behaviour: B-STATUS-1, B-CORS-1, B-CORS-4 (docs/behaviour.md).
#[tokio::test]
async fn preflight_is_answered_by_the_sidecar_and_never_forwarded() {
    let up = Upstream::start().await;
    let sc = seed_sidecar(&up).await;
    let r = send(
        "OPTIONS",
        &sc.url("/data"),
        &[HOST, ORIGIN, ("access-control-request-method", "GET"), ("access-control-request-headers", "Office")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("access-control-allow-origin"), Some("https://example.com"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert!(r.header("access-control-allow-methods").unwrap().contains("GET"));
    assert!(r.header("access-control-allow-headers").unwrap().to_ascii_lowercase().contains("office"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    let vary = r.all("vary").join(",").to_ascii_lowercase();
    for token in ["origin", "access-control-request-method", "access-control-request-headers"] {
        assert!(vary.contains(token), "Vary lacks {token}: {vary}");
    }
    // The rendered answer holds the id's slot; the glue fills it: one id, never the empty slot.
    let ids = r.all("x-request-id");
    assert!(ids.len() == 1 && ids[0].len() >= 16, "{:?}", r.headers);
    assert_eq!(up.count(), 0);
}

// Behaviour: B-STATUS-2, B-CORS-4 (docs/behaviour.md).
#[tokio::test]
async fn preflights_that_do_not_match_are_refused_and_never_forwarded() {
    let up = Upstream::start().await;
    let sc = seed_sidecar(&up).await;
    let cases: [(&str, &[(&str, &str)]); 5] = [
        ("hostile origin", &[("origin", "https://example.com.evil.com"), ("access-control-request-method", "GET")]),
        ("lookalike origin", &[("origin", "https://evilexample.com"), ("access-control-request-method", "GET")]),
        ("other scheme", &[("origin", "http://example.com"), ("access-control-request-method", "GET")]),
        ("method", &[ORIGIN, ("access-control-request-method", "DELETE")]),
        (
            "header token",
            &[ORIGIN, ("access-control-request-method", "GET"), ("access-control-request-headers", "office, x-evil")],
        ),
    ];
    for (desc, headers) in cases {
        let mut h = vec![HOST];
        h.extend_from_slice(headers);
        let r = send("OPTIONS", &sc.url("/data"), &h).await.unwrap();
        assert_eq!(r.status, 403, "{desc}: {}", r.text());
        assert!(!r.has_allow_headers(), "{desc}: refused preflight carries Access-Control-Allow-*: {:?}", r.headers);
    }
    // A wildcard origin at any depth is allowed; the bare suffix is not.
    for (origin, want) in [("https://a.b.example.org", 200), ("https://example.org", 403)] {
        let r =
            send("OPTIONS", &sc.url("/data"), &[HOST, ("origin", origin), ("access-control-request-method", "GET")])
                .await
                .unwrap();
        assert_eq!(r.status, want, "{origin}");
    }
    assert_eq!(up.count(), 0);
}

// Behaviour: B-CORS-2 (docs/behaviour.md).
#[tokio::test]
async fn preflight_without_cors_settings_is_403() {
    let up = Upstream::start().await;
    let sc = sidecar(&seed_manifests(&inline_jwks(), "", ""), &up.url()).start().await;
    let r = send("OPTIONS", &sc.url("/data"), &[HOST, ORIGIN, ("access-control-request-method", "GET")]).await.unwrap();
    assert_eq!(r.status, 403);
    assert!(!r.has_allow_headers());
    assert_eq!(up.count(), 0);
    // An OPTIONS without Access-Control-Request-Method is not a preflight: it is authenticated.
    let r = send("OPTIONS", &sc.url("/data"), &[HOST, ORIGIN]).await.unwrap();
    assert_eq!(r.status, 401);
}

// Behaviour: B-CORS-3 (docs/behaviour.md).
#[tokio::test]
async fn bypass_options_to_origin_forwards_preflights_and_adds_no_cors_headers() {
    let up = Upstream::start().await;
    let cors = "  cors:\n    bypassOptionsToOrigin: true\n";
    let sc = sidecar(&seed_manifests(&inline_jwks(), cors, ""), &up.url()).start().await;
    let r =
        send("OPTIONS", &sc.url("/app-cors"), &[HOST, ORIGIN, ("access-control-request-method", "PUT")]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);
    assert_eq!(up.last().method, http::Method::OPTIONS);
    // The app's own answer, untouched.
    assert_eq!(r.header("access-control-allow-origin"), Some("https://evil.test"));
    // Other requests are still authenticated, and get no sidecar CORS headers.
    let r = get(&sc.url("/data"), &[HOST, ORIGIN]).await.unwrap();
    assert_eq!(r.status, 401);
    assert!(!r.has_allow_headers());
}

// Behaviour: B-FWD-2, B-FWD-3 (docs/behaviour.md).
#[tokio::test]
async fn valid_jwt_reaches_the_app_with_identity_headers_and_forged_ones_removed() {
    let up = Upstream::start().await;
    let sc = seed_sidecar(&up).await;
    let token = staff_token();
    let cookie = format!("theme=dark; CF_Authorization={token}");
    let r = get(
        &sc.url("/data?x=1"),
        &[
            HOST,
            ORIGIN,
            ("cookie", &cookie),
            ("cf-access-authenticated-user-email", "ceo@mysite.com"),
            ("x-forwarded-for", "10.9.9.9"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.uri, "/data?x=1");
    assert_eq!(seen.headers["cf-access-authenticated-user-email"], "alice@mysite.com");
    assert_eq!(seen.headers.get_all("cf-access-authenticated-user-email").iter().count(), 1);
    assert_eq!(seen.headers["cf-access-jwt-assertion"], token.as_str());
    assert_eq!(r.header("access-control-allow-origin"), Some("https://example.com"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));

    // A stray half of a service-token pair next to a valid JWT is not ignored: the credential
    // presented is the one verified, and it is incomplete.
    let r = get(&sc.url("/"), &[HOST, ("cookie", &cookie), ("cf-access-client-secret", "leak")]).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "service_token_incomplete");
}

// Behaviour: B-JWT-1 (docs/behaviour.md).
#[tokio::test]
async fn jwt_sources_header_and_bearer_work_and_the_first_present_is_the_one_verified() {
    let up = Upstream::start().await;
    let sc = seed_sidecar(&up).await;
    let token = staff_token();
    let bearer = format!("Bearer {token}");
    let r = get(&sc.url("/"), &[HOST, ("cf-access-jwt-assertion", &token)]).await.unwrap();
    assert_eq!(r.status, 200);
    let r = get(&sc.url("/"), &[HOST, ("authorization", &bearer)]).await.unwrap();
    assert_eq!(r.status, 200);
    // A bad header token is not rescued by a good cookie: no fallback.
    let cookie = format!("CF_Authorization={token}");
    let r = get(&sc.url("/"), &[HOST, ("cf-access-jwt-assertion", "garbage"), ("cookie", &cookie)]).await.unwrap();
    assert_eq!(r.status, 401);
}

// Behaviour: B-STATUS-4, B-JWT-3, B-JWT-5 (docs/behaviour.md).
#[tokio::test]
async fn bad_tokens_are_401_with_a_reason() {
    let up = Upstream::start().await;
    let sc = seed_sidecar(&up).await;
    let mut wrong_aud = claims("alice@mysite.com", 600);
    wrong_aud["aud"] = "someone-else".into();
    let mut wrong_iss = claims("alice@mysite.com", 600);
    wrong_iss["iss"] = "https://evil.test".into();
    let huge = format!("{}.{}.{}", "a".repeat(10), "b".repeat(17 * 1024), "c");
    let cases = [
        ("expired", mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", -3600))),
        ("forged (other key)", mint("rsa2.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 600))),
        ("wrong audience", mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), wrong_aud)),
        ("wrong issuer", mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), wrong_iss)),
        ("not a jwt", "not-a-jwt".to_owned()),
        ("oversized", huge),
    ];
    for (desc, token) in cases {
        let r = get(&sc.url("/"), &[HOST, ("cf-access-jwt-assertion", &token)]).await.unwrap();
        assert_eq!(r.status, 401, "{desc}: {}", r.text());
        let reason = r.json()["error"].as_str().unwrap().to_owned();
        assert!(!reason.is_empty() && reason != "no_credentials", "{desc}: {reason}");
    }
    assert_eq!(up.count(), 0);
}

// Behaviour: B-STATUS-5 (docs/behaviour.md).
#[tokio::test]
async fn valid_identity_refused_by_policy_is_403() {
    let up = Upstream::start().await;
    let sc = seed_sidecar(&up).await;
    for (email, reason) in [("bob@elsewhere.com", "no_policy_matched"), ("contractor@mysite.com", "blocked_by_policy")]
    {
        let token = mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims(email, 600));
        let r = get(&sc.url("/"), &[HOST, ORIGIN, ("cf-access-jwt-assertion", &token)]).await.unwrap();
        assert_eq!(r.status, 403, "{email}");
        assert_eq!(r.json()["error"], reason);
        assert_eq!(r.header("access-control-allow-origin"), Some("https://example.com"), "403 readable by the page");
    }
    assert_eq!(up.count(), 0);
}

// Behaviour: B-TOKEN-1, B-TOKEN-4 (docs/behaviour.md).
#[tokio::test]
async fn service_token_through_service_auth_and_its_secret_never_reaches_the_app() {
    let up = Upstream::start().await;
    let sc = seed_sidecar(&up).await;
    let r = get(&sc.url("/"), &[HOST, ("cf-access-client-id", TOKEN_ID), ("cf-access-client-secret", TOKEN_SECRET)])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.headers["cf-access-client-id"], TOKEN_ID);
    assert!(seen.headers.get("cf-access-client-secret").is_none());
    assert!(seen.headers.get("cf-access-authenticated-user-email").is_none());
    assert!(seen.headers.get("cf-access-jwt-assertion").is_none());
    let metrics = sc.metrics().await;
    assert!(metrics.contains("portcullis_service_token_last_used_seconds{token=\"shop/ci-token\"}"), "{metrics}");

    for (id, secret) in [(TOKEN_ID, "wrong"), ("nobody.access", TOKEN_SECRET)] {
        let r =
            get(&sc.url("/"), &[HOST, ("cf-access-client-id", id), ("cf-access-client-secret", secret)]).await.unwrap();
        assert_eq!(r.status, 401);
    }
    let r = get(&sc.url("/"), &[HOST, ("cf-access-client-id", TOKEN_ID)]).await.unwrap();
    assert_eq!(r.status, 401, "id without secret");
    assert_eq!(up.count(), 1);
}

// Behaviour: B-FROUTE-1, B-FROUTE-2 (docs/behaviour.md).
#[tokio::test]
async fn forward_route_adds_the_token_strips_set_cookie_and_the_session() {
    let app = Upstream::start().await;
    let api = Upstream::start().await;
    let extra = site_with_forward_route(&api.url(), "ci-token");
    let sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, &extra), &app.url()).start().await;
    let token = staff_token();
    let cookie = format!("CF_Authorization={token}; theme=dark");
    let r = get(&sc.url("/api/set-cookie?q=1"), &[("host", "example.com"), ("cookie", &cookie)]).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("set-cookie").is_none(), "Set-Cookie must be stripped");
    assert_eq!(app.count(), 0);
    let seen = api.last();
    assert_eq!(seen.uri, "/set-cookie?q=1");
    assert_eq!(seen.headers["host"], api.addr.to_string().as_str());
    assert_eq!(seen.headers["cf-access-client-id"], TOKEN_ID);
    assert_eq!(seen.headers["cf-access-client-secret"], TOKEN_SECRET);
    assert_eq!(seen.headers["cookie"], "theme=dark");
    assert!(seen.headers.get("cf-access-jwt-assertion").is_none());
    assert!(seen.headers.get("cf-access-authenticated-user-email").is_none());
    // The same path unauthenticated is refused before the route is used.
    let r = get(&sc.url("/api/set-cookie"), &[("host", "example.com")]).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(api.count(), 1);
}

// Behaviour: B-CORS-8 (docs/behaviour.md).
#[tokio::test]
async fn app_cors_headers_are_replaced_never_duplicated_and_vary_merged_once() {
    let up = Upstream::start().await;
    let sc = seed_sidecar(&up).await;
    let token = staff_token();
    let r = get(&sc.url("/app-cors"), &[HOST, ORIGIN, ("cf-access-jwt-assertion", &token)]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.all("access-control-allow-origin"), ["https://example.com"]);
    assert_eq!(r.all("access-control-allow-credentials"), ["true"]);
    let vary = r.all("vary").join(", ").to_ascii_lowercase();
    assert_eq!(vary.matches("origin").count(), 1, "{vary}");
    assert!(vary.contains("accept-encoding"), "{vary}");
    // Without Origin: no Allow-Origin, but Vary: Origin all the same (caches must not mix them).
    let r = get(&sc.url("/data"), &[HOST, ("cf-access-jwt-assertion", &token)]).await.unwrap();
    assert!(r.header("access-control-allow-origin").is_none());
    assert!(r.all("vary").join(",").to_ascii_lowercase().contains("origin"));
}

// Behaviour: B-STATUS-3, B-STATUS-8, B-ROUTE-6 (docs/behaviour.md).
#[tokio::test]
async fn routing_unknown_host_404_bad_host_400_and_traversal_cannot_borrow_a_bypass() {
    let up = Upstream::start().await;
    let sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, PUBLIC_BYPASS), &up.url()).start().await;
    let r = get(&sc.url("/"), &[("host", "unknown.test")]).await.unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "unknown_host");
    // Case, port and trailing dot do not matter; wildcard depth does not either.
    for host in ["API.MySite.com:8080", "api.mysite.com.", "x.y.apps.mysite.com"] {
        let r = get(&sc.url("/"), &[("host", host)]).await.unwrap();
        assert_eq!(r.status, 401, "{host}");
    }
    let r = get(&sc.url("/public/page"), &[HOST]).await.unwrap();
    assert_eq!(r.status, 200, "bypass");
    assert!(up.last().headers.get("cf-access-jwt-assertion").is_none());
    for path in ["/public/../admin", "/public/%2e%2e/admin", "/publicity"] {
        let r = get(&sc.url(path), &[HOST]).await.unwrap();
        assert_eq!(r.status, 401, "{path} must route to the protected app");
    }
    assert_eq!(up.count(), 1);

    let dup = raw(sc.addr, b"GET / HTTP/1.1\r\nHost: api.mysite.com\r\nHost: other.test\r\n\r\n");
    assert!(dup.starts_with("HTTP/1.1 400"), "{dup}");
    let missing = raw(sc.addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(missing.starts_with("HTTP/1.1 400"), "{missing}");
    // Absolute-form routes by its own authority (RFC 9112 §3.2.2).
    let abs = raw(sc.addr, b"GET http://unknown.test/ HTTP/1.1\r\nHost: api.mysite.com\r\nConnection: close\r\n\r\n");
    assert!(abs.starts_with("HTTP/1.1 404"), "{abs}");
}

// Behaviour: B-STATUS-9 (docs/behaviour.md).
#[tokio::test]
async fn oversized_headers_get_431() {
    let up = Upstream::start().await;
    let sc = seed_sidecar(&up).await;
    let big = format!("GET / HTTP/1.1\r\nHost: api.mysite.com\r\nX-Big: {}\r\n\r\n", "a".repeat(100 * 1024));
    let r = raw(sc.addr, big.as_bytes());
    assert!(r.starts_with("HTTP/1.1 431"), "{}", &r[..r.len().min(200)]);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: api.mysite.com\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let r = raw(sc.addr, many.as_bytes());
    assert!(r.starts_with("HTTP/1.1 431"), "{}", &r[..r.len().min(200)]);
}

// Behaviour: B-STATUS-7, B-CORS-7 (docs/behaviour.md).
#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504_both_with_cors() {
    let down = ClosedPort::new(); // nothing listens there
    let sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, ""), &down.url()).start().await;
    let token = staff_token();
    let r = get(&sc.url("/"), &[HOST, ORIGIN, ("cf-access-jwt-assertion", &token)]).await.unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "upstream_unreachable");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://example.com"));

    let up = Upstream::start().await;
    let sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, ""), &up.url())
        .arg("--upstream-timeout")
        .arg("1s")
        .start()
        .await;
    let r = get(&sc.url("/slow"), &[HOST, ORIGIN, ("cf-access-jwt-assertion", &token)]).await.unwrap();
    assert_eq!(r.status, 504);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://example.com"));
    // Again on a kept connection to the app (its deadline re-armed, not a new timer): the same
    // 504, and both counted as timeouts.
    assert_eq!(get(&sc.url("/"), &[HOST, ("cf-access-jwt-assertion", &token)]).await.unwrap().status, 200);
    let r = get(&sc.url("/slow"), &[HOST, ORIGIN, ("cf-access-jwt-assertion", &token)]).await.unwrap();
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"], "upstream_timeout");
    let m = sc.metrics().await;
    let timeouts =
        m.lines().find(|l| l.starts_with("portcullis_upstream_errors_total{") && l.contains("kind=\"timeout\""));
    assert_eq!(timeouts.and_then(|l| l.rsplit(' ').next()), Some("2"), "{m}");
}

// Behaviour: B-AUDIT-1 (docs/behaviour.md).
#[tokio::test]
async fn audit_mode_forwards_would_be_denials_without_identity_and_counts_them() {
    let up = Upstream::start().await;
    let manifests = seed_manifests(&inline_jwks(), &format!("{SEED_CORS}  mode: Audit\n"), "");
    let sc = sidecar(&manifests, &up.url()).start().await;
    let forged = mint("rsa2.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 600));
    let r = get(
        &sc.url("/"),
        &[HOST, ("cf-access-jwt-assertion", &forged), ("cf-access-authenticated-user-email", "x@mysite.com")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert!(seen.headers.get("cf-access-jwt-assertion").is_none());
    assert!(seen.headers.get("cf-access-authenticated-user-email").is_none());
    let m = sc.metrics().await;
    assert!(
        m.lines().any(|l| l.starts_with("portcullis_requests_total")
            && l.contains("mode=\"audit\"")
            && l.contains("decision=\"deny\"")),
        "{m}"
    );
}

#[tokio::test]
async fn websocket_upgrade_passes_after_authentication() {
    use std::io::{Read, Write};
    let up = Upstream::start().await;
    let sc = seed_sidecar(&up).await;
    let token = staff_token();
    let addr = sc.addr;
    let result = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: api.mysite.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nCf-Access-Jwt-Assertion: {token}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        s.write_all(b"ping").unwrap();
        let mut echo = [0u8; 4];
        s.read_exact(&mut echo).unwrap();
        (head, echo)
    })
    .await
    .unwrap();
    assert!(result.0.starts_with("HTTP/1.1 101"), "{}", result.0);
    assert_eq!(&result.1, b"ping");
    // Without credentials the upgrade is refused.
    let r =
        raw(sc.addr, b"GET /ws HTTP/1.1\r\nHost: api.mysite.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
}

// Behaviour: B-STATUS-10, B-LOG-1, B-LOG-2 (docs/behaviour.md).
#[tokio::test]
async fn json_logs_carry_the_request_id_and_decision_and_never_a_secret() {
    let up = Upstream::start().await;
    let sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, ""), &up.url())
        .process()
        .arg("--log-format")
        .arg("json")
        .start()
        .await;
    let token = staff_token();
    let forged = mint("rsa2.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 600));
    let cookie = format!("CF_Authorization={token}");
    let ok = get(&sc.url("/"), &[HOST, ("cookie", &cookie)]).await.unwrap();
    assert_eq!(ok.status, 200);
    let denied = get(&sc.url("/"), &[HOST, ("cf-access-jwt-assertion", &forged)]).await.unwrap();
    assert_eq!(denied.status, 401);
    let svc = get(&sc.url("/"), &[HOST, ("cf-access-client-id", TOKEN_ID), ("cf-access-client-secret", TOKEN_SECRET)])
        .await
        .unwrap();
    assert_eq!(svc.status, 200);
    let wrong =
        get(&sc.url("/"), &[HOST, ("cf-access-client-id", TOKEN_ID), ("cf-access-client-secret", "guess-1234")])
            .await
            .unwrap();
    assert_eq!(wrong.status, 401);

    let rid = denied.header("x-request-id").unwrap().to_owned();
    let logs = eventually(Duration::from_secs(3), "the denial's log line", || {
        let logs = sc.logs();
        let rid = rid.clone();
        async move { logs.contains(&rid).then_some(logs) }
    })
    .await;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    let line = logs.lines().find(|l| l.contains(&rid)).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["fields"]["decision"], "deny", "{line}");
    assert!(v["fields"]["reason"].as_str().unwrap().starts_with("jwt_"), "{line}");
    for secret in [token.as_str(), forged.as_str(), TOKEN_SECRET, "guess-1234"] {
        assert!(!logs.contains(secret), "a secret value reached the log");
    }
    // The signature part alone must not leak either.
    assert!(!logs.contains(token.rsplit('.').next().unwrap()));
}

/// Audit forwards exactly what Enforce denies: the same requests through an Enforce and an Audit
/// sidecar; every request Enforce refuses (401/403) reaches the app under Audit without identity
/// headers and is counted with `mode="audit"`; what Enforce allows keeps its identity headers;
/// preflights are handled as in Enforce.
#[tokio::test]
async fn audit_forwards_exactly_what_enforce_denies() {
    let (enforce_up, audit_up) = (Upstream::start().await, Upstream::start().await);
    let enforce = seed_sidecar(&enforce_up).await;
    let audit_manifests = seed_manifests(&inline_jwks(), &format!("{SEED_CORS}  mode: Audit\n"), "");
    let audit = sidecar(&audit_manifests, &audit_up.url()).start().await;

    let staff = staff_token();
    let contractor = mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("contractor@mysite.com", 600));
    let outsider = mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("bob@elsewhere.test", 600));
    let expired = mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", -120));
    let requests: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![ORIGIN],
        vec![("cf-access-jwt-assertion", &staff)],
        vec![("cf-access-jwt-assertion", &contractor)],
        vec![("cf-access-jwt-assertion", &outsider)],
        vec![("cf-access-jwt-assertion", &expired)],
        vec![("cf-access-client-id", TOKEN_ID), ("cf-access-client-secret", TOKEN_SECRET)],
        vec![("cf-access-client-id", TOKEN_ID), ("cf-access-client-secret", "wrong")],
    ];
    let mut denied = 0;
    for headers in &requests {
        let mut h = vec![HOST];
        h.extend(headers.iter().copied());
        let e = get(&enforce.url("/data"), &h).await.unwrap();
        let before = audit_up.count();
        let a = get(&audit.url("/data"), &h).await.unwrap();
        assert_eq!(a.status, 200, "{headers:?}: Audit forwards everything");
        assert_eq!(audit_up.count(), before + 1);
        let seen = audit_up.last();
        let identity = seen.headers.contains_key("cf-access-jwt-assertion")
            || seen.headers.contains_key("cf-access-client-id")
            || seen.headers.contains_key("cf-access-authenticated-user-email");
        match e.status {
            401 | 403 => {
                denied += 1;
                assert!(!identity, "{headers:?}: a would-be denial carries no identity: {:?}", seen.headers);
            }
            200 => assert!(identity, "{headers:?}: an allowed request keeps its identity headers"),
            other => panic!("{headers:?}: unexpected Enforce status {other}"),
        }
    }
    assert_eq!(denied, 6, "the set above holds six denials");
    let m = audit.metrics().await;
    let counted: f64 = m
        .lines()
        .filter(|l| {
            l.starts_with("portcullis_requests_total")
                && l.contains("mode=\"audit\"")
                && l.contains("decision=\"deny\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted as usize, denied, "{m}");
    // Preflights are not audited: a refused one is refused in Audit too.
    let r = send("OPTIONS", &audit.url("/data"), &[HOST, ORIGIN, ("access-control-request-method", "DELETE")])
        .await
        .unwrap();
    assert_eq!(r.status, 403);
}
