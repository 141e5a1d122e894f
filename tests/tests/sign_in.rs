//! Browser sign-in over real sockets, without a browser: the real sidecar binary, a real
//! OpenID provider (`tests/browser/idp.mjs`), and every refusal the flow must make — off-domain
//! and `/\evil.test/` return URLs, a callback from another browser, a tampered or replayed
//! state, an unreachable provider, an expired session — plus logout, identity and the
//! navigation/API split of `unauthenticatedResponse: Auto`.

mod common;

use common::signin::{Idp, CLIENT_ID, CLIENT_SECRET};
use common::{get, mint, now, sidecar, ClosedPort, Sidecar, Upstream};

const HOST: (&str, &str) = ("host", "api.mysite.com");
const SESSION_ISSUER: &str = "portcullis-session:shop/api";

fn manifests(issuer: &str, down_issuer: &str) -> String {
    let secrets = common::sign_in_secrets(CLIENT_SECRET);
    format!(
        r#"apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: api, namespace: shop }}
spec:
  domains: [api.mysite.com]
  sessionDuration: 1h
  login:
    oidc:
      issuer: {issuer}
      clientId: {CLIENT_ID}
      clientSecretRef: {{ name: oidc-client, key: client-secret }}
    cookie: {{ sameSite: None, secure: true }}
    sessionKeyRef: {{ name: session-key, key: key.pem }}
  policies:
    - name: staff
      action: Allow
      include: [ {{ emailDomain: mysite.com }} ]
  cors:
    allowedOrigins: ["https://example.com"]
    allowCredentials: true
---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: down, namespace: shop }}
spec:
  domains: [down.mysite.com]
  login:
    oidc: {{ issuer: "{down_issuer}", clientId: {CLIENT_ID} }}
  policies:
    - name: staff
      action: Allow
      include: [ {{ emailDomain: mysite.com }} ]
{secrets}"#
    )
}

struct Setup {
    idp: Idp,
    upstream: Upstream,
    sidecar: Sidecar,
    /// The port the `down` application's provider is at, held closed for the whole test.
    _down: ClosedPort,
}

async fn setup() -> Setup {
    let idp = Idp::start(&["https://api.mysite.com/.portcullis/callback".to_owned()]);
    let upstream = Upstream::start().await;
    let down = ClosedPort::new();
    // A process: the tests read its log (no code, state or secret in it).
    let sidecar = sidecar(&manifests(&idp.issuer, &down.url()), &upstream.url()).process().start().await;
    Setup { idp, upstream, sidecar, _down: down }
}

/// Starts a sign-in; returns the state cookie's value and the authorization URL's query.
async fn start_login(s: &Setup) -> (String, Vec<(String, String)>) {
    start_login_via(&s.sidecar).await
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> &'a str {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {name} in {q:?}"))
}

fn session(exp_in: i64) -> String {
    let claims = serde_json::json!({
        "iss": SESSION_ISSUER, "aud": SESSION_ISSUER, "sub": "alice", "email": "alice@mysite.com",
        "name": "Alice", "groups": ["staff"], "iat": now(), "exp": now() + exp_in,
    });
    mint("ed25519.pem", jsonwebtoken::Algorithm::EdDSA, None, claims)
}

// Behaviour: B-LOGIN-3, B-LOGIN-4 (docs/behaviour.md).
#[tokio::test]
async fn login_sends_the_browser_to_the_provider_with_pkce_and_a_bound_state() {
    let s = setup().await;
    let r = get(&s.sidecar.url("/.portcullis/login?rd=/data"), &[HOST]).await.unwrap();
    assert_eq!(r.status, 302, "{}", r.text());
    assert!(r.header("location").unwrap().starts_with(&format!("{}/auth?", s.idp.issuer)));
    let cookie = r.header("set-cookie").unwrap();
    for attr in ["portcullis_login=", "Path=/.portcullis/callback", "Max-Age=600", "SameSite=Lax", "Secure", "HttpOnly"]
    {
        assert!(cookie.contains(attr), "{attr} missing from {cookie}");
    }
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let (_, q) = start_login(&s).await;
    assert_eq!(param(&q, "client_id"), CLIENT_ID);
    assert_eq!(param(&q, "redirect_uri"), "https://api.mysite.com/.portcullis/callback");
    assert_eq!(param(&q, "code_challenge_method"), "S256");
    assert_eq!(param(&q, "scope"), "openid email profile");
    // 256 bits each, base64url.
    assert!(param(&q, "state").len() >= 43 && param(&q, "nonce").len() >= 43);
    let (_, q2) = start_login(&s).await;
    assert_ne!(param(&q, "state"), param(&q2, "state"));
    assert_eq!(s.upstream.count(), 0, "/.portcullis/ is never forwarded");
}

// Behaviour: B-LOGIN-3 (docs/behaviour.md).
#[tokio::test]
async fn return_urls_off_the_applications_domains_are_refused() {
    let s = setup().await;
    for rd in [
        "https://evil.test/",
        "/%5Cevil.test/",
        "//evil.test/",
        "https://api.mysite.com.evil.test/",
        "javascript:alert(1)",
    ] {
        let r = get(&s.sidecar.url(&format!("/.portcullis/login?rd={rd}")), &[HOST]).await.unwrap();
        assert_eq!(r.status, 400, "rd {rd}: {}", r.text());
        assert!(r.json()["error"].as_str().unwrap().starts_with("rd_"), "{}", r.text());
        assert!(r.header("set-cookie").is_none());
    }
    let long = format!("/.portcullis/login?rd=/{}", "a".repeat(5000));
    assert_eq!(get(&s.sidecar.url(&long), &[HOST]).await.unwrap().status, 400);
}

// Behaviour: B-LOGIN-5 (docs/behaviour.md).
#[tokio::test]
async fn callbacks_without_the_browsers_state_or_replayed_are_refused() {
    let s = setup().await;
    // Another browser: no state cookie.
    let r = get(&s.sidecar.url("/.portcullis/callback?code=abc&state=xyz"), &[HOST]).await.unwrap();
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("login_state_missing")));
    assert!(r.all("set-cookie").iter().all(|c| !c.starts_with("CF_Authorization=")));

    let (cookie, q) = start_login(&s).await;
    let state = param(&q, "state");
    let callback = |state: &str| s.sidecar.url(&format!("/.portcullis/callback?code=not-a-real-code&state={state}"));
    // The state of this browser's cookie, but another state in the URL.
    let r = get(&callback("forged"), &[HOST, ("cookie", &cookie)]).await.unwrap();
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("login_state_mismatch")));
    // A tampered cookie.
    let tampered = format!("{}x", cookie);
    let r = get(&callback(state), &[HOST, ("cookie", &tampered)]).await.unwrap();
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("login_state_invalid")));
    // The right state: the provider refuses the made-up code (no session) ...
    let r = get(&callback(state), &[HOST, ("cookie", &cookie)]).await.unwrap();
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("idp_token_failed")), "{}", r.text());
    assert!(r.all("set-cookie").iter().any(|c| c.starts_with("portcullis_login=;") && c.contains("Max-Age=0")));
    // ... and the same callback again is a replay.
    let r = get(&callback(state), &[HOST, ("cookie", &cookie)]).await.unwrap();
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("login_state_replayed")));
    // The provider's own refusal.
    let r = get(&s.sidecar.url("/.portcullis/callback?error=access_denied&state=x"), &[HOST]).await.unwrap();
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("login_provider_error")));
    let metrics = s.sidecar.metrics().await;
    assert!(
        metrics.contains(r#"portcullis_logins_total{app="shop/api",result="login_state_replayed"} 1"#),
        "{metrics}"
    );
    let logs = s.sidecar.logs();
    assert!(!logs.contains(state) && !logs.contains("not-a-real-code") && !logs.contains(CLIENT_SECRET), "{logs}");
}

// Behaviour: B-LOGIN-5 (docs/behaviour.md).
#[tokio::test]
async fn an_unreachable_provider_is_a_502() {
    let s = setup().await;
    let r = get(&s.sidecar.url("/.portcullis/login?rd=/"), &[("host", "down.mysite.com")]).await.unwrap();
    assert_eq!((r.status, r.json()["error"].as_str()), (502, Some("idp_discovery_failed")), "{}", r.text());
}

// Behaviour: B-LOGIN-1, B-LOGIN-7 (docs/behaviour.md).
#[tokio::test]
async fn sessions_are_accepted_until_they_expire_and_navigations_go_to_sign_in() {
    let s = setup().await;
    let live = format!("CF_Authorization={}", session(600));
    let r = get(&s.sidecar.url("/data"), &[HOST, ("cookie", &live)]).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.upstream.last().headers["cf-access-authenticated-user-email"], "alice@mysite.com");
    let id = get(&s.sidecar.url("/.portcullis/identity"), &[HOST, ("cookie", &live)]).await.unwrap();
    assert_eq!(id.status, 200);
    let j = id.json();
    assert_eq!(
        (j["email"].as_str(), j["name"].as_str(), j["iss"].as_str()),
        (Some("alice@mysite.com"), Some("Alice"), Some(SESSION_ISSUER))
    );
    assert_eq!(j["groups"], serde_json::json!(["staff"]));

    let expired = format!("CF_Authorization={}", session(-120));
    let origin = ("origin", "https://example.com");
    let r = get(&s.sidecar.url("/data?q=1"), &[HOST, origin, ("cookie", &expired)]).await.unwrap();
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("jwt_expired")));
    assert_eq!(
        r.json()["login"],
        "https://api.mysite.com/.portcullis/login?rd=https%3A%2F%2Fapi.mysite.com%2Fdata%3Fq%3D1"
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("https://example.com"), "a page can read the 401");
    let r = get(&s.sidecar.url("/.portcullis/identity"), &[HOST, ("cookie", &expired)]).await.unwrap();
    assert_eq!(r.status, 401, "identity never redirects");

    let nav = get(&s.sidecar.url("/data"), &[HOST, ("sec-fetch-mode", "navigate")]).await.unwrap();
    assert_eq!(nav.status, 302);
    assert_eq!(
        nav.header("location"),
        Some("https://api.mysite.com/.portcullis/login?rd=https%3A%2F%2Fapi.mysite.com%2Fdata")
    );
    let api = get(&s.sidecar.url("/data"), &[HOST, ("sec-fetch-mode", "cors"), ("accept", "text/html")]).await.unwrap();
    assert_eq!(api.status, 401);
}

// Behaviour: B-LOGIN-9 (docs/behaviour.md).
#[tokio::test]
async fn logout_clears_the_session_cookie() {
    let s = setup().await;
    let r = get(&s.sidecar.url("/.portcullis/logout"), &[HOST]).await.unwrap();
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with("CF_Authorization=;") && cookie.contains("Max-Age=0") && cookie.contains("SameSite=None"),
        "{cookie}"
    );
    let r = get(&s.sidecar.url("/.portcullis/logout?rd=https://api.mysite.com/bye"), &[HOST]).await.unwrap();
    assert_eq!((r.status, r.header("location")), (302, Some("https://api.mysite.com/bye")));
    let r = get(&s.sidecar.url("/.portcullis/logout?rd=https://evil.test/"), &[HOST]).await.unwrap();
    assert_eq!(r.status, 200, "an off-domain rd is not followed");
    let r = get(&s.sidecar.url("/.portcullis/nothing"), &[HOST]).await.unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(s.upstream.count(), 0);
}

#[test]
fn the_sign_in_example_compiles() {
    let yaml = std::fs::read_to_string(common::repo_root().join("examples/sign-in/access.yaml")).unwrap();
    let snapshot = common::compile_manifests(&yaml);
    let login = snapshot.applications[0].login.as_ref().expect("login compiled");
    assert_eq!(login.client_id, CLIENT_ID);
    assert!(login.client_secret.is_some());
}

/// A scripted provider on loopback: discovery, the fixture JWKS, and a token endpoint that
/// answers whatever ID token the test put in `id_token` (recording what it was sent).
struct FakeProvider {
    issuer: String,
    id_token: std::sync::Arc<std::sync::Mutex<String>>,
    token_requests: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    async fn start() -> FakeProvider {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let id_token: std::sync::Arc<std::sync::Mutex<String>> = Default::default();
        let token_requests: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>> = Default::default();
        let (iss, tok, reqs) = (issuer.clone(), id_token.clone(), token_requests.clone());
        let task = common::serve_loop(listener, move |req: http::Request<hyper::body::Incoming>| {
            let (iss, tok, reqs) = (iss.clone(), tok.clone(), reqs.clone());
            async move {
                let path = req.uri().path().to_owned();
                let auth =
                    req.headers().get("authorization").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
                let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let text = match path.as_str() {
                    "/.well-known/openid-configuration" => serde_json::json!({
                        "issuer": iss, "authorization_endpoint": format!("{iss}/auth"),
                        "token_endpoint": format!("{iss}/token"), "jwks_uri": format!("{iss}/jwks"),
                    })
                    .to_string(),
                    "/jwks" => common::jwks_json(),
                    "/token" => {
                        reqs.lock().unwrap().push((auth, String::from_utf8_lossy(&body).into_owned()));
                        serde_json::json!({ "id_token": *tok.lock().unwrap(), "token_type": "Bearer" }).to_string()
                    }
                    _ => String::new(),
                };
                http::Response::new(http_body_util::Full::new(bytes::Bytes::from(text)))
            }
        });
        FakeProvider { issuer, id_token, token_requests, _task: task }
    }
}

// Behaviour: B-LOGIN-6 (docs/behaviour.md).
/// The provider's answer is checked: signature, issuer, audience, expiry and nonce; the
/// policies decide before a session is minted; a good answer signs the user in.
#[tokio::test]
async fn id_tokens_are_verified_before_a_session_is_minted() {
    let idp = FakeProvider::start().await;
    let upstream = Upstream::start().await;
    let down = ClosedPort::new();
    let s = sidecar(&manifests(&idp.issuer, &down.url()), &upstream.url()).start().await;
    let id_token = |key: &str, kid: &str, f: &dyn Fn(&mut serde_json::Value), nonce: &str| {
        let mut claims = serde_json::json!({
            "iss": idp.issuer, "aud": CLIENT_ID, "sub": "alice", "email": "alice@mysite.com",
            "name": "Alice", "nonce": nonce, "iat": now(), "exp": now() + 300,
        });
        f(&mut claims);
        mint(key, jsonwebtoken::Algorithm::RS256, Some(kid), claims)
    };
    let keep = |_: &mut serde_json::Value| {};
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, &str, &str, Edit, bool, u16, &str)> = vec![
        ("forged (another key)", "rsa2.pem", "rsa-1", Box::new(keep), true, 401, "id_token_invalid"),
        ("wrong nonce", "rsa.pem", "rsa-1", Box::new(keep), false, 401, "id_token_nonce_mismatch"),
        ("expired", "rsa.pem", "rsa-1", Box::new(|c| c["exp"] = (now() - 600).into()), true, 401, "id_token_invalid"),
        (
            "other audience",
            "rsa.pem",
            "rsa-1",
            Box::new(|c| c["aud"] = "someone-else".into()),
            true,
            401,
            "id_token_invalid",
        ),
        (
            "other issuer",
            "rsa.pem",
            "rsa-1",
            Box::new(|c| c["iss"] = "https://evil.test".into()),
            true,
            401,
            "id_token_invalid",
        ),
        (
            // Anyone can put an unverified address in a profile at many providers.
            "email not verified",
            "rsa.pem",
            "rsa-1",
            Box::new(|c| c["email_verified"] = false.into()),
            true,
            403,
            "email_unverified",
        ),
        (
            "email not verified, as a string",
            "rsa.pem",
            "rsa-1",
            Box::new(|c| c["email_verified"] = "false".into()),
            true,
            403,
            "email_unverified",
        ),
        (
            "refused by policy",
            "rsa.pem",
            "rsa-1",
            Box::new(|c| c["email"] = "eve@elsewhere.test".into()),
            true,
            403,
            "no_policy_matched",
        ),
    ];
    for (what, key, kid, edit, right_nonce, status, reason) in cases {
        let (cookie, q) = start_login_via(&s).await;
        let nonce = if right_nonce { param(&q, "nonce").to_owned() } else { "another-nonce".to_owned() };
        *idp.id_token.lock().unwrap() = id_token(key, kid, &*edit, &nonce);
        let url = s.sidecar_url_callback(param(&q, "state"));
        let r = get(&url, &[HOST, ("cookie", &cookie)]).await.unwrap();
        assert_eq!((r.status, r.json()["error"].as_str()), (status, Some(reason)), "{what}: {}", r.text());
        assert!(r.all("set-cookie").iter().all(|c| !c.starts_with("CF_Authorization=")), "{what}: no session");
    }

    // A good answer: a session for the user, back to rd (a verified email signs in).
    let (cookie, q) = start_login_via(&s).await;
    let verified = |c: &mut serde_json::Value| c["email_verified"] = true.into();
    *idp.id_token.lock().unwrap() = id_token("rsa.pem", "rsa-1", &verified, param(&q, "nonce"));
    let r = get(&s.sidecar_url_callback(param(&q, "state")), &[HOST, ("cookie", &cookie)]).await.unwrap();
    assert_eq!((r.status, r.header("location")), (302, Some("https://api.mysite.com/x")), "{}", r.text());
    let session = r.all("set-cookie").into_iter().find(|c| c.starts_with("CF_Authorization=")).expect("session");
    for attr in ["Path=/", "Max-Age=3600", "SameSite=None", "Secure", "HttpOnly"] {
        assert!(session.contains(attr), "{attr} missing from {session}");
    }
    let token = session.split(';').next().unwrap().to_owned();
    let r = get(&s.url("/.portcullis/identity"), &[HOST, ("cookie", &token)]).await.unwrap();
    assert_eq!((r.status, r.json()["email"].as_str()), (200, Some("alice@mysite.com")));

    // What the token endpoint received: the code, the verifier, the redirect URI, and the
    // client's credentials in Basic auth (RFC 6749 §2.3.1).
    let (auth, body) = idp.token_requests.lock().unwrap().last().cloned().unwrap();
    assert!(auth.starts_with("Basic "), "{auth}");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    assert_eq!(param(&form, "grant_type"), "authorization_code");
    assert_eq!(param(&form, "redirect_uri"), "https://api.mysite.com/.portcullis/callback");
    assert_eq!(param(&form, "code_verifier").len(), 43);
}

async fn start_login_via(s: &Sidecar) -> (String, Vec<(String, String)>) {
    let r = get(&s.url("/.portcullis/login?rd=https://api.mysite.com/x"), &[HOST]).await.unwrap();
    assert_eq!(r.status, 302, "{}", r.text());
    let location = url::Url::parse(r.header("location").unwrap()).unwrap();
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    (cookie, location.query_pairs().into_owned().collect())
}

trait CallbackUrl {
    fn sidecar_url_callback(&self, state: &str) -> String;
}

impl CallbackUrl for Sidecar {
    fn sidecar_url_callback(&self, state: &str) -> String {
        self.url(&format!("/.portcullis/callback?code=the-code&state={state}"))
    }
}

/// `explain` names the sign-in URL in the 401 and shows the redirect of a navigation, as the
/// proxy answers them.
#[test]
fn explain_shows_the_sign_in_answers() {
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(common::sidecar_bin())
            .args(["explain", "--manifests", "examples/sign-in/access.yaml", "--url", "https://api.mysite.com/data"])
            .args(extra)
            .current_dir(common::repo_root())
            .output()
            .expect("run explain");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let login = "https://api.mysite.com/.portcullis/login?rd=https%3A%2F%2Fapi.mysite.com%2Fdata";
    let api = run(&["--header", "Origin: https://www.mysite.com"]);
    assert!(api.contains(&format!(r#""login":"{login}""#)) && api.contains("status 401"), "{api}");
    let nav = run(&["--header", "Sec-Fetch-Mode: navigate"]);
    assert!(nav.contains("status 302") && nav.contains(&format!("location: {login}")), "{nav}");
}

/// With tracing on, the token exchange a callback waits on is a client span of the callback's
/// request span, and no code, state, cookie or client secret is exported (README "Traces").
// Behaviour: B-TRACE-4 (docs/behaviour.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_exchange_is_a_span_of_the_callback_and_exports_no_code() {
    let rx = common::OtlpReceiver::start().await;
    let idp = Idp::start(&["https://api.mysite.com/.portcullis/callback".to_owned()]);
    let upstream = Upstream::start().await;
    let down = ClosedPort::new();
    let sc = sidecar(&manifests(&idp.issuer, &down.url()), &upstream.url())
        .arg("--otlp-endpoint")
        .arg(&rx.endpoint())
        .start()
        .await;
    let (cookie, q) = start_login_via(&sc).await;
    let state = param(&q, "state").to_owned();
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let callback = sc.url(&format!("/.portcullis/callback?code=not-a-real-code&state={state}"));
    let r = get(&callback, &[HOST, ("cookie", &cookie), ("traceparent", &traceparent)]).await.unwrap();
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("idp_token_failed")), "{}", r.text());
    drop(sc);

    let spans = rx.wait_for("the token exchange", |s| s.iter().any(|s| s.name == "oidc token")).await;
    let request = spans.iter().find(|s| s.trace_id == trace_id && s.kind == 2).unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(request.attributes.get("portcullis.decision").map(String::as_str), Some("sign_in"));
    assert_eq!(request.attributes.get("portcullis.reason").map(String::as_str), Some("callback"), "the endpoint");
    assert_eq!(request.attributes.get("http.response.status_code").map(String::as_str), Some("401"));
    let exchange = spans.iter().find(|s| s.name == "oidc token").unwrap();
    assert_eq!(
        (exchange.trace_id.as_str(), exchange.parent_span_id.as_str(), exchange.kind),
        (trace_id, request.span_id.as_str(), 3)
    );
    assert_eq!(exchange.attributes.get("error.type").map(String::as_str), Some("idp_token_failed"));
    let url = exchange.attributes.get("url.full").cloned().unwrap_or_default();
    assert!(url.starts_with("http://127.0.0.1:") && !url.contains('?'), "{url}");
    let exported = format!("{spans:?}");
    let cookie_value = cookie.split_once('=').map(|(_, v)| v).unwrap_or(&cookie);
    for secret in ["not-a-real-code", state.as_str(), cookie_value, CLIENT_SECRET] {
        assert!(!exported.contains(secret), "{secret} exported: {exported}");
    }
}
